"""Seal migrations driven by `unseal --migrate`, on real 3-node OpenBao 2.7.2 raft clusters this module
owns (a migration changes a cluster for good: never the session's shared one).

The test plays the operator (a new `seal` stanza, restarts, `sys/step-down` with the root token the
test bed holds); the unsealer feeds the keys. What OpenBao does at each step is in unseal/plan.py's
docstring. Every cluster is stopped by PID (`RaftCluster.stop_all`), even when a test fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.bao import Certs
from testbed.cli import run_cli
from testbed.procs import wait_for
from testbed.proxy import CountingProxy
from testbed.raft_cluster import Node, RaftCluster, static_key, static_seal
from testbed.unsealing import (
    STEP,
    Watcher,
    all_unsealed_on,
    canary,
    files_text,
    leader,
    leaks,
    name,
    once,
    proxies_fixture,  # noqa: F401 - the `proxies` fixture
    restart_with,
    step_down,
    watchers_fixture,  # noqa: F401 - the `watchers` fixture
    write_cfg,
    write_keys,
)

pytestmark = [pytest.mark.vault, pytest.mark.slow]

TIMEOUT = "10s"  # request_timeout: a node just restarted on a new seal can be slow to answer under load


@pytest.fixture
def cluster(tmp_path: Path, certs: Certs) -> Iterator[RaftCluster]:
    """A formed 3-node Shamir cluster of this test's own, with a canary in a KV v1 mount."""
    c = RaftCluster(tmp_path / "raft", certs)
    try:
        c.start()
        active = c.node(leader(c))
        assert active.post("sys/mounts/canary", {"type": "kv"}, token=c.root_token).code == 204
        assert active.post("canary/data", {"value": "written before the migration"}, token=c.root_token).code == 204
        yield c
    finally:
        c.stop_all()


def unseal_view(cfg: Path) -> dict[str, Any]:
    path = cfg.parent / "state" / "unseal.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc


def node_state(cfg: Path, node: Node) -> str:
    for n in unseal_view(cfg).get("nodes", []):
        if n["address"] == node.addr:
            return str(n["state"])
    return ""


def wait_node_state(cfg: Path, node: Node, state: str, what: str) -> None:
    wait_for(lambda: node_state(cfg, node) == state, STEP, f"{node.name} {what} ({state})", interval=0.1)


def seal_types(c: RaftCluster) -> list[str]:
    return [str(n.seal_status().get("type")) for n in c.nodes]


def rolling_migration(c: RaftCluster, seal: str, cfg: Path, migrated: Callable[[Node], None]) -> None:
    """Every standby restarted with `seal` (`migrated(node)` waits until it is migrated), then the active
    node stepped down and restarted with `seal` too."""
    old = leader(c)
    for i in (1, 2, 3):
        if i != old:
            restart_with(c.node(i), seal)
            migrated(c.node(i))
    step_down(c, old)
    wait_for(lambda: c.leader() not in (None, old), STEP, "a migrated standby to become active", interval=0.2)
    restart_with(c.node(old), seal)


# ---- the rolling migration, there and back, with the watcher -------------------------------------------


