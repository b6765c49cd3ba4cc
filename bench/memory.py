"""3. Memory (VmRSS, RssAnon, RssFile, PSS, VmHWM from /proc): the tracker after the steady window next
to `bao agent` (file sink) after the same time; `bao agent` in exec mode while its child runs; and
probes of what a tracker carrying less would weigh."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench import bao_agent, vault_load
from bench.common import DEFAULT_CHECK_INTERVAL, PROBES, Ctx, log
from bench.probes import VARIANTS as PROBE_VARIANTS
from bench.probes import own_memory
from bench.steady import Window
from testbed import procs
from testbed.procs import wait_for

# `bao agent`'s exec child: stamps its start, checks it got the token, then stays (so the agent stays).
HOLDING_AGENT = [
    "/bin/bash",
    "-c",
    f'echo "$EPOCHREALTIME" > "$NVT_BENCH_OUT"; case "${bao_agent.TOKEN_ENV}" in s.*) ;; *) exit 3;; esac; '
    "exec sleep 3600",
]


@dataclass
class Memory:
    window_s: float
    tracker_checks: int
    default_schedule_hours: float
    final: dict[str, dict[str, int]]  # tracker, bao_agent, bao_exec -> kB
    bao_exec_after_s: float
    samples: list[dict[str, Any]]

    def ratio(self) -> float:
        return self.final["tracker"]["VmRSS"] / self.final["bao_agent"]["VmRSS"]


def memory(ctx: Ctx, window: Window) -> Memory:
    checks = sum(1 for e in vault_load.tracker(window) if e.get("request", {}).get("path") == "auth/token/lookup-self")
    hold = min(10.0, ctx.args.window / 6)
    return Memory(
        window_s=window.seconds,
        tracker_checks=checks,
        default_schedule_hours=checks / (3600 / DEFAULT_CHECK_INTERVAL),
        final={**window.final, "bao_exec": bao_exec_memory(ctx, hold)},
        bao_exec_after_s=hold,
        samples=window.samples,
    )


def bao_exec_memory(ctx: Ctx, hold: float) -> dict[str, int]:
    """`bao agent` in process-supervisor mode, `hold` seconds after its child started."""
    log(f"3. bao agent exec: memory {hold:.0f}s after its child started")
    d = ctx.work / "bao-agent-exec-memory"
    config = bao_agent.exec_config(d, ctx.bao, HOLDING_AGENT)
    out = d / "child-started"
    with open(d / "agent.log", "wb") as logfile:
        agent = ctx.procs.popen(
            bao_agent.argv(config), env={**ctx.env, "NVT_BENCH_OUT": str(out)}, stdout=logfile, stderr=logfile
        )
    try:
        tail = lambda: (d / "agent.log").read_text()[-2000:]  # noqa: E731
        wait_for(out.exists, 60, "bao agent's child", proc=agent, detail=tail)
        time.sleep(hold)
        return own_memory(agent.pid)
    finally:
        procs.stop_tree(agent)


def memory_probes(ctx: Ctx) -> dict[str, dict[str, int]]:
    log("3b. memory of slimmer trackers (probes)")
    cfg = ctx.startup_config
    found = {}
    for variant in PROBE_VARIANTS:
        out = cfg.parent / f"memory-{variant}.json"
        argv = [sys.executable, str(PROBES), "memory", str(out), variant, str(cfg)]
        if ctx.procs.popen(argv, env=ctx.env, stderr=subprocess.DEVNULL).wait(60) == 0:
            found[variant] = json.loads(out.read_text())
    return found
