"""`check` and `status` against the real OpenBao: each of Nomad's rules broken one at a time."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import pytest

from testbed.bao import MINT_ROLE, PERIOD, SERVER_POLICY, TASK_ROLE, Bao, Certs
from testbed.cli import assert_one_line_error, run_cli
from testbed.config import write_config

pytestmark = pytest.mark.vault


def check_json(cfg: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli("check", "--config", str(cfg), "--format", "json", *args)
    assert "Traceback" not in result.err, result.err
    return result.code, json.loads(result.out)


def failed(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in doc["checks"] if c["result"] == "fail"]


def set_task_role(c: hvac.Client, **changes: object) -> None:
    fields: dict[str, object] = {
        "disallowed_policies": [SERVER_POLICY],
        "orphan": True,
        "token_period": f"{PERIOD}s",
        "renewable": True,
        "token_explicit_max_ttl": 0,
    }
    fields.update(changes)
    c.write(f"auth/token/roles/{TASK_ROLE}", **fields)


def test_all_pass_on_a_good_setup(bao: Bao, config: Path) -> None:
    code, doc = check_json(config, "--mint")
    assert code == 0, doc
    assert doc["ok"] is True and not failed(doc)
    rules = {c["check"] for c in doc["checks"]}
    assert {"nomad: token.renewable", "nomad: role.period", f"nomad: cap.auth/token/create/{TASK_ROLE}"} <= rules
    table = run_cli("check", "--config", str(config), "--mint")
    assert table.code == 0 and "PASS" in table.out and "0 failed" in table.out


def test_check_mint_leaves_no_token_behind(new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path) -> None:
    server = new_bao()
    cfg = write_config(tmp_path / "c.toml", server, certs)
    assert check_json(cfg, "--mint")[0] == 0
    assert server.live_server_tokens() == []


ROLE_BREAKS: list[tuple[dict[str, object] | None, str, str]] = [
    (None, "role.exists", f'Role "{TASK_ROLE}" does not exist'),
    ({"renewable": False}, "role.renewable", "Role must allow tokens to be renewed"),
    (
        {"token_explicit_max_ttl": "1h"},
        "role.explicit_max_ttl",
        "Role can not use an explicit max ttl. Token must be periodic.",
    ),
    ({"token_period": 0}, "role.period", "Role must have a non-zero period to make tokens periodic."),
]


@pytest.mark.parametrize(("change", "rule", "wording"), ROLE_BREAKS, ids=[r[1] for r in ROLE_BREAKS])
def test_each_broken_role_rule(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path, change: dict[str, object] | None, rule: str, wording: str
) -> None:
    server = new_bao()
    if change is None:
        server.client().delete(f"auth/token/roles/{TASK_ROLE}")
    else:
        set_task_role(server.client(), **change)
    code, doc = check_json(write_config(tmp_path / "c.toml", server, certs), "--mint")
    assert code == 77
    assert [(c["check"], c["detail"]) for c in failed(doc)] == [(f"nomad: {rule}", wording)]
    assert failed(doc)[0]["fix"]


CAPS = [
    "auth/token/lookup",
    "auth/token/renew-self",
    "auth/token/revoke-accessor",
    f"auth/token/roles/{TASK_ROLE}",
    f"auth/token/create/{TASK_ROLE}",
]


def nomad_agent(tmp_path: Path, server: Bao, extra: str = "", address: str | None = None) -> list[str]:
    """The agent's command line for `check -- ...`, with its config file (the agent binary is not run)."""
    hcl = tmp_path / "nomad.d" / "vault.hcl"
    hcl.parent.mkdir(exist_ok=True)
    hcl.write_text(f'vault {{\n  enabled = true\n  address = "{address or server.addr}"\n{extra}}}\n')
    return ["--", "/usr/bin/nomad", "agent", "-config", str(hcl.parent)]


