"""`check` with `keyring = true` against OpenBao's real transit engine: the round trip with the saved keyring token,
the key's deletion_allowed and min_decryption_version, the agent's keyring blocks and the file it reads, the
cold-start trap (declared, and found in the stand-in Nomad's service registry)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testbed.agent import AgentRun, agent_config, fake_nomad, keyring_block
from testbed.bao import Bao, Certs
from testbed.cli import Result, run_cli
from testbed.config import write_config
from testbed.env import clean_env
from testbed.nomad_identity import NomadIdentity

pytestmark = pytest.mark.vault


@pytest.fixture
def ring_server(new_bao: Callable[..., Bao]) -> Bao:
    server = new_bao()
    server.configure_keyring()
    return server


@pytest.fixture
def agent_run(tmp_path: Path, ring_server: Bao, certs: Certs, runs: Callable[..., AgentRun]) -> AgentRun:
    """run with keyring = true, its keyring token minted and written, the agent (stand-in) using it."""
    token_file = tmp_path / "run" / "keyring-token"
    cfg = write_config(tmp_path / "config.toml", ring_server, certs, keyring=True, keyring_token_file=str(token_file))
    r = runs(cfg, ring_server, keyring_token=f"file://{token_file}")
    r.wait_event("keyring_ready")
    return r


@pytest.fixture
def started(agent_run: AgentRun) -> Path:
    return agent_run.config


def check(cfg: Path, *args: str, admin: str | None = None, agent: list[str] | None = None) -> tuple[Result, dict[str, Any]]:
    env = clean_env(VAULT_TOKEN=admin) if admin else clean_env()
    tail = ["--", *agent] if agent else []
    result = run_cli("check", "--config", str(cfg), "--format", "json", *args, *tail, env=env)
    return result, json.loads(result.out)


def rows(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in doc["checks"] if r["check"] == name]


def test_round_trip_and_key_pass_then_a_deletable_key_and_raised_min_version_fail(
    started: Path, ring_server: Bao
) -> None:
    result, doc = check(started, admin=ring_server.root_token)
    assert result.code == 0, result.out
    assert rows(doc, "keyring round trip")[0]["result"] == "pass"
    assert rows(doc, "keyring key")[0]["result"] == "pass"
    assert ring_server.root_token not in result.out + result.err

    c = ring_server.client()
    c.write("transit/keys/nomad-keyring/config", deletion_allowed=True)
    c.write("transit/keys/nomad-keyring/rotate")
    c.write("transit/keys/nomad-keyring/config", min_decryption_version=2)
    result, doc = check(started, admin=ring_server.root_token)
    assert result.code == 77
    assert "deletion_allowed = true" in rows(doc, "keyring key")[0]["detail"]
    versions = rows(doc, "keyring key versions")[0]
    assert versions["result"] == "fail" and "below 2 can no longer be unwrapped" in versions["detail"]
    # without an admin token the key's config is not read: the keyring token may not
    _, doc = check(started)
    assert rows(doc, "keyring key")[0]["result"] == "skip"


def test_a_revoked_keyring_token_fails_the_check(agent_run: AgentRun, ring_server: Bao) -> None:
    agent_run.stop()  # and its tracker, which would replace the token at once
    started = agent_run.config
    token = (started.parent / "run" / "keyring-token").read_text()
    ring_server.client().auth.token.revoke_accessor(ring_server.client(token).auth.token.lookup_self()["data"]["accessor"])
    result, doc = check(started)
    assert result.code == 77 and rows(doc, "keyring token")[0]["result"] == "fail"
    assert token not in result.out + result.err


def test_the_agents_keyring_block_and_a_hand_written_file_with_a_newline(
    tmp_path: Path, ring_server: Bao, certs: Certs
) -> None:
    hand = tmp_path / "hand" / "keyring-token"
    hand.parent.mkdir()
    hand.write_text("s.not-a-real-token\n")  # echo adds the newline Nomad would send
    hand.chmod(0o600)
    cfg = write_config(tmp_path / "config.toml", ring_server, certs, keyring=True, keyring_token_file=str(hand))
    agent_hcl = agent_config(tmp_path / "agent.hcl", ring_server)
    with agent_hcl.open("a") as f:
        f.write(keyring_block(ring_server.addr, certs.ca_path, f"file://{hand}"))
    result, doc = check(cfg, agent=fake_nomad(agent_hcl))
    line = rows(doc, "keyring token file")[0]
    assert line["result"] == "fail" and "ends with a newline" in line["detail"] and result.code == 78
    assert "s.not-a-real-token" not in result.out + result.err

    # a literal token, tls_skip_verify as a bare boolean, two active blocks: each said, in Nomad's terms
    agent_hcl.write_text(agent_hcl.read_text().replace(f'token = "file://{hand}"', 'token = "s.literal"'))
    _, doc = check(cfg, agent=fake_nomad(agent_hcl))
    literal = rows(doc, "keyring.transit.token")[0]
    assert literal["result"] == "warn" and f'token = "file://{hand}"' in literal["fix"]
    assert "s.literal" not in json.dumps(doc)
    agent_hcl.write_text(agent_hcl.read_text().replace("  active = true\n", "  active = true\n  tls_skip_verify = false\n"))
    result, doc = check(cfg, agent=fake_nomad(agent_hcl))
    assert result.code == 78 and 'tls_skip_verify = "false"' in rows(doc, "keyring blocks")[0]["detail"]
    agent_hcl.write_text(agent_config(tmp_path / "agent.hcl", ring_server).read_text()
                         + keyring_block(ring_server.addr, certs.ca_path, f"file://{hand}")
                         + 'keyring "aead" {\n  active = true\n}\n')  # fmt: skip
    _, doc = check(cfg, agent=fake_nomad(agent_hcl))
    assert any("Community Edition refuses to start" in r["detail"] for r in rows(doc, "keyring"))


def test_the_cold_start_trap_declared_or_found_in_nomads_service_registry(
    tmp_path: Path, started: Path, ring_server: Bao, certs: Certs
) -> None:
    declared = write_config(tmp_path / "declared.toml", ring_server, certs, keyring=True,
                            keyring_token_file=str(tmp_path / "run" / "keyring-token"), keyring_vault_in_cluster=True)  # fmt: skip
    result, doc = check(declared)
    trap = rows(doc, "keyring cold start")[0]
    assert trap["result"] == "fail" and result.code == 77
    assert "cannot come back" in trap["detail"] and "docs/keyring.md" in trap["detail"]

    nomad = NomadIdentity(certs.server_pem).start()
    try:
        args = ["--nomad-addr", nomad.address, "--nomad-ca", str(certs.ca_path)]
        _, doc = check(started, *args)
        assert rows(doc, "keyring cold start")[0]["result"] == "pass"
        nomad.services.append(("infra", "vault", "127.0.0.1", ring_server.port))
        result, doc = check(started, *args)
        trap = rows(doc, "keyring cold start")[0]
        assert trap["result"] == "fail" and "Nomad service infra/vault" in trap["detail"]
    finally:
        nomad.stop()
