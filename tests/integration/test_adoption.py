"""Does Nomad take the token? Adoption, a reload Nomad refuses, early revocation, the agent's environment.

Real OpenBao, real processes and signals, a real notify socket, and the stand-in agent behaving as
Nomad does where it matters: it dies of a SIGHUP that comes before its handler is installed
(command/agent/command.go v1.9.7:1010), and a reload with any broken config file changes nothing
(command.go v1.9.7:1109-1113).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.agent import AgentRun, NotifySocket
from testbed.bao import Bao, Certs
from testbed.config import write_config
from testbed.env import clean_env
from testbed.procs import environ, holds_for, wait_for

pytestmark = pytest.mark.vault


def adoption_config(tmp_path: Path, server: Bao, certs: Certs, **overrides: object) -> Path:
    values: dict[str, object] = {
        "check_interval": "1s",
        "request_timeout": "2s",
        "sighup_grace": "4s",
        "adoption_timeout": "4s",
    }
    values.update(overrides)
    return write_config(tmp_path / "c.toml", server, certs, **values)


def agent_hcl(r: AgentRun) -> Path:
    return Path(r.argv[r.argv.index("-config") + 1])


def test_adopted_at_start_and_after_a_good_reload(
    tmp_path: Path, server: Bao, certs: Certs, notify: NotifySocket, runs: Callable[..., AgentRun]
) -> None:
    cfg = adoption_config(tmp_path, server, certs)
    r = runs(cfg, server, env=clean_env(NOTIFY_SOCKET=str(notify.path), FAKE_NOMAD_SIGNAL_DELAY="1"))
    old = r.wait_event("validated")["accessor"]
    notify.wait_for(lambda m: "adopted by Nomad" in m and "after start" in m, 15, "STATUS: adopted after start")
    r.wait_event("signals_ready", timeout=10)
    server.client().auth.token.revoke_accessor(old)
    reload = r.wait_event("reload", lambda e: e.get("token_changed"), timeout=20)
    assert reload["accessor"] != old
    notify.wait_for(lambda m: "adopted by Nomad" in m and "after SIGHUP" in m, 15, "STATUS: adopted after SIGHUP")
    assert r.proc.poll() is None and not r.events("signal")


def test_a_reload_nomad_refuses_is_not_adopted_then_escalated(
    tmp_path: Path, server: Bao, certs: Certs, notify: NotifySocket, runs: Callable[..., AgentRun]
) -> None:
    cfg = adoption_config(tmp_path, server, certs)
    env = clean_env(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="400000", FAKE_NOMAD_SIGNAL_DELAY="1")
    r = runs(cfg, server, env=env)
    old = r.wait_event("validated")["accessor"]
    notify.wait_for(lambda m: "adopted by Nomad" in m, 15, "STATUS: adopted")
    r.wait_event("signals_ready", timeout=10)
    agent_hcl(r).write_text("vault {\n  enabled = \n")  # another config file broken after start
    server.client().auth.token.revoke_accessor(old)
    r.wait_event("reload", lambda e: bool(e.get("error")), timeout=20)  # Nomad: "Failed to reload configs"
    refused = notify.wait_for(lambda m: "NOT adopted by Nomad" in m, 20, "STATUS: NOT adopted")
    assert "after SIGHUP" in refused and "check vault { enabled, address } and -vault-token" in refused
    at = notify.messages.index(refused)
    stopped = r.wait_event("signal", timeout=20)
    assert stopped["signal"] == "SIGINT"  # the unit's KillSignal: systemd restarts it with the saved token
    assert r.wait_exit(10) == 1  # Nomad exits 1 on SIGINT without leave_on_interrupt (command.go v1.9.7:1056-1085)
    notify.drain()
    assert not any("WATCHDOG=1" in m for m in notify.messages[at:]), notify.messages[at:]
    assert "has not adopted token accessor" in r.stderr


def test_not_adopted_warns_only_when_configured(
    tmp_path: Path, server: Bao, certs: Certs, notify: NotifySocket, runs: Callable[..., AgentRun]
) -> None:
    cfg = adoption_config(tmp_path, server, certs, on_not_adopted="warn")
    r = runs(cfg, server, env=clean_env(NOTIFY_SOCKET=str(notify.path), FAKE_NOMAD_SIGNAL_DELAY="1"))
    old = r.wait_event("validated")["accessor"]
    r.wait_event("signals_ready", timeout=10)
    notify.wait_for(lambda m: "adopted by Nomad" in m, 15, "STATUS: adopted")
    agent_hcl(r).write_text("vault {\n  enabled = \n")
    server.client().auth.token.revoke_accessor(old)
    notify.wait_for(lambda m: "NOT adopted by Nomad" in m, 25, "STATUS: NOT adopted")

    def still_running() -> None:
        assert r.proc.poll() is None, "the agent was stopped although on_not_adopted = warn"

    holds_for(still_running, 8)  # past the jittered bound (4 s + up to 2 s)
    assert not r.events("signal")


def test_an_early_revocation_does_not_kill_the_agent_with_sighup(
    tmp_path: Path, server: Bao, certs: Certs, runs: Callable[..., AgentRun]
) -> None:
    """The token dies before Nomad installs its signal handler: the SIGHUP waits, the agent lives.

    Handler after 4 s; grace 5 s: safe whether or not the tracker saw the agent's first renewal before
    the revocation (then 5 s after it, else 4 x 5 s after start); no escalation within 60 s.
    """
    cfg = adoption_config(tmp_path, server, certs, sighup_grace="5s", adoption_timeout="60s")
    r = runs(cfg, server, env=clean_env(FAKE_NOMAD_SIGNAL_DELAY="4"))
    old = r.wait_event("validated")["accessor"]
    server.client().auth.token.revoke_accessor(old)
    wait_for(lambda: "no SIGHUP yet" in r.stderr, 15, "the tracker holding the SIGHUP back")
    assert not r.events("signals_ready"), "too slow: the handler was installed before the recovery"
    ready = r.wait_event("signals_ready", timeout=15)
    reload = r.wait_event("reload", lambda e: e.get("token_changed"), timeout=30)
    assert reload["time"] > ready["time"]
    assert r.proc.poll() is None, f"agent died: {r.proc.returncode} (-{int(signal.SIGHUP)} is death by SIGHUP)"
    r.wait_event("validated", lambda e: e["accessor"] == reload["accessor"] and e["ok"], timeout=15)


def test_the_agent_environment_holds_nothing_the_tool_consumed(
    tmp_path: Path, server: Bao, certs: Certs, runs: Callable[..., AgentRun]
) -> None:
    """The unit's LoadCredential= example: key and CA from the environment, cert from the TOML.

    Passed on, VAULT_CLIENT_KEY without VAULT_CLIENT_CERT makes Nomad's Vault client fail to build and
    the server not start (nomad/server.go v1.9.7:409-412).
    """
    cfg = adoption_config(tmp_path, server, certs, client_key=None, ca_cert=None)
    env = clean_env(
        VAULT_CLIENT_KEY=str(certs.client_key),
        VAULT_CACERT=str(certs.ca_path),
        NOMAD_VAULT_TOKEN_MIN_TTL="5m",
    )
    r = runs(cfg, server, env=env)
    assert r.wait_event("validated")["ok"] is True
    names = {item.split("=", 1)[0] for item in environ(r.pid)}
    assert not names & {"VAULT_CLIENT_KEY", "VAULT_CACERT", "NOMAD_VAULT_TOKEN_MIN_TTL", "VAULT_TOKEN"}, names
    assert "FAKE_NOMAD_REPORT" in names  # everything else is passed on
