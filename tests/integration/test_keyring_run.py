"""`run --keyring` with the stand-in Nomad's `keyring "transit"` block, against OpenBao's real transit engine.

The keyring token is minted with the same login as the server token, written to its file (0600, no trailing
newline), used by the stand-in at every wrapper build, kept by the tracker and replaced in the file when it
dies, with no signal to the agent."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.agent import AgentRun, NotifySocket, keyring_block
from testbed.bao import KEYRING_POLICY, KEYRING_ROLE, SERVER_POLICY, Bao, Certs
from testbed.cli import run_cli
from testbed.config import write_config
from testbed.env import clean_env
from testbed.procs import wait_for

pytestmark = pytest.mark.vault


@pytest.fixture
def ring_server(tmp_path: Path, certs: Certs) -> Iterator[Bao]:
    """A private OpenBao configured for both tokens, with a file audit device (declared: OpenBao refuses one
    enabled through the API) that counts the certificate logins."""
    server = Bao(tmp_path / "bao", certs)
    audit = f'audit "file" "requests" {{\n  options {{\n    file_path = "{tmp_path / "audit.log"}"\n  }}\n}}\n'
    server.config_path.write_text(server.config_path.read_text() + audit)
    try:
        server.start()
        server.configure()
        server.configure_keyring()
        yield server
    finally:
        server.stop()


def cert_logins(tmp_path: Path) -> int:
    entries = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines() if line.strip()]
    return sum(1 for e in entries if e.get("type") == "request" and e["request"]["path"] == "auth/cert/login")


def ring_config(tmp_path: Path, server: Bao, certs: Certs, **overrides: object) -> tuple[Path, Path]:
    token_file = tmp_path / "run" / "keyring-token"
    cfg = write_config(tmp_path / "config.toml", server, certs, keyring=True, keyring_token_file=str(token_file),
                       **overrides)  # fmt: skip
    return cfg, token_file


def tracker_doc(cfg: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((cfg.parent / "state" / "tracker.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return doc


def in_use(cfg: Path, r: AgentRun, timeout: float = 30) -> dict[str, Any]:
    """tracker.json once it says Nomad used the keyring token."""
    doc: dict[str, Any] = wait_for(
        lambda: (d := tracker_doc(cfg)).get("keyring", {}).get("in_use") and d,
        timeout,
        "the tracker to see Nomad use the keyring token",
        detail=lambda: (tracker_doc(cfg), r.stderr[-3000:]),
    )
    return doc


def lookup(server: Bao, token: str) -> dict[str, Any]:
    data: dict[str, Any] = server.client(token).auth.token.lookup_self()["data"]
    return data


def test_both_tokens_one_login_keyring_file_exact_and_used_by_nomad(
    tmp_path: Path, ring_server: Bao, certs: Certs, runs: Callable[..., AgentRun]
) -> None:
    cfg, token_file = ring_config(tmp_path, ring_server, certs)
    r = runs(cfg, ring_server, keyring_token=f"file://{token_file}")
    ready = r.wait_event("keyring_ready")
    assert ready["keys"] == 1
    r.wait_event("validated", lambda e: e["ok"])  # the legacy token too

    raw = token_file.read_bytes()
    assert raw == raw.strip() and raw.startswith(b"s.")  # no trailing newline: Nomad does not trim
    mode = os.stat(token_file).st_mode
    assert stat.S_IMODE(mode) == 0o600 and stat.S_IMODE(os.stat(token_file.parent).st_mode) == 0o700
    info = lookup(ring_server, raw.decode())
    assert set(info["policies"]) == {"default", KEYRING_POLICY} and info["role"] == KEYRING_ROLE and info["orphan"]
    assert SERVER_POLICY not in info["policies"]
    wrapper = r.wait_event("keyring_wrapper")
    assert wrapper["accessor"] == info["accessor"]

    # ONE certificate login served both tokens
    assert cert_logins(tmp_path) == 1

    # the tracker saw Nomad use it (its wrapper renewed it)
    doc = in_use(cfg, r)
    assert doc["keyring"]["accessor"] == info["accessor"] and doc["keyring"]["state"] == "in_use"
    assert raw.decode() not in json.dumps(doc) and raw.decode() not in r.stderr
    assert info["accessor"] in r.stderr


def test_a_revoked_keyring_token_is_replaced_without_a_signal_and_used_at_the_next_rotation_and_restart(
    tmp_path: Path, ring_server: Bao, certs: Certs, runs: Callable[..., AgentRun]
) -> None:
    cfg, token_file = ring_config(tmp_path, ring_server, certs, check_interval="10s")
    rotate = tmp_path / "rotate"
    env = clean_env(FAKE_NOMAD_KEYRING_ROTATE=str(rotate))
    r = runs(cfg, ring_server, keyring_token=f"file://{token_file}", env=env)
    r.wait_event("keyring_ready")
    in_use(cfg, r)
    old = token_file.read_text()
    old_accessor = lookup(ring_server, old)["accessor"]
    ring_server.client().auth.token.revoke_accessor(old_accessor)

    # a rotation before the tracker has looked: Nomad's wrapper cannot use the dead token
    rotate.touch()
    failed = r.wait_event("keyring_rotation_failed")
    assert failed["error"].startswith("root key rotation failed: ") and "403" in failed["error"]

    new = wait_for(lambda: (t := token_file.read_text()) != old and t, 10 + 30, "keyring token replaced")
    assert new == new.strip()
    info = lookup(ring_server, new)
    assert info["accessor"] != old_accessor and KEYRING_POLICY in info["policies"]
    assert r.events("reload") == []  # no SIGHUP: Nomad reads the file at its next wrapper build
    replaced = f"keyring token accessor {old_accessor} replaced by {info['accessor']}"
    wait_for(lambda: replaced in r.stderr, 10, "the replacement logged (accessors only)")

    rotate.touch()
    r.wait_event("keyring_rotated", lambda e: e["phase"] == "rotation")
    builds = r.events("keyring_wrapper")
    assert builds[-1]["accessor"] == info["accessor"] and builds[-1]["use"] == "rotation", (builds, r.stderr)
    assert new not in r.stderr and old not in r.stderr

    # a restart: run reuses the saved keyring token and the agent unwraps both keys with it
    r.stop()
    again = runs(cfg, ring_server, keyring_token=f"file://{token_file}", env=env)
    assert again.wait_event("keyring_ready")["keys"] == 2
    assert token_file.read_text() == new
    assert again.events("keyring_wrapper")[0]["accessor"] == info["accessor"], (again.events(), again.stderr)


def test_legacy_token_off_starts_the_agent_with_the_keyring_token_alone(
    tmp_path: Path, ring_server: Bao, certs: Certs, runs: Callable[..., AgentRun]
) -> None:
    cfg, token_file = ring_config(tmp_path, ring_server, certs, legacy_token=False)
    r = runs(cfg, ring_server, keyring_token=f"file://{token_file}")
    r.wait_event("keyring_ready")
    start = r.wait_event("start")
    assert start["token_source"] == "none" and start["client"] == "noop"  # no server token, none in the env
    assert not (cfg.parent / "run" / "vault-token.hcl").exists()
    assert ring_server.live_server_tokens() == []
    doc = in_use(cfg, r)
    assert doc["legacy"] is False and doc["status"].startswith("keyring token ")

    shown = run_cli("status", "--config", str(cfg), "--format", "json")
    assert shown.code == 0, shown.err
    ring = json.loads(shown.out)["keyring"]
    assert ring["valid"] is True and ring["accessor"] == doc["keyring"]["accessor"] and ring["role"] == KEYRING_ROLE
    assert ring["tracker"]["state"] == "in_use"
    text = run_cli("status", "--config", str(cfg))
    assert "keyring now:  keyring token " in text.out and token_file.read_text() not in text.out + shown.out


@pytest.mark.parametrize("version", ["1.10.1", "1.10.0"])
def test_vault_sealed_at_the_agents_start(
    tmp_path: Path, ring_server: Bao, certs: Certs, runs: Callable[..., AgentRun], version: str
) -> None:
    """The keyring was wrapped before; Vault is sealed when the agent starts again. run starts it anyway after
    degraded_start_after with the saved keyring token; the stand-in cannot build a wrapper (no retry) and waits
    for its keyring: until start_timeout from 1.10.1, for ever up to 1.10.0. STATUS says why."""
    cfg, token_file = ring_config(tmp_path, ring_server, certs, degraded_start_after="1s", check_interval="10s")
    first = runs(cfg, ring_server, keyring_token=f"file://{token_file}")
    first.wait_event("keyring_ready")
    first.stop()
    ring_server.seal()

    notify = NotifySocket(tmp_path / "notify.sock")
    env = clean_env(NOTIFY_SOCKET=str(notify.path), FAKE_NOMAD_KEYRING_VERSION=version, FAKE_NOMAD_START_TIMEOUT="4")
    r = runs(cfg, ring_server, keyring_token=f"file://{token_file}", env=env)
    try:
        notify.wait_for(lambda m: "waiting for Vault to unwrap Nomad's keyring: sealed" in m, 30, "keyring STATUS")
        error = r.wait_event("keyring_error", lambda e: e["phase"] == "start")
        assert error["error"].startswith("root key cannot be decrypted")
        assert r.wait_event("keyring_waiting")["bounded"] is (version == "1.10.1")
        if version == "1.10.1":  # start_timeout (4 s here, 30 s by default), then the server shuts down
            assert r.wait_exit(4 + 30) == 1
            assert r.events("exit")[-1]["reason"] == "keyring"
        else:  # 1.10.0 waits for ever: even with Vault back, this start never reads its keyring
            ring_server.unseal()
            back = notify.wait_for(lambda m: "STATUS=token " in m and "keyring token " in m, 10 + 30, "Vault back")
            assert "in use by Nomad" not in back
            assert r.proc.poll() is None and r.events("keyring_ready") == []
        assert "sealed" in r.stderr and "degraded start with saved keyring token accessor" in r.stderr
    finally:
        notify.close()


def test_break_glass_after_a_full_restart_with_vault_as_a_nomad_job(
    tmp_path: Path, durable: Bao, certs: Certs, runs: Callable[..., AgentRun]
) -> None:
    """docs/keyring.md's break-glass procedure, walked against the stand-in: the keyring's Vault ran as a job of
    this cluster, the whole cluster went down; Nomad (1.10.1+) gives up reading its keyring after start_timeout.
    1. start Vault by hand from its data, outside Nomad; 2. unseal it (unseal --once); 3. start Nomad: run
    finds Vault, the agent unwraps its keyring; 4. stop the hand-started Vault: Nomad keeps its keys in memory
    and can schedule the Vault job again."""
    from testbed.unsealing import write_keys

    durable.configure_keyring()
    cfg, token_file = ring_config(tmp_path, durable, certs, degraded_start_after="1s", check_interval="5s")
    env = clean_env(FAKE_NOMAD_KEYRING_VERSION="1.10.1", FAKE_NOMAD_START_TIMEOUT="3")
    first = runs(cfg, durable, keyring_token=f"file://{token_file}", env=env)
    first.wait_event("keyring_ready")
    first.stop()
    durable.stop()  # the full restart: no Nomad, so no Vault job

    trapped = runs(cfg, durable, keyring_token=f"file://{token_file}", env=env)
    assert trapped.wait_exit(1 + 3 + 30) == 1  # degraded start, then start_timeout: Nomad gives up
    assert "failed to wait for keyring decryption" in trapped.events("keyring_error")[-1]["error"]

    durable.launch()  # 1. by hand, from the Vault job's data
    keys = write_keys(tmp_path / "unseal-keys", [durable.unseal_key])
    unsealed = run_cli("unseal", "--config", str(cfg), "--once", "--keys-file", str(keys))  # 2.
    assert unsealed.code == 0, unsealed.err
    wait_for(durable.active, 60, "the hand-started Vault active")
    back = runs(cfg, durable, keyring_token=f"file://{token_file}", env=env)  # 3.
    assert back.wait_event("keyring_ready")["keys"] == 1
    durable.stop()  # 4. the job takes over from here; Nomad holds its keys in memory
    assert back.proc.poll() is None and back.events("exit") == []


def test_the_tracker_says_when_the_agent_reads_the_keyring_token_from_another_file(
    tmp_path: Path, ring_server: Bao, certs: Certs, runs: Callable[..., AgentRun]
) -> None:
    cfg, token_file = ring_config(tmp_path, ring_server, certs, legacy_token=False)
    other = tmp_path / "elsewhere" / "token"
    notify = NotifySocket(tmp_path / "notify.sock")
    env = clean_env(NOTIFY_SOCKET=str(notify.path), FAKE_NOMAD_KEYRING_VERSION="1.10.0")
    r = runs(cfg, ring_server, keyring_token=f"file://{other}", env=env)
    try:
        said = f"Nomad reads the keyring token from {other}, but run writes it to {token_file}"
        notify.wait_for(lambda m: said in m, 30, "the agent config problem in STATUS")
        assert said in r.stderr
        failed = r.wait_event("keyring_rotation_failed", lambda e: e["phase"] == "initialize")
        assert "error reading file" in failed["error"]  # a new cluster: its first root key cannot be wrapped
    finally:
        notify.close()


def test_a_first_start_with_vault_sealed_gets_its_keyring_token_once_vault_is_back(
    tmp_path: Path, ring_server: Bao, certs: Certs, runs: Callable[..., AgentRun]
) -> None:
    """No saved keyring token and Vault sealed: run starts the agent after degraded_start_after without one (Nomad
    cannot read its keyring: STATUS says so), and the tracker mints it into the file as soon as Vault is back."""
    cfg, token_file = ring_config(tmp_path, ring_server, certs, legacy_token=False, degraded_start_after="1s",
                                  check_interval="5s")  # fmt: skip
    ring_server.seal()
    notify = NotifySocket(tmp_path / "notify.sock")
    env = clean_env(NOTIFY_SOCKET=str(notify.path), FAKE_NOMAD_KEYRING_VERSION="1.10.0")
    r = runs(cfg, ring_server, keyring_token=f"file://{token_file}", env=env)
    try:
        notify.wait_for(lambda m: "waiting for Vault to unwrap Nomad's keyring: sealed" in m, 30, "waiting STATUS")
        assert not token_file.exists()
        assert "degraded start without a keyring token" in r.stderr
        ring_server.unseal()
        raw = wait_for(lambda: token_file.exists() and token_file.read_bytes(), 5 + 30, "the keyring token minted")
        assert raw == raw.strip() and KEYRING_POLICY in lookup(ring_server, raw.decode())["policies"]
        assert r.events("reload") == []
    finally:
        notify.close()


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ('  tls_skip_verify = false\n', 'failed to decode key "tls_skip_verify" to string'),
        (None, "only one server.keyring can be active in Nomad Community Edition"),
    ],
)
def test_the_stand_in_refuses_what_nomad_refuses_in_keyring_blocks(
    tmp_path: Path, certs: Certs, extra: str | None, said: str
) -> None:
    """config_parse.go v2.0.5:637-640 (a bare boolean), encrypter_ce.go v2.0.5:28-31 (two active blocks)."""
    import subprocess

    from testbed.agent import FAKE_NOMAD

    block = keyring_block("https://127.0.0.1:1", certs.ca_path, "file:///nonexistent")  # Nomad stops before Vault
    if extra is not None:
        block = block.replace("  active = true\n", "  active = true\n" + extra)
    else:
        block += 'keyring "aead" {\n  active = true\n}\n'
    hcl = tmp_path / "agent.hcl"
    hcl.write_text(f'data_dir = "{tmp_path / "data"}"\n' + block)
    report = tmp_path / "report.jsonl"
    proc = subprocess.run([sys.executable, str(FAKE_NOMAD), "agent", "-config", str(hcl)], capture_output=True,
                          text=True, timeout=30, env=clean_env(FAKE_NOMAD_REPORT=str(report)), check=False)  # fmt: skip
    assert proc.returncode == 1
    assert said in proc.stderr


def test_the_tracker_renews_the_keyring_token_when_nobody_else_does(
    tmp_path: Path, ring_server: Bao, certs: Certs, runs: Callable[..., AgentRun]
) -> None:
    """Nomad renews the keyring token only when it builds a wrapper (start, rotation): between those the tracker
    keeps it alive below a quarter of its period. A 30 s period here, so the test sees it happen."""
    period = 30
    ring_server.client().write("auth/token/roles/nomad-keyring-mint", token_period=f"{period}s")
    cfg, token_file = ring_config(tmp_path, ring_server, certs, legacy_token=False, period=f"{period}s",
                                  min_ttl="5s", check_interval="5s")  # fmt: skip
    r = runs(cfg, ring_server, keyring_token=f"file://{token_file}")
    in_use(cfg, r)
    token = token_file.read_text()
    doc = wait_for(lambda: "by the tracker" in (d := tracker_doc(cfg)).get("status", "") and d, 2 * period + 5,
                   "the tracker's own renewal", detail=lambda: (tracker_doc(cfg), r.stderr[-2000:]))  # fmt: skip
    assert doc["keyring"]["state"] == "in_use"
    wait_for(lambda: lookup(ring_server, token)["ttl"] > period / 4, 5, "a TTL above the threshold")
    assert token_file.read_text() == token  # the same token, kept alive: not replaced


def test_a_dead_keyring_token_never_stops_the_watchdog(
    tmp_path: Path, ring_server: Bao, certs: Certs, runs: Callable[..., AgentRun]
) -> None:
    """A restart cannot mend the keyring token (the tracker replaces it in the file) and a Nomad restarted while it
    is dead cannot read its keyring: the WATCHDOG keeps going, STATUS says what is wrong."""
    import time

    cfg, token_file = ring_config(tmp_path, ring_server, certs, check_interval="2s")
    notify = NotifySocket(tmp_path / "notify.sock")
    env = clean_env(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="400000")
    r = runs(cfg, ring_server, keyring_token=f"file://{token_file}", env=env)
    try:
        in_use(cfg, r)
        notify.wait_for(lambda m: "WATCHDOG=1" in m, 10, "first WATCHDOG")
        ring_server.client().delete("auth/token/roles/nomad-keyring-mint")  # replacing it cannot work now
        ring_server.client().auth.token.revoke_accessor(lookup(ring_server, token_file.read_text())["accessor"])
        notify.wait_for(lambda m: "keyring token" in m and "DEAD since" in m, 2 + 15, "STATUS: keyring token dead")
        notify.messages.clear()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            notify.drain()
        assert any("WATCHDOG=1" in m for m in notify.messages), notify.messages
        assert r.proc.poll() is None and not r.events("reload")
    finally:
        notify.close()
