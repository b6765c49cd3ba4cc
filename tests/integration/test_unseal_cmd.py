"""`unseal` against the real 3-node OpenBao raft cluster (shared per session) and its extra nodes.

`--once` runs as a real process; the watcher too (with a real AF_UNIX notify socket standing in for
systemd's), stopped by its PID. Requests to a node are counted, where it matters, by a TLS-terminating
proxy in front of it (`CountingProxy`): the unsealer sees the proxy as the node, one upstream
connection per client connection, so the "sealed on purpose" rule still holds through it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nomad_vault_token.core import at_rest, config
from nomad_vault_token.vault.node import NodeClient, NodeUnreachable
from testbed import procs
from testbed.bao import Certs
from testbed.cli import CLI, assert_one_line_error, run_cli
from testbed.env import clean_env
from testbed.procs import holds_for, wait_for
from testbed.proxy import CountingProxy
from testbed.raft_cluster import THRESHOLD, Node, RaftCluster
from testbed.unsealing import (
    Watcher,
    name,
    once,
    proxies_fixture,  # noqa: F401 - the `proxies` fixture
    standby,
    watchers_fixture,  # noqa: F401 - the `watchers` fixture
    write_cfg,
    write_keys,
)

pytestmark = [pytest.mark.vault, pytest.mark.slow]


# ---- helpers: testbed/unsealing.py (shared with the seal migration and KMS tests) ------------------------


def unique(prefix: str) -> str:
    """A name for an extra node: its data directory lives in the session cluster's work directory, and
    another test of the session may have initialised one of the same name there."""
    return f"{prefix}-{secrets.token_hex(3)}"


def fake_keys(n: int = 2) -> list[str]:
    """Shares of no cluster: 32 random bytes and a distinct x coordinate each, as OpenBao's look."""
    return [(secrets.token_bytes(32) + bytes([i + 1])).hex() for i in range(n)]


# ---- --once ------------------------------------------------------------------------------------------


def test_once_unseals_a_restarted_node_with_two_of_three_keys(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path
) -> None:
    c = raft_cluster
    i = standby(c)
    c.restart(i)
    assert c.node(i).sealed()
    keys = write_keys(tmp_path / "keys", c.keys[1:3])  # two of the three shares, not the first two
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    cfg = write_cfg(tmp_path / "c.toml", certs, [n.addr for n in c.nodes], keys, metrics_dir=str(metrics))
    r = once(cfg)
    assert r.code == 0, r
    assert not c.node(i).sealed()
    assert c.leader() is not None
    first = r.out.splitlines()[0]
    assert first.startswith("3/3 unsealed, leader 127.0.0.1:"), r.out
    assert f"{name(c.node(i))}: unsealed" in r.out
    # its view: unseal.json for `status`, and the metrics
    status = run_cli("status", "--format", "json", "--config", str(cfg))
    doc = json.loads(status.out)
    assert doc["unsealer"]["status"] == first and doc["unsealer"]["running"] is False, doc
    assert {n["state"] for n in doc["unsealer"]["nodes"]} == {"unsealed"}
    prom = (metrics / "nomad_vault_token_unseal.prom").read_text()
    assert "nomad_vault_token_unseal_leader_present 1.0" in prom
    assert f'nomad_vault_token_unseal_node_sealed{{node="{name(c.node(i))}"}} 0.0' in prom
    assert f'nomad_vault_token_unseal_last_unseal_timestamp_seconds{{node="{name(c.node(i))}"}}' in prom
    # JSON: the envelope, no key anywhere
    again = once(cfg, "--format", "json")
    view = json.loads(again.out)
    assert again.code == 0 and view["version"] == 1 and view["cluster"] == "leader" and view["keys_held"] == 2
    assert not any(k in again.out for k in c.keys)


def test_raft_configuration_needs_a_token(raft_cluster: RaftCluster) -> None:
    """Why `unseal` does not extend its node list from the raft configuration: without a token the
    endpoint refuses, and the unsealer holds none (nor should it)."""
    c = raft_cluster
    leader = c.leader()
    assert leader is not None
    assert c.node(leader).get("sys/storage/raft/configuration").code == 403
    assert c.node(leader).get("sys/storage/raft/configuration", token=c.root_token).code == 200


