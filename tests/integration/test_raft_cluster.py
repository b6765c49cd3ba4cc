"""The raft cluster fixture against the real OpenBao, and the server behaviour unseal.plan relies on.

Timings here (2 shared cores, OpenBao 2.7.2): the three processes answer in 0.4 s, node-1 is active
2.3 s after launch, the others joined and unsealed by ~4.5 s, and all three are voters (what `start()`
waits for) at ~12 s with autopilot's `server_stabilization_time` at 1 s (~22 s at its default 10 s).
A node restarts in 0.3 s; a new leader is elected ~1.5 s after the old one stops; after a full-cluster
restart, 2-3.5 s after the second node is unsealed. This module's 13 tests take ~50 s in all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

from nomad_vault_token.unseal.plan import Context, NodeMemory, Probe, UnsealAnswer, after_unseal, decide
from testbed.bao import Certs
from testbed.procs import holds_for, wait_for
from testbed.raft_cluster import SHARES, THRESHOLD, Node, RaftCluster

pytestmark = [pytest.mark.vault, pytest.mark.slow]


class Prober:
    """What the unsealer's prober is to do, reduced: one kept-alive HTTPS connection per node,
    numbered by how many times it had to connect (a new number means a new connection)."""

    def __init__(self, ca: Path) -> None:
        connects: dict[tuple[str, int], int] = {}
        self.connects = connects

        class Counting(HTTPSConnection):
            def connect(self) -> None:
                connects[(self.host, self.port)] = connects.get((self.host, self.port), 0) + 1
                super().connect()

        class Pool(HTTPSConnectionPool):
            ConnectionCls = Counting

        class Adapter(HTTPAdapter):
            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                super().init_poolmanager(*args, **kwargs)
                self.poolmanager.pool_classes_by_scheme = {**self.poolmanager.pool_classes_by_scheme, "https": Pool}

        self.ca = str(ca)
        self.session = requests.Session()
        self.session.mount("https://", Adapter(pool_maxsize=1))

    def connection(self, node: Node) -> int:
        return self.connects.get(("127.0.0.1", node.port), 0)

    def probe(self, node: Node, timeout: float = 3) -> Probe:
        try:
            status = self.session.get(f"{node.addr}/v1/sys/seal-status", verify=self.ca, timeout=timeout)
            health = self.session.get(f"{node.addr}/v1/sys/health", verify=self.ca, timeout=timeout)
        except requests.RequestException as exc:
            return Probe.unreachable(node.name, type(exc).__name__)
        return Probe.answered(node.name, status.json(), health.status_code, self.connection(node))

    def unseal(self, node: Node, key: str) -> UnsealAnswer:
        r = self.session.post(f"{node.addr}/v1/sys/unseal", json={"key": key}, verify=self.ca, timeout=10)
        return UnsealAnswer.from_response(r.status_code, r.json())

    def close(self) -> None:
        self.session.close()


@pytest.fixture
def prober(certs: Certs) -> Iterator[Prober]:
    p = Prober(certs.ca_path)
    yield p
    p.close()


def unseal_round(prober: Prober, node: Node, keys: list[str], memory: NodeMemory, now: float) -> tuple[str, NodeMemory]:
    """Probe, decide, send keys while the plan says so: one interval of the unsealer, for one node."""
    ctx = Context(now=now, keys_held=len(keys))
    d = decide(prober.probe(node), memory, ctx)
    memory = d.memory
    for _ in range(len(keys) + 1):
        if not d.sends_key:
            break
        assert d.key_index is not None and d.action == "submit_next_key"
        answer = prober.unseal(node, keys[d.key_index])
        memory = after_unseal(memory, d.key_index, answer, ctx, prober.connection(node))
        d = decide(prober.probe(node), memory, ctx)
        memory = d.memory
    return d.state, memory


def test_cluster_forms_with_one_leader(raft_cluster: RaftCluster) -> None:
    c = raft_cluster
    assert c.formed_in < 90, f"formed in {c.formed_in:.1f}s"
    print(f"cluster formed in {c.formed_in:.1f}s")
    assert len(c.keys) == SHARES and len(c.keys_base64) == SHARES and c.root_token.startswith("s.")
    codes = sorted(n.health_code() or 0 for n in c.nodes)
    assert codes == [200, 429, 429]
    leader = c.leader()
    assert leader is not None and c.node(leader).health_code() == 200
    servers = c.raft_servers()
    assert sorted(s["node_id"] for s in servers) == ["node-1", "node-2", "node-3"]
    assert all(s["voter"] for s in servers)
    status = c.seal_status(1)
    assert (status["type"], status["t"], status["n"], status["sealed"]) == ("shamir", THRESHOLD, SHARES, False)
    assert len({c.seal_status(i)["cluster_id"] for i in (1, 2, 3)}) == 1
    assert len({n.pid for n in c.nodes}) == 3 and len({n.workdir / "raft" for n in c.nodes}) == 3


def test_restarted_node_comes_back_sealed_and_the_plan_unseals_it(raft_cluster: RaftCluster, prober: Prober) -> None:
    c = raft_cluster
    standby = next(i for i in (1, 2, 3) if i != c.leader())
    node = c.node(standby)
    state, memory = unseal_round(prober, node, c.keys[:2], NodeMemory(), now=0)
    assert state == "unsealed" and memory.unsealed_on == 1
    old_pid = node.pid
    c.restart(standby)
    assert node.pid != old_pid
    status = c.seal_status(standby)
    assert (status["sealed"], status["initialized"], status["progress"], status["nonce"]) == (True, True, 0, "")
    assert "cluster_id" not in status, "a sealed node does not say which cluster it belongs to"
    assert node.health_code() == 503
    assert c.leader() is not None, "2 of 3 keep the quorum"
    state, memory = unseal_round(prober, node, c.keys[1:3], memory, now=10)
    assert state == "unsealed", "a restarted node (new connection) is unsealed, with 2 of the 3 keys"
    assert prober.connection(node) == 2
    wait_for(lambda: node.health_code() == 429, 30, "the restarted node a standby again")


def test_sealed_through_the_api_is_left_alone_until_restarted(raft_cluster: RaftCluster, prober: Prober) -> None:
    """The seal-status of a node sealed on purpose is the restarted node's, byte for byte; only the
    kept-alive connection tells them apart: it survives sys/seal, and a restart needs a new one."""
    c = raft_cluster
    standby = next(i for i in (1, 2, 3) if i != c.leader())
    node = c.node(standby)
    state, memory = unseal_round(prober, node, c.keys[:2], NodeMemory(), now=0)
    assert state == "unsealed"
    c.seal(standby)
    sealed_on_purpose = c.seal_status(standby)
    for now in (1, 2, 3):
        state, memory = unseal_round(prober, node, c.keys[:2], memory, now=now)
        assert state == "sealed_on_purpose"
    time.sleep(2)  # idle, as between probes
    state, memory = unseal_round(prober, node, c.keys[:2], memory, now=4)
    assert state == "sealed_on_purpose" and prober.connection(node) == 1 and node.sealed()
    c.restart(standby)
    assert c.seal_status(standby) == sealed_on_purpose
    state, memory = unseal_round(prober, node, c.keys[:2], memory, now=5)
    assert state == "unsealed" and prober.connection(node) == 2


def test_keys_of_another_cluster_refused_at_the_threshold(raft_cluster: RaftCluster, tmp_path: Path) -> None:
    c = raft_cluster
    other = RaftCluster(tmp_path / "other", c.certs, size=1)
    try:
        other.start()
        standby = next(i for i in (1, 2, 3) if i != c.leader())
        node = c.node(standby)
        c.restart(standby)
        first = node.submit_key(other.keys[0])
        assert first.code == 200 and first.body["progress"] == 1 and len(first.body["nonce"]) == 36
        assert node.seal_status() == first.body, "sys/unseal answers with seal-status's shape"
        again = node.submit_key(other.keys[0])
        assert (again.code, again.body["progress"]) == (200, 1), "the same key twice is ignored"
        refused = node.submit_key(other.keys[1])
        assert refused.code == 400
        assert refused.body["errors"] == [
            "unable to retrieve stored keys: invalid key: failed to decrypt keys from storage: "
            "cipher: message authentication failed"
        ]
        assert UnsealAnswer.from_response(refused.code, refused.body).invalid_key
        after = node.seal_status()
        assert (after["sealed"], after["progress"], after["nonce"]) == (True, 0, ""), "progress reset"
    finally:
        other.stop_all()


def test_someone_elses_progress_and_reset(raft_cluster: RaftCluster) -> None:
    c = raft_cluster
    standby = next(i for i in (1, 2, 3) if i != c.leader())
    node = c.node(standby)
    c.restart(standby)
    node.submit_key(c.keys[2])
    status = node.seal_status()
    assert status["progress"] == 1 and status["nonce"]
    reset = node.reset_unseal()
    assert (reset.code, reset.body["progress"], reset.body["nonce"]) == (200, 0, "")


def test_full_cluster_restart_no_leader_until_the_election(raft_cluster: RaftCluster) -> None:
    c = raft_cluster
    for i in (1, 2, 3):
        c.stop(i)
    for i in (1, 2, 3):
        c.start_node(i)
    assert all(c.seal_status(i)["sealed"] for i in (1, 2, 3))
    assert [n.health_code() for n in c.nodes] == [503, 503, 503]
    c.unseal(1)
    assert c.node(1).health_code() == 429 and c.leader() is None, "one of three unsealed: a standby, no leader"
    # sys/leader may still name the leader raft remembers, sealed now: only sys/health 200 means a leader
    said = c.node(1).get("sys/leader").body
    assert said["is_self"] is False
    if said.get("leader_address"):
        named = next(n for n in c.nodes if n.addr == said["leader_address"])
        assert named.health_code() == 503, "the leader sys/leader names is sealed"
    c.unseal(2)
    began = time.monotonic()
    wait_for(lambda: c.leader() in (1, 2), 60, "a leader once two of three are unsealed", interval=0.1)
    print(f"leader elected {time.monotonic() - began:.1f}s after the second node was unsealed")


def test_quorum_lost_leaves_an_unsealed_standby_and_no_leader(raft_cluster: RaftCluster) -> None:
    c = raft_cluster
    leader = c.leader()
    assert leader is not None
    for i in (1, 2, 3):
        if i != leader:
            c.stop(i)
    node = c.node(leader)
    wait_for(lambda: node.health_code() == 429, 30, "the lone node to step down", interval=0.2)
    assert not node.sealed() and c.leader() is None


def test_frozen_node_times_out(raft_cluster: RaftCluster, prober: Prober) -> None:
    c = raft_cluster
    standby = next(i for i in (1, 2, 3) if i != c.leader())
    c.freeze(standby)
    began = time.monotonic()
    p = prober.probe(c.node(standby), timeout=1)
    assert not p.reachable and p.problem in ("ReadTimeout", "ConnectTimeout", "ConnectionError")
    assert time.monotonic() - began < 3
    c.thaw(standby)
    assert prober.probe(c.node(standby)).reachable


def test_uninitialized_node(raft_cluster: RaftCluster) -> None:
    node = raft_cluster.uninitialized_node()
    status = node.seal_status()
    assert (status["initialized"], status["sealed"], status["t"], status["n"]) == (False, True, 0, 0)
    assert node.health_code() == 501
    d = decide(Probe.answered(node.name, status, 501, 1), NodeMemory(), Context(now=0, keys_held=2))
    assert d.state == "uninitialized" and not d.sends_key


def test_static_seal_node_is_auto_unseal(raft_cluster: RaftCluster) -> None:
    node = raft_cluster.static_node()
    status = node.seal_status()
    assert (status["type"], status["recovery_seal"], status["sealed"]) == ("static", True, False)
    node.seal()
    status = node.seal_status()
    assert (status["type"], status["sealed"], node.health_code()) == ("static", True, 503)
    d = decide(Probe.answered(node.name, status, 503, 1), NodeMemory(), Context(now=0, keys_held=2))
    assert (d.state, d.action) == ("auto_unseal", "alert") and not d.sends_key
    assert d.message == "auto-unseal node sealed: check its seal provider (static)"
    refused = node.submit_key(raft_cluster.keys[0])  # what a Shamir key does to it: nothing good
    assert refused.code == 400 and "recovery key does not match" in refused.body["errors"][0]
    node.stop()
    node.launch()
    wait_for(node.active, 30, "the static-seal node unsealing itself after a restart", interval=0.2)


def test_transit_node_with_a_frozen_provider_is_unreachable_not_sealed(raft_cluster: RaftCluster) -> None:
    c = raft_cluster
    provider = c.transit_provider()
    node = c.transit_node(provider)
    status = node.seal_status()
    assert (status["type"], status["recovery_seal"], status["sealed"]) == ("transit", True, False)
    provider.node.freeze()
    try:
        logged = node.log_path.stat().st_size
        node.stop()
        node.launch(wait=False)
        # A node not started yet refuses too: first see this one past its configuration (OpenBao logs its
        # proxy environment before it sets up the seal, and opens its listener only after the seal).
        wait_for(lambda: "proxy environment" in node.log_path.read_text()[logged:], 30, "the node past its config")

        def refusing() -> None:
            with pytest.raises(requests.ConnectionError):
                node.get("sys/seal-status", timeout=2)

        holds_for(refusing, 1.5, interval=0.5)
        assert node.running, "it waits for its provider, listener closed"
    finally:
        provider.node.thaw()
    wait_for(node.active, 60, "the transit node unsealing itself once its provider answers", interval=0.2)
    node.seal()
    status = node.seal_status()
    d = decide(Probe.answered(node.name, status, 503, 1), NodeMemory(), Context(now=0, keys_held=2))
    assert d.message == "auto-unseal node sealed: check its seal provider (transit)"


def test_heal_and_stop_all_by_pid(raft_cluster: RaftCluster, tmp_path: Path) -> None:
    c = raft_cluster
    extra = c.uninitialized_node("extra")
    c.stop(2)
    c.freeze(3)
    c.heal()
    assert not extra.running and c.extra == []
    assert sorted(n.health_code() or 0 for n in c.nodes) == [200, 429, 429]
    small = RaftCluster(tmp_path / "small", c.certs, size=1)
    small.start()
    nodes = [small.node(1), small.uninitialized_node()]
    small.freeze(1)  # a frozen process is thawed before SIGTERM, or it would never act on it
    small.stop_all()
    assert all(n.proc is not None and n.proc.returncode is not None for n in nodes)


def test_node_numbers_are_names(raft_cluster: RaftCluster) -> None:
    assert [raft_cluster.node(i).name for i in (1, 2, 3)] == ["node-1", "node-2", "node-3"]
    with pytest.raises(AssertionError):
        raft_cluster.node(0)
