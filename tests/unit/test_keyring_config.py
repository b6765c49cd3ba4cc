"""keyring_config: the agent's keyring blocks read and merged as Nomad does (real files, no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.nomad.keyring_config import load_keyring_blocks

SECRET = "s.KEYRINGSECRET"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('keyring "transit" {\n tls_skip_verify = false\n}', 'write tls_skip_verify = "false"'),
        ('{"keyring": {"transit": {"tls_skip_verify": false}}}', 'write tls_skip_verify = "false"'),
        ('keyring "transit" {\n disable_renewal = 1\n}', 'write disable_renewal = "1"'),
        (f'keyring "transit" {{\n token = ["{SECRET}"]\n}}', "token is a list, not a string"),
        ('keyring "transit" {\n active = "maybe"\n}', "active is not a boolean"),
    ],
)
def test_what_nomad_refuses_is_one_line_naming_the_key(tmp_path: Path, text: str, needle: str) -> None:
    """config_parse.go v2.0.5:636-641: every extra key must decode to a string; decoder.go decodeBool."""
    path = write(tmp_path / ("k.json" if text.startswith("{") else "k.hcl"), text)
    with pytest.raises(ConfigError) as info:
        load_keyring_blocks([path])
    message = str(info.value)
    assert needle in message and message.startswith(f'agent config {path}: keyring "transit"')
    assert "Nomad would refuse to start" in message and "\n" not in message and SECRET not in message
    assert info.value.exit_code == 78


def test_active_reads_as_go_decodes_a_boolean(tmp_path: Path) -> None:
    path = write(tmp_path / "k.hcl", 'keyring "transit" {\n active = "TRUE"\n}\nkeyring "aead" {\n active = 0\n}')
    assert [(b.id, b.active) for b in load_keyring_blocks([path])] == [("aead", False), ("transit", True)]


def test_the_token_is_never_kept_only_its_form(tmp_path: Path) -> None:
    path = write(
        tmp_path / "k.hcl",
        f'keyring "transit" {{\n name = "a"\n token = "{SECRET}"\n}}\n'
        'keyring "transit" {\n name = "b"\n token = "file:///run/k"\n}\n'
        'keyring "transit" {\n name = "c"\n token = "env://KEYRING_TOKEN"\n}',
    )
    blocks = load_keyring_blocks([path])
    assert [(b.id, b.token and (b.token.kind, b.token.target)) for b in blocks] == [
        ("transit.a", ("literal", "")),
        ("transit.b", ("file", "/run/k")),
        ("transit.c", ("env", "KEYRING_TOKEN")),
    ]
    assert SECRET not in repr(blocks)


def test_a_later_file_resets_active_and_merges_keys(tmp_path: Path) -> None:
    """mergeKEKProviderConfigs + KEKProviderConfig.Merge (keyring.go v2.0.5:331-336): Active = the later's."""
    a = write(tmp_path / "a.hcl", 'keyring "transit" {\n active = true\n address = "https://v:8200"\n}')
    b = write(tmp_path / "b.hcl", 'keyring "transit" {\n token = "file:///run/k"\n key_name = "k2"\n}')
    (block,) = load_keyring_blocks([a, b])
    assert block.active is False and block.active_where == str(b)
    assert dict(block.config) == {"address": "https://v:8200", "key_name": "k2"}
    assert block.token is not None and block.token.where == str(b)


def test_one_file_keeps_its_blocks_apart(tmp_path: Path) -> None:
    """Within a file blocks are not merged (only Config.Merge between files merges them)."""
    path = write(tmp_path / "k.hcl", 'keyring "awskms" {\n region = "a"\n}\nkeyring "awskms" {\n region = "b"\n}')
    assert [b.config["region"] for b in load_keyring_blocks([path])] == ["a", "b"]


def test_keys_merged_into_a_block_that_had_none_is_refused_as_nomad_panics(tmp_path: Path) -> None:
    a = write(tmp_path / "a.hcl", 'keyring "transit" {\n active = true\n}')
    b = write(tmp_path / "b.hcl", 'keyring "transit" {\n token = "file:///run/k"\n}')
    with pytest.raises(ConfigError, match="Nomad panics merging them"):
        load_keyring_blocks([a, b])
