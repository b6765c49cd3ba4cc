"""The report: every figure of a run (`Results`), the targets met or not, and RESULTS.md's markdown.
Every table goes through `table.table`."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.bare import ARGV_FLOOR, CONFIG_BUDGET_MS, HVAC_FLOOR, BareStartups
from bench.imports import Imports
from bench.keyring import VARIANTS as KEYRING_VARIANTS
from bench.keyring import KeyringStartup
from bench.memory import Memory
from bench.phases import Phases
from bench.restore import table as restore_table
from bench.snapshots import BAO_SAVE, UNVERIFIED, VERIFIED
from bench.startup import VARIANTS, Startup
from bench.table import table
from bench.tokens import Tokens
from bench.unseal_reaction import Reaction
from bench.vault_load import VaultLoad

# Ratios are measured in one run, on one machine: they are what the targets are about.
TARGETS = {
    "mint": 0.75,  # run minting / the bash script
    "reuse": 0.4,  # run reusing / the bash script
    "mint_vs_bao_exec": 0.15,  # run minting / bao agent in process-supervisor mode
    "above_floor_ms": 40.0,  # run minting - (python + import hvac + the same requests on one connection)
    "memory": 0.5,  # tracker RSS / bao agent (cert auto-auth, file sink)
    "requests_per_day": 2000,  # 1,440 lookup-self a day (check_interval 60s): nothing to a Vault server
    "live_tokens": 1,
    "keyring": 1.15,  # run with both tokens / run with the server token alone (one login, same connection)
    "unseal_s": 1.0,  # a restarted node: its first sealed answer to unsealed, median
    "snapshot_verified": 1.1,  # snapshot verified as it streams / the same stream unverified, and / bao's save
    "restore_s": 60.0,  # total loss to serving (empty nodes started -> canary read), 3 nodes, 64 MiB
}
PROBE_NAMES = {
    "python": "bare python",
    "hvac": "python + hvac (lookup-self x3)",
    "nvt-vault": "+ nomad_vault_token config/vault/lease/state/notify",
    "nvt-vault+tls": "+ tls.check_client (cryptography)",
    "nvt-run-path": "+ everything `run` imports (typer, cli, commands) = the forked tracker's load",
}
MEMORY_ROWS = {
    "tracker": "tracker",
    "bao_agent": "bao agent (cert auto-auth, file sink)",
    "bao_exec": "bao agent exec (env_template, its child running {after:.0f} s)",
}


@dataclass
class Results:
    date: str
    command: str
    machine: dict[str, Any]
    versions: dict[str, str]
    params: dict[str, Any]
    startup: Startup | None = None
    keyring: KeyringStartup | None = None
    phases: Phases | None = None
    bare: BareStartups | None = None
    imports: Imports | None = None
    memory: Memory | None = None
    memory_probes: dict[str, dict[str, int]] = field(default_factory=dict)
    vault_load: VaultLoad | None = None
    tokens: Tokens | None = None
    unseal: Reaction | None = None
    snapshots: list[dict[str, Any]] = field(default_factory=list)  # bench/snapshots.py's rows
    restore: list[dict[str, Any]] = field(default_factory=list)  # bench/restore.py's rows
    elapsed_s: float = 0.0


@dataclass
class Target:
    name: str
    wanted: str
    measured: str
    met: bool | None  # None: reported, not a target


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.0f}{unit}" if abs(value) >= 10 else f"{value:.1f}{unit}"


def mib(kib: int | None) -> str:
    return f"{(kib or 0) / 1024:.1f}"


def targets(r: Results) -> list[Target]:
    out: list[Target] = []
    k = r.keyring
    if k:
        for what, ratio, a, b in (("minting", k.ratio_mint, "mint_keyring", "mint"),
                                  ("reusing", k.ratio_reuse, "reuse_keyring", "reuse")):  # fmt: skip
            ms_a, ms_b = k.variants[a].spread.median, k.variants[b].spread.median
            out.append(Target(f"run --keyring vs run, {what} (both tokens vs the server token alone)",
                              f"<= {TARGETS['keyring']}x", f"{ratio:.2f}x ({ms_a:.0f} vs {ms_b:.0f} ms)",
                              ratio <= TARGETS["keyring"]))  # fmt: skip
    s = r.startup
    if s:
        bash = s.variants["bash"].spread.median
        for v in ("mint", "reuse"):
            x = s.variants[v]
            out.append(
                Target(
                    f"run {v} vs bash script (with Nomad's checks)",
                    f"<= {TARGETS[v]}x",
                    f"{x.ratio_to_bash:.2f}x ({x.spread.median:.0f} vs {bash:.0f} ms)",
                    x.ratio_to_bash <= TARGETS[v],
                )
            )
        mint, exec_, floor = (s.variants[v].spread.median for v in ("mint", "bao_exec", "floor"))
        ratio = mint / exec_
        out.append(
            Target(
                "run mint vs bao agent exec (cert auto-auth, env_template)",
                f"<= {TARGETS['mint_vs_bao_exec']}x",
                f"{ratio:.2f}x ({mint:.0f} vs {exec_:.0f} ms)",
                ratio <= TARGETS["mint_vs_bao_exec"],
            )
        )
        above = mint - floor
        out.append(
            Target(
                "run mint above the floor (python + import hvac + its requests on one connection)",
                f"<= +{TARGETS['above_floor_ms']:.0f} ms",
                f"+{above:.0f} ms ({mint:.0f} vs {floor:.0f} ms)",
                above <= TARGETS["above_floor_ms"],
            )
        )
    m = r.memory
    if m:
        tr, ba = m.final["tracker"], m.final["bao_agent"]
        out.append(
            Target(
                "tracker RSS vs bao agent",
                f"<= {TARGETS['memory']}x",
                f"{m.ratio():.2f}x ({mib(tr['VmRSS'])} vs {mib(ba['VmRSS'])} MiB)",
                m.ratio() <= TARGETS["memory"],
            )
        )
    q = r.vault_load
    if q:
        from bench.vault_load import DEFAULT_LABEL

        per_day = q.schedule[f"{DEFAULT_LABEL}: tracker lookups + renewals"]
        wanted = TARGETS["requests_per_day"]
        out.append(
            Target("Vault requests per host per day (ours, default schedule)", f"<= {wanted}", f"{per_day:.0f}",
                   per_day <= wanted)
        )
    f = r.bare
    if f and ARGV_FLOOR in f.added:
        out.append(
            Target(
                "run's agent checks before the exec (argv)",
                f"<= +{CONFIG_BUDGET_MS:.0f} ms",
                f"+{f.argv_ms:.1f} ms",
                f.argv_ms <= CONFIG_BUDGET_MS,
            )
        )
        out.append(
            Target(
                "reading the agent's config files (pyhcl): in the tracker, after the exec",
                f"<= +{CONFIG_BUDGET_MS:.0f} ms to be on run's path",
                f"+{f.hcl_ms:.0f} ms",
                None,
            )
        )
    t = r.tokens
    if t:
        out.append(
            Target(
                f"live server tokens after {t.restarts} restarts",
                f"== {TARGETS['live_tokens']}",
                f"{t.run} (bash: {t.bash})",
                t.run == TARGETS["live_tokens"],
            )
        )
    out += _unseal_targets(r.unseal) + _snapshot_targets(r.snapshots) + _restore_targets(r.restore)
    return out


SERVING = "serving (canary read)"


def _restore_targets(rows: list[dict[str, Any]]) -> list[Target]:
    tool = next((row for row in rows if row["variant"] != "bao alone"), None)
    bao = next((row for row in rows if row["variant"] == "bao alone"), None)
    if tool is None or SERVING not in tool["seconds"]:
        return []
    s = tool["seconds"][SERVING]
    beside = f", bao's restore path {bao['seconds'][SERVING]:.1f} s" if bao and SERVING in bao["seconds"] else ""
    return [
        Target(
            f"total loss to serving, 3 nodes, {tool['data_mib']} MiB from S3 (snapshot restore latest)",
            f"<= {TARGETS['restore_s']:g} s",
            f"{s:.1f} s{beside}",
            s <= TARGETS["restore_s"] if tool["data_mib"] >= 64 else None,
        )
    ]


def _unseal_targets(u: Reaction | None) -> list[Target]:
    if u is None or not u.sealed_to_unsealed:
        return []
    s = u.sealed_to_unsealed
    median = statistics.median(s)
    return [
        Target(
            "a restarted Vault node: its first sealed answer to unsealed (median)",
            f"< {TARGETS['unseal_s']:g} s",
            f"{median:.2f} s (max {max(s):.2f} s, {len(s)} restarts)",
            median < TARGETS["unseal_s"],
        ),
        Target(
            "the unsealer's requests per node per minute, steady state (defaults)",
            "-",
            f"{u.requests_per_node_per_minute:.1f}",
            None,
        ),
    ]


def _snapshot_targets(rows: list[dict[str, Any]]) -> list[Target]:
    if not rows:
        return []
    size = max(row["data_mib"] for row in rows)
    at = {row["what"]: row for row in rows if row["data_mib"] == size}
    out: list[Target] = []
    verified = at.get(VERIFIED)
    for label, key in (("the same stream unverified", UNVERIFIED), ("bao operator raft snapshot save", BAO_SAVE)):
        other = at.get(key)
        if verified is None or other is None:
            continue
        ratio = verified["best_s"] / other["best_s"]
        out.append(
            Target(
                f"snapshot, verified as it streams, vs {label} ({size} MiB of data, best)",
                f"<= {TARGETS['snapshot_verified']:g}x",
                f"{ratio:.2f}x ({verified['best_s']:.2f} vs {other['best_s']:.2f} s)",
                ratio <= TARGETS["snapshot_verified"],
            )
        )
    peaks = {row["data_mib"]: row["peak_rss_mib"] for row in rows if row["what"] == VERIFIED}
    if peaks:
        shown = ", ".join(f"{rss:g} MiB at {mib_} MiB" for mib_, rss in sorted(peaks.items()))
        out.append(Target("snapshot's peak RSS by size of data (flat: blocks, not the file)", "-", shown, None))
    return out


Lines = list[str]


def _header(r: Results) -> Lines:
    mach = r.machine
    start = ", ".join(f"{x:.2f}" for x in mach["loadavg_start"])
    end = ", ".join(f"{x:.2f}" for x in mach.get("loadavg_end", ()))
    return [
        f"Date: {r.date}  ",
        f"Command: `{r.command}`  ",
        f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory_gib']} GiB, Python {mach['python']}, "
        f"Linux {mach['kernel']}; load average {start} at the start, {end} at the end  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in r.versions.items()),
        "",
        "## Targets",
        "",
        *table(
            ["target", "wanted", "measured", "met"],
            [(t.name, t.wanted, t.measured, {None: "-", True: "yes", False: "NO"}[t.met]) for t in targets(r)],
        ),
    ]


def _startup(s: Startup) -> Lines:
    rows = []
    for x in (s.variants[v] for v in VARIANTS):
        spread = f"{x.spread.p25:.0f}-{x.spread.p75:.0f}"
        rows.append((x.label, f"{x.spread.median:.0f}", spread, f"{x.ratio_to_bash:.2f}", f"{x.audited_requests:.0f}"))
    return [
        "",
        f"## 1. Start-up: process start to the agent's exec ({s.runs} runs each, interleaved)",
        "",
        *table(["variant", "median ms", "p25-p75 ms", "x bash", "audited Vault requests"], rows),
        "",
        "OpenBao does not audit sys/health: `run` makes one such request more per Vault step (see phases).",
        "`bao agent` (exec) renders its env_template, then waits out a fixed 2 s debounce in its exec "
        "server before it starts the child; the floor makes run's mint requests (phases, below) on one "
        "kept-alive connection, then execs the agent.",
    ]


def _keyring(k: KeyringStartup) -> Lines:
    rows = [
        (
            x.label,
            f"{x.spread.median:.0f}",
            f"{x.spread.p25:.0f}-{x.spread.p75:.0f}",
            f"{x.audited_requests:.0f}",
            f"{x.logins:.0f}",
        )
        for x in (k.variants[v] for v in KEYRING_VARIANTS)
    ]
    return [
        "",
        f"## 1k. Start-up with the keyring token ({k.runs} runs each, interleaved)",
        "",
        *table(["variant", "median ms", "p25-p75 ms", "audited Vault requests", "cert logins"], rows),
        "",
        f"Both tokens cost {k.ratio_mint:.2f}x the server token alone when minting, {k.ratio_reuse:.2f}x when "
        "reusing: one certificate login and one kept-alive connection serve both.",
    ]


def _bare(f: BareStartups, s: Startup | None) -> Lines:
    lines = [
        "",
        "### Bare start-ups (process start to exit, median)",
        "",
        *table(["command", "ms"], [(f"`{label}`", f"{ms:.0f}") for label, ms in f.ms.items()]),
    ]
    if s:
        bash, floor, exec_ = (s.variants[v].spread.median for v in ("bash", "floor", "bao_exec"))
        lines += [
            "",
            f"Budgets at these figures: reuse <= {TARGETS['reuse'] * bash:.0f} ms, mint <= "
            f"{TARGETS['mint'] * bash:.0f} ms (bash script), <= {TARGETS['mint_vs_bao_exec'] * exec_:.0f} ms "
            f"(bao agent exec), <= {floor + TARGETS['above_floor_ms']:.0f} ms (floor + "
            f"{TARGETS['above_floor_ms']:.0f}); `{HVAC_FLOOR}` alone takes {fmt(f.ms.get(HVAC_FLOOR))} ms.",
        ]
    return lines


def _phases(p: Phases) -> Lines:
    lines: Lines = []
    for path, data in p.paths.items():
        if data.error:
            lines += ["", f"Phases of `run` ({path}): probe failed: {data.error[:300]}"]
            continue
        rows = []
        for row in data.rows:
            extra = ""
            if row.import_requests_hvac_ms is not None:
                extra = f" (of which importing requests + hvac: {row.import_requests_hvac_ms:.0f} ms)"
            rows.append((f"{row.phase}{extra}", f"{row.ms:.1f}", ", ".join(row.requests), fmt(row.connections)))
        total = f"total to exec (the probe's own wrapping, {data.harness_ms:.1f} ms, included)"
        rows.append((total, fmt(data.total_ms), "", ""))
        lines += [
            "",
            f"### Where `run`'s time goes ({path}, with checks; median of {p.runs} runs)",
            "",
            *table(["phase", "ms", "HTTP requests", "TCP+TLS connections"], rows),
        ]
        if data.lookup_fresh_client_ms is not None and data.lookup_kept_alive_ms is not None:
            lines += [
                "",
                f"lookup-self with a new client and connection per call: "
                f"{data.lookup_fresh_client_ms:.1f} ms; on one kept-alive client: {data.lookup_kept_alive_ms:.1f} ms.",
            ]
    return lines


def _imports(i: Imports) -> Lines:
    return [
        "",
        f"## 2. Import time of the run path (`python -X importtime`, reuse with checks, median of "
        f"{i.runs} runs): {i.total_ms:.0f} ms in {i.modules} modules",
        "",
        "Top 10 modules by cumulative time (nested: a module's time includes what it imports):",
        "",
        *table(
            ["module", "cumulative ms", "self ms"],
            [(f"{'. ' * m.depth}{m.module}", f"{m.cumulative_ms:.1f}", f"{m.self_ms:.1f}") for m in i.top10],
        ),
        "",
        "Top-level imports (what the code asked for) and self time summed per package:",
        "",
        *table(["top-level import", "cumulative ms"], [(m.module, f"{m.cumulative_ms:.1f}") for m in i.top_level]),
        "",
        *table(["package", "self ms (sum)"], [(name, f"{ms:.1f}") for name, ms in list(i.by_package.items())[:12]]),
    ]


def _memory(m: Memory) -> Lines:
    rows = []
    for key, label in MEMORY_ROWS.items():
        if x := m.final.get(key):
            kinds = ("VmRSS", "RssAnon", "RssFile", "Pss", "VmHWM")
            rows.append((label.format(after=m.bao_exec_after_s), *(mib(x.get(k)) for k in kinds)))
    return [
        "",
        f"## 3. Memory after {m.window_s:.0f} s: the tracker had made {m.tracker_checks} checks "
        f"(= {m.default_schedule_hours:.0f} h of the default schedule's 3 per hour)",
        "",
        *table(["process", "VmRSS MiB", "RssAnon MiB", "RssFile MiB", "PSS MiB", "VmHWM MiB"], rows),
    ]


def _memory_probes(probes: dict[str, dict[str, int]]) -> Lines:
    rows = [(PROBE_NAMES.get(k, k), mib(x["VmRSS"]), mib(x.get("Pss"))) for k, x in probes.items()]
    return [
        "",
        "What a tracker carrying less would weigh (fresh process, imports, 3 lookup-selfs):",
        "",
        *table(["probe", "VmRSS MiB", "PSS MiB"], rows),
    ]


def _vault_load(q: VaultLoad) -> Lines:
    b = q.bao_agent_real_time
    rows = [
        ("tracker (ours)", str(q.tracker.count), f"{q.tracker.per_day:.1f}", str(q.tracker.paths)),
        ("stand-in Nomad (its own renewals)", str(q.agent.count), f"{q.agent.per_day:.1f}", str(q.agent.paths)),
        ("bao agent, real time (token TTL 5m from its cert role)", str(b.count), f"{b.per_day:.0f}", str(b.paths)),
    ]
    return [
        "",
        f"## 4. Vault requests in steady state ({q.window_s:.0f} s measured, time scaled {q.scale}x = "
        f"{q.scaled_hours:.0f} h; counted in the audit log)",
        "",
        *table(["who", "requests in window", "per day", "paths"], rows),
        "",
        "From the pure schedule (`lease.check_delay`, Nomad renewing at half the TTL):",
        "",
        *table(["schedule", "per day"], [(label, f"{value:.2f}") for label, value in q.schedule.items()]),
    ]


def _tokens(t: Tokens) -> Lines:
    return [
        "",
        f"## 5. Live server tokens after {t.restarts} restarts (stand-in Nomad started, validated, stopped)",
        "",
        *table(
            ["started by", "live tokens with policy nomad_cluster"],
            [("nomad-vault-token run", str(t.run)), ("the bash script", str(t.bash))],
        ),
    ]


def _unseal(u: Reaction) -> Lines:
    s, r = u.sealed_to_unsealed, u.restart_to_unsealed
    rows = [
        ("first sealed answer -> unsealed", f"{statistics.median(s):.3f}", f"{max(s):.3f}"),
        ("restart -> unsealed", f"{statistics.median(r):.3f}", f"{max(r):.3f}"),
    ]
    return [
        "",
        f"## 6. A restarted Vault node: the unsealer's reaction ({u.restarts} restarts of a standby of a 3-node "
        f"raft cluster, watcher interval {u.interval:g} s, its defaults)",
        "",
        *table(["from", "median s", "max s"], rows),
        "",
        f"Steady state: {u.requests_per_node_per_minute:.1f} requests per node per minute over "
        f"{u.steady_window:.0f} s (counted by TLS proxies in front of each node).",
    ]


def _snapshots(rows: list[dict[str, Any]]) -> Lines:
    return [
        "",
        "## 7. Snapshots at size (OpenBao on raft loaded with random data; best and median of the rounds)",
        "",
        *table(
            ["data", "snapshot", "what", "best s", "median s", "MiB/s", "peak RSS MiB", "CPU s", "OpenBao CPU s"],
            [
                (
                    f"{x['data_mib']} MiB",
                    f"{x['snapshot_bytes'] / (1 << 20):.0f} MiB",
                    x["what"],
                    x["best_s"],
                    x["median_s"],
                    x["mib_per_s"],
                    x["peak_rss_mib"],
                    x["cpu_s"],
                    x["server_cpu_s"],
                )
                for x in rows
            ],
        ),
    ]


def render(r: Results) -> str:
    lines = _header(r)
    if r.startup:
        lines += _startup(r.startup)
    if r.keyring:
        lines += _keyring(r.keyring)
    if r.bare:
        lines += _bare(r.bare, r.startup)
    if r.phases:
        lines += _phases(r.phases)
    if r.imports:
        lines += _imports(r.imports)
    if r.memory:
        lines += _memory(r.memory)
    if r.memory_probes:
        lines += _memory_probes(r.memory_probes)
    if r.vault_load:
        lines += _vault_load(r.vault_load)
    if r.tokens:
        lines += _tokens(r.tokens)
    if r.unseal and r.unseal.sealed_to_unsealed:
        lines += _unseal(r.unseal)
    if r.snapshots:
        lines += _snapshots(r.snapshots)
    if r.restore:
        lines += ["", "## Restore after total loss (bench/restore.py)", "", restore_table(r.restore)]
    return "\n".join(lines) + "\n"
