"""Cold start without deadlock: Nomad comes up even when Vault cannot come up first.

Real OpenBao (sealed while `run` starts: Vault is down), real processes, a real notify socket, and the
stand-in agent: it validates its token every FAKE_NOMAD_VALIDATE_RETRY seconds until Vault answers
(Nomad: every 30 s, nomad/vault.go:488-522), and with `enabled = false` and a token it builds a
disabled client that a later SIGHUP enables (vault.go:292, 380-415; server.go v1.9.7:902-912).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.agent import FAKE_NOMAD, AgentRun, NotifySocket
from testbed.bao import Bao, Certs
from testbed.cli import run_cli
from testbed.config import write_config
from testbed.env import clean_env

pytestmark = pytest.mark.vault


@pytest.fixture
def cfg(tmp_path: Path, server: Bao, certs: Certs) -> Path:
    return write_config(
        tmp_path / "c.toml",
        server,
        certs,
        degraded_start_after="2s",
        check_interval="1s",
        request_timeout="2s",
        sighup_grace="1s",  # an agent that never renewed gets its SIGHUP 4 graces after start: past its 2 s setup
        adoption_timeout="30s",
    )


def saved_accessor(cfg: Path) -> str:
    accessor: str = json.loads((cfg.parent / "state" / "token.json").read_text())["accessor"]
    return accessor


def save_a_token(cfg: Path) -> str:
    """What an earlier boot left: run with an agent that exits at once."""
    assert run_cli("run", "--config", str(cfg), "--", "/bin/true").code == 0
    return saved_accessor(cfg)


def agent_env(notify: NotifySocket, **extra: str) -> dict[str, str]:
    return clean_env(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000", FAKE_NOMAD_VALIDATE_RETRY="1", **extra)


def degraded_then_ready(r: AgentRun, notify: NotifySocket, held: str) -> None:
    """The agent runs while Vault is sealed; READY, STATUS says degraded, WATCHDOG keeps coming."""
    r.wait_event("start", timeout=20)
    # the tracker's READY (with its STATUS), once a reload is safe: 4 graces after a start with no adoption
    ready = notify.wait_for(lambda m: "READY=1" in m and "STATUS=" in m, 20, "READY=1 from the tracker")
    assert "degraded: Vault unreachable since" in ready and held in ready, ready
    notify.wait_for(lambda m: "WATCHDOG=1" in m, 10, "WATCHDOG=1 while degraded")
    assert r.proc.poll() is None


def test_saved_token_valid_is_handed_over_unverified_and_adopted_when_vault_is_back(
    server: Bao, cfg: Path, notify: NotifySocket, runs: Callable[..., AgentRun]
) -> None:
    accessor = save_a_token(cfg)
    server.seal()
    r = runs(cfg, server, env=agent_env(notify))
    degraded_then_ready(r, notify, f"token {accessor[:8]}... unverified")
    during = run_cli("status", "--config", str(cfg), "--format", "json")  # what is known without Vault
    assert during.code == 69 and "sealed" in during.err_lines[-1], during.err
    doc = json.loads(during.out)
    assert (doc["accessor"], doc["valid"], doc["tracker"]["state"]) == (accessor, None, "degraded")
    check = run_cli("check", "--config", str(cfg))
    assert check.code == 69 and "WARN  degraded start" in check.out and "still degraded" in check.out, check.out
    server.unseal()
    assert r.wait_event("validated", lambda e: e["ok"], timeout=30)["accessor"] == accessor
    notify.wait_for(lambda m: "adopted by Nomad" in m, 30, "STATUS: adopted")
    assert [t["accessor"] for t in server.live_server_tokens()] == [accessor]  # nothing new was minted
    assert not r.events("reload") and r.proc.poll() is None
    status = json.loads(run_cli("status", "--config", str(cfg), "--format", "json").out)
    assert status["tracker"]["adopted"] is True and status["tracker"]["degraded_for"] > 0


def test_saved_token_revoked_meanwhile_is_replaced_without_a_human(
    server: Bao, cfg: Path, notify: NotifySocket, runs: Callable[..., AgentRun]
) -> None:
    old = save_a_token(cfg)
    server.client().auth.token.revoke_accessor(old)
    server.seal()
    r = runs(cfg, server, env=agent_env(notify))
    degraded_then_ready(r, notify, f"token {old[:8]}... unverified")
    server.unseal()
    reload = r.wait_event("reload", lambda e: e.get("token_changed"), timeout=40)
    assert reload["accessor"] != old and reload["pid"] == r.pid
    r.wait_event("validated", lambda e: e["ok"] and e["accessor"] == reload["accessor"], timeout=20)
    notify.wait_for(lambda m: "adopted by Nomad" in m and "after SIGHUP" in m, 30, "STATUS: adopted after SIGHUP")
    assert r.proc.poll() is None


@pytest.mark.parametrize("version", ["1.6", "1.9"])
def test_no_saved_token_starts_tokenless_and_gets_one_without_a_restart(
    server: Bao, cfg: Path, notify: NotifySocket, runs: Callable[..., AgentRun], version: str
) -> None:
    server.seal()
    r = runs(cfg, server, env=agent_env(notify, FAKE_NOMAD_VERSION=version))
    degraded_then_ready(r, notify, "no token yet")
    assert not r.events("validated")  # Vault disabled: nothing to validate
    server.unseal()
    reload = r.wait_event("reload", lambda e: e.get("token_changed"), timeout=40)
    assert reload["pid"] == r.pid
    r.wait_event("validated", lambda e: e["ok"] and e["accessor"] == reload["accessor"], timeout=20)
    r.wait_event("renewed", lambda e: e["accessor"] == reload["accessor"], timeout=20)
    notify.wait_for(lambda m: "adopted by Nomad" in m, 30, "STATUS: adopted")
    assert r.proc.poll() is None and not r.events("signal")  # zero restarts
    assert saved_accessor(cfg) == reload["accessor"]


def test_degraded_start_off_waits_as_before(server: Bao, cfg: Path, tmp_path: Path) -> None:
    server.seal()
    report = tmp_path / "report.jsonl"
    env = clean_env(FAKE_NOMAD_REPORT=str(report))
    result = run_cli(
        "run",
        "--config",
        str(cfg),
        "--degraded-start-after",
        "0",
        "--wait-timeout",
        "3s",
        "--",
        FAKE_NOMAD.parent.parent.joinpath(".venv/bin/python").as_posix(),
        str(FAKE_NOMAD),
        "agent",
        env=env,
    )
    assert result.code == 69 and "Traceback" not in result.err, result.err
    last = result.err_lines[-1]
    assert "error:" in last and "sealed" in last and "--wait-timeout" in last, result.err
    assert "degraded" not in result.err
    assert not report.exists()  # the agent never started