def test_once_with_keys_of_another_cluster_exits_65_after_at_most_threshold_requests(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path, proxies: Callable[[Node], CountingProxy]
) -> None:
    c = raft_cluster
    i = standby(c)
    c.restart(i)
    proxy = proxies(c.node(i))
    others = [n.addr for j, n in enumerate(c.nodes, start=1) if j != i]
    keys = write_keys(tmp_path / "keys", fake_keys())
    cfg = write_cfg(tmp_path / "c.toml", certs, [*others, proxy.addr], keys)
    r = once(cfg)
    assert r.code == 65, r
    assert "wrong keys" in r.out.splitlines()[0], r.out
    assert "Vault refused the keys (invalid key)" in r.out
    assert proxy.unseals == THRESHOLD, f"{proxy.unseals} sys/unseal requests, want {THRESHOLD}"
    status = c.seal_status(i)
    assert (status["sealed"], status["progress"], status["nonce"]) == (True, 0, ""), "progress reset"
    assert proxy.requests < 20, proxy.requests


def test_once_leaves_uninitialised_and_auto_unseal_nodes_alone(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path, proxies: Callable[[Node], CountingProxy]
) -> None:
    c = raft_cluster
    uninit = c.uninitialized_node(unique("uninit"))
    static = c.static_node(unique("static"))
    static.seal()
    p_uninit, p_static = proxies(uninit), proxies(static)
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(tmp_path / "c.toml", certs, [*(n.addr for n in c.nodes), p_uninit.addr, p_static.addr], keys)
    r = once(cfg, "--format", "json")
    view = json.loads(r.out)
    states = {n["address"]: n for n in view["nodes"]}
    assert states[p_uninit.addr]["state"] == "uninitialized", view
    assert states[p_static.addr]["state"] == "auto_unseal", view
    assert states[p_static.addr]["message"] == "auto-unseal node sealed: check its seal provider (static)"
    assert states[p_static.addr]["auto_unseal"] is True
    assert (p_uninit.unseals, p_static.unseals) == (0, 0), "no key, no reset sent to either"
    assert p_uninit.requests > 0 and p_static.requests > 0, "both were probed"
    assert uninit.seal_status()["initialized"] is False and static.sealed()
    assert r.code == 0, r  # a leader, and every reachable Shamir node unsealed
    assert "auto-unseal sealed" in view["status"]


def test_transit_node_whose_provider_is_frozen_is_unreachable_not_sealed(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path
) -> None:
    c = raft_cluster
    provider = c.transit_provider(unique("transit-provider"))
    node = c.transit_node(provider, unique("transit"))
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(tmp_path / "c.toml", certs, [node.addr], keys, request_timeout="1s")
    provider.node.freeze()
    try:
        node.stop()
        node.launch(wait=False)
        r = once(cfg, "--format", "json", "--settle-timeout", "3s")
    finally:
        provider.node.thaw()
    view = json.loads(r.out)
    assert "nodes" in view, r
    assert view["nodes"][0]["state"] == "unreachable", view
    assert view["nodes"][0]["sealed"] is None
    assert r.code == 69, r
    assert view["cluster"] == "quorum_lost"


def test_hold_file_keeps_every_key_back(raft_cluster: RaftCluster, certs: Certs, tmp_path: Path) -> None:
    c = raft_cluster
    i = standby(c)
    c.restart(i)
    hold = tmp_path / "hold"
    hold.touch()
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(tmp_path / "c.toml", certs, [n.addr for n in c.nodes], keys, unseal_hold_file=str(hold))
    r = once(cfg, "--settle-timeout", "3s")
    assert r.code == 75, r
    assert "held" in r.out and "HOLD" in r.out, r.out
    assert c.node(i).sealed() and c.seal_status(i)["progress"] == 0
    hold.unlink()
    assert once(cfg).code == 0
    assert not c.node(i).sealed()


