"""AWS KMS auto-unseal for real: a 3-node raft cluster on OpenBao 2.6.2 (its server still has `awskms`
built in; installed by the test bed beside the venv's 2.7.2) against moto's KMS server, both owned by
this test and stopped by PID.

A Shamir-to-awskms migration driven by `unseal --once --migrate` (the test does the operator's
restarts and step-down); the nodes then classified `auto-unseal (awskms)` and the cluster "on
auto-unseal"; then KMS down (moto frozen) while a node restarts: reported, never sent a key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.bao import Certs
from testbed.kms import MotoKMS, Unavailable, openbao_binary
from testbed.procs import wait_for
from testbed.proxy import CountingProxy
from testbed.raft_cluster import RaftCluster
from testbed.unsealing import (
    STEP,
    all_unsealed_on,
    canary,
    leader,
    leaks,
    name,
    once,
    restart_with,
    step_down,
    write_cfg,
    write_keys,
)

pytestmark = [pytest.mark.vault, pytest.mark.slow]

TIMEOUT = "10s"  # request_timeout: a node restarted on a new seal can be slow to answer under load


@pytest.fixture
def kms(tmp_path: Path) -> Iterator[MotoKMS]:
    server = MotoKMS(tmp_path)
    try:
        server.start()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster_262(tmp_path: Path, certs: Certs) -> Iterator[RaftCluster]:
    try:
        binary = openbao_binary("2.6.2")
    except Unavailable as exc:
        pytest.skip(str(exc))
    c = RaftCluster(tmp_path / "raft", certs, binary=binary)
    try:
        c.start()
        active = c.node(leader(c))
        assert active.seal_status()["version"] == "2.6.2"
        assert active.post("sys/mounts/canary", {"type": "kv"}, token=c.root_token).code == 204
        assert active.post("canary/data", {"value": "written before the migration"}, token=c.root_token).code == 204
        yield c
    finally:
        c.stop_all()


def test_shamir_to_awskms_migration_driven_by_unseal_migrate_then_kms_down(
    cluster_262: RaftCluster, kms: MotoKMS, certs: Certs, tmp_path: Path
) -> None:
    c = cluster_262
    proxies = [CountingProxy(n, certs) for n in c.nodes]
    try:
        keys = write_keys(tmp_path / "keys", c.keys[:2])
        # a node just started on awskms answers once it has asked moto (slow on a loaded machine)
        cfg = write_cfg(tmp_path / "c.toml", certs, [p.addr for p in proxies], keys, request_timeout=TIMEOUT)
        outputs: list[str] = []

        # the migration: each standby restarted on awskms, fed by `unseal --once --migrate`
        old = leader(c)
        for i in (1, 2, 3):
            if i == old:
                continue
            restart_with(c.node(i), kms.seal())
            pending = once(cfg, "--settle-timeout", "3s")  # settled at once: no key can help
            assert pending.code == 75, pending
            said = f"{name(proxies[i - 1])}: seal migration pending (shamir -> awskms): run unseal with --migrate"
            assert said in pending.out, pending.out
            fed = once(cfg, "--migrate", "--settle-timeout", "5s")
            assert f"{name(proxies[i - 1])}: migrated, waiting for the active node to step down" in fed.out, fed.out
            outputs += [pending.out, pending.err, fed.out, fed.err]
        assert [p.unseals for p in proxies] == [0 if i == old else 2 for i in (1, 2, 3)]
        step_down(c, old)
        wait_for(lambda: c.leader() not in (None, old), STEP, "a migrated standby active", interval=0.2)
        restart_with(c.node(old), kms.seal())
        wait_for(lambda: all_unsealed_on(c, "awskms"), STEP, "every node unsealed on awskms", interval=0.2)
        done = once(cfg, "--format", "json")
        view = json.loads(done.out)
        assert done.code == 0, done
        assert view["status"].startswith(
            "cluster on auto-unseal (awskms): nothing to unseal; the keys held are recovery keys now; leader"
        ), view
        assert all(n["message"].startswith("auto-unseal (awskms): unsealed") for n in view["nodes"]), view
        assert canary(c) == "written before the migration"
        outputs += [done.out, done.err]

        # KMS down while a standby restarts: reported, never fed a key
        i = next(j for j in (1, 2, 3) if j != c.leader())
        before = proxies[i - 1].unseals
        kms.freeze()
        try:
            node = c.node(i)
            node.stop()
            node.launch(wait=False)  # with KMS hanging it may not open its listener at all
            down = once(cfg, "--format", "json", "--settle-timeout", "5s")
            seen = next(n for n in json.loads(down.out)["nodes"] if n["address"] == proxies[i - 1].addr)
            assert seen["state"] in ("unreachable", "auto_unseal"), seen
            if seen["state"] == "auto_unseal":
                assert seen["message"] == "auto-unseal node sealed: check its seal provider (awskms)", seen
            assert name(proxies[i - 1]) in json.loads(down.out)["status"], down.out  # named in STATUS
            assert proxies[i - 1].unseals == before, "no key to an auto-unseal node whose KMS is down"
            outputs += [down.out, down.err]
        finally:
            kms.thaw()
        wait_for(lambda: all_unsealed_on(c, "awskms"), 2 * STEP, "the node unsealed itself once KMS is back", 0.3)
        assert proxies[i - 1].unseals == before
        assert leaks(c, *outputs) == []
    finally:
        for p in proxies:
            p.close()
