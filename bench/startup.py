"""1. Start-up: time from process start to the agent's exec, for `run` (minting, reusing, with and without
Nomad's checks), the old bash script, `bao agent` in process-supervisor mode, and the floor (a Python
process importing hvac and making the same requests on one connection). Variants interleaved and
rotated so that none is always first; the agent stamps its own exec time."""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

from bench import bao_agent
from bench.common import AGENT, FLOOR_PROBE, AuditLog, Ctx, Spread, log, old_script, spread
from testbed import procs
from testbed.config import write_config

VARIANTS: dict[str, str] = {
    "bash": "old bash script (bao login + bao write create-orphan)",
    "mint": "run, minting (no saved token)",
    "reuse": "run, reusing the saved token",
    "mint_nocheck": "run --no-check, minting",
    "reuse_nocheck": "run --no-check, reusing",
    "floor": "floor: python + import hvac + run's mint requests on one connection",
    "bao_exec": "bao agent exec (cert auto-auth, env_template mints, exec)",
}
# The agent of `bao agent`'s exec stanza: it also fails unless the minted token is in its environment.
EXEC_AGENT = [
    "/bin/bash",
    "-c",
    f'echo "$EPOCHREALTIME" > "$NVT_BENCH_OUT"; case "${bao_agent.TOKEN_ENV}" in s.*) ;; *) exit 3;; esac',
]


@dataclass
class Variant:
    label: str
    ms: list[float]
    spread: Spread
    ratio_to_bash: float
    audited_requests: float


@dataclass
class Startup:
    runs: int
    variants: dict[str, Variant]


def startup(ctx: Ctx) -> Startup:
    log(f"1. start-up: {ctx.args.runs} runs of each of {len(VARIANTS)} variants, interleaved")
    cfg = write_config(ctx.startup_config, ctx.bao, ctx.certs)
    script = old_script(cfg.parent / "old-script.sh", ctx.certs)
    exec_hcl = bao_agent.exec_config(cfg.parent / "bao-agent-exec", ctx.bao, EXEC_AGENT)
    out = cfg.parent / "agent-exec-time"
    audit = AuditLog(ctx.audit)
    state_file = cfg.parent / "state" / "token.json"
    ctx.procs.markers.append(str(cfg))
    env = {**ctx.env, "NVT_BENCH_OUT": str(out)}
    bash_env = {**env, "VAULT_ADDR": ctx.bao.addr, "VAULT_CACERT": str(ctx.certs.ca_path)}

    def argv(variant: str) -> tuple[list[str], dict[str, str]]:
        if variant == "bash":
            return [str(script), *AGENT], bash_env
        if variant == "floor":
            return [sys.executable, str(FLOOR_PROBE), str(cfg), "--", *AGENT], env
        if variant == "bao_exec":
            return bao_agent.argv(exec_hcl), env
        flags = ["--no-check"] if variant.endswith("_nocheck") else []
        return [*ctx.nvt, "run", "--config", str(cfg), *flags, "--", *AGENT], env

    def once(variant: str) -> tuple[float, int]:
        if variant.startswith("mint"):
            state_file.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        command, environment = argv(variant)
        offset = audit.offset()
        err = cfg.parent / "stderr.log"
        with open(err, "wb") as stderr:
            start = time.time_ns()
            proc = ctx.procs.popen(command, env=environment, stderr=stderr, stdout=stderr)
            code = proc.wait(120)
        if code != 0 or not out.exists():
            raise RuntimeError(f"{variant} exited {code}: {err.read_text()[-2000:]}")
        exec_at = float(out.read_text())
        procs.stop_mentioning(str(cfg), None)  # the tracker exits with its agent: wait for it
        return (exec_at - start / 1e9) * 1000, len(audit.requests(offset))

    for variant in VARIANTS:  # warm up: byte-code caches, page cache, first TLS sessions
        for _ in range(ctx.args.warmup):
            once(variant)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    requests: dict[str, list[int]] = {v: [] for v in VARIANTS}
    order = list(VARIANTS)
    for i in range(ctx.args.runs):
        for variant in order[i % len(order) :] + order[: i % len(order)]:  # rotate: no variant always first
            ms, n = once(variant)
            times[variant].append(ms)
            requests[variant].append(n)
    bash = statistics.median(times["bash"])
    return Startup(
        runs=ctx.args.runs,
        variants={
            v: Variant(
                label=label,
                ms=times[v],
                spread=spread(times[v]),
                ratio_to_bash=statistics.median(times[v]) / bash,
                audited_requests=statistics.median(requests[v]),
            )
            for v, label in VARIANTS.items()
        },
    )
