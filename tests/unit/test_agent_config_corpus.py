"""Agent config shapes in HCL and JSON (tests/data/agent-configs/): both forms read the same, and none is refused.

Each shape mirrors an agent config of Nomad's own parser tests (named in the folder's config.hcl).
Nomad reads every one of them (`command/agent/config_parse_test.go` loads its own with
`must.NoError`), so nothing here may say that Nomad would refuse to start.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from nomad_vault_token.nomad.agent_config import DefaultIdentity, VaultBlock, load_default_identity, load_vault_block
from nomad_vault_token.nomad.agent_findings import findings
from nomad_vault_token.nomad.keyring_config import KeyringBlock, load_keyring_blocks

CORPUS = Path(__file__).resolve().parent.parent / "data" / "agent-configs"
PAIRS = sorted(
    (folder.name, json_file.name)
    for folder in CORPUS.iterdir()
    if folder.is_dir() and (folder / "config.hcl").exists()
    for json_file in sorted(folder.glob("*.json"))
)


def _vault(paths: list[Path]) -> VaultBlock:
    return replace(load_vault_block(paths), origin={}, files=(), notes=())


def _keyring(paths: list[Path]) -> list[KeyringBlock]:
    return [
        replace(b, where="", active_where="", token=b.token and replace(b.token, where=""))
        for b in load_keyring_blocks(paths)
    ]


def test_the_corpus_has_every_shape() -> None:
    assert {name for name, _ in PAIRS} >= {
        "trailing-commas",
        "obj-len-one",
        "config-slices",
        "vault-every-field",
        "keyring",
        "plugin-template",
    }
    assert ("config-slices", "config-alt.json") in PAIRS


@pytest.mark.parametrize(("shape", "json_name"), PAIRS, ids=[f"{s}/{j}" for s, j in PAIRS])
def test_hcl_and_json_read_the_same(shape: str, json_name: str) -> None:
    hcl, json = [CORPUS / shape / "config.hcl"], [CORPUS / shape / json_name]
    assert _vault(json) == _vault(hcl)
    assert _vault(hcl).enabled is True  # the shape was read, not skipped
    assert _identity(json) == _identity(hcl)
    assert _keyring(json) == _keyring(hcl)


def _identity(paths: list[Path]) -> DefaultIdentity | None:
    found = load_default_identity(paths)
    return found and replace(found, where="")


@pytest.mark.parametrize(("shape", "json_name"), PAIRS, ids=[f"{s}/{j}" for s, j in PAIRS])
def test_no_form_gets_a_finding_nomad_would_contradict(shape: str, json_name: str) -> None:
    for path in (CORPUS / shape / "config.hcl", CORPUS / shape / json_name):
        block = load_vault_block([path])
        said = findings(
            block, vault_addr=block.effective_address, namespace=None, task_role="", handoff="file", consumed_env={}
        )
        assert not [f for f in said if f.key == "config"], said
        assert block.notes == ()


def test_a_directory_of_json_with_trailing_commas_and_hcl_merges_as_its_hcl_twin() -> None:
    hcl_dir, json_dir = CORPUS / "sample-dir" / "hcl", CORPUS / "sample-dir" / "json"
    block = load_vault_block([json_dir])
    assert [Path(f).name for f in block.files] == ["10-base.json", "20-more.json", "30-last.hcl"]
    assert block.address == "https://second.example.com:8200"  # a later file's non-empty string wins
    assert block.origin["address"] == str(json_dir / "20-more.json")
    assert block.create_from_role == "nomad-cluster" and block.enabled is True
    assert _vault([json_dir]) == _vault([hcl_dir])
    assert [b.id for b in load_keyring_blocks([json_dir])] == ["aead", "transit"]
    assert _keyring([json_dir]) == _keyring([hcl_dir])


def test_every_field_of_the_vault_block_is_read_from_both() -> None:
    block = _vault([CORPUS / "vault-every-field" / "config.json"])
    assert block == VaultBlock(
        enabled=True,
        address="https://vault.example.com:8200",
        namespace="ns1",
        create_from_role="nomad-cluster",
        allow_unauthenticated_setting=False,
        task_token_ttl="1h",
        ca_file="/etc/nomad.d/vault-ca.pem",
        ca_path="/etc/nomad.d/vault-ca",
        cert_file="/etc/nomad.d/vault.pem",
        key_file="/etc/nomad.d/vault-key.pem",
        tls_skip_verify=False,
        tls_server_name="vault.example.com",
    )
    identity = load_default_identity([CORPUS / "vault-every-field" / "config.json"])
    assert identity is not None and identity.aud == ("vault.io",) and identity.ttl == "1h"


def test_keyring_blocks_are_read_with_labels_names_and_string_values() -> None:
    blocks = load_keyring_blocks([CORPUS / "keyring" / "config.json"])
    assert [(b.id, b.active) for b in blocks] == [("awskms.eu", False), ("awskms.us", False), ("transit", True)]
    transit = blocks[2]
    assert transit.config["tls_skip_verify"] == "false" and transit.config["key_name"] == "nomad-keyring"
    assert "token" not in transit.config
    assert transit.token is not None and transit.token.kind == "file"
    assert transit.token.target == "/run/nomad-vault-token/keyring-token"
