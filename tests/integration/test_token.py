"""`token` against the real OpenBao server: both minting modes, refusals, bad config."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import hvac
import pytest
import trustme

from testbed.bao import MINT_ROLE, ORPHAN_STARTUP, PERIOD, SERVER_POLICY, Bao, Certs
from testbed.cli import assert_one_line_error, run_cli
from testbed.config import write_config
from testbed.env import clean_env

pytestmark = pytest.mark.vault


def lookup(bao: Bao, token: str) -> dict[str, object]:
    data: dict[str, object] = bao.client(token).auth.token.lookup_self()["data"]
    return data


def test_role_mode_gives_renewable_orphan_periodic_token(bao: Bao, config: Path) -> None:
    result = run_cli("token", "--config", str(config))
    assert result.code == 0, result.err
    token = result.out.removesuffix("\n")
    assert result.out == token + "\n" and token.startswith("s.")
    data = lookup(bao, token)
    assert data["orphan"] is True and data["renewable"] is True
    assert data["role"] == MINT_ROLE
    assert set(data["policies"]) - {"default"} == {SERVER_POLICY}  # type: ignore[arg-type]
    assert data["creation_ttl"] == PERIOD
    # periodic: renewing with a tiny increment still gives the full period back
    renewed = bao.client(token).auth.token.renew_self(increment=1)
    assert renewed["auth"]["lease_duration"] == PERIOD
    assert token not in result.err


def test_create_orphan_mode_gives_periodic_orphan_token(bao: Bao, tmp_path: Path, certs: Certs) -> None:
    cfg = write_config(tmp_path / "c.toml", bao, certs, mint_mode="create-orphan", cert_role=ORPHAN_STARTUP)
    result = run_cli("token", "--config", str(cfg), "--format", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert "token" not in doc
    assert doc["orphan"] is True and doc["renewable"] is True and doc["period"] == PERIOD
    assert set(doc["policies"]) - {"default"} == {SERVER_POLICY}
    data = bao.client().auth.token.lookup_accessor(doc["accessor"])["data"]
    assert data["period"] == PERIOD and data["orphan"] is True and data["path"] == "auth/token/create-orphan"


def test_json_with_include_token_and_role_period(bao: Bao, config: Path) -> None:
    result = run_cli("token", "--config", str(config), "--format", "json", "--include-token")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert set(doc) == {"version", "accessor", "policies", "ttl", "orphan", "period", "renewable", "token"}
    assert doc["version"] == 1  # the one envelope every JSON output shares
    assert doc["period"] == PERIOD
    assert lookup(bao, doc["token"])["accessor"] == doc["accessor"]


def test_output_file_is_private_and_stdout_has_no_token(bao: Bao, config: Path, tmp_path: Path) -> None:
    out = tmp_path / "tok"
    result = run_cli("token", "--config", str(config), "--output", str(out))
    assert result.code == 0, result.err
    token = out.read_text().strip()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert token not in result.out and token not in result.err and result.out == ""
    assert lookup(bao, token)["orphan"] is True


def test_login_token_is_revoked_after_mint(bao: Bao, config: Path) -> None:
    before = set(bao.client().auth.token.list_accessors()["data"]["keys"])
    result = run_cli("token", "--config", str(config), "--format", "json")
    assert result.code == 0, result.err
    after = set(bao.client().auth.token.list_accessors()["data"]["keys"])
    assert after - before == {json.loads(result.out)["accessor"]}


def test_flags_and_env_override_the_file(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", bao, certs, vault_addr="https://127.0.0.1:1")
    env = clean_env(VAULT_ADDR=bao.addr)
    assert run_cli("token", "--config", str(cfg), env=env).code == 0
    env = clean_env(VAULT_ADDR="https://127.0.0.1:1", NOMAD_VAULT_TOKEN_VAULT_ADDR=bao.addr)
    assert run_cli("token", "--config", str(cfg), env=env).code == 0
    env = clean_env(VAULT_ADDR="https://127.0.0.1:1")
    assert run_cli("token", "--config", str(cfg), "--vault-addr", bao.addr, env=env).code == 0


def test_certificate_from_another_ca_is_refused_77(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    stranger = trustme.CA()
    cert, key = certs.issue_client("nomad-startup-stranger", ca=stranger)
    cfg = write_config(tmp_path / "c.toml", bao, certs, client_cert=cert, client_key=key)
    result = run_cli("token", "--config", str(cfg))
    assert_one_line_error(result, 77, "auth/cert/login", "certificate")


def test_startup_identity_cannot_mint_other_policies(bao: Bao, certs: Certs) -> None:
    c = hvac.Client(url=bao.addr, verify=str(certs.ca_path), cert=(str(certs.client_cert), str(certs.client_key)))
    c.token = c.auth.cert.login(name="nomad_startup")["auth"]["client_token"]
    with pytest.raises(hvac.exceptions.InvalidRequest):
        c.auth.token.create(role_name=MINT_ROLE, policies=["admin"])
    with pytest.raises(hvac.exceptions.Forbidden):
        c.auth.token.create_orphan(policies=["admin"])


def test_vault_down_is_69(certs: Certs, tmp_path: Path, bao: Bao) -> None:
    cfg = write_config(tmp_path / "c.toml", bao, certs, vault_addr="https://127.0.0.1:1")
    assert_one_line_error(run_cli("token", "--config", str(cfg)), 69, "unreachable", "127.0.0.1:1")


def test_sealed_vault_is_69(new_bao: object, certs: Certs, tmp_path: Path) -> None:
    server = new_bao()  # type: ignore[operator]
    server.seal()
    cfg = write_config(tmp_path / "c.toml", server, certs)
    assert_one_line_error(run_cli("token", "--config", str(cfg)), 69, "sealed")


def test_mint_role_missing_is_77(bao: Bao, config: Path) -> None:
    result = run_cli("token", "--config", str(config), "--mint-role", "no-such-role")
    assert_one_line_error(result, 77, "auth/token/create/no-such-role")


def test_untrusted_vault_certificate_is_78(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    cfg = write_config(tmp_path / "c.toml", bao, certs, ca_cert=other)
    assert_one_line_error(run_cli("token", "--config", str(cfg)), 78, "not trusted", str(other))


def _bad(tmp_path: Path, bao: Bao, certs: Certs, **overrides: object) -> Path:
    return write_config(tmp_path / "bad.toml", bao, certs, **overrides)


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"period": "72"}, ["period", "unit"]),
        ({"period": "0"}, ["period"]),
        ({"mint_mode": "sudo"}, ["mint_mode", "role, create-orphan"]),
        ({"policies": []}, ["policies", "empty"]),
        ({"vault_addr": "127.0.0.1:8200"}, ["vault_addr", "scheme"]),
        ({"vault_addr": "http://vault.example.com:8200"}, ["vault_addr", "insecure"]),
        ({"client_cert": "relative/cert.pem"}, ["client_cert", "relative"]),
        ({"client_key": "/nonexistent/key.pem"}, ["/nonexistent/key.pem", "not found"]),
        ({"ca_cert": "/nonexistent/ca.pem"}, ["/nonexistent/ca.pem", "not found"]),
        ({"client_cert": None}, ["client_cert is not set"]),
    ],
)
def test_bad_config_is_78_one_line(
    bao: Bao, certs: Certs, tmp_path: Path, overrides: dict[str, object], needles: list[str]
) -> None:
    cfg = _bad(tmp_path, bao, certs, **overrides)
    assert_one_line_error(run_cli("token", "--config", str(cfg)), 78, *needles)


def test_unknown_key_and_wrong_type_name_key_and_file(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    cfg = _bad(tmp_path, bao, certs)
    cfg.write_text(cfg.read_text() + 'vault_adress = "x"\n')
    assert_one_line_error(run_cli("token", "-c", str(cfg)), 78, str(cfg), "vault_adress", "vault_addr")
    cfg = _bad(tmp_path, bao, certs)
    cfg.write_text(cfg.read_text() + "allow_insecure_http = 3\n")
    assert_one_line_error(run_cli("token", "-c", str(cfg)), 78, str(cfg), "allow_insecure_http")
    cfg.write_text("vault_addr = [\n")
    assert_one_line_error(run_cli("token", "-c", str(cfg)), 78, str(cfg), "invalid TOML")


def test_missing_explicit_config_is_78(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("token", "-c", str(tmp_path / "nope.toml")), 78, "nope.toml", "not found")


def test_key_readable_by_others_is_78_with_chmod_hint(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    cert, key = certs.issue_client("nomad-startup-loose")
    os.chmod(key, 0o644)
    cfg = _bad(tmp_path, bao, certs, client_cert=cert, client_key=key)
    assert_one_line_error(run_cli("token", "-c", str(cfg)), 78, f"chmod 600 {key}")


def test_key_not_matching_cert_is_78(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    _, other_key = certs.issue_client("nomad-startup-other")
    cfg = _bad(tmp_path, bao, certs, client_key=other_key)
    assert_one_line_error(run_cli("token", "-c", str(cfg)), 78, "does not match")


def test_expired_certificate_is_78(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    import datetime

    cert, key = certs.issue_client(
        "nomad-startup-expired",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC),
    )
    cfg = _bad(tmp_path, bao, certs, client_cert=cert, client_key=key)
    assert_one_line_error(run_cli("token", "-c", str(cfg)), 78, "expired", str(cert))


def test_encrypted_key_is_78(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key_pem = certs.client_key.read_bytes()
    key = serialization.load_pem_private_key(key_pem, password=None)
    enc = tmp_path / "enc.key"
    enc.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    os.chmod(enc, 0o600)
    cfg = _bad(tmp_path, bao, certs, client_key=enc)
    assert_one_line_error(run_cli("token", "-c", str(cfg)), 78, "encrypted", str(enc))


def test_help_and_version() -> None:
    result = run_cli("token", "--help")
    assert result.code == 0 and "--output" in result.out and "--format" in result.out
    version = run_cli("--version")
    assert version.code == 0 and version.out.startswith("nomad-vault-token ")
