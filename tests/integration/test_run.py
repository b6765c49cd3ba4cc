"""`run` with the stand-in agent against the real OpenBao: hand-off, reuse, waiting, Nomad's checks."""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.agent import AgentRun, NotifySocket
from testbed.bao import PERIOD, SERVER_POLICY, TASK_ROLE, Bao, Certs
from testbed.cli import assert_one_line_error, run_cli
from testbed.config import write_config
from testbed.env import clean_env
from testbed.procs import environ, scan

pytestmark = pytest.mark.vault


def saved_token(config_dir: Path) -> str:
    return str(json.loads((config_dir / "state" / "token.json").read_text())["token"])


def test_file_handoff_gives_agent_a_valid_token(bao: Bao, config: Path, runs: Callable[..., AgentRun]) -> None:
    r = runs(config, bao)
    v = r.wait_event("validated")
    assert v["ok"] is True, v
    start = r.events("start")[0]
    assert start["token_source"] == "config"
    assert start["pid"] == r.pid  # the agent kept the PID systemd started
    token = saved_token(config.parent)
    hcl = config.parent / "run" / "vault-token.hcl"
    assert stat.S_IMODE(hcl.stat().st_mode) == 0o600
    assert token in hcl.read_text() and f'create_from_role = "{TASK_ROLE}"' in hcl.read_text()
    assert str(hcl) in start["argv"]
    state_file = config.parent / "state" / "token.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_file.parent.stat().st_mode) == 0o700
    for proc in scan():
        assert token not in proc.cmdline
    r.wait_event("renewed")
    assert token not in r.stderr and v["accessor"] in r.stderr


def test_env_handoff_uses_vault_token(bao: Bao, config: Path, runs: Callable[..., AgentRun]) -> None:
    r = runs(config, bao, "--handoff", "env")
    assert r.wait_event("validated")["ok"] is True
    start = r.events("start")[0]
    assert start["token_source"] == "env"
    assert "-config" in start["argv"] and not any("vault-token.hcl" in a for a in start["argv"])
    token = saved_token(config.parent)
    assert os.environ.get("VAULT_TOKEN") != token
    assert f"VAULT_TOKEN={token}" in environ(r.pid)
    for proc in scan():
        assert token not in proc.cmdline


def test_twenty_restarts_leave_one_live_token(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path, runs: Callable[..., AgentRun]
) -> None:
    server = new_bao()
    cfg = write_config(tmp_path / "c.toml", server, certs)
    accessors = set()
    for _ in range(20):
        r = runs(cfg, server, "--no-check", renew_every=None)
        accessors.add(r.wait_event("start")["token_accessor"])
        assert r.stop() in (1, -signal.SIGTERM)  # Nomad: 1, or killed by SIGTERM before its handlers
    assert len(accessors) == 1
    assert [t["accessor"] for t in server.live_server_tokens()] == list(accessors)
    # revoke it: the next start mints a fresh one, and still only one is alive
    server.client().auth.token.revoke_accessor(accessors.pop())
    r = runs(cfg, server, renew_every=None)
    fresh = r.wait_event("validated")
    assert fresh["ok"] is True
    assert [t["accessor"] for t in server.live_server_tokens()] == [fresh["accessor"]]
    assert "no longer valid" in r.stderr


def test_changed_policy_mints_anew_and_retires_the_old_token(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path, runs: Callable[..., AgentRun]
) -> None:
    server = new_bao()
    cfg = write_config(tmp_path / "c.toml", server, certs)
    first = runs(cfg, server, renew_every=None)
    old = first.wait_event("validated")["accessor"]
    first.stop()
    server.client().write(f"auth/token/roles/{TASK_ROLE}", token_period=f"{PERIOD}s", orphan=True, renewable=True)
    cfg2 = write_config(tmp_path / "c.toml", server, certs, min_ttl=f"{PERIOD}s", period=f"{PERIOD + 1}s")
    second = runs(cfg2, server, "--no-check", renew_every=None)
    new = second.wait_event("start")["token_accessor"]
    assert new != old
    assert "not reused" in second.stderr
    # the task role is orphan, so the replaced server token was revoked
    assert [t["accessor"] for t in server.live_server_tokens()] == [new]


@pytest.mark.parametrize("garbage", [b"", b"{not json", b'{"version": 1}', b"\x00\xff" * 10])
def test_corrupt_state_file_is_a_warning(bao: Bao, config: Path, runs: Callable[..., AgentRun], garbage: bytes) -> None:
    state = config.parent / "state"
    state.mkdir(mode=0o700)
    (state / "token.json").write_bytes(garbage)
    os.chmod(state / "token.json", 0o600)
    r = runs(config, bao)
    assert r.wait_event("validated")["ok"] is True
    assert "state file" in r.stderr and "Traceback" not in r.stderr


def test_state_file_that_is_a_directory_is_78_before_minting(bao: Bao, config: Path) -> None:
    (config.parent / "state" / "token.json").mkdir(parents=True)
    before = len(bao.client().auth.token.list_accessors()["data"]["keys"])
    result = run_cli("run", "--config", str(config), "--", "/bin/true")
    assert result.code == 78 and "Traceback" not in result.err
    assert "is not a regular file: remove it" in result.err_lines[-1]
    assert len(bao.client().auth.token.list_accessors()["data"]["keys"]) == before  # nothing minted


