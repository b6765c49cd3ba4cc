"""1b. Where `run`'s time goes: the phases of commands/run.py, and the requests and connections in each
(`probes.py phases`: the real entry point with timers and an audit hook; the exec is recorded, not made)."""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import AGENT, PROBES, Ctx, log
from testbed import procs

PHASES = [  # (label, from mark, to mark)
    ("interpreter start", "process start", "python ready"),
    ("import entry, fastrun", "harness ready", "imported entry"),
    ("import commands.run (config, tls, vault, state ...)", "imported entry", "imported commands.run"),
    ("parse the command line (fastrun, no typer)", "parse start", "parse end"),
    ("dispatch", "parse end", "run.main start"),
    ("log, config, agent path", "run.main start", "preflight start"),
    ("preflight (imports cryptography)", "preflight start", "preflight end"),
    ("state dir, notifier, open a session (imports requests)", "preflight end", "vault start"),
    ("Vault: reuse or mint (imports hvac)", "vault start", "vault end"),
    ("Vault: Nomad's checks", "vault #2 start", "vault #2 end"),
    ("hand-off file", "handoff start", "handoff end"),
    ("fork the tracker", "spawn tracker start", "spawn tracker end"),
    ("to the exec", "spawn tracker end", "exec"),
]


@dataclass
class Phase:
    phase: str
    ms: float
    requests: list[str] = field(default_factory=list)
    connections: float | None = None
    import_requests_hvac_ms: float | None = None  # from importing requests to the first connection


@dataclass
class PathPhases:
    """One path (mint or reuse): its phases, or why the probe failed."""

    rows: list[Phase] = field(default_factory=list)
    total_ms: float | None = None
    harness_ms: float = 0.0
    lookup_fresh_client_ms: float | None = None
    lookup_kept_alive_ms: float | None = None
    error: str = ""


@dataclass
class Phases:
    runs: int
    paths: dict[str, PathPhases]


def phases(ctx: Ctx) -> Phases:
    log(f"1b. phases of run: {ctx.args.phase_runs} runs each, minting and reusing")
    cfg = ctx.startup_config
    state_file = cfg.parent / "state" / "token.json"
    out, errors = cfg.parent / "phases.json", cfg.parent / "phases.err"
    found: dict[str, PathPhases] = {}
    for path in ("mint", "reuse"):
        runs = []
        for _ in range(ctx.args.phase_runs):
            if path == "mint":
                state_file.unlink(missing_ok=True)
            env = {**ctx.env, "NVT_BENCH_OUT": str(cfg.parent / "unused"), "NVT_BENCH_VAULT_PORT": str(ctx.bao.port)}
            argv = [sys.executable, str(PROBES), "phases", str(out), "run", "--config", str(cfg), "--", *AGENT]
            with open(errors, "wb") as err:
                env["NVT_BENCH_T0"] = str(time.time_ns())
                code = ctx.procs.popen(argv, env=env, stderr=err).wait(120)
            if code != 0:
                log(f"phase probe failed ({code}): {errors.read_text()[-1500:]}")
                found[path] = PathPhases(error=errors.read_text()[-1500:])
                break
            runs.append(json.loads(out.read_text()))
            procs.stop_mentioning(str(cfg), None)  # its tracker exits with the recorded exec: wait for it
        if runs:
            found[path] = summarize(runs)
    return Phases(ctx.args.phase_runs, found)


def summarize(runs: list[dict[str, Any]]) -> PathPhases:
    rows: list[Phase] = []
    for label, start, end in PHASES:
        values, requests, connects, imports = [], [], [], []
        for run in runs:
            marks = dict(run["marks"])
            if start not in marks or end not in marks:
                continue
            a, b = marks[start], marks[end]
            values.append((b - a) / 1e6)
            inside = [e for e in run["events"] if a <= e[1] <= b]
            requests.append([e[2] for e in inside if e[0] == "request"])
            connects.append(sum(1 for e in inside if e[0] == "connect"))
            first_import = {e[2]: e[1] for e in inside if e[0] == "import"}
            first_connect = next((e[1] for e in inside if e[0] == "connect"), None)
            if "requests" in first_import and first_connect is not None:
                imports.append((first_connect - first_import["requests"]) / 1e6)
        if not values:
            continue
        row = Phase(label, statistics.median(values))
        if requests and requests[0]:
            row.requests = requests[0]
            row.connections = statistics.median(connects)
        if imports:
            row.import_requests_hvac_ms = statistics.median(imports)
        rows.append(row)
    every = [dict(r["marks"]) for r in runs]
    total = [(m["exec"] - m["process start"]) / 1e6 for m in every if "exec" in m]
    harness = [
        (m["harness wrapped"] - m["imported commands.run"]) / 1e6 + (m["harness ready"] - m["python ready"]) / 1e6
        for m in every
    ]
    tls = [r["tls"] for r in runs if r.get("tls")]
    return PathPhases(
        rows=rows,
        total_ms=statistics.median(total) if total else None,
        harness_ms=statistics.median(harness),
        lookup_fresh_client_ms=statistics.median(t["fresh_client_ms"] for t in tls) if tls else None,
        lookup_kept_alive_ms=statistics.median(t["kept_alive_ms"] for t in tls) if tls else None,
    )
