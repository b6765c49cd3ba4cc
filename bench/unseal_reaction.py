"""How soon the unsealer's watcher unseals a restarted node, and what it costs in steady state
(`python -m bench.unseal_reaction`, from the repository root in a venv with the test extras).

A real 3-node OpenBao raft cluster (testbed.raft_cluster) and the watcher with its default settings
(`unseal_interval` 10s), talking to each node through a TLS-terminating proxy that counts requests
(testbed.proxy.CountingProxy). Then `--restarts` times: wait a random part of the steady interval (so
the restarts fall at different points of the probe cycle), restart a standby, and watch it directly
(not through the proxy) every 20 ms: the reaction is the time from its first `sealed: true` answer to
its first `sealed: false`. Before the restarts, `--window` seconds of steady state give the requests
per node per minute. Not a test: it prints the figures and asserts nothing (target: median < 1 s).
Everything binds 127.0.0.1; every process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from testbed import procs
from testbed.bao import Certs
from testbed.cli import CLI
from testbed.env import clean_env
from testbed.procs import wait_for
from testbed.proxy import CountingProxy
from testbed.raft_cluster import RaftCluster
from testbed.unsealing import write_keys

BENCH = Path(__file__).resolve().parent
POLL = 0.02


@dataclass
class Reaction:
    restarts: int
    interval: float
    steady_window: float
    requests_per_node_per_minute: float
    sealed_to_unsealed: list[float] = field(default_factory=list)  # seconds, one per restart
    restart_to_unsealed: list[float] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)  # where in the probe cycle each restart fell

    def summary(self) -> str:
        s = sorted(self.sealed_to_unsealed)
        r = sorted(self.restart_to_unsealed)
        lines = [
            f"restarts: {self.restarts}, watcher interval {self.interval:g}s (defaults)",
            f"sealed answer -> unsealed: median {statistics.median(s):.3f}s, max {s[-1]:.3f}s (target: median < 1s)",
            f"restart -> unsealed:       median {statistics.median(r):.3f}s, max {r[-1]:.3f}s",
            f"steady state: {self.requests_per_node_per_minute:.1f} requests per node per minute "
            f"(over {self.steady_window:g}s)",
        ]
        return "\n".join(lines)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sealed(c: RaftCluster, i: int) -> bool | None:
    """node-`i`'s `sealed`, or None while it does not answer."""
    try:
        return bool(c.node(i).seal_status(timeout=1)["sealed"])
    except (requests.RequestException, KeyError, ValueError):
        return None


def measure(work: Path, restarts: int, window: float) -> Reaction:
    certs = Certs(work / "certs")
    c = RaftCluster(work / "raft", certs)
    proxies: list[CountingProxy] = []
    watcher: subprocess.Popen[bytes] | None = None
    try:
        log("forming a 3-node raft cluster")
        c.start()
        proxies = [CountingProxy(n, certs) for n in c.nodes]
        keys = write_keys(work / "keys", c.keys[:2])
        cfg = work / "unseal.toml"
        cfg.write_text(
            f"unseal_nodes = {json.dumps([p.addr for p in proxies])}\n"
            f"ca_cert = {json.dumps(str(certs.ca_path))}\n"
            f"unseal_keys_file = {json.dumps(str(keys))}\n"
            f"state_dir = {json.dumps(str(work / 'state'))}\n"
        )
        interval = 10.0
        with open(work / "watcher.log", "ab") as out:
            watcher = subprocess.Popen(
                [*CLI, "unseal", "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT, env=clean_env()
            )
        wait_for(lambda: (work / "state" / "unseal.json").exists(), 30, "the watcher's first round")
        log(f"steady state for {window:g}s")
        before = [p.requests for p in proxies]
        began = time.monotonic()
        time.sleep(window)
        took = time.monotonic() - began
        counted = [p.requests - b for p, b in zip(proxies, before, strict=True)]
        per_minute = statistics.mean(counted) * 60 / took
        result = Reaction(restarts, interval, took, per_minute)
        for k in range(restarts):
            leader = c.leader()
            i = next(j for j in (1, 2, 3) if j != leader)
            offset = random.uniform(0, interval)  # noqa: S311 - where in the probe cycle
            time.sleep(offset)
            restarted = time.monotonic()
            c.stop(i)
            c.node(i).launch(wait=False)
            first_sealed = wait_for(lambda i=i: sealed(c, i) is True and time.monotonic(), 60, "sealed", POLL)
            unsealed = wait_for(lambda i=i: sealed(c, i) is False and time.monotonic(), 60, "unsealed", POLL)
            result.offsets.append(offset)
            result.sealed_to_unsealed.append(unsealed - first_sealed)
            result.restart_to_unsealed.append(unsealed - restarted)
            log(f"restart {k + 1}/{restarts}: node-{i} unsealed {unsealed - first_sealed:.3f}s after answering sealed")
            c.wait_formed()
        return result
    finally:
        if watcher is not None:
            procs.stop(watcher)  # by its PID: SIGTERM, then SIGKILL after 10 s
        for p in proxies:
            p.close()
        c.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.unseal_reaction", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--restarts", type=int, default=20, help="node restarts measured (default 20)")
    p.add_argument("--window", type=float, default=60, help="steady-state window, seconds (default 60)")
    p.add_argument("--write", action="store_true", help="keep the figures in bench/results/unseal-<date>.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nvt-bench-unseal-") as tmp:
        result = measure(Path(tmp), args.restarts, args.window)
    print(result.summary())
    if args.write:
        out = BENCH / "results" / f"unseal-{time.strftime('%Y-%m-%d')}.json"
        out.write_text(json.dumps(asdict(result), indent=2) + "\n")
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
