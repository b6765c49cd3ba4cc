"""`bootstrap-roles --keyring` against a real, empty OpenBao: the transit mount and key, the keyring policy and
role, the startup identity allowed to mint through it; idempotent; and the least-privilege boundaries, each
tried against the real transit engine and refused by the server."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.bao import MINT_ROLE, SERVER_POLICY, STARTUP_ROLE, TASK_ROLE, Bao, Certs
from testbed.config import write_config
from tests.integration.test_bootstrap import ALL_CREATED, as_json, bootstrap, post, read, startup_login

pytestmark = pytest.mark.vault

KEYRING_CREATED = [
    "created secrets mount sys/mounts/transit",
    "created transit key transit/keys/nomad-keyring",
    "created policy nomad-keyring",
    "created role auth/token/roles/nomad-keyring-mint",
]


@pytest.fixture
def server(new_bao: Callable[..., Bao]) -> Bao:
    return new_bao(configure=False)


@pytest.fixture
def cfg(tmp_path: Path, server: Bao, certs: Certs) -> Path:
    return write_config(tmp_path / "config.toml", server, certs, keyring=True)


def keyring_token(server: Bao) -> str:
    """Mint a keyring token as `run` does: the startup login, through the keyring role."""
    login = startup_login(server)
    resp = post(server, login, "auth/token/create/nomad-keyring-mint", {"policies": ["nomad-keyring"]})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["auth"]["client_token"])


def test_keyring_objects_are_written_beside_the_legacy_ones(server: Bao, cfg: Path) -> None:
    result = bootstrap(cfg, server)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [*ALL_CREATED[:4], *KEYRING_CREATED, *ALL_CREATED[4:]]

    key = read(server, "transit/keys/nomad-keyring")
    assert key is not None
    assert (key["type"], key["deletion_allowed"], key["exportable"]) == ("aes256-gcm96", False, False)
    role = read(server, "auth/token/roles/nomad-keyring-mint")
    assert role is not None
    assert role["allowed_policies"] == ["nomad-keyring"] and role["orphan"] is True
    assert role["token_period"] == 72 * 3600 and role["token_explicit_max_ttl"] == 0 and role["renewable"] is True
    startup = server.client().sys.read_policy(STARTUP_ROLE)["data"]["rules"]
    assert f"auth/token/create/{MINT_ROLE}" in startup and "auth/token/create/nomad-keyring-mint" in startup

    again = bootstrap(cfg, server, "--format", "json")
    doc = as_json(again)
    assert doc["changed"] is False and {o["action"] for o in doc["objects"]} == {"unchanged"}


def test_after_the_cutover_only_the_keyring_and_the_startup_identity_are_written(
    server: Bao, tmp_path: Path, certs: Certs
) -> None:
    cfg = write_config(tmp_path / "config.toml", server, certs, keyring=True, legacy_token=False)
    result = bootstrap(cfg, server)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        f"created policy {STARTUP_ROLE}",
        *KEYRING_CREATED,
        *ALL_CREATED[4:],
    ]
    assert read(server, f"auth/token/roles/{MINT_ROLE}") is None and read(server, f"auth/token/roles/{TASK_ROLE}") is None
    startup = server.client().sys.read_policy(STARTUP_ROLE)["data"]["rules"]
    assert "auth/token/create/nomad-keyring-mint" in startup and MINT_ROLE not in startup


def test_check_and_diff_write_nothing_and_a_deletable_key_is_put_back(server: Bao, cfg: Path) -> None:
    dry = bootstrap(cfg, server, "--check")
    assert dry.code == 0, dry.err
    assert "would create transit key transit/keys/nomad-keyring" in dry.out
    assert "transit/" not in server.client().sys.list_mounted_secrets_engines()["data"]

    assert bootstrap(cfg, server).code == 0
    server.client().write("transit/keys/nomad-keyring/config", deletion_allowed=True)
    diff = bootstrap(cfg, server, "--check", "--diff")
    assert "would update transit key transit/keys/nomad-keyring (deletion_allowed)" in diff.out
    assert "deletion_allowed: true -> false" in diff.out
    assert bootstrap(cfg, server).code == 0
    key = read(server, "transit/keys/nomad-keyring")
    assert key is not None and key["deletion_allowed"] is False


def test_a_key_of_another_type_is_78_before_any_write(server: Bao, cfg: Path) -> None:
    c = server.client()
    c.sys.enable_secrets_engine("transit", path="transit")
    c.write("transit/keys/nomad-keyring", type="chacha20-poly1305")
    result = bootstrap(cfg, server)
    assert result.code == 78, result.err
    assert "transit/keys/nomad-keyring: its type" in result.err and len(result.err.strip().splitlines()) == 1
    assert read(server, f"sys/policies/acl/{SERVER_POLICY}") is None  # nothing written


def test_a_mount_of_another_engine_is_78(server: Bao, cfg: Path) -> None:
    server.client().sys.enable_secrets_engine("kv", path="transit")
    result = bootstrap(cfg, server)
    assert result.code == 78 and "keyring_mount 'transit'" in result.err and "'kv'" in result.err


def test_the_keyring_token_may_encrypt_and_decrypt_with_its_key_and_nothing_else(server: Bao, cfg: Path) -> None:
    assert bootstrap(cfg, server).code == 0
    c = server.client()
    c.write("transit/keys/other-key", type="aes256-gcm96")
    token = keyring_token(server)
    plain = base64.b64encode(b"root key").decode()

    enc = post(server, token, "transit/encrypt/nomad-keyring", {"plaintext": plain})
    assert enc.status_code == 200, enc.text
    dec = post(server, token, "transit/decrypt/nomad-keyring", {"ciphertext": enc.json()["data"]["ciphertext"]})
    assert dec.status_code == 200 and dec.json()["data"]["plaintext"] == plain
    assert post(server, token, "auth/token/renew-self", {}).status_code == 200  # the default policy

    def get(path: str) -> int:
        import requests

        return requests.get(
            f"{server.addr}/v1/{path}", headers={"X-Vault-Token": token}, verify=str(server.certs.ca_path), timeout=10
        ).status_code

    ciphertext = enc.json()["data"]["ciphertext"]
    refused = {
        "read the key's config": get("transit/keys/nomad-keyring"),
        "change the key's config": post(server, token, "transit/keys/nomad-keyring/config", {"deletion_allowed": True})
        .status_code,
        "rotate the key": post(server, token, "transit/keys/nomad-keyring/rotate", {}).status_code,
        "export the key": get("transit/export/encryption-key/nomad-keyring"),
        "encrypt with another key": post(server, token, "transit/encrypt/other-key", {"plaintext": plain}).status_code,
        "create a key": post(server, token, "transit/keys/mine", {}).status_code,
        "rewrap": post(server, token, "transit/rewrap/nomad-keyring", {"ciphertext": ciphertext}).status_code,
        "datakey": post(server, token, "transit/datakey/plaintext/nomad-keyring", {}).status_code,
        "mint a token": post(server, token, "auth/token/create", {}).status_code,
    }
    delete = __import__("requests").delete(
        f"{server.addr}/v1/transit/keys/nomad-keyring",
        headers={"X-Vault-Token": token},
        verify=str(server.certs.ca_path),
        timeout=10,
    )
    refused["delete the key"] = delete.status_code
    assert {what: code for what, code in refused.items() if code != 403} == {}


def test_the_startup_identity_mints_only_the_keyring_policy_and_the_legacy_token_has_no_transit(
    server: Bao, cfg: Path
) -> None:
    assert bootstrap(cfg, server).code == 0
    login = startup_login(server)
    for asked in ([SERVER_POLICY], ["nomad-keyring", SERVER_POLICY], [STARTUP_ROLE]):
        denied = post(server, login, "auth/token/create/nomad-keyring-mint", {"policies": asked})
        assert denied.status_code == 400, (asked, denied.text)
    legacy = post(server, login, f"auth/token/create/{MINT_ROLE}", {"policies": [SERVER_POLICY]})
    assert legacy.status_code == 200, legacy.text
    legacy_token = legacy.json()["auth"]["client_token"]
    plain = base64.b64encode(b"x").decode()
    assert post(server, legacy_token, "transit/encrypt/nomad-keyring", {"plaintext": plain}).status_code == 403
    assert post(server, legacy_token, "transit/decrypt/nomad-keyring", {"ciphertext": "vault:v1:AAAA"}).status_code == 403


def test_remove_legacy_keeps_the_keyring_and_the_startup_identity(server: Bao, cfg: Path, tmp_path: Path) -> None:
    assert bootstrap(cfg, server).code == 0
    after = write_config(tmp_path / "after.toml", server, server.certs, keyring=True, legacy_token=False)
    removed = bootstrap(after, server, "--remove-legacy", "--format", "json")
    assert removed.code == 0, removed.err
    gone = {o["path"] for o in json.loads(removed.out)["objects"] if o["action"] == "deleted"}
    assert gone == {f"sys/policies/acl/{SERVER_POLICY}", f"auth/token/roles/{TASK_ROLE}", f"auth/token/roles/{MINT_ROLE}"}
    assert read(server, "auth/token/roles/nomad-keyring-mint") is not None
    assert read(server, "transit/keys/nomad-keyring") is not None
    keyring_token(server)  # the startup identity still mints the keyring token


def test_token_keyring_token_mints_through_the_keyring_role_and_writes_no_newline(
    server: Bao, cfg: Path, tmp_path: Path
) -> None:
    from testbed.cli import run_cli

    assert bootstrap(cfg, server).code == 0
    out = tmp_path / "keyring-token"
    minted = run_cli("token", "--config", str(cfg), "--keyring-token", "--output", str(out), "--format", "json")
    assert minted.code == 0, minted.err
    raw = out.read_bytes()
    assert raw == raw.strip() and (out.stat().st_mode & 0o777) == 0o600
    doc = json.loads(minted.out)
    assert set(doc["policies"]) == {"default", "nomad-keyring"} and doc["orphan"] is True
    assert raw.decode() not in minted.out + minted.err
    info = server.client(raw.decode()).auth.token.lookup_self()["data"]
    assert info["role"] == "nomad-keyring-mint" and info["accessor"] == doc["accessor"]


@pytest.mark.parametrize(
    ("kind", "path", "engine", "words"),
    [
        ("secret", "transit", "kv", "keyring_mount 'transit': sys/mounts/transit is a 'kv' secrets engine, not transit: "
         "choose another --keyring-mount"),
        ("auth", "cert", "userpass", "auth_mount 'cert': sys/auth/cert is a 'userpass' auth mount, not cert: "
         "choose another --auth-mount"),
    ],
)  # fmt: skip
def test_a_mount_of_another_type_at_the_path_is_refused_and_nothing_is_written(
    server: Bao, cfg: Path, kind: str, path: str, engine: str, words: str
) -> None:
    c = server.client()
    if kind == "secret":
        c.sys.enable_secrets_engine(engine, path=path)
    else:
        c.sys.enable_auth_method(engine, path=path)
    result = bootstrap(cfg, server)
    assert result.code == 78, result.err
    assert words in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert "Traceback" not in result.err
    assert c.sys.list_policies()["data"]["policies"] == ["default", "root"], "nothing written"