def test_sealed_at_start_waits_then_execs_soon_after_unseal(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path, runs: Callable[..., AgentRun]
) -> None:
    server = new_bao()
    server.seal()
    cfg = write_config(tmp_path / "c.toml", server, certs)
    notify = NotifySocket(tmp_path / "notify.sock")
    env = clean_env(NOTIFY_SOCKET=str(notify.path))
    r = runs(cfg, server, "--wait-timeout", "60s", env=env)
    notify.wait_for(lambda m: "STATUS=waiting for Vault: sealed (attempt" in m, 10, "waiting STATUS")
    notify.wait_for(lambda m: "EXTEND_TIMEOUT_USEC=" in m, 10, "EXTEND_TIMEOUT_USEC")
    timer = threading.Timer(5, server.unseal)
    started = time.time()
    timer.start()
    try:
        start = r.wait_event("start", timeout=30)
    finally:
        timer.cancel()
    unsealed_at = started + 5
    assert start["time"] - unsealed_at < 3.5, f"exec'd {start['time'] - unsealed_at:.1f}s after the unseal"
    assert r.stderr.count("waiting for Vault: sealed") == 1  # one line per state change, not per attempt
    notify.close()


def test_vault_down_with_wait_timeout_exits_69(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", bao, certs, vault_addr="https://127.0.0.1:1")
    result = run_cli("run", "--config", str(cfg), "--wait-timeout", "3", "--", "/bin/true")
    assert result.code == 69, result.err
    assert "Traceback" not in result.err
    assert "still unreachable (connection refused) after --wait-timeout 3s" in result.err_lines[-1]


def test_missing_agent_is_78(config: Path) -> None:
    assert_one_line_error(run_cli("run", "--config", str(config), "--", "/no/such/nomad"), 78, "/no/such/nomad")
    assert_one_line_error(run_cli("run", "--config", str(config)), 78, "no agent")


def break_role(server: Bao, how: str) -> None:
    c = server.client()
    if how == "explicit max ttl":
        c.write(
            f"auth/token/roles/{TASK_ROLE}",
            token_explicit_max_ttl="1h",
            token_period=f"{PERIOD}s",
            orphan=True,
            renewable=True,
        )
    elif how == "role missing":
        c.delete(f"auth/token/roles/{TASK_ROLE}")
    elif how == "no capabilities-self":  # the default policy grants it too: mint without default
        server.drop_from_server_policy("sys/capabilities-self")
    elif how == "no revoke-accessor":
        policy = c.sys.read_policy(SERVER_POLICY)["data"]["rules"]
        c.sys.create_or_update_policy(SERVER_POLICY, policy.replace('path "auth/token/revoke-accessor"', 'path "x/y"'))


@pytest.mark.parametrize(
    ("how", "wording"),
    [
        ("explicit max ttl", "Role can not use an explicit max ttl. Token must be periodic."),
        ("role missing", f'Role "{TASK_ROLE}" does not exist'),
        ("no revoke-accessor", 'on "auth/token/revoke-accessor"'),
    ],
)
def test_broken_role_is_77_with_nomads_reason(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path, how: str, wording: str
) -> None:
    server = new_bao()
    break_role(server, how)
    cfg = write_config(tmp_path / "c.toml", server, certs)
    result = run_cli("run", "--config", str(cfg), "--", "/bin/true")
    assert result.code == 77, result.err
    assert "Traceback" not in result.err
    assert wording in result.err, result.err
    assert "Nomad would refuse" in result.err_lines[-1]
    # --no-check skips it and execs the agent (here /bin/true, which exits 0)
    assert run_cli("run", "--config", str(cfg), "--no-check", "--", "/bin/true").code == 0


def test_capabilities_self_refused_warns_like_nomad_and_strict_refuses(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path
) -> None:
    """Nomad logs a warning, skips its capability checks and runs (nomad/vault.go:835-847)."""
    server = new_bao()
    break_role(server, "no capabilities-self")
    cfg = write_config(tmp_path / "c.toml", server, certs)
    result = run_cli("run", "--config", str(cfg), "--", "/bin/true")
    assert result.code == 0, result.err  # the agent (/bin/true) was exec'd
    warning = [line for line in result.err_lines if "Nomad will warn" in line]
    assert len(warning) == 1 and "can not lookup token capabilities" in warning[0], result.err
    assert 'on "sys/capabilities-self"' in warning[0]
    strict = run_cli("run", "--config", str(cfg), "--strict", "--", "/bin/true")
    assert strict.code == 77, strict.err
    assert "can not lookup token capabilities" in strict.err and "--strict" in strict.err_lines[-1]


@pytest.mark.parametrize(
    ("agent_flags", "words"),
    [
        (["-vault-token=s.0123456789abcdef"], "-vault-token beats every config file"),
        (["-vault-token", "s.0123456789abcdef"], "-vault-token beats every config file"),
        (["-vault-create-from-role=other-role"], "-vault-create-from-role=other-role beats the hand-off"),
        (["-no-such-flag"], "-no-such-flag"),
    ],
)
def test_agent_argv_that_overrides_the_token_is_refused_before_anything(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path, agent_flags: list[str], words: str
) -> None:
    server = new_bao()
    cfg = write_config(tmp_path / "c.toml", server, certs)
    result = run_cli("run", "--config", str(cfg), "--", "/bin/true", "agent", *agent_flags)
    assert_one_line_error(result, 78, words)
    assert "s.0123456789abcdef" not in result.err
    assert server.live_server_tokens() == []  # nothing minted
    assert not (tmp_path / "state" / "token.json").exists() and not (tmp_path / "run").exists()


def test_agent_argv_with_the_same_create_from_role_is_fine(bao: Bao, config: Path) -> None:
    result = run_cli("run", "--config", str(config), "--", "/bin/true", "agent", f"-vault-create-from-role={TASK_ROLE}")
    assert result.code == 0, result.err
