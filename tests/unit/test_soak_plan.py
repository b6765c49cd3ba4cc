"""The fault soak's pure parts (bench/soak): the schedule a seed gives, the percentiles, the log scan."""

from __future__ import annotations

import pytest

from bench.soak.faults import KINDS, Fault, schedule
from bench.soak.invariants import scan_text
from bench.soak.report import percentile


def test_a_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert schedule(29, 300) == schedule(29, 300)
    assert schedule(29, 300) != schedule(30, 300)
    assert schedule(29, 60) == schedule(29, 300)[: len(schedule(29, 60))], "a longer run replays the shorter"


def test_every_kind_comes_in_each_round() -> None:
    plan, n = schedule(7, 600), len(KINDS)
    assert n == 11 and "keyring_revoke" in KINDS
    for start in range(0, len(plan) - n + 1, n):
        assert {f.kind for f in plan[start : start + n]} == set(KINDS)
    assert all(f.node in (1, 2, 3) for f in plan if f.kind.startswith("node_"))
    assert all(f.size > 0 for f in plan if f.kind == "snapdir_full")


@pytest.mark.parametrize(
    ("a", "b", "conflict"),
    [
        (("node_kill", 1), ("node_seal", 1), True),  # one node, one fault
        (("node_kill", 1), ("node_seal", 2), False),
        (("cluster_restart", 0), ("node_freeze", 3), True),  # the whole cluster holds every node
        (("step_down", 0), ("cluster_restart", 0), True),
        (("s3_down", 0), ("blackhole", 0), False),
        (("s3_down", 0), ("s3_down", 0), True),
        (("token_revoke", 0), ("keyring_revoke", 0), False),  # two tokens, two targets
    ],
)
def test_which_faults_may_overlap(a: tuple[str, int], b: tuple[str, int], conflict: bool) -> None:
    fa = Fault(0, 0.0, a[0], a[1], 1.0, 0)  # type: ignore[arg-type]
    fb = Fault(1, 0.0, b[0], b[1], 1.0, 0)  # type: ignore[arg-type]
    assert fa.conflicts(fb) is conflict and fb.conflicts(fa) is conflict


@pytest.mark.parametrize(
    ("values", "p", "want"),
    [([], 50, None), ([3.0], 95, 3.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.0), ([float(i) for i in range(1, 21)], 95, 19.0)],
)
def test_percentile_is_nearest_rank(values: list[float], p: float, want: float | None) -> None:
    assert percentile(values, p) == want


def test_the_log_scan_finds_secrets_and_tracebacks_and_names_neither_in_full() -> None:
    secret = "hvs.CAESIJabcdefghijklmnop"
    text = f"INFO: fine\nERROR: token {secret}\nTraceback (most recent call last):\n  File x\nValueError: y\n"
    found = scan_text(text, [secret, "short"], tool_log=True)
    assert len(found) == 2 and secret not in " ".join(found)
    assert scan_text(text, [], tool_log=False) == [], "a traceback counts in the tool's logs only"


def test_a_bench_run_keeps_the_soak_section_and_a_soak_replaces_only_its_own() -> None:
    from bench.soak.report import BEGIN, END, section_of, with_section

    soak = f"{BEGIN}\n## Fault soak: 3 faults\n{END}\n"
    page = f"# Benchmark results\n\n## 1. Start-up\nold\n\n{soak}"
    assert section_of(page) == soak
    rerun = with_section("# Benchmark results\n\n## 1. Start-up\nnew\n", section_of(page))  # bench/run
    assert "new" in rerun and "old" not in rerun and rerun.endswith(soak)
    newer = f"{BEGIN}\n## Fault soak: 5 faults\n{END}\n"
    assert with_section(rerun, newer) == rerun.replace(soak, newer)  # the soak's own --write
    assert section_of("no section") == "" and with_section("page\n", "") == "page\n"
