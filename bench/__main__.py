"""Benchmarks of `nomad-vault-token run` against a real OpenBao, side by side with the old bash script and
`bao agent` (`bench/run`, or `python -m bench` from the repository root in a venv with the test extras):

1. start-up: process start to the agent's exec, for `run` minting and reusing (each with and without
   Nomad's checks), the old bash script, `bao agent` in process-supervisor mode, and the floor (python +
   import hvac + run's requests on one connection); where `run`'s time goes; bare start-ups;
2. import time of the `run` path (`python -X importtime`);
3. the tracker's memory after many checks, next to `bao agent` (cert auto-auth, file sink), and `bao agent` exec;
4. Vault requests per host per day in steady state, counted in OpenBao's audit log, and from the schedule;
5. live server tokens after N service restarts, for `run` and for the bash script;
6. the unsealer: a restarted raft node's first sealed answer to unsealed, and its steady requests (`unseal_reaction`);
7. snapshots at size: `snapshot` verified as it streams against the same stream unverified, `bao`'s own
   snapshot save, `snapshot verify`, and the copies to S3 beside `rclone copyto` (`snapshots`).

It prints the report, writes bench/RESULTS.md and keeps the raw figures in bench/results/<date>.json.
Everything binds 127.0.0.1; every process it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench import restore, snapshots, steady, unseal_reaction
from bench.bare import bare_startups
from bench.common import BENCH, Ctx, log, start_server
from bench.imports import imports
from bench.keyring import keyring_startup
from bench.machine import machine, versions
from bench.memory import memory, memory_probes
from bench.phases import phases
from bench.report import Results, render
from bench.soak import report as soak_report
from bench.startup import startup
from bench.tokens import tokens
from bench.vault_load import vault_load
from testbed import ROOT
from testbed.bao import Bao, Certs
from testbed.cli import console_script
from testbed.env import service_env
from testbed.procs import Started


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--runs", type=int, default=20, help="start-ups per variant (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="discarded start-ups per variant first (default 2)")
    p.add_argument("--phase-runs", type=int, default=7, help="runs of the phase probe per path (default 7)")
    p.add_argument("--floor-runs", type=int, default=10, help="runs of each bare start-up (default 10)")
    p.add_argument("--import-runs", type=int, default=7, help="runs under -X importtime (default 7)")
    p.add_argument("--restarts", type=int, default=50, help="service restarts counted for live tokens (default 50)")
    p.add_argument("--window", type=float, default=240, help="steady-state window, seconds (default 240)")
    p.add_argument("--scale", type=int, default=600, help="time scale of the steady-state run (default 600)")
    p.add_argument("--unseal-restarts", type=int, default=20, help="node restarts for the unseal reaction (default 20)")
    p.add_argument("--unseal-window", type=float, default=60, help="the unsealer's steady window, s (default 60)")
    p.add_argument(
        "--snapshot-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[256, 1024],
        help="MiB of data for the snapshots at size, comma-separated (default 256,1024)",
    )
    p.add_argument("--snapshot-rounds", type=int, default=3, help="rounds of the snapshots at size (default 3)")
    p.add_argument("--restore-mib", type=int, default=64, help="MiB of data for the restore after total loss (default 64)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few repetitions, short window; not for RESULTS")
    p.add_argument("--no-write", action="store_true", help="print only: do not write RESULTS.md and results/")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, audit log)")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.warmup, args.phase_runs, args.floor_runs, args.import_runs = 3, 1, 2, 2, 2
        args.restarts, args.window = 5, 30
        args.unseal_restarts, args.unseal_window, args.snapshot_sizes, args.snapshot_rounds = 1, 5, [8], 1
        args.restore_mib = 4
    if args.runs < 2:
        p.error("--runs must be at least 2")
    return args


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="nvt-bench-"))
    try:
        yield work
    finally:
        if keep:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def measure(ctx: Ctx, results: Results) -> None:
    """Every measurement, in an order that lets the steady window run beside the slow ones."""
    results.startup = startup(ctx)
    results.keyring = keyring_startup(ctx)
    results.phases = phases(ctx)
    results.bare = bare_startups(ctx)
    results.imports = imports(ctx)
    window = steady.start(ctx)
    try:
        results.tokens = tokens(ctx)
        results.memory_probes = memory_probes(ctx)
    except BaseException:
        window.stop_sampling.set()  # its processes are stopped with all the others
        raise
    seen = steady.finish(ctx, window)
    results.memory = memory(ctx, seen)
    results.vault_load = vault_load(seen, ctx.args.scale)
    # Each with servers of its own (a 3-node raft cluster; OpenBao on raft and rclone), after the rest.
    a = ctx.args
    log(f"unseal reaction: {a.unseal_restarts} restarts, {a.unseal_window:g} s steady window")
    (ctx.work / "unseal").mkdir()
    results.unseal = unseal_reaction.measure(ctx.work / "unseal", a.unseal_restarts, a.unseal_window)
    log(f"snapshots at size: {a.snapshot_sizes} MiB, {a.snapshot_rounds} round(s)")
    given = argparse.Namespace(
        sizes=a.snapshot_sizes, rounds=a.snapshot_rounds, workdir=str(ctx.work), baseline=None, echo=False
    )
    results.snapshots = snapshots.measure(given)
    log(f"restore after total loss: 3 nodes, {a.restore_mib} MiB")
    results.restore = restore.measure(argparse.Namespace(mib=a.restore_mib))


def write(results: Results, text: str) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M")
    (BENCH / "results").mkdir(exist_ok=True)
    raw = BENCH / "results" / f"{stamp}.json"
    raw.write_text(json.dumps(dataclasses.asdict(results), indent=1) + "\n")
    header = (
        "# Benchmark results\n\n"
        "Written by `bench/run` (see bench/README.md for what each figure means); raw figures in "
        f"`bench/results/{raw.name}`.\n\n"
    )
    page = BENCH / "RESULTS.md"
    kept = soak_report.section_of(page.read_text()) if page.exists() else ""  # the soak's own run writes that
    page.write_text(soak_report.with_section(header + text, kept))
    log(f"wrote bench/RESULTS.md and {raw.relative_to(ROOT)} in {results.elapsed_s:.0f}s")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    command = os.environ.get("NVT_BENCH_COMMAND") or shlex.join(["python", "-m", "bench", *sys.argv[1:]])
    results = Results(
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=command,
        machine=machine(),
        versions=versions(),
        params=dict(vars(args)),
    )
    processes = Started()
    with workspace(args.keep) as work:
        certs = Certs(work / "certs")
        audit = work / "audit.log"
        server: Bao | None = None
        try:
            log(f"starting OpenBao ({work})")
            server = start_server(work / "bao", certs, audit)
            ctx = Ctx(args, work, certs, server, audit, processes, console_script(), service_env(work / "home"))
            measure(ctx, results)
        finally:
            processes.stop_all()
            if server is not None:
                server.stop()
    results.machine["loadavg_end"] = os.getloadavg()
    results.elapsed_s = time.monotonic() - started
    text = render(results)
    print(text)
    if not args.no_write and not args.quick:
        write(results, text)
    else:
        log(f"done in {results.elapsed_s:.0f}s (nothing written)")
    return 0  # targets missed are results, not a failure of the benchmark


if __name__ == "__main__":
    sys.exit(main())
