"""`bootstrap-roles` against a real, empty OpenBao: everything the other commands need, idempotently."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import pytest
import requests

from testbed.bao import MINT_ROLE, PERIOD, SERVER_POLICY, STARTUP_ROLE, TASK_ROLE, Bao, Certs
from testbed.cli import Result, assert_one_line_error, run_cli
from testbed.config import write_config
from testbed.env import clean_env

pytestmark = pytest.mark.vault

ALL_CREATED = [
    f"created policy {SERVER_POLICY}",
    f"created policy {STARTUP_ROLE}",
    f"created role auth/token/roles/{TASK_ROLE}",
    f"created role auth/token/roles/{MINT_ROLE}",
    "created auth mount sys/auth/cert",
    f"created role auth/cert/certs/{STARTUP_ROLE}",
]


@pytest.fixture
def server(new_bao: Callable[..., Bao]) -> Bao:
    """An OpenBao initialised and unsealed, with nothing configured."""
    return new_bao(configure=False)


@pytest.fixture
def cfg(tmp_path: Path, server: Bao, certs: Certs) -> Path:
    """The config every command shares: Vault's address and CA, the startup certificate."""
    return write_config(tmp_path / "config.toml", server, certs)


def bootstrap(cfg: Path, server: Bao, *args: str, token: str | None = None, cn: bool = True) -> Result:
    """Run bootstrap-roles with the admin token in $VAULT_TOKEN; the token never shows."""
    admin = server.root_token if token is None else token
    cn_args = ["--allowed-common-name", "nomad-startup"] if cn else []
    result = run_cli(
        "bootstrap-roles",
        "--config",
        str(cfg),
        "--client-ca",
        str(server.certs.ca_path),
        *cn_args,
        *args,
        env=clean_env(VAULT_TOKEN=admin),
    )
    assert admin not in result.out and admin not in result.err
    return result


def as_json(result: Result) -> dict[str, Any]:
    assert result.code == 0, result.err
    doc: dict[str, Any] = json.loads(result.out)
    return doc


def policies(server: Bao) -> dict[str, str]:
    """Every ACL policy on the server and its text (root has none to read)."""
    c = server.client()
    names = c.list("sys/policies/acl")["data"]["keys"]
    return {n: c.read(f"sys/policies/acl/{n}")["data"]["policy"] for n in names if n != "root"}