@pytest.mark.parametrize("path", CAPS)
def test_each_missing_capability(new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path, path: str) -> None:
    server = new_bao()
    server.drop_from_server_policy(path)
    # auth/token/lookup is only required with allow_unauthenticated = false (nomad/vault.go:866)
    agent = nomad_agent(tmp_path, server, "  allow_unauthenticated = false\n")
    code, doc = check_json(write_config(tmp_path / "c.toml", server, certs), "--mint", *agent)
    assert code == 77
    cap = [c for c in failed(doc) if c["check"] == f"nomad: cap.{path}"]
    assert len(cap) == 1, failed(doc)
    assert cap[0]["detail"].startswith("token must have one of the following capabilities")
    assert f'on "{path}"' in cap[0]["detail"]
    if path.startswith("auth/token/roles/"):  # and the role cannot be read, as Nomad would find
        assert any("failed to lookup role" in c["detail"] for c in failed(doc))
    else:
        assert len(failed(doc)) == 1


def test_lookup_capability_is_not_required_with_nomads_default(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path
) -> None:
    server = new_bao()
    server.drop_from_server_policy("auth/token/lookup")
    code, doc = check_json(write_config(tmp_path / "c.toml", server, certs), "--mint", *nomad_agent(tmp_path, server))
    assert code == 0 and not failed(doc), failed(doc)
    assert "nomad: cap.auth/token/lookup" not in {c["check"] for c in doc["checks"]}


@pytest.mark.parametrize(
    ("extra", "address", "check", "words"),
    [
        ("  enabled = false\n", None, "vault.enabled", "vault.enabled = false: Nomad will not use Vault at all"),
        ("", "https://vault.example.com:8200", "vault.address", "vault.address = https://vault.example.com:8200"),
    ],
)
def test_agent_config_that_breaks_the_integration_fails_naming_file_and_key(
    bao: Bao, config: Path, tmp_path: Path, extra: str, address: str | None, check: str, words: str
) -> None:
    agent = nomad_agent(tmp_path, bao, extra, address)
    (tmp_path / "nomad.d" / "zz-late.hcl").write_text(f"vault {{\n{extra}}}\n")  # a later file wins
    code, doc = check_json(config, *agent)
    assert code == 78, doc
    (row,) = failed(doc)
    assert row["check"] == check and words in row["detail"], row
    assert str(tmp_path / "nomad.d") in row["detail"] and row["fix"]
    text = run_cli("check", "--config", str(config), *agent)
    assert text.code == 78 and f"FAIL  {check}" in text.out


def test_json_agent_configs_are_read_as_nomad_reads_them(bao: Bao, config: Path, tmp_path: Path) -> None:
    """Trailing commas are valid to Nomad (hcl v1 json/parser/parser.go objectList; Nomad's own
    testdata/sample1/*.json has them): no FAIL, and the real vault block is reviewed. A missing comma
    makes Nomad stop reading the file there: a WARN naming the line, never "Nomad will not start"."""
    d = tmp_path / "nomad.d"
    d.mkdir()
    (d / "10-base.json").write_text(
        f'{{\n  "vault": {{\n    "enabled": true,\n    "address": "{bao.addr}",\n  }},\n}}\n'
    )
    agent = ["--", "/usr/bin/nomad", "agent", "-config", str(d)]
    code, doc = check_json(config, *agent)
    assert code == 0 and not failed(doc), failed(doc)
    rows = {c["check"]: c for c in doc["checks"]}
    assert rows["vault.address"]["result"] == "pass" and rows["vault.enabled"]["result"] == "pass"
    assert not [c for c in doc["checks"] if "agent config" in c["detail"]], doc

    (d / "20-more.json").write_text('{\n  "datacenter": "dc1"\n  "vault": {"enabled": false}\n}\n')
    code, doc = check_json(config, *agent)
    assert code == 0 and not failed(doc), failed(doc)  # Nomad never reads the enabled = false
    (warn,) = [c for c in doc["checks"] if c["result"] == "warn" and "Nomad reads past" in c["detail"]]
    assert f"{d / '20-more.json'}: line 3, column 3" in warn["detail"] and "missing comma" in warn["detail"]
    text = run_cli("check", "--config", str(config), *agent)
    assert "will not start" not in text.out and "refuse" not in text.out, text.out


