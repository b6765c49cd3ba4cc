"""3+4. The steady-state window: `run` with the stand-in Nomad on a time-scaled schedule (period and
check interval divided by `--scale`) next to `bao agent` with cert auto-auth and a file sink; both
left running while the other measurements go on, then memory sampled and the audit log read."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import bao_agent
from bench.common import DEFAULT_CHECK_INTERVAL, DEFAULT_MIN_TTL, AuditLog, Ctx, log
from bench.probes import own_memory
from testbed import jsonl, procs
from testbed.agent import agent_config, run_argv
from testbed.bao import PERIOD, TASK_ROLE
from testbed.config import write_config
from testbed.procs import wait_for

SCALED_MINT = "nomad-server-mint-scaled"
SCALED_STARTUP = "nomad_startup_scaled"


@dataclass
class Window:
    """What the window saw: its length, the memory of both processes (samples and at the end, kB),
    and the requests OpenBao audited meanwhile."""

    seconds: float
    accessor: str  # the tracker's server token
    final: dict[str, dict[str, int]]
    samples: list[dict[str, Any]]
    entries: list[dict[str, Any]]


@dataclass
class Steady:
    cfg: Path
    run: Any  # subprocess.Popen[bytes]
    tracker_pid: int
    accessor: str
    bao_agent: Any  # subprocess.Popen[bytes]
    started: float  # monotonic, start of the window
    audit_start: int
    samples: list[dict[str, Any]] = field(default_factory=list)
    stop_sampling: threading.Event = field(default_factory=threading.Event)
    sampler: threading.Thread | None = None

    def sample(self) -> None:
        while True:
            sample: dict[str, Any] = {"t": time.monotonic() - self.started}
            with contextlib.suppress(OSError):
                sample["tracker"] = own_memory(self.tracker_pid)
            with contextlib.suppress(OSError):
                sample["bao_agent"] = own_memory(self.bao_agent.pid)
            self.samples.append(sample)
            if self.stop_sampling.wait(5):
                return


def start(ctx: Ctx) -> Steady:
    """Start `run` with a stand-in Nomad on a time-scaled schedule, and `bao agent`; both left running."""
    k = ctx.args.scale
    period, interval = PERIOD // k, max(DEFAULT_CHECK_INTERVAL // k, 1)  # check_interval cannot go under 1 s
    log(
        f"3+4. tracker and bao agent for {ctx.args.window}s: time scaled {k}x "
        f"(period {period}s = 72h, check_interval {interval}s = {interval * k // 60}m; the default, "
        f"{DEFAULT_CHECK_INTERVAL}s, is in the schedule table)"
    )
    ctx.bao.write_mint_role(SCALED_MINT, token_period=f"{period}s")
    ctx.bao.write_startup_identity(SCALED_STARTUP, mint_role=SCALED_MINT)
    cfg = write_config(
        ctx.work / "s34" / "config.toml",
        ctx.bao,
        ctx.certs,
        cert_role=SCALED_STARTUP,
        mint_role=SCALED_MINT,
        period=f"{period}s",
        check_interval=f"{interval}s",
        min_ttl=f"{max(DEFAULT_MIN_TTL // k, 1)}s",
    )
    ctx.procs.markers.append(str(cfg))
    report = cfg.parent / "agent-report.jsonl"
    hcl = agent_config(cfg.parent / "agent.hcl", ctx.bao, create_from_role=TASK_ROLE)
    env = {**ctx.env, "FAKE_NOMAD_REPORT": str(report)}
    errors = cfg.parent / "run.err"
    with open(errors, "wb") as err:
        run = ctx.procs.popen(run_argv(cfg, hcl, cli=ctx.nvt), env=env, stderr=err)
    tail = lambda: errors.read_text()[-2000:]  # noqa: E731
    wait_for(lambda: jsonl.events(report, "renewed"), 60, "the stand-in Nomad's first renewal", proc=run, detail=tail)
    trackers = wait_for(lambda: [p.pid for p in procs.mentioning(str(cfg)) if p.pid != run.pid], 10, "the tracker")
    saved = json.loads((cfg.parent / "state" / "token.json").read_text())
    steady = Steady(
        cfg=cfg,
        run=run,
        tracker_pid=trackers[0],
        accessor=saved["accessor"],
        bao_agent=start_sink_agent(ctx),
        started=time.monotonic(),
        audit_start=AuditLog(ctx.audit).offset(),
    )
    steady.sampler = threading.Thread(target=steady.sample, daemon=True)
    steady.sampler.start()
    return steady


def start_sink_agent(ctx: Ctx) -> Any:
    d = ctx.work / "bao-agent"
    config = bao_agent.sink_config(d, ctx.bao)
    with open(d / "agent.log", "wb") as out:
        agent = ctx.procs.popen(bao_agent.argv(config), env=ctx.env, stdout=out, stderr=out)
    tail = lambda: (d / "agent.log").read_text()[-2000:]  # noqa: E731
    wait_for((d / "token").exists, 30, "bao agent's token sink", proc=agent, detail=tail)
    return agent


def finish(ctx: Ctx, steady: Steady) -> Window:
    """Wait out the window, take the final memory and the audited requests, stop both."""
    left = ctx.args.window - (time.monotonic() - steady.started)
    if left > 0:
        log(f"3+4. waiting {left:.0f}s more for the steady-state window")
        time.sleep(left)
    seconds = time.monotonic() - steady.started
    end = AuditLog(ctx.audit).offset()
    steady.stop_sampling.set()
    if steady.sampler is not None:
        steady.sampler.join()
    final = {"tracker": own_memory(steady.tracker_pid), "bao_agent": own_memory(steady.bao_agent.pid)}
    entries = AuditLog(ctx.audit).requests(steady.audit_start, end)
    procs.stop(steady.run)
    procs.stop_mentioning(str(steady.cfg), None)  # the tracker exits with its agent
    procs.stop(steady.bao_agent)
    return Window(seconds, steady.accessor, final, steady.samples, entries)