def test_a_hung_node_does_not_delay_unsealing_another(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path
) -> None:
    """The hung node is a node of its own (frozen: it accepts connections, never answers), listed
    first; freezing a cluster member would also cost the cluster its quorum."""
    c = raft_cluster
    restarted = standby(c)
    c.restart(restarted)
    hung = c.uninitialized_node(unique("hung"))
    hung.freeze()
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(tmp_path / "c.toml", certs, [hung.addr, *(n.addr for n in c.nodes)], keys, request_timeout="10s")
    began = time.monotonic()
    proc = subprocess.Popen(
        [*CLI, "unseal", "--once", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        node = c.node(restarted)
        wait_for(lambda: not node.sealed(), 8, "the restarted node unsealed while the other hangs", interval=0.1)
        took = time.monotonic() - began
        assert took < 8, f"unsealed after {took:.1f}s: the hung node's 10s timeout held it up"
        assert proc.poll() is None, "still waiting on the hung node: it is probed in parallel"
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, (out, err)  # a leader, every reachable Shamir node unsealed
        assert out.startswith("3/4 unsealed, leader") and "unreachable: timeout after 10s" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        hung.thaw()
    print(f"unsealed {took:.1f}s after start; --once took {time.monotonic() - began:.1f}s")


def test_key_file_readable_by_others_is_refused(raft_cluster: RaftCluster, certs: Certs, tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys", raft_cluster.keys[:2], mode=0o644)
    cfg = write_cfg(tmp_path / "c.toml", certs, [n.addr for n in raft_cluster.nodes], keys)
    r = once(cfg)
    assert_one_line_error(r, 78, str(keys), "0644", "chmod 600")
    assert not any(k in r.err + r.out for k in raft_cluster.keys)
    none = write_cfg(tmp_path / "n.toml", certs, [raft_cluster.node(1).addr], None)
    assert_one_line_error(once(none), 78, "--keys-file")


# ---- the watcher ------------------------------------------------------------------------------------------


def test_watcher_unseals_a_restarted_node_within_one_interval(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path, watchers: Callable[..., Watcher]
) -> None:
    c = raft_cluster
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(tmp_path / "c.toml", certs, [n.addr for n in c.nodes], keys, unseal_interval="3s")
    w = watchers(cfg)
    ready = w.notify.wait_for(lambda m: "READY=1" in m, 30, "READY")
    assert "STATUS=3/3 unsealed, leader 127.0.0.1:" in ready, ready
    i = standby(c)
    c.restart(i)
    restarted = time.monotonic()
    wait_for(lambda: not c.node(i).sealed(), 10, "the watcher unsealing the restarted node", interval=0.05)
    took = time.monotonic() - restarted
    assert took <= 3 + 1, f"unsealed {took:.1f}s after the restart, interval 3s"
    w.wait_status(lambda s: s.startswith("3/3 unsealed, leader"), 20, "3/3 unsealed with a leader")
    assert c.leader() is not None
    assert w.proc.poll() is None
    assert w.stop() == 0


def test_watcher_probes_a_restarting_node_at_once_not_at_its_interval(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path, watchers: Callable[..., Watcher]
) -> None:
    """With a 60s interval, a restarted node is unsealed long before the next steady probe: its
    kept-alive connection closing makes it due, and it is probed every 0.25s until it answers sealed.
    Stopped for longer (down across a steady probe), it is likewise unsealed as soon as it is back."""
    c = raft_cluster
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(tmp_path / "c.toml", certs, [n.addr for n in c.nodes], keys, unseal_interval="60s")
    w = watchers(cfg)
    w.notify.wait_for(lambda m: "READY=1" in m, 30, "READY")
    i = standby(c)
    c.restart(i)
    wait_for(lambda: not c.node(i).sealed(), 20, "unsealed well before the 48-60s steady probe", interval=0.05)
    c.stop(i)
    w.wait_status(lambda s: f"unreachable: {name(c.node(i))}" in s, 20, "the stopped node seen unreachable")
    c.start_node(i)
    wait_for(lambda: not c.node(i).sealed(), 20, "unsealed once back after being down", interval=0.05)
    assert w.proc.poll() is None


def test_watcher_follows_a_changed_node_list_file_and_keeps_what_it_knows(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path, watchers: Callable[..., Watcher]
) -> None:
    """`unseal_nodes_file` rewritten while the watcher runs (as a Nomad template re-renders it): a node
    added is watched, a node removed is not, and a node kept keeps its memory: sealed on purpose
    before the change, still left alone after it."""
    c = raft_cluster
    leader = c.leader()
    assert leader is not None
    a, b = (i for i in (1, 2, 3) if i != leader)
    nodes = tmp_path / "nodes"
    nodes.write_text(f"# rendered\n{c.node(leader).addr}\n{c.node(a).addr}\n")
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(tmp_path / "c.toml", certs, [], keys, unseal_interval="1s", unseal_nodes_file=str(nodes))
    cfg.write_text(cfg.read_text().replace("unseal_nodes = []\n", ""))
    w = watchers(cfg)
    w.wait_status(lambda s: s.startswith("2/2 unsealed, leader"), 30, "2/2 unsealed")
    c.seal(a)
    w.wait_status(lambda s: f"sealed on purpose: {name(c.node(a))}" in s, 20, "node a sealed on purpose")
    nodes.write_text(f"{c.node(leader).addr}\n{c.node(a).addr}\n{c.node(b).addr}\n")  # b added
    w.wait_status(lambda s: s.startswith("2/3 unsealed") and "sealed on purpose" in s, 20, "b watched, a still not")
    assert c.node(a).sealed() and c.seal_status(a)["progress"] == 0, "a kept its sealed-on-purpose memory"
    nodes.write_text(f"{c.node(leader).addr}\n{c.node(b).addr}\n")  # a removed: no longer watched
    w.wait_status(lambda s: s.startswith("2/2 unsealed, leader"), 20, "a removed from the list")
    c.restart(b)
    wait_for(lambda: not c.node(b).sealed(), 20, "b (added) unsealed by the watcher after a restart", interval=0.1)
    assert "unseal nodes reloaded from" in w.log()
    nodes.write_text("# an empty render\n")
    # The status is 2/2 already: wait for the watcher to have read the empty render, then check it kept the list.
    wait_for(lambda: "names no node" in w.log(), 20, "the watcher reading the empty render", interval=0.1)
    w.wait_status(lambda s: s.startswith("2/2 unsealed"), 20, "the list kept after an empty render")


def test_watcher_full_cluster_restart_reports_no_leader_until_the_election(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path, watchers: Callable[..., Watcher]
) -> None:
    c = raft_cluster
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(tmp_path / "c.toml", certs, [n.addr for n in c.nodes], keys, unseal_interval="1s")
    w = watchers(cfg)
    w.notify.wait_for(lambda m: "READY=1" in m, 30, "READY")
    for i in (1, 2, 3):
        c.stop(i)
    for i in (1, 2, 3):
        c.start_node(i)
    w.wait_status(lambda s: s.startswith("no leader yet: 3/3 unsealed"), 30, "no leader yet: 3/3 unsealed")
    w.wait_status(lambda s: s.startswith("3/3 unsealed, leader"), 60, "a leader after the election")
    assert c.leader() is not None


def test_watcher_leaves_a_node_sealed_through_the_api_until_it_restarts(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path, watchers: Callable[..., Watcher]
) -> None:
    c = raft_cluster
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(tmp_path / "c.toml", certs, [n.addr for n in c.nodes], keys, unseal_interval="1s")
    w = watchers(cfg)
    w.wait_status(lambda s: s.startswith("3/3 unsealed"), 30, "3/3 unsealed")
    i = standby(c)
    c.seal(i)
    w.wait_status(lambda s: "sealed on purpose" in s, 10, "sealed on purpose")

    def still_sealed_no_key() -> None:
        status = c.seal_status(i)
        assert status["sealed"] and status["progress"] == 0, status

    holds_for(still_sealed_no_key, 4)  # four rounds
    c.restart(i)
    wait_for(lambda: not c.node(i).sealed(), 10, "the same node unsealed once restarted", interval=0.1)
    assert "sealed while running" in w.log()


def test_watcher_leaves_someone_elses_progress_then_resets_it_once_stale(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path, watchers: Callable[..., Watcher]
) -> None:
    c = raft_cluster
    i = standby(c)
    c.restart(i)
    node = c.node(i)
    node.submit_key(c.keys[2])  # another operator, half-way
    theirs = c.seal_status(i)
    assert theirs["progress"] == 1
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(
        tmp_path / "c.toml", certs, [n.addr for n in c.nodes], keys, unseal_interval="1s", unseal_stale_after="5s"
    )
    w = watchers(cfg)
    w.wait_status(lambda s: "someone else unsealing" in s, 20, "someone else's progress seen")

    def left_alone() -> None:  # while it is fresh
        now = c.seal_status(i)
        assert (now["sealed"], now["progress"], now["nonce"]) == (True, 1, theirs["nonce"]), now

    holds_for(left_alone, 2.5)
    wait_for(lambda: not node.sealed(), 20, "unsealed after resetting the stale progress", interval=0.1)
    assert "resetting it" in w.log()


def test_keys_appear_in_no_argv_environment_log_or_exception(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path, watchers: Callable[..., Watcher]
) -> None:
    c = raft_cluster
    forms = set(c.keys) | set(c.keys_base64) | {k.upper() for k in c.keys}
    keys = write_keys(tmp_path / "keys", c.keys_base64[:2])  # base64, as operator init also prints them
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    cfg = write_cfg(
        tmp_path / "c.toml", certs, [n.addr for n in c.nodes], keys, unseal_interval="1s", metrics_dir=str(metrics)
    )
    w = watchers(cfg, "--verbose")
    w.wait_status(lambda s: s.startswith("3/3 unsealed"), 30, "3/3 unsealed")
    i = standby(c)
    c.restart(i)
    wait_for(lambda: not c.node(i).sealed(), 10, "unsealed by the watcher", interval=0.1)
    leaks = []
    for pid, cmd in ((p.pid, p.cmdline) for p in procs.scan()):
        if any(k in cmd for k in forms):
            leaks.append(f"cmdline of pid {pid}")
        with contextlib.suppress(OSError):
            if any(k in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace") for k in forms):
                leaks.append(f"environment of pid {pid}")
    w.stop()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != keys and any(k in path.read_text(errors="replace") for k in forms):
            leaks.append(f"file {path}")
    assert "unsealed" in w.log()
    assert leaks == [], leaks
    # exceptions: a key sent to a node that does not answer, or that refuses it
    settings = config.load(cfg, environ={})
    dead = NodeClient(f"https://127.0.0.1:{c.node(1).cluster_port + 0}", settings, 1.0)
    for client in (dead, NodeClient("https://127.0.0.1:1", settings, 1.0)):
        with pytest.raises(NodeUnreachable) as caught:
            client.unseal(c.keys[0])
        chain: list[BaseException] = []
        exc: BaseException | None = caught.value
        while exc is not None and len(chain) < 10:
            chain.append(exc)
            exc = exc.__cause__ or exc.__context__
        assert chain == [caught.value], f"no chain to keep a request (and its body) alive: {chain}"
        assert not any(k in repr(caught.value) + str(caught.value) for k in forms)
        client.close()


def test_split_custody_says_so_and_contributes(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path
) -> None:
    c = raft_cluster
    i = standby(c)
    c.restart(i)
    a = write_cfg(tmp_path / "a.toml", certs, [n.addr for n in c.nodes], write_keys(tmp_path / "ka", c.keys[:1]))
    b = write_cfg(tmp_path / "b.toml", certs, [n.addr for n in c.nodes], write_keys(tmp_path / "kb", c.keys[1:2]))
    first = once(a, "--settle-timeout", "2s")
    assert first.code == 75 and "holding 1 of 2 keys (split custody)" in first.out, first
    assert c.seal_status(i)["progress"] == 1
    second = once(b)
    assert second.code == 0, second
    assert not c.node(i).sealed()


def test_base64_and_hex_keys_in_one_file_work(raft_cluster: RaftCluster, certs: Certs, tmp_path: Path) -> None:
    c = raft_cluster
    i = standby(c)
    c.restart(i)
    assert base64.b64decode(c.keys_base64[0]).hex() == c.keys[0]
    keys = write_keys(tmp_path / "keys", [c.keys_base64[0], c.keys[1]])
    cfg = write_cfg(tmp_path / "c.toml", certs, [n.addr for n in c.nodes], keys)
    assert once(cfg).code == 0
    assert not c.node(i).sealed()


# ---- under a real systemd ----------------------------------------------------------------------------


def key_forms(c: RaftCluster) -> list[bytes]:
    """Every form a key could take in a file: hex, base64, raw."""
    return [k.encode() for k in c.keys + c.keys_base64] + [bytes.fromhex(k) for k in c.keys]


def files_holding(root: Path, needles: list[bytes]) -> list[Path]:
    """The regular files under `root` (symbolic links not followed) that contain any of `needles`."""
    found = []
    for directory, _, names in os.walk(root):
        for n in names:
            path = Path(directory) / n
            try:
                if not path.is_file() or path.is_symlink():
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if any(needle in data for needle in needles):
                found.append(path)
    return sorted(found)


def _sandbox_reason() -> str | None:
    import sys

    import nomad_vault_token
    from testbed import systemd_sandbox

    reason = systemd_sandbox.unavailable()
    if reason:
        return reason
    try:
        systemd_sandbox.hidden([Path(sys.prefix), Path(sys.base_prefix), Path(nomad_vault_token.__file__).parent])
    except ValueError as exc:
        return f"systemd sandbox: {exc}"
    return None if (Path(sys.executable).parent / "nomad-vault-token").exists() else "no nomad-vault-token in this venv"


@pytest.mark.skipif(_sandbox_reason() is not None, reason=_sandbox_reason() or "")
def test_shipped_unit_ready_status_and_no_watchdog_while_nothing_can_be_unsealed(
    raft_cluster: RaftCluster,
) -> None:
    """The shipped vault-unseal.service (hardening and all) under a real systemd: READY and StatusText
    from the watcher; with WatchdogSec=3s it stays up while it can unseal, and the watchdog ends it when
    no node answers. The keys come as the unit says, through LoadCredentialEncrypted= of a real encrypted
    credential (`systemd-creds encrypt --with-key=host`, the keys on its standard input, a host key of the
    test's own): it unseals a restarted node from it, the decrypted keys live only in the unit's ramfs
    credentials directory while it runs, and afterwards no file in the test's directories nor in the
    sandbox's /run holds them."""
    import shutil
    import sys

    import nomad_vault_token
    from nomad_vault_token.setup import systemd_unit
    from testbed import systemd_sandbox
    from testbed.systemd_sandbox import Props, Sandbox

    c = raft_cluster
    bin_path = Path(sys.executable).parent / "nomad-vault-token"
    binds = systemd_sandbox.hidden([Path(sys.prefix), Path(sys.base_prefix), Path(nomad_vault_token.__file__).parent])
    work = Path("/var/lib") / f"nvt-unseal-test-{secrets.token_hex(4)}"  # the sandbox's /tmp is private
    work.mkdir(mode=0o755)
    sandbox: Sandbox | None = None
    try:
        ca = work / "ca.pem"
        shutil.copy(c.certs.ca_path, ca)
        host_key = work / "credential.secret"
        plain = ("# unseal keys\n" + "\n".join(c.keys[:2]) + "\n").encode()
        cred = systemd_sandbox.encrypt_credential("unseal-keys", plain, work / "unseal-keys.cred", host_key)
        units = work / "units"
        systemd_sandbox.write_target(units, "nvt-test.target")
        systemd_sandbox.mask(units, "network-online.target")
        shipped = (Path(__file__).resolve().parents[2] / "systemd" / "vault-unseal.service").read_text()
        assert "\nLoadCredentialEncrypted=unseal-keys:/etc/nomad-vault-token/unseal-keys.cred\n" in shipped
        assert "\nLoadCredential=" not in shipped
        template = shipped.replace("/etc/nomad-vault-token/unseal-keys.cred", str(cred))
        closed = f"https://127.0.0.1:{c.node(1).cluster_port + 0}"  # raft's port: no Vault API there
        for unit_name, nodes in (("vault-unseal.service", [n.addr for n in c.nodes]), ("dead.service", [closed])):
            stem = unit_name.removesuffix(".service")
            cfg = work / f"{stem}.toml"
            cfg.write_text(
                f"unseal_nodes = {json.dumps(nodes)}\nca_cert = {json.dumps(str(ca))}\n"
                'unseal_interval = "1s"\nrequest_timeout = "1s"\n'
            )
            (units / unit_name).write_text(systemd_unit.render(template, bin_path=bin_path, config=cfg))
            (units / f"{unit_name}.d").mkdir()
            (units / f"{unit_name}.d" / "test.conf").write_text(
                "[Unit]\nDefaultDependencies=no\n[Service]\n"
                f"StateDirectory=\nStateDirectory={(work / stem / 'state').relative_to('/var/lib')}\n"
                "WatchdogSec=3s\nRestartSec=1\nLimitCORE=0\n"
                # this checkout's Python and code, which the shipped ProtectHome=/PrivateTmp= may hide
                + systemd_sandbox.code_reachable(Path(__file__).resolve().parents[2])
                + f"StandardOutput=append:{work / stem}.log\nStandardError=inherit\n"
            )
        env = {systemd_sandbox.CREDENTIAL_SECRET_ENV: str(host_key)}  # never the machine's host key
        sandbox = Sandbox(units, "nvt-test.target", work / "boot.log", binds=binds, env=env)
        sandbox.up()
        sandbox.ctl("start", "--no-block", "vault-unseal.service")

        def log(stem: str) -> str:
            try:
                return (work / f"{stem}.log").read_text(errors="replace")
            except FileNotFoundError:
                return ""

        try:
            props = sandbox.wait(
                "vault-unseal.service", lambda p: p["ActiveState"] == "active", 30, "active (READY)", ("MainPID", "ExecMainStatus", "StatusErrno")
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nunit log: {log('vault-unseal')[-3000:]}") from None
        assert props["StatusText"].startswith("3/3 unsealed, leader 127.0.0.1:"), (props, log("vault-unseal"))
        # WATCHDOG=1 keeps coming while it can unseal: 6 s is two WatchdogSec.
        sandbox.holds(
            "vault-unseal.service",
            lambda p: (p["ActiveState"], p["NRestarts"]) == ("active", "0"),
            6,
            "active, no restart",
        )
        i = standby(c)
        c.restart(i)
        wait_for(lambda: not c.node(i).sealed(), 10, "the unit unsealing a restarted node", interval=0.1)
        # the keys it used: decrypted by systemd into the unit's credentials directory, in memory (ramfs);
        # the search below finds them there while the unit runs (so it can fail)
        inside = Path(f"/proc/{sandbox.pid}/root")
        creds_dir = "/run/credentials/vault-unseal.service"
        mountinfo = Path(f"/proc/{sandbox.pid}/mountinfo").read_text()
        assert at_rest.mount_fs_type(creds_dir + "/unseal-keys", mountinfo) == "ramfs", mountinfo
        assert files_holding(inside / "run", key_forms(c)) == [inside / creds_dir.lstrip("/") / "unseal-keys"]
        assert AT_REST not in log("vault-unseal")  # a credential: no warning
        # dead.service: READY after its first round, its STATUS says why, and no WATCHDOG: systemd ends it.
        sandbox.ctl("start", "--no-block", "dead.service")
        ready = sandbox.wait("dead.service", lambda p: p["ActiveState"] == "active", 30, "active (READY)")
        assert ready["StatusText"].startswith("quorum lost: 0/1 unsealed, 1 needed; unreachable"), ready
        seen: list[Props] = []

        def watchdog_fired(p: Props) -> bool:
            seen.append(p)
            return p["Result"] == "watchdog" or int(p["NRestarts"] or 0) >= 1

        sandbox.wait("dead.service", watchdog_fired, 30, "ended by the watchdog")
        texts = {p["StatusText"] for p in seen}
        assert any(t.startswith("quorum lost: 0/1 unsealed") and "unreachable" in t for t in texts), (
            seen,
            log("dead"),
        )
        assert "watchdog" in {p["Result"] for p in seen} | {sandbox.show("dead.service", "Result")["Result"]}, (
            seen[-3:],
            log("dead")[-2000:],
        )
        assert "Traceback" not in log("vault-unseal") + log("dead")
        assert not any(k in log("vault-unseal") + log("dead") for k in c.keys)
        # stopped: systemd removes the credentials; the plain text is nowhere, in memory or on disk
        sandbox.ctl("stop", "vault-unseal.service", "dead.service")
        assert files_holding(inside / "run", key_forms(c)) == []
        assert files_holding(work, key_forms(c)) == []
        assert cred.read_bytes() and files_holding(cred.parent, [plain[-40:]]) == []
    finally:
        if sandbox is not None:
            sandbox.down()
        shutil.rmtree(work, ignore_errors=True)


def test_node_client_numbers_its_connections_over_plain_http_too(tmp_path: Path) -> None:
    """The connection number changes exactly when the client had to connect again, http:// included
    (a number per request would make every node sealed on purpose look restarted)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = json.dumps({"type": "shamir", "initialized": True, "sealed": True, "t": 2, "n": 3}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = config.load(None, {"vault_addr": "http://127.0.0.1:1"}, environ={})
        client = NodeClient(f"http://127.0.0.1:{server.server_address[1]}", settings, 2.0)
        for _ in range(3):
            assert client.seal_status()["sealed"] is True
        assert client.connection == 1, "one kept-alive connection for three requests"
        client.close()
        client.seal_status()
        assert client.connection == 2, "a new connection, a new number"
        client.close()
    finally:
        server.shutdown()
        server.server_close()


def test_keys_are_read_again_when_their_file_changes(tmp_path: Path) -> None:
    """A Nomad template re-rendering the keys: new keys bump the generation (a node that refused the old
    ones gets the new ones); a file made unusable keeps the keys held, and says why once."""
    from nomad_vault_token.unseal.watcher import Keys

    first, second = fake_keys(2), fake_keys(2)
    path = write_keys(tmp_path / "keys", first)
    settings = config.load(None, {"unseal_keys_file": str(path), "vault_addr": "https://127.0.0.1:1"}, environ={})
    keys = Keys(settings)
    assert (len(keys.keys), keys.generation) == (2, 0)
    keys.refresh()
    assert keys.generation == 0, "unchanged file, same generation"
    os.utime(path, ns=(1, 1))
    keys.refresh()
    assert keys.generation == 0, "same keys rewritten: same generation"
    write_keys(path, second)
    keys.refresh()
    assert keys.generation == 1 and [k.reveal() for k in keys.keys] == second
    os.chmod(path, 0o644)
    keys.refresh()
    assert keys.generation == 1 and [k.reveal() for k in keys.keys] == second and "0644" in keys.problem


def test_once_with_keys_from_a_systemd_credential(raft_cluster: RaftCluster, certs: Certs, tmp_path: Path) -> None:
    """--credential NAME reads $CREDENTIALS_DIRECTORY/NAME, as systemd's LoadCredential=NAME:... provides it
    (read-only, private to the unit: the sandbox's systemd cannot, see the unit test above)."""
    c = raft_cluster
    i = standby(c)
    c.restart(i)
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    write_keys(creds / "unseal-keys", c.keys[:2], mode=0o400)
    cfg = write_cfg(tmp_path / "c.toml", certs, [n.addr for n in c.nodes], None, unseal_credential="unseal-keys")
    r = run_cli("unseal", "--once", "--config", str(cfg), env=clean_env(CREDENTIALS_DIRECTORY=str(creds)))
    assert r.code == 0, r
    assert "a plain file on persistent storage" not in r.err, r.err  # a credential: never warned about
    assert not c.node(i).sealed()
    missing = run_cli("unseal", "--once", "--config", str(cfg))
    assert_one_line_error(missing, 78, "$CREDENTIALS_DIRECTORY is not set")


# ---- keys at rest: the one-line warning (issue 28, section 2) --------------------------------------------

AT_REST = "a plain file on persistent storage"


def test_a_plain_keys_file_on_disk_is_warned_about_once_in_one_line_and_a_tmpfs_one_is_not(
    raft_cluster: RaftCluster, certs: Certs, tmp_path: Path
) -> None:
    import shutil
    import tempfile


    c = raft_cluster
    nodes = [n.addr for n in c.nodes]
    on_disk = write_keys(tmp_path / "keys", c.keys[:2])
    fs = at_rest.fs_type(on_disk)
    if fs in at_rest.MEMORY_FS or not fs:
        pytest.skip(f"{tmp_path} is on {fs or 'an unknown file system'} here: no persistent storage to warn about")
    disk_cfg = write_cfg(tmp_path / "disk.toml", certs, nodes, on_disk)
    i = standby(c)
    c.restart(i)
    r = once(disk_cfg)
    assert r.code == 0 and not c.node(i).sealed(), r
    said = [line for line in r.err.splitlines() if AT_REST in line]
    assert len(said) == 1, r.err
    assert f"unseal keys {on_disk}: {AT_REST} ({fs}): " in said[0] and "LoadCredentialEncrypted=" in said[0], said
    checked = run_cli("check", "--config", str(disk_cfg))
    rows = [line for line in checked.out.splitlines() if "unseal keys at rest" in line]
    assert len(rows) == 1 and rows[0].startswith("WARN") and AT_REST in rows[0], checked.out

    # in memory (a tmpfs, as Nomad's secrets/): nothing to say
    shm = Path("/dev/shm")
    if at_rest.fs_type(shm) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm here")
    memory = Path(tempfile.mkdtemp(prefix="nvt-keys-", dir=shm))
    try:
        in_memory = write_keys(memory / "keys", c.keys[:2])
        mem_cfg = write_cfg(tmp_path / "memory.toml", certs, nodes, in_memory)
        quiet = once(mem_cfg)
        assert quiet.code == 0 and AT_REST not in quiet.err, quiet
        passed = run_cli("check", "--config", str(mem_cfg))
        assert f"PASS  unseal keys at rest           {in_memory}: on tmpfs" in passed.out, passed.out
    finally:
        shutil.rmtree(memory)
    assert not any(k in r.err + r.out + quiet.err + checked.out for k in c.keys)