def test_agent_argv_with_vault_token_fails_check(bao: Bao, config: Path, tmp_path: Path) -> None:
    agent = nomad_agent(tmp_path, bao)
    code, doc = check_json(config, *agent, "-vault-token=s.not-a-real-one")
    assert code == 78
    (row,) = failed(doc)
    assert row["check"] == "agent argv" and "-vault-token" in row["detail"]
    assert "s.not-a-real-one" not in json.dumps(doc)


def test_non_renewable_mint_role_fails_the_mint(new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path) -> None:
    server = new_bao()
    server.write_mint_role(renewable=False)
    code, doc = check_json(write_config(tmp_path / "c.toml", server, certs), "--mint")
    assert code == 77
    assert [c["check"] for c in failed(doc)] == ["certificate login and mint"]
    assert "non-renewable" in failed(doc)[0]["detail"]


def test_expired_certificate_is_a_local_failure(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    cert, key = certs.issue_client(
        "nomad-startup-old",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC),
    )
    code, doc = check_json(write_config(tmp_path / "c.toml", bao, certs, client_cert=cert, client_key=key))
    assert code == 78
    assert [c["check"] for c in failed(doc)] == ["client certificate"] and "expired" in failed(doc)[0]["detail"]


def test_key_mode_0644_is_a_local_failure(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    cert, key = certs.issue_client("nomad-startup-open")
    os.chmod(key, 0o644)
    code, doc = check_json(write_config(tmp_path / "c.toml", bao, certs, client_cert=cert, client_key=key))
    assert code == 78
    assert [c["check"] for c in failed(doc)] == ["client key mode"]
    assert f"chmod 600 {key}" in failed(doc)[0]["detail"]


def test_vault_down_is_69(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    code, doc = check_json(write_config(tmp_path / "c.toml", bao, certs, vault_addr="https://127.0.0.1:1"))
    assert code == 69 and failed(doc)[0]["check"] == "Vault reachable and unsealed"


def test_create_orphan_mode_warns(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", bao, certs, mint_mode="create-orphan", cert_role="nomad_startup_orphan")
    code, doc = check_json(cfg, "--mint")
    assert code == 0
    warn = [c for c in doc["checks"] if c["check"] == "minting mode"]
    assert warn and warn[0]["result"] == "warn" and "ANY policy" in warn[0]["detail"]


def test_check_uses_the_saved_token_by_default(bao: Bao, config: Path) -> None:
    code, doc = check_json(config)
    assert code == 0 and any(c["check"] == "server token" and c["result"] == "warn" for c in doc["checks"])
    assert run_cli("run", "--config", str(config), "--", "/bin/true").code == 0
    code, doc = check_json(config)
    assert code == 0 and any(c["check"] == "server token" and c["result"] == "pass" for c in doc["checks"])


def test_status_shows_the_token_but_never_the_secret(bao: Bao, config: Path) -> None:
    assert_one_line_error(run_cli("status", "--config", str(config)), 1, "no saved server token")
    assert run_cli("run", "--config", str(config), "--", "/bin/true").code == 0
    token = json.loads((config.parent / "state" / "token.json").read_text())["token"]
    result = run_cli("status", "--config", str(config), "--format", "json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["valid"] is True and doc["role"] == MINT_ROLE and doc["orphan"] is True
    assert doc["period"] == PERIOD and 0 < doc["ttl"] <= PERIOD and doc["expires_at"].endswith("Z")
    assert set(doc["policies"]) - {"default"} == {SERVER_POLICY}
    assert doc["client_cert"]["days_left"] > 0
    text = run_cli("status", "--config", str(config))
    assert text.code == 0 and doc["accessor"] in text.out and "ttl:" in text.out
    for out in (result.out, result.err, text.out, text.err):
        assert token not in out
    bao.client().auth.token.revoke_accessor(doc["accessor"])
    dead = run_cli("status", "--config", str(config))
    assert dead.code == 77 and "NOT VALID" in dead.out and "Traceback" not in dead.err
