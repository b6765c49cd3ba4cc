"""A seeded, replayable fault soak over the whole stack (`python -m bench.soak --seed N --minutes M`).

A 3-node raft OpenBao cluster (Shamir 3/2), the unsealer watching it, `snapshot --copy-to` an S3 test
server on a short timer, and `run` with its tracker and the stand-in Nomad agent; faults drawn from the
seed (`faults.py`), two at most at once; invariants checked all the time (`invariants.py`,
`snapshots.py`); the figure (`report.py`). Exit 1 on any violation, 0 otherwise. Everything binds
127.0.0.1; every process is started and stopped by its PID.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.soak import report
from bench.soak.driver import Driver, log
from bench.soak.invariants import loadavg
from bench.soak.stack import ROOT, Stack


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--seed", type=int, required=True, help="the seed the whole schedule is drawn from")
    p.add_argument("--minutes", type=float, required=True, help="how long faults are injected")
    p.add_argument("--settle", type=float, default=90, help="seconds the stack gets to be whole after the faults")
    p.add_argument("--write", action="store_true", help="write bench/results/soak-<date>.json and RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs) and print its path")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix=f"nvt-soak-{args.seed}-"))
    stack = Stack(work)
    load_before = loadavg()
    code = 1
    try:
        began = time.monotonic()
        log(f"seed {args.seed}, {args.minutes:g} min; forming the stack in {work}")
        stack.start()
        stack.wait_healthy()
        formed = time.monotonic() - began
        log(f"stack up in {formed:.0f}s; faults begin")
        driver = Driver(stack, args.seed, args.minutes * 60, args.settle)
        outcome = driver.run()
        outcome.formed_in = round(formed, 1)
        doc = document(outcome, driver, load_before)
        print(report.markdown(doc))
        if args.write:
            log(f"wrote {report.write(doc)}")
        code = 1 if doc["violations"] else 0
    finally:
        stack.stop()
        if args.keep or code:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return code


def document(outcome: object, driver: Driver, load_before: str) -> dict[str, object]:
    o = dataclasses.asdict(outcome)  # type: ignore[call-overload]
    recoveries = driver.monitor.recoveries
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()  # fmt: skip
    return {
        "seed": o["seed"],
        "seconds": o["seconds"],
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit,
        "load_before": load_before,
        "load_after": loadavg(),
        "formed_in": o["formed_in"],
        "planned": o["planned"],
        "not_reached": o["not_reached"],
        "injected": o["injected"],
        "skipped": o["skipped"],
        "recoveries": [{"index": r.fault.index, "kind": r.fault.kind, "took": r.took} for r in recoveries],
        "snapshot_runs": [{"exit": c, "full": full} for _, c, full in driver.snapshots.runs],
        **driver.monitor.summary(),
    }


if __name__ == "__main__":
    sys.exit(main())
