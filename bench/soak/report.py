"""The figure: faults by kind, violations, recovery times (p50, p95, max) per kind; written beside the
other results (`bench/results/soak-<date>.json`) and as a section of `bench/RESULTS.md`."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.soak.faults import KINDS

BENCH = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- soak: begin -->", "<!-- soak: end -->"


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def figure(doc: dict[str, Any]) -> dict[str, Any]:
    """Per kind: faults injected, skipped, recovered, and the recovery times' p50, p95 and max."""
    injected = Counter(f["kind"] for f in doc["injected"])
    skipped = Counter(f["kind"] for f, _ in doc["skipped"])
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    unrecovered: Counter[str] = Counter()
    for r in doc["recoveries"]:
        if r["took"] is None:
            unrecovered[r["kind"]] += 1
        else:
            times[r["kind"]].append(r["took"])
    return {
        k: {
            "injected": injected[k],
            "skipped": skipped[k],
            "unrecovered": unrecovered[k],
            "p50": percentile(times[k], 50),
            "p95": percentile(times[k], 95),
            "max": max(times[k]) if times[k] else None,
        }
        for k in KINDS
    }


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def markdown(doc: dict[str, Any]) -> str:
    fig = figure(doc)
    total = sum(row["injected"] for row in fig.values())
    kinds = sum(1 for row in fig.values() if row["injected"])
    lines = [
        BEGIN,
        f"## Fault soak: {total} faults of {kinds} kinds, {len(doc['violations'])} violations "
        f"(seed {doc['seed']}, {doc['seconds'] / 60:g} min)",
        "",
        f"`python -m bench.soak --seed {doc['seed']} --minutes {doc['seconds'] / 60:g}` on {doc['when']}, "
        f"commit {doc['commit']}; load before {doc['load_before']}, after {doc['load_after']} "
        "(2 cores shared). Recovery: from the fault healed until its own effect is gone: the relaunched node "
        "unsealed (kill); the node unsealed with a leader (freeze, seal); a leader (step-down); 3/3 unsealed "
        "with a leader (cluster restart); the agent holding a live token other than the revoked one (revoke); "
        "Nomad's keyring wrapper built with the keyring token's replacement, at a rotation the soak asks for "
        "once the file holds a live new one (keyring revoke); "
        "the tracker through the proxy again (black hole); the next snapshot and copy done, 6 s timer "
        "included (S3 down, directory full); the unsealer READY, its unit's RestartSec=10 included. Seconds. "
        "Skipped: nothing to act on for 20 s (e.g. no leader to step down). Violations list the seed's time "
        "since the start and the faults active, to replay; 'outside the documented promise' are the cases "
        "nomad_vault_token/unseal/plan.py documents as the cost of 'sealed on purpose'.",
        "",
        "| fault | injected | skipped | not recovered | p50 | p95 | max |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k, row in fig.items():
        lines.append(
            f"| {k} | {row['injected']} | {row['skipped']} | {row['unrecovered']} | {_s(row['p50'])} | "
            f"{_s(row['p95'])} | {_s(row['max'])} |"
        )
    lines += ["", f"Violations: {len(doc['violations'])}."]
    for v in doc["violations"]:
        lines.append(f"- {v['elapsed']}s `{v['check']}`: {v['detail']} (faults {v['faults']}; load {v['load']})")
    if doc["excused"]:
        lines += ["", f"Outside the documented promise (not counted): {len(doc['excused'])}."]
        lines += [f"- {v['elapsed']}s `{v['check']}`: {v['detail']}" for v in doc["excused"]]
    lines.append(END)
    return "\n".join(lines) + "\n"


def with_section(text: str, section: str) -> str:
    """`text` (RESULTS.md) with `section` in place of its soak section, or after it when it has none; `text`
    as it is when `section` is empty."""
    if not section:
        return text
    if BEGIN in text and END in text:
        return text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1 :]
    return text.rstrip("\n") + "\n\n" + section


def section_of(text: str) -> str:
    """The soak section of RESULTS.md, "" when it has none: `bench/run` rewrites the rest and keeps it."""
    if BEGIN not in text or END not in text:
        return ""
    return text[text.index(BEGIN) : text.index(END) + len(END)] + "\n"


def write(doc: dict[str, Any]) -> Path:
    """The raw document in bench/results/, the section in RESULTS.md (replacing the previous one)."""
    out = BENCH / "results" / f"soak-{time.strftime('%Y-%m-%dT%H%M')}.json"
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    results = BENCH / "RESULTS.md"
    results.write_text(with_section(results.read_text(), markdown(doc)))
    return out
