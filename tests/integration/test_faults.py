"""Faults with real parts: Vault killed, sealed, slow; state-file writes killed mid-way; monotonic clock."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.agent import AgentRun, NotifySocket
from testbed.bao import Bao, Certs
from testbed.config import write_config
from testbed.env import clean_env
from testbed.procs import wait_for
from testbed.proxy import DelayProxy

pytestmark = pytest.mark.vault


def kill9(server: Bao) -> None:
    assert server.proc is not None
    os.kill(server.pid, signal.SIGKILL)
    server.proc.wait(10)


def assert_not_signalled(r: AgentRun) -> None:
    assert not r.events("signal"), r.events("signal")
    assert not [e for e in r.events("reload") if e["token_changed"]]
    assert r.proc.poll() is None


def test_vault_killed_mid_renewal_and_restarted(
    durable: Bao, certs: Certs, tmp_path: Path, runs: Callable[..., AgentRun]
) -> None:
    cfg = write_config(tmp_path / "c.toml", durable, certs, check_interval="1s", request_timeout="2s")
    notify = NotifySocket(tmp_path / "n.sock")
    r = runs(cfg, durable, env=clean_env(NOTIFY_SOCKET=str(notify.path)))
    accessor = r.wait_event("validated")["accessor"]
    r.wait_event("renewed")
    kill9(durable)
    r.wait_event("renew_failed", lambda e: e["status"] is None)
    notify.wait_for(lambda m: "Vault unreachable since" in m, 20, "STATUS: unreachable")
    durable.launch()
    durable.unseal()
    failed = len(r.events("renewed"))
    r.wait_event("renewed", after=failed, timeout=20)
    notify.messages.clear()
    notify.wait_for(lambda m: m.startswith("STATUS=token") and "unreachable" not in m, 20, "STATUS recovered")
    assert_not_signalled(r)
    assert json.loads((cfg.parent / "state" / "token.json").read_text())["accessor"] == accessor  # no token lost
    notify.close()


def test_vault_sealed_while_agent_runs(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path, runs: Callable[..., AgentRun]
) -> None:
    server = new_bao()
    cfg = write_config(tmp_path / "c.toml", server, certs, check_interval="1s")
    notify = NotifySocket(tmp_path / "n.sock")
    r = runs(cfg, server, env=clean_env(NOTIFY_SOCKET=str(notify.path)))
    accessor = r.wait_event("validated")["accessor"]
    server.seal()
    notify.wait_for(lambda m: "sealed" in m and "STATUS=" in m, 20, "STATUS: sealed")
    time_sealed = time.monotonic()
    server.unseal()
    notify.messages.clear()
    notify.wait_for(lambda m: m.startswith("STATUS=token") and "unreachable" not in m, 20, "STATUS recovered")
    assert time.monotonic() - time_sealed < 20
    assert_not_signalled(r)
    assert "recovered" not in r.stderr
    r.wait_event("renewed", lambda e: e["accessor"] == accessor, after=len(r.events("renewed")))
    notify.close()


def test_vault_killed_mid_mint_then_back(
    durable: Bao, certs: Certs, tmp_path: Path, runs: Callable[..., AgentRun]
) -> None:
    """Each connection is held 0.7 s by a slow proxy; Vault dies while `run` is logging in and minting."""
    proxy = DelayProxy(durable.port, delay=0.7)
    try:
        cfg = write_config(tmp_path / "c.toml", durable, certs, vault_addr=proxy.addr, request_timeout="3s")
        r = runs(cfg, durable, "--no-check")
        wait_for(lambda: proxy.connections >= 2, 10, "run to get past the health check")  # login under way
        kill9(durable)
        wait_for(lambda: proxy.refused >= 1, 20, "run to hit the dead Vault")
        durable.launch()
        durable.unseal()
        start = r.wait_event("start", timeout=60)
        v = r.wait_event("validated", timeout=30)
        assert v["ok"] is True and start["token_accessor"] == v["accessor"]
        saved = json.loads((cfg.parent / "state" / "token.json").read_text())
        assert saved["accessor"] == v["accessor"]  # the token the agent holds is the one kept
        assert "waiting for Vault" in r.stderr and "Traceback" not in r.stderr
        assert len(durable.live_server_tokens()) <= 2  # at most one minted into the void by the kill
    finally:
        proxy.close()


def test_slow_vault_neither_crashes_nor_signals(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path, runs: Callable[..., AgentRun]
) -> None:
    server = new_bao()
    proxy = DelayProxy(server.port, delay=0.3)
    try:
        cfg = write_config(
            tmp_path / "c.toml", server, certs, vault_addr=proxy.addr, check_interval="1s", request_timeout="2s"
        )
        notify = NotifySocket(tmp_path / "n.sock")
        r = runs(cfg, server, env=clean_env(NOTIFY_SOCKET=str(notify.path)))
        r.wait_event("start", timeout=60)  # every request slower, still through
        proxy.delay = 4.0  # now slower than request_timeout: the tracker sees Vault as unreachable
        notify.wait_for(lambda m: "Vault unreachable since" in m, 30, "STATUS: unreachable")
        proxy.delay = 0.0
        notify.messages.clear()
        notify.wait_for(lambda m: m.startswith("STATUS=token") and "unreachable" not in m, 30, "recovered")
        assert not r.events("signal") and r.proc.poll() is None
        notify.close()
    finally:
        proxy.close()


WRITER = """
import sys, time
from pathlib import Path
from nomad_vault_token.token import store
from nomad_vault_token.core.secret import Secret
path = Path(sys.argv[1])
for i in range(1_000_000):
    token = "s." + ("A" if i % 2 else "B") * 4000
    store.write(path, store.State(Secret(token), "acc-" + ("A" if i % 2 else "B"), "https://v", 1.0))
"""


def test_state_write_killed_at_random_points_is_old_or_new(tmp_path: Path) -> None:
    path = tmp_path / "state" / "token.json"
    rng = random.Random(1234)
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=clean_env())
        wait_for(path.exists, 10, "first write")
        time.sleep(rng.uniform(0.0, 0.05))  # a random kill point is what this test is about
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        doc = json.loads(path.read_text())
        letter = doc["accessor"][-1]
        assert doc["token"] == "s." + letter * 4000, "half-written state file"
    leftovers = [p.name for p in path.parent.iterdir() if p.name != "token.json"]
    assert all(p.startswith(".token.json.") for p in leftovers)


def test_schedules_use_the_monotonic_clock(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wall clock jumping a day must not change the tracker's idea of the TTL or its schedule."""
    from nomad_vault_token.core import config as config_mod
    from nomad_vault_token.core.secret import Secret
    from nomad_vault_token.token import tracker
    from nomad_vault_token.token.agent_process import AgentProcess
    from nomad_vault_token.vault.client import TokenInfo

    settings = config_mod.load(config, environ={})
    info = TokenInfo.from_lookup(
        {
            "accessor": "a",
            "ttl": 3600,
            "creation_ttl": 259200,
            "renewable": True,
            "orphan": True,
            "role": "r",
            "policies": ["x"],
        }
    )
    t = tracker.Tracker(settings, Secret("s.x"), info, AgentProcess(os.getpid(), -1, signal.SIGINT))
    before = (t.ttl_now(), t.check_delay())
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400)
    after = (t.ttl_now(), t.check_delay())
    assert abs(before[0] - after[0]) < 1 and abs(before[1] - after[1]) < 1