def test_rolling_migration_to_static_and_back_with_the_watcher(
    cluster: RaftCluster, certs: Certs, tmp_path: Path, watchers: Callable[..., Watcher]
) -> None:
    c = cluster
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    cfg = write_cfg(
        tmp_path / "c.toml",
        certs,
        [n.addr for n in c.nodes],
        keys,
        unseal_interval="1s",
        metrics_dir=str(metrics),
        request_timeout=TIMEOUT,
    )
    w = watchers(cfg, "--migrate")
    w.wait_status(lambda s: s.startswith("3/3 unsealed, leader"), STEP, "3/3 unsealed")
    key_file = static_key(tmp_path / "static.key")

    # Shamir -> static
    def migrated_by_the_watcher(node: Node) -> None:
        wait_node_state(cfg, node, "migrated", "migrated by the watcher, waiting for the step-down")

    rolling_migration(c, static_seal(key_file), cfg, migrated_by_the_watcher)
    wait_for(lambda: all_unsealed_on(c, "static"), STEP, "every node unsealed on static", interval=0.2)
    w.wait_status(lambda s: s.startswith("cluster on auto-unseal (static): nothing to unseal"), STEP, "all static")
    view = unseal_view(cfg)
    assert view["status"].startswith(
        "cluster on auto-unseal (static): nothing to unseal; the keys held are recovery keys now; leader "
    ), view
    assert {n["message"].split(":")[0] for n in view["nodes"]} == {"auto-unseal (static)"}, view
    assert canary(c) == "written before the migration"
    log = w.log()
    assert "migrated, waiting for the active node to step down: bao operator step-down" in log, log[-3000:]
    assert "migrated to its new seal" in log

    # a full restart: every node unseals itself
    for n in c.nodes:
        n.stop()
    for n in c.nodes:
        n.launch(wait=False)
    wait_for(lambda: all_unsealed_on(c, "static") and c.leader() is not None, 2 * STEP, "auto-unsealed", interval=0.3)
    assert canary(c) == "written before the migration"

    # static -> Shamir: the stanza disabled, the same keys (recovery keys now) sent with migrate
    rolling_migration(c, static_seal(key_file, disabled=True), cfg, migrated_by_the_watcher)
    # the old active node comes back on Shamir, sealed: the watcher unseals it the ordinary way
    wait_for(lambda: all_unsealed_on(c, "shamir"), STEP, "every node unsealed on Shamir", interval=0.2)
    w.wait_status(lambda s: s.startswith("3/3 unsealed, leader"), STEP, "3/3 unsealed on Shamir")
    assert canary(c) == "written before the migration"
    i = next(j for j in (1, 2, 3) if j != c.leader())
    c.restart(i)
    wait_for(lambda: not c.node(i).sealed(), STEP, "a restarted Shamir node unsealed by the watcher", interval=0.1)

    assert w.stop() == 0
    log = w.log()
    assert "(static -> shamir)" in log, log[-3000:]
    assert leaks(c, log, files_text(tmp_path / "state", metrics)) == []


# ---- without --migrate; a node killed mid-migration -------------------------------------------------------


def test_without_migrate_the_migrating_node_gets_nothing_then_a_node_killed_mid_migration(
    cluster: RaftCluster, certs: Certs, tmp_path: Path, proxies: Callable[[Node], CountingProxy]
) -> None:
    c = cluster
    old = leader(c)
    first, second = (i for i in (1, 2, 3) if i != old)
    seal = static_seal(static_key(tmp_path / "static.key"))
    restart_with(c.node(first), seal)
    proxy = proxies(c.node(first))
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    nodes = [proxy.addr if i == first else n.addr for i, n in enumerate(c.nodes, start=1)]
    cfg = write_cfg(tmp_path / "c.toml", certs, nodes, keys, metrics_dir=str(metrics), request_timeout=TIMEOUT)
    said = f"{name(proxy)}: seal migration pending (shamir -> static): run unseal with --migrate"

    r = once(cfg)
    assert r.code == 75, (r.out, r.err)
    assert said in r.out.splitlines()[0], r.out  # the STATUS line
    assert f"  {said}" in r.out, r.out  # the node's own line
    assert said in r.err, r.err  # the log
    j = once(cfg, "--format", "json")
    view = json.loads(j.out)
    assert j.code == 75 and said in view["status"], view
    pending = next(n for n in view["nodes"] if n["address"] == proxy.addr)
    assert pending["state"] == "migration_pending" and pending["migration_pending"] is True, pending
    status = run_cli("status", "--config", str(cfg))
    assert said in status.out, status
    prom = (metrics / "nomad_vault_token_unseal.prom").read_text()
    assert f'nomad_vault_token_unseal_node_migration_pending{{node="{name(proxy)}"}} 1.0' in prom, prom
    assert f'nomad_vault_token_unseal_node_migration_pending{{node="{name(c.node(second))}"}} 0.0' in prom
    assert proxy.unseals == 0, "no key (nor reset) to a node waiting for a migration without --migrate"
    assert proxy.requests > 0, "it was probed"
    assert c.seal_status(first)["migration"] is True and c.seal_status(first)["progress"] == 0

    # --migrate: the threshold's worth of keys, with migrate; then it waits for the step-down
    m = once(cfg, "--migrate", "--settle-timeout", "10s")
    assert m.code == 75, m
    assert f"{name(proxy)}: migrated, waiting for the active node to step down: bao operator step-down" in m.out
    assert proxy.unseals == 2, proxy.unseals
    assert c.node(first).get("sys/seal-status").code == 500

    # killed while it waits, started again on the new stanza: a new process, waiting for the keys again
    restart_with(c.node(first), seal, kill=True)
    assert c.seal_status(first)["migration"] is True
    again = once(cfg, "--migrate", "--settle-timeout", "10s")
    assert again.code == 75 and "migrated, waiting for the active node" in again.out, (again.out, again.err)
    assert proxy.unseals == 4, "the threshold again, for the new process; nothing more"

    # the rest of the procedure
    restart_with(c.node(second), seal)
    assert once(cfg, "--migrate", "--settle-timeout", "10s").code == 75
    step_down(c, old)
    wait_for(lambda: c.leader() not in (None, old), STEP, "a migrated standby active", interval=0.2)
    # the old active node, on its old stanza, soon refuses to serve the migrated storage
    wait_for(lambda: c.node(old).get("sys/seal-status").code == 500, STEP, "the old active node's 500", interval=0.2)
    halfway = once(cfg, "--migrate", "--settle-timeout", "3s")
    assert "still on the old seal after the migration: restart it with the new seal stanza" in halfway.out, halfway
    restart_with(c.node(old), seal)
    wait_for(lambda: all_unsealed_on(c, "static"), STEP, "every node on static", interval=0.2)
    done = once(cfg)
    assert done.code == 0, done
    assert done.out.startswith("cluster on auto-unseal (static): nothing to unseal; the keys held are recovery keys")
    assert canary(c) == "written before the migration"
    assert proxy.unseals == 4
    outputs = [r.out, r.err, j.out, m.out, m.err, again.out, done.out, status.out]
    assert leaks(c, *outputs, files_text(tmp_path / "state", metrics)) == []