def rules(text: str) -> str:
    """A policy's text without its comment lines."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("#", "//")))


def read(server: Bao, path: str) -> dict[str, Any] | None:
    resp = server.client().read(path)
    return None if resp is None else dict(resp["data"])


def startup_login(server: Bao) -> str:
    """Log in as the startup identity with its certificate, as `token` does."""
    certs = server.certs
    c = hvac.Client(url=server.addr, verify=str(certs.ca_path), cert=(str(certs.client_cert), str(certs.client_key)))
    return str(c.auth.cert.login(name=STARTUP_ROLE)["auth"]["client_token"])


def post(server: Bao, token: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{server.addr}/v1/{path}",
        json=body,
        headers={"X-Vault-Token": token},
        verify=str(server.certs.ca_path),
        timeout=10,
    )


# ---- an empty server, then the other commands ---------------------------------------------------


def test_empty_server_gets_everything_and_token_and_run_work(server: Bao, cfg: Path) -> None:
    result = bootstrap(cfg, server)
    assert result.code == 0, result.err
    assert result.out.splitlines() == ALL_CREATED
    assert result.err == ""

    minted = run_cli("token", "--config", str(cfg), "--format", "json")
    assert minted.code == 0, minted.err
    doc = json.loads(minted.out)
    assert doc["orphan"] is True and doc["renewable"] is True and doc["period"] == PERIOD
    assert set(doc["policies"]) - {"default"} == {SERVER_POLICY}
    assert server.client().auth.token.lookup_accessor(doc["accessor"])["data"]["role"] == MINT_ROLE

    # run checks the token and the task role as Nomad would, then execs the agent
    ran = run_cli("run", "--config", str(cfg), "--", "/bin/true")
    assert ran.code == 0, ran.err

    task = read(server, f"auth/token/roles/{TASK_ROLE}")
    assert task is not None
    assert (task["token_period"], task["renewable"], task["token_explicit_max_ttl"], task["orphan"]) == (
        PERIOD,
        True,
        0,
        True,
    )
    assert task["disallowed_policies"] == [SERVER_POLICY] and task["allowed_policies"] == []
    cert_role = read(server, f"auth/cert/certs/{STARTUP_ROLE}")
    assert cert_role is not None
    assert cert_role["token_policies"] == [STARTUP_ROLE] and cert_role["allowed_common_names"] == ["nomad-startup"]
    assert cert_role["token_ttl"] == cert_role["token_max_ttl"] == 300


def test_no_policy_on_the_server_has_sudo(server: Bao, cfg: Path) -> None:
    assert bootstrap(cfg, server).code == 0
    found = policies(server)
    assert {SERVER_POLICY, STARTUP_ROLE} <= set(found)
    for name, text in found.items():
        assert "sudo" not in rules(text), name
    assert 'path "auth/token/create/nomad-cluster"' in found[SERVER_POLICY]


def test_startup_identity_can_mint_only_the_server_policy(server: Bao, cfg: Path) -> None:
    assert bootstrap(cfg, server).code == 0
    server.client().sys.create_or_update_policy("admin", 'path "*" { capabilities = ["read"] }')
    login = startup_login(server)
    for asked in (["admin"], [SERVER_POLICY, "admin"], [STARTUP_ROLE]):
        denied = post(server, login, f"auth/token/create/{MINT_ROLE}", {"policies": asked})
        assert denied.status_code == 400, (asked, denied.text)
        assert "cannot have" in denied.text or "not allowed" in denied.text or "policies" in denied.text
    allowed = post(server, login, f"auth/token/create/{MINT_ROLE}", {"policies": [SERVER_POLICY]})
    assert allowed.status_code == 200, allowed.text
    # and no other way to mint
    assert post(server, login, "auth/token/create-orphan", {"policies": ["admin"]}).status_code == 403
    assert post(server, login, f"auth/token/create/{TASK_ROLE}", {"policies": ["admin"]}).status_code == 403
    assert post(server, login, "auth/token/create", {"policies": ["admin"]}).status_code == 403


# ---- idempotence ----------------------------------------------------------------------------------


def test_second_run_changes_nothing(server: Bao, cfg: Path) -> None:
    assert bootstrap(cfg, server).code == 0
    again = bootstrap(cfg, server)
    assert again.code == 0, again.err
    assert again.out.splitlines() == [line.replace("created", "unchanged") for line in ALL_CREATED]
    doc = as_json(bootstrap(cfg, server, "--format", "json"))
    assert doc["version"] == 1 and doc["changed"] is False
    assert len(doc["objects"]) == 6
    assert {o["action"] for o in doc["objects"]} == {"unchanged"}
    assert all(o["fields"] == {} for o in doc["objects"])


def test_one_field_changed_on_the_server_is_the_one_update(server: Bao, cfg: Path) -> None:
    assert bootstrap(cfg, server).code == 0
    path = f"auth/token/roles/{TASK_ROLE}"
    server.client().write(path, token_period="1h")

    preview = bootstrap(cfg, server, "--check", "--diff")
    assert preview.code == 0, preview.err
    assert f"would update role {path} (token_period)" in preview.out.splitlines()
    assert "    token_period: 3600s -> 259200s" in preview.out.splitlines()
    assert sum(not line.startswith(("unchanged", " ")) for line in preview.out.splitlines()) == 1
    assert read(server, path)["token_period"] == 3600  # type: ignore[index]

    doc = as_json(bootstrap(cfg, server, "--format", "json"))
    assert doc["changed"] is True
    changed = [o for o in doc["objects"] if o["action"] != "unchanged"]
    assert changed == [
        {
            "kind": "token_role",
            "path": path,
            "action": "updated",
            "fields": {"token_period": {"old": 3600, "new": PERIOD}},
        }
    ]
    assert read(server, path)["token_period"] == PERIOD  # type: ignore[index]
    assert as_json(bootstrap(cfg, server, "--format", "json"))["changed"] is False


def test_changed_policy_and_certificate_are_updated_and_shown_safely(server: Bao, cfg: Path, tmp_path: Path) -> None:
    import trustme

    assert bootstrap(cfg, server).code == 0
    c = server.client()
    c.sys.create_or_update_policy(SERVER_POLICY, 'path "secret/*" { capabilities = ["read"] }')
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    cert_path = f"auth/cert/certs/{STARTUP_ROLE}"
    c.write(cert_path, certificate=other_ca.read_text())

    result = bootstrap(cfg, server, "--diff")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert f"updated policy {SERVER_POLICY} (policy)" in lines
    assert f"updated role {cert_path} (certificate)" in lines
    assert '      -path "secret/*" { capabilities = ["read"] }' in lines
    assert any(line.startswith("    certificate: [sha256:") for line in lines)
    assert other_ca.read_text().splitlines()[1] not in result.out  # the PEM itself is never printed
    assert "secret/*" not in policies(server)[SERVER_POLICY]
    assert startup_login(server).startswith("s.")  # the session's CA is trusted again


def test_check_writes_nothing(server: Bao, cfg: Path) -> None:
    before = policies(server)
    result = bootstrap(cfg, server, "--check")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [line.replace("created", "would create") for line in ALL_CREATED]
    doc = as_json(bootstrap(cfg, server, "--check", "--format", "json"))
    assert doc["changed"] is True and {o["action"] for o in doc["objects"]} == {"would create"}
    assert policies(server) == before
    assert read(server, f"auth/token/roles/{TASK_ROLE}") is None
    assert read(server, f"auth/token/roles/{MINT_ROLE}") is None
    assert "cert/" not in server.client().sys.list_auth_methods()["data"]


def test_task_allowed_policies_and_common_names_are_written(server: Bao, cfg: Path) -> None:
    result = bootstrap(cfg, server, "--task-allowed-policy", "web", "--task-allowed-policy", "db", cn=False)
    assert result.code == 0, result.err
    assert "any certificate issued by --client-ca" in result.err  # no common name: a warning
    assert read(server, f"auth/token/roles/{TASK_ROLE}")["allowed_policies"] == ["db", "web"]  # type: ignore[index]
    assert not read(server, f"auth/cert/certs/{STARTUP_ROLE}")["allowed_common_names"]  # type: ignore[index]
    narrowed = bootstrap(cfg, server, "--task-allowed-policy", "web")
    assert f"updated role auth/token/roles/{TASK_ROLE} (allowed_policies)" in narrowed.out.splitlines()
    assert f"updated role auth/cert/certs/{STARTUP_ROLE} (allowed_common_names)" in narrowed.out.splitlines()
    assert read(server, f"auth/token/roles/{TASK_ROLE}")["allowed_policies"] == ["web"]  # type: ignore[index]


def test_names_and_period_come_from_the_config(server: Bao, tmp_path: Path, certs: Certs) -> None:
    cfg = write_config(
        tmp_path / "named.toml",
        server,
        certs,
        policies=["srv"],
        task_role="tasks",
        mint_role="minter",
        cert_role="boot",
        auth_mount="tls",
        period="24h",
    )
    result = bootstrap(cfg, server)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "created policy srv",
        "created policy boot",
        "created role auth/token/roles/tasks",
        "created role auth/token/roles/minter",
        "created auth mount sys/auth/tls",
        "created role auth/tls/certs/boot",
    ]
    assert read(server, "auth/token/roles/minter")["token_period"] == 86400  # type: ignore[index]
    assert 'path "auth/token/create/tasks"' in policies(server)["srv"]
    assert run_cli("token", "--config", str(cfg)).code == 0


# ---- create-orphan ------------------------------------------------------------------------------


def test_create_orphan_mode_writes_the_old_setup_and_warns(server: Bao, cfg: Path) -> None:
    result = bootstrap(cfg, server, "--mode", "create-orphan")
    assert result.code == 0, result.err
    assert "ANY policy except root" in result.err and "Role mode" in result.err
    assert f"created role auth/token/roles/{MINT_ROLE}" not in result.out
    assert read(server, f"auth/token/roles/{MINT_ROLE}") is None
    startup = policies(server)[STARTUP_ROLE]
    assert 'path "auth/token/create-orphan"' in startup and '"sudo"' in startup

    minted = run_cli("token", "--config", str(cfg), "--mint-mode", "create-orphan", "--format", "json")
    assert minted.code == 0, minted.err
    data = server.client().auth.token.lookup_accessor(json.loads(minted.out)["accessor"])["data"]
    assert data["path"] == "auth/token/create-orphan" and data["period"] == PERIOD and data["orphan"] is True

    # back to role mode: the startup policy loses sudo, the mint role appears
    back = bootstrap(cfg, server)
    assert f"updated policy {STARTUP_ROLE} (policy)" in back.out.splitlines()
    assert f"created role auth/token/roles/{MINT_ROLE}" in back.out.splitlines()
    assert "sudo" not in rules(policies(server)[STARTUP_ROLE])
    assert run_cli("token", "--config", str(cfg)).code == 0


# ---- refusals -----------------------------------------------------------------------------------


def limited_token(server: Bao, rules: str) -> str:
    c = server.client()
    c.sys.create_or_update_policy("limited", rules)
    return str(c.auth.token.create(policies=["limited"])["auth"]["client_token"])


READ_ONLY = """
path "sys/policies/acl/*" { capabilities = ["read"] }
path "auth/token/roles/*" { capabilities = ["read"] }
path "sys/auth" { capabilities = ["read"] }
path "auth/cert/certs/*" { capabilities = ["read"] }
"""


def test_admin_token_that_cannot_write_is_77_naming_path_and_capability(server: Bao, cfg: Path) -> None:
    token = limited_token(server, READ_ONLY)
    result = bootstrap(cfg, server, token=token)
    assert_one_line_error(
        result,
        77,
        f'sys/policies/acl/{SERVER_POLICY}: permission denied: the admin token needs "update" (and "read") on it',
    )
    assert SERVER_POLICY not in policies(server)


def test_admin_token_that_cannot_enable_auth_is_77_after_the_roles(server: Bao, cfg: Path) -> None:
    token = limited_token(
        server,
        READ_ONLY
        + 'path "sys/policies/acl/*" { capabilities = ["read", "update"] }\n'
        + 'path "auth/token/roles/*" { capabilities = ["read", "create", "update"] }\n',
    )
    result = bootstrap(cfg, server, token=token)
    assert_one_line_error(result, 77, 'sys/auth/cert: permission denied: the admin token needs "update" and "sudo"')
    assert result.out.splitlines() == ALL_CREATED[:4]  # what was done before the refusal is reported
    assert read(server, f"auth/token/roles/{MINT_ROLE}") is not None


def test_admin_token_that_cannot_read_is_77_and_writes_nothing(server: Bao, cfg: Path) -> None:
    token = limited_token(server, 'path "sys/policies/acl/*" { capabilities = ["read", "update"] }')
    result = bootstrap(cfg, server, token=token)
    assert_one_line_error(
        result, 77, f'auth/token/roles/{TASK_ROLE}: permission denied: the admin token needs "read" on it'
    )
    assert result.out == ""
    assert SERVER_POLICY not in policies(server)


def test_invalid_admin_token_is_77(server: Bao, cfg: Path) -> None:
    result = bootstrap(cfg, server, token="s.NotARealToken0000000000")
    assert_one_line_error(result, 77, "auth/token/lookup-self", "admin token")


def test_token_file_is_read_and_never_shown(server: Bao, cfg: Path, tmp_path: Path) -> None:
    tf = tmp_path / "admin-token"
    tf.write_text(server.root_token + "\n")
    os.chmod(tf, 0o600)
    args = ["--config", str(cfg), "--client-ca", str(server.certs.ca_path), "--allowed-common-name", "x"]
    # the file wins over a wrong $VAULT_TOKEN
    result = run_cli("bootstrap-roles", *args, "--token-file", str(tf), env=clean_env(VAULT_TOKEN="s.wrong"))
    assert result.code == 0, result.err
    assert server.root_token not in result.out + result.err
    assert result.out.splitlines()[0] == f"created policy {SERVER_POLICY}"


@pytest.mark.parametrize(
    ("setup", "needles"),
    [
        ("none", ["no admin token", "$VAULT_TOKEN", "--token-file"]),
        ("missing", ["--token-file", "not found"]),
        ("empty", ["--token-file", "empty"]),
        ("two lines", ["--token-file", "one token"]),
    ],
)
def test_no_usable_admin_token_is_78(server: Bao, cfg: Path, tmp_path: Path, setup: str, needles: list[str]) -> None:
    args = ["--config", str(cfg), "--client-ca", str(server.certs.ca_path), "--allowed-common-name", "x"]
    tf = tmp_path / "tok"
    if setup == "empty":
        tf.write_text("\n")
    elif setup == "two lines":
        tf.write_text("s.one\ns.two\n")
    if setup != "none":
        args += ["--token-file", str(tf)]
    assert_one_line_error(run_cli("bootstrap-roles", *args), 78, *needles)


def test_bad_client_ca_is_78_and_missing_is_a_usage_error(server: Bao, cfg: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    env = clean_env(VAULT_TOKEN=server.root_token)
    base = ["bootstrap-roles", "--config", str(cfg), "--allowed-common-name", "x"]
    assert_one_line_error(run_cli(*base, "--client-ca", str(garbage), env=env), 78, str(garbage), "PEM")
    missing = tmp_path / "nope.pem"
    assert_one_line_error(run_cli(*base, "--client-ca", str(missing), env=env), 78, str(missing), "not found")
    usage = run_cli(*base, env=env)
    assert usage.code == 2 and "--client-ca" in usage.err
    assert policies(server).keys() == {"default"}


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--login-ttl", "soon"], ["--login-ttl"]),
        (["--login-ttl", "0"], ["--login-ttl", "more than 0"]),
        (["--task-allowed-policy", SERVER_POLICY], ["--task-allowed-policy", "server"]),
        (["--task-allowed-policy", "root"], ["root"]),
        (["--mode", "sudo"], ["--mint-mode", "role, create-orphan"]),
        (["--task-role", "a/b"], ["task_role", "a/b"]),
        (["--mint-role", TASK_ROLE], ["mint_role and task_role"]),
        (["--format", "yaml"], ["--format"]),
    ],
)
def test_bad_flags_are_78_before_touching_vault(server: Bao, cfg: Path, extra: list[str], needles: list[str]) -> None:
    assert_one_line_error(bootstrap(cfg, server, *extra), 78, *needles)
    assert policies(server).keys() == {"default"}


def test_auth_mount_of_another_type_is_78(server: Bao, cfg: Path) -> None:
    server.client().sys.enable_auth_method("userpass", path="cert")
    result = bootstrap(cfg, server)
    assert_one_line_error(result, 78, "sys/auth/cert", "userpass", "--auth-mount")
    assert SERVER_POLICY not in policies(server)


def test_vault_down_and_sealed_are_69(new_bao: Callable[..., Bao], tmp_path: Path, certs: Certs) -> None:
    sealed = new_bao(configure=False)
    cfg = write_config(tmp_path / "c.toml", sealed, certs)
    down = bootstrap(cfg, sealed, "--vault-addr", "https://127.0.0.1:1")
    assert_one_line_error(down, 69, "unreachable", "127.0.0.1:1")
    sealed.seal()
    assert_one_line_error(bootstrap(cfg, sealed), 69, "sealed")
