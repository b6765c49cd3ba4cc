"""The tracker beside the stand-in agent: sd_notify, recovery, Vault outages, process lifetime."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.agent import AgentRun, NotifySocket
from testbed.bao import STARTUP_ROLE, Bao, Certs
from testbed.config import write_config
from testbed.env import clean_env
from testbed.procs import alive, wait_for

pytestmark = pytest.mark.vault


@pytest.fixture
def cfg(tmp_path: Path, server: Bao, certs: Certs) -> Path:
    # sighup_grace: past the stand-in's signal handler setup (FAKE_NOMAD_SIGNAL_DELAY, 2 s by default)
    return write_config(
        tmp_path / "c.toml", server, certs, check_interval="1s", request_timeout="2s", sighup_grace="3s"
    )


def tracker_pid(r: AgentRun) -> int:
    pids: list[int] = wait_for(r.trackers, 10, "the tracker process")
    assert len(pids) == 1, pids
    return pids[0]


def test_ready_once_a_reload_is_safe_then_status_and_watchdog(
    server: Bao, cfg: Path, notify: NotifySocket, runs: Callable[..., AgentRun]
) -> None:
    """READY=1 lets systemd send ExecReload's SIGHUP: not before Nomad's handler is installed.

    Nomad 1.6 sends no READY of its own (1.8+ does, once its handlers are up: command.go v1.9.7:1012).
    """
    env = clean_env(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000", FAKE_NOMAD_VERSION="1.6")
    r = runs(cfg, server, env=env)
    accessor = r.wait_event("validated")["accessor"]
    notify.wait_for(lambda m: "WATCHDOG=1" in m, 10, "WATCHDOG=1")  # the watchdog runs from the start
    ready = notify.wait_for(lambda m: "READY=1" in m, 20, "READY=1")
    assert r.events("signals_ready"), "READY before the agent's signal handlers: a reload would kill it"
    assert f"STATUS=token {accessor[:8]}... ttl " in ready and "adopted by Nomad" in ready, ready
    status = notify.wait_for(lambda m: "renewed" in m and "by the agent" in m, 15, "STATUS with the agent's renewal")
    assert "client cert expires in" in status
    token_file = Path(cfg.parent / "state" / "token.json").read_text()
    assert all(token_file.split('"token": "')[1].split('"')[0] not in m for m in notify.messages)


def test_revoked_token_is_replaced_and_agent_reloaded(server: Bao, cfg: Path, runs: Callable[..., AgentRun]) -> None:
    r = runs(cfg, server)
    old = r.wait_event("validated")["accessor"]
    server.client().auth.token.revoke_accessor(old)
    reload = r.wait_event("reload", lambda e: e["token_changed"], timeout=15)
    assert reload["accessor"] != old and reload["pid"] == r.pid
    fresh = r.wait_event("validated", lambda e: e["accessor"] == reload["accessor"], timeout=10)
    assert fresh["ok"] is True
    r.wait_event("renewed", lambda e: e["accessor"] == fresh["accessor"], timeout=10)
    assert r.proc.poll() is None
    assert "recovered" in r.stderr and [t["accessor"] for t in server.live_server_tokens()] == [fresh["accessor"]]


def test_env_mode_revocation_stops_the_agent(server: Bao, cfg: Path, runs: Callable[..., AgentRun]) -> None:
    r = runs(cfg, server, "--handoff", "env")
    old = r.wait_event("validated")["accessor"]
    server.client().auth.token.revoke_accessor(old)
    assert r.wait_event("signal", timeout=15)["signal"] == "SIGINT"  # stop_signal: the unit's KillSignal
    r.wait_exit(10)
    # the replacement was saved: the restart systemd would do reuses it without minting
    again = runs(cfg, server, "--handoff", "env")
    new = again.wait_event("validated")
    assert new["ok"] and new["accessor"] != old
    assert "reusing server token" in again.stderr


def test_vault_outage_neither_crashes_nor_signals(
    server: Bao, cfg: Path, notify: NotifySocket, runs: Callable[..., AgentRun]
) -> None:
    r = runs(cfg, server, env=clean_env(NOTIFY_SOCKET=str(notify.path)))
    r.wait_event("validated")
    tracker = tracker_pid(r)
    server.freeze()
    try:
        notify.wait_for(lambda m: "Vault unreachable since" in m, 20, "STATUS: Vault unreachable")
        assert alive(tracker) and r.proc.poll() is None
    finally:
        server.thaw()
    notify.messages.clear()
    notify.wait_for(lambda m: m.startswith("STATUS=token") and "unreachable" not in m, 20, "STATUS recovered")
    assert not r.events("reload") and not r.events("signal")
    assert alive(tracker)
    assert r.stderr.count("Vault unreachable:") == 1 and "Vault reachable again" in r.stderr


def test_agent_death_ends_tracker_and_tracker_death_spares_agent(
    server: Bao, cfg: Path, runs: Callable[..., AgentRun]
) -> None:
    r = runs(cfg, server)
    r.wait_event("validated")
    tracker = tracker_pid(r)
    os.kill(tracker, signal.SIGKILL)
    wait_for(lambda: not alive(tracker), 5, "tracker to die")
    renewals = len(r.events("renewed"))
    r.wait_event("renewed", after=renewals, timeout=10)  # agent unaffected, still renewing
    assert r.proc.poll() is None

    second = runs(cfg, server)
    second.wait_event("validated")
    tracker2 = tracker_pid(second)
    os.kill(second.pid, signal.SIGKILL)
    second.wait_exit(5)
    wait_for(lambda: not alive(tracker2), 1.0, "tracker to exit within a second of the agent")


def test_no_watchdog_while_token_dead_and_unrecoverable(
    server: Bao, cfg: Path, notify: NotifySocket, runs: Callable[..., AgentRun]
) -> None:
    env = clean_env(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="400000")
    r = runs(cfg, server, env=env)
    old = r.wait_event("validated")["accessor"]
    notify.wait_for(lambda m: "WATCHDOG=1" in m, 10, "first WATCHDOG")
    server.client().delete(f"auth/cert/certs/{STARTUP_ROLE}")  # recovery cannot log in any more
    server.client().auth.token.revoke_accessor(old)
    dead = notify.wait_for(lambda m: "DEAD since" in m, 15, "STATUS: token dead")
    # From the first DEAD STATUS on (the tracker's one loop sends STATUS and WATCHDOG in order): that STATUS
    # may itself be the "recovery failed" one, the next only after the 2 s retry, so nothing before it is
    # dropped; then 2 s (ten 200 ms beats) in which no WATCHDOG=1 may follow.
    since = notify.messages.index(dead)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        notify.drain()
        time.sleep(0.01)
    after = notify.messages[since:]
    assert not any("WATCHDOG=1" in m for m in after), after
    assert any("recovery failed" in m for m in after), after
    assert r.proc.poll() is None and not r.events("reload")
