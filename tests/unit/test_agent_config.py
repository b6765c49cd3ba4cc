"""agent_config: the agent's merged default vault block (real files) and the findings about it (a table)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hcl
import pytest

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.nomad.agent_config import (
    DEFAULT_ADDRESS,
    VaultBlock,
    _default_blocks,
    load_vault_block,
)
from nomad_vault_token.nomad.agent_findings import findings, same_vault
from nomad_vault_token.nomad.argv import parse
from nomad_vault_token.nomad.go_duration import go_duration_ns

SECRET = "s.SECRETSECRET"
NOMAD = ["/usr/bin/nomad", "agent"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(*paths: Path | str, argv: list[str] | None = None) -> VaultBlock:
    return load_vault_block(list(paths), parse([*NOMAD, *argv]) if argv is not None else None)


# --- one file, each form -------------------------------------------------------------------------

FORMS = [
    ("hcl block", "vault.hcl", 'vault {\n  enabled = true\n  address = "https://v:8200"\n}\n'),
    ("hcl assignment", "vault.hcl", 'vault = { enabled = true, address = "https://v:8200" }'),
    ("json object", "vault.json", '{"vault": {"enabled": true, "address": "https://v:8200"}}'),
    ("json list", "vault.json", '{"vault": [{"enabled": true}, {"address": "https://v:8200"}]}'),
    ("hcl whatever the extension", "vault.conf", 'vault { enabled = true\n address = "https://v:8200" }'),
    ("json whatever the extension", "vault.txt", '  {"vault": {"enabled": true, "address": "https://v:8200"}}'),
    ("two unnamed blocks merge", "v.hcl", 'vault { enabled = true }\nvault { address = "https://v:8200" }'),
    ("weak decoding (mapstructure)", "v.hcl", 'vault {\n enabled = "true"\n address = "https://v:8200" }'),
    ("number as boolean", "v.hcl", 'vault {\n enabled = 1\n address = "https://v:8200" }'),
    (
        "json null leaves a key unset",
        "v.json",
        '{"vault": {"enabled": true, "address": "https://v:8200", "namespace": null}}',
    ),
    ("labelled block: Nomad ignores the label", "v.hcl", 'vault "x" {\n enabled = true\n address = "https://v:8200" }'),
    ("json labels (flatten.go)", "v.json", '{"vault": {"x": {"enabled": true, "address": "https://v:8200"}}}'),
]


@pytest.mark.parametrize(("name", "text"), [(n, t) for _, n, t in FORMS], ids=[i for i, _, _ in FORMS])
def test_one_file_forms(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path / name, text)
    block = load(path)
    assert block.is_enabled
    assert block.address == "https://v:8200"
    assert block.namespace is None
    assert block.origin == {"enabled": str(path), "address": str(path)}
    assert block.files == (str(path),)


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    block = load(write(tmp_path / "a.hcl", 'datacenter = "dc1"\n'), write(tmp_path / "b.hcl", ""))
    assert block == VaultBlock(files=(str(tmp_path / "a.hcl"), str(tmp_path / "b.hcl")))
    assert not block.is_enabled  # IsEnabled: unset is false
    assert block.effective_address == DEFAULT_ADDRESS
    assert block.allow_unauthenticated  # DefaultVaultConfig: true


def test_whitespace_only_file_is_empty(tmp_path: Path) -> None:
    assert load(write(tmp_path / "a.hcl", "\n  \n")).files == (str(tmp_path / "a.hcl"),)


# --- merging across files --------------------------------------------------------------------------


def test_later_file_overrides_and_empty_string_does_not(tmp_path: Path) -> None:
    a = write(tmp_path / "a.hcl", 'vault {\n enabled = true\n address = "https://a:8200"\n namespace = "ns1"\n}')
    b = write(tmp_path / "b.hcl", 'vault {\n address = "https://b:8200"\n namespace = ""\n}')
    block = load(a, b)
    assert (block.address, block.namespace, block.enabled) == ("https://b:8200", "ns1", True)
    assert block.origin == {"enabled": str(a), "address": str(b), "namespace": str(a)}


def test_false_later_overrides_true(tmp_path: Path) -> None:
    a = write(tmp_path / "a.hcl", "vault {\n enabled = true\n allow_unauthenticated = true }")
    b = write(tmp_path / "b.json", '{"vault": {"enabled": false, "allow_unauthenticated": false}}')
    block = load(a, b)
    assert block.enabled is False and not block.is_enabled
    assert block.allow_unauthenticated is False
    assert block.origin["enabled"] == str(b)


def test_argv_order_not_name_order(tmp_path: Path) -> None:
    z = write(tmp_path / "z.hcl", 'vault { address = "https://z:8200" }')
    a = write(tmp_path / "a.hcl", 'vault { address = "https://a:8200" }')
    assert load(z, a).address == "https://a:8200"
    assert load(a, z).address == "https://z:8200"


def test_directory(tmp_path: Path) -> None:
    d = tmp_path / "nomad.d"
    write(d / "10-base.hcl", 'vault {\n enabled = true\n address = "https://base:8200" }')
    write(d / "20-addr.json", '{"vault": {"address": "https://json:8200"}}')
    write(d / "B-upper-sorts-first.hcl", 'vault { namespace = "from-B" }')
    write(d / "30-ns.hcl", 'vault { namespace = "from-30" }')
    write(d / ".hidden.hcl", 'vault { create_from_role = "hidden" }')  # Nomad reads hidden files
    write(d / ".#lock.hcl", "not { valid")  # emacs lock file: isTemporaryFile
    write(d / "notes.txt", "not { valid")
    write(d / "UPPER.HCL", "not { valid")  # the suffix check is case-sensitive
    write(d / "backup.hcl~", "not { valid")
    write(d / "sub.hcl" / "deep.hcl", 'vault { address = "https://deep:8200" }')  # no recursion
    block = load(d)
    assert [Path(f).name for f in block.files] == [
        ".hidden.hcl",
        "10-base.hcl",
        "20-addr.json",
        "30-ns.hcl",
        "B-upper-sorts-first.hcl",
    ]
    assert block.address == "https://json:8200"
    assert block.namespace == "from-B"  # byte order: "B" (0x42) sorts after "3" (0x33)
    assert block.create_from_role == "hidden"
    assert block.origin["address"] == str(d / "20-addr.json")


def test_directory_then_file(tmp_path: Path) -> None:
    d = tmp_path / "nomad.d"
    write(d / "vault.hcl", 'vault {\n enabled = true\n create_from_role = "theirs" }')
    handoff = write(
        tmp_path / "run" / "vault-token.hcl", f'vault {{\n token = "{SECRET}"\n create_from_role = "ours" }}'
    )
    block = load(d, handoff)
    assert block.create_from_role == "ours"
    assert block.token_set and block.origin["token"] == str(handoff)
    assert SECRET not in repr(block)


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert load(tmp_path / "empty") == VaultBlock()


def test_symlink_to_a_directory_named_hcl_is_read_as_a_file(tmp_path: Path) -> None:
    d = tmp_path / "nomad.d"
    (tmp_path / "elsewhere").mkdir()
    d.mkdir()
    (d / "link.hcl").symlink_to(tmp_path / "elsewhere")  # Readdir lstat: not a dir, so Nomad opens it
    with pytest.raises(ConfigError, match=r"link\.hcl: cannot read"):
        load(d)


# --- several vault blocks (1.7+) -------------------------------------------------------------------

NAMED = [
    (
        "named block ignored, unnamed ones merged",
        'vault { enabled = true }\nvault {\n name = "other"\n address = "https://other:8200" }\n'
        'vault { address = "https://default:8200" }',
        {"enabled": True, "address": "https://default:8200"},
    ),
    (
        "pyhcl would fold a named block's keys into the default one",
        'vault {\n name = "other"\n token = "t"\n}\nvault { address = "https://default:8200" }',
        {"address": "https://default:8200", "token_set": False},
    ),
    (
        'explicit name = "default"',
        'vault {\n name = "default"\n enabled = true }\nvault {\n name = "x"\n enabled = false }',
        {"enabled": True},
    ),
    (
        "same key twice in one block: the later wins",
        "vault {\n enabled = true\n enabled = false\n}",
        {"enabled": False},
    ),
    (
        "json list with a named element",
        '{"vault": [{"enabled": true}, {"name": "x", "address": "https://x:8200"}, {"namespace": "n"}]}',
        {"enabled": True, "namespace": "n", "address": None},
    ),
    (
        "json repeated top-level key keeps both",
        '{"vault": {"enabled": true}, "vault": {"namespace": "n"}}',
        {"enabled": True, "namespace": "n"},
    ),
]


@pytest.mark.parametrize(("text", "want"), [(t, w) for _, t, w in NAMED], ids=[i for i, _, _ in NAMED])
def test_named_blocks(tmp_path: Path, text: str, want: dict[str, Any]) -> None:
    suffix = ".json" if text.startswith("{") else ".hcl"
    block = load(write(tmp_path / f"v{suffix}", text))
    for key, value in want.items():
        assert getattr(block, key) == value, key


# pyhcl's own folding (hcl.loads), if our hook ever stops applying: both of its shapes are read.
PYHCL_SHAPES = [
    ("merged into one dict", 'vault { enabled = true }\nvault { address = "https://a:8200" }', dict),
    ("a list of dicts", 'vault { enabled = true }\nvault {\n enabled = false\n address = "https://a:8200" }', list),
    ("labelled", 'vault "x" {\n enabled = false\n address = "https://a:8200" }', dict),
]


@pytest.mark.parametrize(("text", "shape"), [(t, s) for _, t, s in PYHCL_SHAPES], ids=[i for i, _, _ in PYHCL_SHAPES])
def test_pyhcl_folded_shapes(text: str, shape: type) -> None:
    top = hcl.loads(text)
    assert isinstance(top["vault"], shape)
    blocks = _default_blocks(list(top.items()), "f.hcl")
    merged: dict[str, Any] = {}
    for b in blocks:
        merged.update(b)
    assert merged["address"] == "https://a:8200"
    assert merged["enabled"] is (shape is dict and "x" not in text)


# --- flags over files ------------------------------------------------------------------------------


def test_flags_override_files(tmp_path: Path) -> None:
    f = write(
        tmp_path / "v.hcl", 'vault {\n enabled = true\n address = "https://file:8200"\n create_from_role = "r1" }'
    )
    block = load(
        f,
        argv=[
            "-vault-address=https://flag:8200",
            "-vault-create-from-role",
            "",  # an empty flag value does not override
            "-vault-enabled=false",
            "-vault-ca-file=/ca.pem",
            f"-vault-token={SECRET}",
        ],
    )
    assert block.address == "https://flag:8200"
    assert block.create_from_role == "r1"
    assert block.enabled is False
    assert block.ca_file == "/ca.pem"
    assert block.token_set
    assert block.origin == {
        "enabled": "flag -vault-enabled",
        "address": "flag -vault-address",
        "create_from_role": str(f),
        "ca_file": "flag -vault-ca-file",
        "token": "flag -vault-token",
    }
    assert SECRET not in repr(block)


def test_dev_vault_is_under_the_files(tmp_path: Path) -> None:
    block = load(write(tmp_path / "v.hcl", 'vault { address = "https://file:8200" }'), argv=["-dev", "-dev-vault"])
    assert block.enabled is True and block.origin["enabled"] == "flag -dev-vault"
    assert block.address == "https://file:8200"


# --- errors ----------------------------------------------------------------------------------------

BAD_FILES = [
    (
        "broken hcl",
        "v.hcl",
        "vault {\n  enabled = true\n  address = }\n",
        "not valid HCL (line 3, column 13: unexpected RIGHTBRACE",
    ),
    ("unterminated string", "v.hcl", f'vault {{\n token = "{SECRET}\n', "EOF before closing string quote"),
    ("illegal character", "v.hcl", f"vault {{\n token = {SECRET}@x\n}}", "illegal character"),
    # A trailing comma is valid to Nomad (hcl v1 json/parser/parser.go objectList): a key with no colon is not.
    ("broken json", "v.json", f'{{"vault": {{"token": "{SECRET}"}}, :}}', "not valid JSON to Nomad (line 1, column"),
    ("json bad escape", "v.json", '{"vault": {"token": "s.ab\\qc"}}', "not valid JSON to Nomad (line 1, column"),
    ("json's own escape", "v.json", '{"vault": {"token": "s.ab\\/c"}}', "illegal char escape"),
    ("not a boolean", "v.hcl", 'vault { enabled = "yes" }', 'vault.enabled = "yes" is not a boolean'),
    ("token is a list", "v.hcl", f'vault {{ token = ["{SECRET}"] }}', "vault.token is a list, not a string"),
    ("vault not a block", "v.hcl", 'vault = "x"', "vault is not a block"),
    ("not utf-8", "v.hcl", None, "not UTF-8"),
]


@pytest.mark.parametrize(
    ("name", "text", "needle"), [(n, t, e) for _, n, t, e in BAD_FILES], ids=[i for i, _, _, _ in BAD_FILES]
)
def test_bad_file(tmp_path: Path, name: str, text: str | None, needle: str) -> None:
    path = tmp_path / name
    if text is None:
        path.write_bytes(b'vault { address = "\xff" }')
    else:
        write(path, text)
    good = write(tmp_path / "a-good.hcl", "vault { enabled = true }")
    with pytest.raises(ConfigError) as info:
        load(good, path)
    message = str(info.value)
    assert message.startswith(f"agent config {path}: ")
    assert needle in message
    assert "\n" not in message
    assert SECRET not in message and "s.ab" not in message and "'q'" not in message
    assert info.value.exit_code == 78


def test_bad_file_inside_a_directory_is_named(tmp_path: Path) -> None:
    write(tmp_path / "d" / "a.hcl", "vault {")
    with pytest.raises(ConfigError, match=rf"^agent config {tmp_path / 'd' / 'a.hcl'}: not valid HCL"):
        load(tmp_path / "d")


@pytest.mark.parametrize("missing", ["nope.hcl", "nope.d/"])
def test_missing_path(tmp_path: Path, missing: str) -> None:
    path = str(tmp_path / missing)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value) == (
        f"agent -config {path}: no such file or directory: fix the -config after -- "
        f'(Nomad would refuse to start: "Error loading configuration from {path}")'
    )


def test_empty_config_value() -> None:
    with pytest.raises(ConfigError, match=r'^agent -config "": no such file'):
        load_vault_block([""])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable(tmp_path: Path) -> None:
    f = write(tmp_path / "v.hcl", "vault {}")
    f.chmod(0)
    with pytest.raises(ConfigError, match=r"v\.hcl: permission denied: make it readable"):
        load(f)
    d = tmp_path / "d"
    d.mkdir()
    d.chmod(0o300)
    with pytest.raises(ConfigError, match="permission denied listing the directory"):
        load(d)


def test_unreadable_as_root_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nomad_vault_token.nomad.agent_config as module

    def denied(*_: Any, **__: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    f = write(tmp_path / "v.hcl", "vault {}")
    (tmp_path / "d").mkdir()
    monkeypatch.setattr(module, "open", denied, raising=False)
    monkeypatch.setattr(module.os, "scandir", denied)
    with pytest.raises(ConfigError, match=r"v.hcl: permission denied: make it readable by the user that runs Nomad"):
        load(f)
    with pytest.raises(ConfigError, match=r"d: permission denied listing the directory"):
        load(tmp_path / "d")


def test_pyhcl_is_imported_lazily() -> None:
    code = "import sys, nomad_vault_token.nomad.agent_config as m; print('hcl' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "False"


# --- Go durations ----------------------------------------------------------------------------------

DURATIONS = [
    ("72h", 72 * 3600 * 10**9),
    ("1h30m", 5400 * 10**9),
    ("1.5s", 1_500_000_000),
    ("1.s", 10**9),
    (".5m", 30 * 10**9),
    ("300ms", 300_000_000),
    ("1µs", 1000),
    ("1μs", 1000),
    ("-5m", -300 * 10**9),
    ("+0", 0),
    ("0", 0),
]


@pytest.mark.parametrize(("text", "ns"), DURATIONS)
def test_go_duration(text: str, ns: int) -> None:
    assert go_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "72", "1d", "h", ".s", "1h30", "1 h", "5M", "-", "9999999999h"])
def test_go_duration_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        go_duration_ns(text)


# --- same Vault --------------------------------------------------------------------------------------

SAME = [
    ("https://v:8200", "https://v:8200/", True),
    ("https://V.Example:8200", "https://v.example:8200", True),
    ("https://v", "https://v:443", True),
    ("http://v", "http://v:80", True),
    ("https://v:8200/a/", "https://v:8200/a", True),
    ("https://v:8200", "http://v:8200", False),
    ("https://v:8200", "https://v:8201", False),
    ("https://v", "https://v:8200", False),
    ("https://v:8200/a", "https://v:8200/b", False),
    ("https://v:8200", "https://w:8200", False),
    ("v:8200", "v:8200", False),  # not URLs
    ("https://v:port", "https://v:port", False),
]


@pytest.mark.parametrize(("a", "b", "same"), SAME)
def test_same_vault(a: str, b: str, same: bool) -> None:
    assert same_vault(a, b) is same
    assert same_vault(b, a) is same


# --- findings ----------------------------------------------------------------------------------------

F = "/etc/nomad.d/vault.hcl"
H = "/run/nomad-vault-token/vault-token.hcl"
GOOD = VaultBlock(
    enabled=True,
    address="https://vault:8200",
    origin={"enabled": F, "address": F},
)
ARGS: dict[str, Any] = {
    "vault_addr": "https://VAULT:8200/",
    "namespace": None,
    "task_role": "nomad-cluster",
    "handoff": "file",
    "consumed_env": {},
}


def with_origin(**kw: Any) -> VaultBlock:
    origin = dict(GOOD.origin)
    origin.update(kw.pop("origin", {}))
    return replace(GOOD, origin=origin, **kw)


@dataclass(frozen=True)
class FCase:
    id: str
    block: VaultBlock
    key: str
    severity: str
    needles: tuple[str, ...] = ()
    args: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None  # None: the file or flag that set `key`


FCASES = [
    FCase("enabled", GOOD, "enabled", "pass"),
    FCase(
        "enabled false",
        with_origin(enabled=False),
        "enabled",
        "fail",
        (f"{F}: vault.enabled = false: Nomad will not use Vault at all (nomad/vault.go:292)",),
    ),
    FCase(
        "enabled unset",
        replace(GOOD, enabled=None, origin={"address": F}),
        "enabled",
        "fail",
        ("is not set", "treats that as false"),
    ),
    FCase(
        "enabled false by flag",
        with_origin(enabled=False, origin={"enabled": "flag -vault-enabled"}),
        "enabled",
        "fail",
        ("flag -vault-enabled: vault.enabled = false",),
    ),
    FCase("address same", GOOD, "address", "pass"),
    FCase(
        "address other",
        with_origin(address="https://other:8200"),
        "address",
        "fail",
        (f"{F}: vault.address = https://other:8200", "https://VAULT:8200/"),
    ),
    FCase(
        "address unset: Nomad's default",
        replace(GOOD, address=None, origin={"enabled": F}),
        "address",
        "fail",
        ("https://vault.service.consul:8200 (structs/config/vault.go v1.9.7:131)", "https://VAULT:8200/"),
    ),
    FCase(
        "address unset but ours is Nomad's default",
        replace(GOOD, address=None, origin={"enabled": F}),
        "address",
        "pass",
        args={"vault_addr": "https://vault.service.consul:8200"},
    ),
    FCase("address not a URL", with_origin(address="vault:8200"), "address", "fail", ("not an http(s) URL",)),
    FCase("namespace both unset", GOOD, "namespace", "pass", ("root namespace",)),
    FCase(
        "namespace only ours: a note",
        GOOD,
        "namespace",
        "pass",
        ("Nomad uses namespace team-a only if the file hand-off gives it",),
        {"namespace": "team-a"},
    ),
    FCase(
        "namespace same",
        with_origin(namespace="team-a/", origin={"namespace": F}),
        "namespace",
        "pass",
        args={"namespace": "team-a"},
    ),
    FCase(
        "namespace different",
        with_origin(namespace="team-b", origin={"namespace": F}),
        "namespace",
        "fail",
        (f"{F}: vault.namespace = team-b", "namespace team-a"),
        {"namespace": "team-a"},
    ),
    FCase(
        "namespace only theirs",
        with_origin(namespace="team-b", origin={"namespace": F}),
        "namespace",
        "fail",
        ("the root namespace",),
    ),
    FCase("role unset", GOOD, "create_from_role", "pass"),
    FCase(
        "role same",
        with_origin(create_from_role="nomad-cluster", origin={"create_from_role": F}),
        "create_from_role",
        "pass",
    ),
    FCase(
        "role different, file hand-off",
        with_origin(create_from_role="old", origin={"create_from_role": F}),
        "create_from_role",
        "warn",
        (
            f"{F}: vault.create_from_role = old: overridden by this tool's nomad-cluster (the hand-off file is read last)",
        ),
    ),
    FCase(
        "role different, env hand-off",
        with_origin(create_from_role="old", origin={"create_from_role": F}),
        "create_from_role",
        "warn",
        ("-vault-create-from-role comes later",),
        {"handoff": "env"},
    ),
    FCase(
        "role by flag beats the hand-off file",
        with_origin(create_from_role="old", origin={"create_from_role": "flag -vault-create-from-role"}),
        "create_from_role",
        "fail",
        ("the flag beats the hand-off file",),
    ),
    FCase("token unset", GOOD, "token", "pass"),
    FCase(
        "token in a file, file hand-off",
        with_origin(token_set=True, origin={"token": F}),
        "token",
        "warn",
        (f"{F}: vault.token is set",),
    ),
    FCase(
        "token in a file, env hand-off",
        with_origin(token_set=True, origin={"token": F}),
        "token",
        "fail",
        ("beats VAULT_TOKEN",),
        {"handoff": "env"},
    ),
    FCase(
        "token by flag",
        with_origin(token_set=True, origin={"token": "flag -vault-token"}),
        "token",
        "fail",
        ("vault.token is set: the flag beats every config file",),
    ),
    FCase("allow_unauthenticated default", GOOD, "allow_unauthenticated", "pass", ("default is true",)),
    FCase(
        "allow_unauthenticated false",
        with_origin(allow_unauthenticated_setting=False, origin={"allow_unauthenticated": F}),
        "allow_unauthenticated",
        "pass",
        (f"{F}: vault.allow_unauthenticated = false", "auth/token/lookup"),
    ),
    FCase("task_token_ttl unset", GOOD, "task_token_ttl", "pass", ("72h",)),
    FCase(
        "task_token_ttl ok", with_origin(task_token_ttl="1h30m", origin={"task_token_ttl": F}), "task_token_ttl", "pass"
    ),
    FCase(
        "task_token_ttl in days",
        with_origin(task_token_ttl="3d", origin={"task_token_ttl": F}),
        "task_token_ttl",
        "fail",
        (f"{F}: vault.task_token_ttl = '3d': Nomad cannot parse it",),
    ),
    FCase(
        "task_token_ttl too short",
        with_origin(task_token_ttl="299s", origin={"task_token_ttl": F}),
        "task_token_ttl",
        "fail",
        ("minimum allowed of 5m0s",),
    ),
    FCase(
        "VAULT_CACERT consumed, no ca_file",
        GOOD,
        "env.VAULT_CACERT",
        "warn",
        ("Nomad's vault block sets no ca_file or ca_path and VAULT_CACERT is not passed on to it",),
        {"consumed_env": {"VAULT_CACERT": "/x/ca.pem", "VAULT_TOKEN": SECRET}},
    ),
    FCase(
        "VAULT_CACERT consumed, ca_path set",
        with_origin(ca_path="/etc/ssl/vault", origin={"ca_path": F}),
        "env.VAULT_CACERT",
        "pass",
        args={"consumed_env": {"VAULT_CACERT": "/x/ca.pem"}},
        origin=F,
    ),
    FCase(
        "VAULT_TLS_SERVER_NAME consumed",
        GOOD,
        "env.VAULT_TLS_SERVER_NAME",
        "warn",
        ("sets no tls_server_name",),
        {"consumed_env": {"VAULT_TLS_SERVER_NAME": "vault.internal"}},
    ),
]


@pytest.mark.parametrize("case", FCASES, ids=[c.id for c in FCASES])
def test_findings(case: FCase) -> None:
    got = {f.key: f for f in findings(case.block, **{**ARGS, **case.args})}
    finding = got[case.key]
    assert finding.severity == case.severity, finding
    for needle in case.needles:
        assert needle in finding.message
    assert finding.origin == (case.block.where(case.key) if case.origin is None else case.origin)
    if case.severity == "pass":
        assert finding.fix == ""
    else:
        assert finding.fix
    for f in got.values():
        assert "\n" not in f.message + f.fix
        assert SECRET not in f.message + f.fix + repr(f)


def test_findings_of_a_good_block_all_pass() -> None:
    result = findings(GOOD, **ARGS)
    assert [f.key for f in result] == [
        "enabled",
        "address",
        "namespace",
        "create_from_role",
        "token",
        "allow_unauthenticated",
        "task_token_ttl",
    ]
    assert {f.severity for f in result} == {"pass"}


def test_findings_fix_names_the_value_to_set() -> None:
    got = {f.key: f for f in findings(GOOD, **{**ARGS, "consumed_env": {"VAULT_CACERT": "/x/ca.pem"}})}
    assert got["env.VAULT_CACERT"].fix == 'set vault.ca_file = "/x/ca.pem" in a -config file of the agent'
    flag = with_origin(enabled=False, origin={"enabled": "flag -vault-enabled"})
    assert {f.key: f for f in findings(flag, **ARGS)}["enabled"].fix == (
        "fix -vault-enabled after -- (a flag beats every file; it must give: set enabled = true)"
    )
    bad = {f.key: f for f in findings(with_origin(address="https://o:8200"), **ARGS)}
    assert bad["address"].fix.startswith(f'set address = "https://VAULT:8200/" in the vault block of {F}')


def test_end_to_end_from_files(tmp_path: Path) -> None:
    d = tmp_path / "nomad.d"
    write(d / "server.hcl", "server { enabled = true }\n")
    vault = write(
        d / "vault.json", json.dumps({"vault": {"enabled": True, "address": "https://v:8200", "token": SECRET}})
    )
    parsed = parse([*NOMAD, "-config", str(d), "-server"])
    block = load_vault_block(parsed.configs, parsed)
    got = {f.key: f for f in findings(block, **{**ARGS, "vault_addr": "https://v:8200", "handoff": "env"})}
    assert got["token"].severity == "fail" and got["token"].origin == str(vault)
    assert got["enabled"].severity == got["address"].severity == "pass"


# --- JSON as Nomad's reader (hcl v1 json/parser) reads it ----------------------------------------


def test_json_null_is_the_empty_string_so_a_boolean_turns_false(tmp_path: Path) -> None:
    """json/token/token.go HCLToken: null is a STRING with no text; mapstructure's WeakDecode makes "" false
    (and a *bool set to false overrides an earlier true: structs/config/vault.go v1.9.7:153-215)."""
    a = write(tmp_path / "a.hcl", 'vault {\n enabled = true\n address = "https://v:8200" }')
    b = write(tmp_path / "b.json", '{"vault": {"enabled": null, "address": null}}')
    block = load(a, b)
    assert block.enabled is False and block.origin["enabled"] == str(b)
    assert block.address == "https://v:8200"  # an empty string never overrides


def test_a_missing_comma_is_a_warning_naming_where_nomad_stops_reading(tmp_path: Path) -> None:
    path = write(tmp_path / "v.json", f'{{\n "vault": {{"enabled": true}}\n "x": {{"token": "{SECRET}"}}\n}}')
    block = load(path)
    assert block.enabled is True
    (note,) = block.notes
    assert note.message.startswith(f"agent config {path}: line 3, column 2: Nomad reads past everything from here on")
    said = findings(block, vault_addr=DEFAULT_ADDRESS, namespace=None, task_role="", handoff="file", consumed_env={})
    (warn,) = [f for f in said if f.key == "config"]
    assert warn.severity == "warn" and SECRET not in warn.message


@pytest.mark.parametrize(
    ("text", "warned"),
    [
        ('{"vault": {"enabled": true, "default_identity": {"aud": ["vault.io"]}}}', True),
        ('{"vault": [{"enabled": true, "default_identity": {"aud": ["vault.io"]}}]}', False),  # v1.9.7 basic.json
        ('{"vault": {"enabled": true}}', False),
    ],
)
def test_json_vault_object_with_default_identity_warns_of_nomad_before_1_11_3(
    tmp_path: Path, text: str, warned: bool
) -> None:
    """hashicorp/nomad#27595: hcl.Decode leaked default_identity into the top-level unknown keys."""
    block = load(write(tmp_path / "v.json", text))
    assert [n for n in block.notes if "1.11.3" in n.message] if warned else not block.notes
    if warned:
        assert '"vault": [' in block.notes[0].fix
