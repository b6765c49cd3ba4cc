"""Total loss to serving, on a real 3-node OpenBao raft cluster: `snapshot restore latest` from the S3 test server
(`rclone serve s3`) and the steps it prints, beside the same recovery with `bao operator raft snapshot restore`
alone (the snapshot fetched from the same server unverified, a throwaway init and unseal by hand).

    .venv/bin/python -m bench.restore               # 64 MiB of data (the issue's target: <= 60 s)
    .venv/bin/python -m bench.restore --quick       # 4 MiB: a smoke run

Both variants start from the same loss: every node stopped, every raft data directory deleted, three empty
nodes started (the clock starts when they answer). Then: the restore into node-1; node-1 restarted; unsealed
with the snapshot's keys (`unseal --once`, the tool's unsealer, in both variants); node-2 and node-3 joined and
unsealed; the canary read back on the active node. Each step's seconds are printed as one JSON line per variant
and a table on stderr. Nothing here asserts anything: a missed target is a result. Every process it starts
is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.common import BAO, log
from bench.snapshots import load
from testbed.bao import Certs
from testbed.env import clean_env
from testbed.procs import wait_for
from testbed.raft_cluster import RaftCluster
from testbed.s3 import Rclone
from testbed.unsealing import write_cfg, write_keys

BUCKET = "bench"
CANARY = "the canary"
NVT = [sys.executable, "-m", "nomad_vault_token"]


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:5])} exited {done.returncode}: {done.stderr[-1500:]}")
    return done


class _Load:
    """`load` (bench.snapshots) wants a server with `addr` and `root_token`."""

    def __init__(self, addr: str, root_token: str) -> None:
        self.addr, self.root_token = addr, root_token


def lose_and_start_empty(c: RaftCluster) -> float:
    for n in c.nodes:
        n.stop()
    for n in c.nodes:
        shutil.rmtree(n.workdir / "raft")
        (n.workdir / "raft").mkdir()
    for n in c.nodes:
        n.launch(wait=False)
    for n in c.nodes:
        n.wait_answers(60)
    return time.monotonic()


def rest_of_recovery(c: RaftCluster, certs: Certs, work: Path, keys: Path, marks: dict[str, float], t0: float) -> None:
    """After the restore into node-1: restart it, unseal it, join and unseal the others, read the canary."""
    first, *others = c.nodes
    def sealed() -> bool:
        try:
            return first.sealed()
        except requests.RequestException:  # busy sealing itself
            return False

    wait_for(sealed, 60, "node-1 to seal itself after the restore", interval=0.1)
    first.stop()
    first.launch()
    marks["restarted"] = time.monotonic() - t0
    _run([*NVT, "unseal", "--once", "--config", str(write_cfg(work / "u1.toml", certs, [first.addr], keys))], clean_env())
    marks["node-1 unsealed"] = time.monotonic() - t0
    for n in others:
        joined = n.post("sys/storage/raft/join", {"leader_api_addr": first.addr,
                                                   "leader_ca_cert": certs.ca_path.read_text()}, timeout=60)  # fmt: skip
        assert joined.code == 200, joined
    cfg = write_cfg(work / "u3.toml", certs, [n.addr for n in c.nodes], keys)

    def unsealed_all() -> bool:
        return subprocess.run([*NVT, "unseal", "--once", "--config", str(cfg)], env=clean_env(), capture_output=True,
                              stdin=subprocess.DEVNULL, check=False).returncode == 0  # fmt: skip

    wait_for(unsealed_all, 180, "all three unsealed", interval=0.5)
    marks["3 nodes unsealed"] = time.monotonic() - t0
    c.wait_formed(180)
    leader = c.leader()
    assert leader is not None
    value = c.node(leader).get("canary/data", token=c.root_token).body["data"]["value"]
    assert value == CANARY, value
    marks["serving (canary read)"] = time.monotonic() - t0


def with_tool(c: RaftCluster, certs: Certs, store: Rclone, work: Path, keys: Path) -> dict[str, float]:
    marks: dict[str, float] = {}
    t0 = lose_and_start_empty(c)
    first = c.nodes[0]
    _run([*NVT, "snapshot", "restore", "latest", "--copy-to", f"s3://{BUCKET}/vault", "--vault-addr", first.addr,
          "--ca-cert", str(certs.ca_path), "--format", "json"], clean_env(**store.env()))  # fmt: skip
    marks["restored (snapshot restore latest)"] = time.monotonic() - t0
    rest_of_recovery(c, certs, work, keys, marks, t0)
    return marks


def with_bao(c: RaftCluster, certs: Certs, store: Rclone, work: Path, keys: Path, key: str) -> dict[str, float]:
    marks: dict[str, float] = {}
    t0 = lose_and_start_empty(c)
    first = c.nodes[0]
    s3 = store.client()
    local = work / "fetched.snap"
    s3.download_file(BUCKET, key, str(local))  # unverified: bao verifies nothing before it restores
    marks["fetched (boto3)"] = time.monotonic() - t0
    init = first.post("sys/init", {"secret_shares": 1, "secret_threshold": 1}, timeout=60).body
    first.submit_key(init["keys"][0])
    wait_for(lambda: first.health_code() == 200, 120, "node-1 active", interval=0.1)
    marks["throwaway init + unseal"] = time.monotonic() - t0
    began = time.monotonic()
    env = clean_env(VAULT_ADDR=first.addr, VAULT_CACERT=str(certs.ca_path), VAULT_TOKEN=init["root_token"])
    _run([str(BAO), "operator", "raft", "snapshot", "restore", "-force", str(local)], env)
    marks["bao operator raft snapshot restore alone"] = time.monotonic() - began
    marks["restored"] = time.monotonic() - t0
    rest_of_recovery(c, certs, work, keys, marks, t0)
    return marks


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="nvt-bench-restore-"))
    certs = Certs(work / "certs")
    c = RaftCluster(work / "raft", certs)
    store = Rclone(work / "rclone")
    rows = []
    try:
        store.start()
        store.make_bucket(BUCKET)
        c.start()
        first = c.nodes[0]
        assert first.post("sys/mounts/canary", {"type": "kv"}, token=c.root_token).code == 204
        assert first.post("canary/data", {"value": CANARY}, token=c.root_token).code == 204
        log(f"loading {args.mib} MiB")
        load(_Load(first.addr, c.root_token), certs, args.mib)  # type: ignore[arg-type]
        taken = json.loads(_run([*NVT, "snapshot", "--format", "json", "--dir", str(work / "snaps"), "--vault-addr",
                                 first.addr, "--ca-cert", str(certs.ca_path), "--auth", "token", "--copy-to",
                                 f"s3://{BUCKET}/vault"], clean_env(**store.env(VAULT_TOKEN=c.root_token))).stdout)  # fmt: skip
        size = int(taken["size"])
        key = taken["copies"][0]["url"].removeprefix(f"s3://{BUCKET}/")
        keys = write_keys(work / "keys", c.keys)
        for name in ("nomad-vault-token snapshot restore", "bao alone"):
            log(f"{name}: total loss, then restore")
            if name == "bao alone":
                marks = with_bao(c, certs, store, work, keys, key)
            else:
                marks = with_tool(c, certs, store, work, keys)
            seconds = {k: round(v, 2) for k, v in marks.items()}
            row = {"variant": name, "data_mib": args.mib, "snapshot_bytes": size, "seconds": seconds}
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        c.stop_all()
        store.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | snapshot | step | seconds from empty nodes |", "| --- | --- | --- | --- |"]
    for r in rows:
        for step, s in r["seconds"].items():
            lines.append(f"| {r['variant']} | {r['snapshot_bytes'] / (1 << 20):.1f} MiB | {step} | {s} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="MiB of data to load [64]")
    parser.add_argument("--quick", action="store_true", help="4 MiB: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.mib = 4
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # the servers are stopped by PID
    print(table(measure(args)), file=sys.stderr)


if __name__ == "__main__":
    main()