# ---- one node: the KMS seed's own case (issue 28, section 1) --------------------------------------------


@pytest.fixture
def one_node(tmp_path: Path, certs: Certs) -> Iterator[RaftCluster]:
    """A single raft node (Shamir 3/2), initialised and active, with a canary: nobody to step down for."""
    c = RaftCluster(tmp_path / "one", certs, size=1)
    try:
        c.start()
        active = c.node(1)
        assert active.post("sys/mounts/canary", {"type": "kv"}, token=c.root_token).code == 204
        assert active.post("canary/data", {"value": "written before the migration"}, token=c.root_token).code == 204
        yield c
    finally:
        c.stop_all()


STEP_DOWN = "step-down"  # the advice that must never reach a node that is, or becomes, the active one


def test_one_node_once_migrate_settles_on_the_active_node_without_step_down_advice(
    one_node: RaftCluster, certs: Certs, tmp_path: Path
) -> None:
    """A single raft node restarted with a static seal, then `unseal --once --migrate`: the node takes the
    migrate keys, becomes active and completes the migration itself. `--once` waits for that and exits 0
    (before the fix: 75 and `migrated, waiting for the active node to step down`)."""
    c = one_node
    node = c.node(1)
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(tmp_path / "c.toml", certs, [node.addr], keys, request_timeout=TIMEOUT)
    restart_with(node, static_seal(static_key(tmp_path / "static.key")))
    assert c.seal_status(1)["migration"] is True

    r = once(cfg, "--migrate", "--settle-timeout", "30s")
    assert r.code == 0, (r.out, r.err)
    assert r.out.startswith(
        f"cluster on auto-unseal (static): nothing to unseal; the keys held are recovery keys now; leader {name(node)}"
    ), r.out
    assert STEP_DOWN not in r.out and STEP_DOWN not in r.err, (r.out, r.err)
    s = c.seal_status(1)
    assert (s["type"], s["sealed"], s["migration"]) == ("static", False, False), s
    assert canary(c) == "written before the migration"
    assert leaks(c, r.out, r.err, files_text(tmp_path / "state")) == []


def test_one_node_watcher_migrates_it_and_its_status_never_advises_a_step_down(
    one_node: RaftCluster, certs: Certs, tmp_path: Path, watchers: Callable[..., Watcher]
) -> None:
    c = one_node
    node = c.node(1)
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    cfg = write_cfg(tmp_path / "c.toml", certs, [node.addr], keys, unseal_interval="1s", request_timeout=TIMEOUT)
    w = watchers(cfg, "--migrate")
    w.wait_status(lambda s: s.startswith("1/1 unsealed, leader"), STEP, "1/1 unsealed")
    restart_with(node, static_seal(static_key(tmp_path / "static.key")))
    w.wait_status(lambda s: s.startswith("cluster on auto-unseal (static): nothing to unseal"), STEP, "on static")
    assert w.stop() == 0
    statuses = [m for m in w.notify.drain() if "STATUS=" in m]
    assert not [s for s in statuses if STEP_DOWN in s], statuses
    assert STEP_DOWN not in w.log(), w.log()[-3000:]
    assert "migrated to its new seal" in w.log()
    assert canary(c) == "written before the migration"
