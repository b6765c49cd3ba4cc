"""2. Import time of the `run` path (`python -X importtime`, reusing, with checks): the top modules,
the top-level imports, and self time summed per package."""

from __future__ import annotations

import statistics
import subprocess
import sys
from dataclasses import dataclass

from bench.common import AGENT, Ctx, log
from testbed import procs

STDLIB = set(sys.stdlib_module_names)


@dataclass
class Module:
    module: str
    self_ms: float
    cumulative_ms: float
    depth: int


@dataclass
class Imports:
    runs: int
    total_ms: float
    modules: int
    top10: list[Module]
    top_level: list[Module]
    by_package: dict[str, float]


def imports(ctx: Ctx) -> Imports:
    log(f"2. import time of the run path (reuse, with checks): {ctx.args.import_runs} runs")
    cfg = ctx.startup_config
    env = {**ctx.env, "NVT_BENCH_OUT": str(cfg.parent / "unused")}
    per_module: dict[str, list[tuple[int, int, int]]] = {}
    order: list[str] = []
    for _ in range(ctx.args.import_runs):
        entry = ctx.nvt if len(ctx.nvt) == 1 else ["-m", "nomad_vault_token"]
        argv = [sys.executable, "-X", "importtime", *entry, "run", "--config", str(cfg), "--", *AGENT]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        procs.stop_mentioning(str(cfg), None)  # its tracker exits with the agent: wait for it
        if proc.returncode != 0:
            raise RuntimeError(f"importtime run exited {proc.returncode}: {proc.stderr[-2000:]}")
        seen: set[str] = set()
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
            depth = (len(name) - len(name.lstrip())) // 2
            module = name.strip()
            if module in seen:  # printed again by the forked tracker: count the run's own import once
                continue
            seen.add(module)
            if module not in per_module:
                order.append(module)
            per_module.setdefault(module, []).append((int(self_us), int(cumulative_us), depth))
    modules = [
        Module(
            module=module,
            self_ms=statistics.median(v[0] for v in per_module[module]) / 1000,
            cumulative_ms=statistics.median(v[1] for v in per_module[module]) / 1000,
            depth=per_module[module][0][2],
        )
        for module in order
    ]
    by_package: dict[str, float] = {}
    for m in modules:
        by_package[package_of(m.module)] = by_package.get(package_of(m.module), 0.0) + m.self_ms
    top_level = sorted((m for m in modules if m.depth == 0), key=lambda m: m.cumulative_ms, reverse=True)
    return Imports(
        runs=ctx.args.import_runs,
        total_ms=sum(m.self_ms for m in modules),
        modules=len(modules),
        top10=sorted(modules, key=lambda m: m.cumulative_ms, reverse=True)[:10],
        top_level=top_level[:12],
        by_package=dict(sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)),
    )


def package_of(module: str) -> str:
    top = module.split(".")[0]
    if top == "typer" and module.startswith("typer._click"):
        return "typer (vendored click)"
    if top in ("_cffi_backend",):
        return "cryptography"
    if top in STDLIB or top.startswith("_"):
        return "stdlib"
    return top
