"""Snapshot names and retention, pure: table tests, no files, the time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from nomad_vault_token.snapshot.retention import (
    Present,
    Retention,
    SnapshotName,
    check_prefix,
    classify,
    is_partial,
    parse_manifest_name,
    parse_name,
    partial_name,
    plan_retention,
    snapshot_name,
)

T0 = datetime(2026, 11, 23, 19, 29, 42, tzinfo=UTC)
NOW = T0 + timedelta(days=30)


def snap(hours_before_now: float, index: int = 0, prefix: str = "vault") -> SnapshotName:
    taken = (NOW - timedelta(hours=hours_before_now)).replace(microsecond=0)
    return snapshot_name(prefix, taken, index or int(1000 - hours_before_now))


# ---- names ------------------------------------------------------------------


def test_name_format() -> None:
    name = snapshot_name("vault", T0, 39)
    assert name.file_name == "vault-20261123T192942Z-39.snap"
    assert name.manifest_name == "vault-20261123T192942Z-39.json"


def test_name_is_utc_whole_seconds() -> None:
    local = datetime(2026, 11, 23, 20, 29, 42, 987654, tzinfo=timezone(timedelta(hours=1)))
    assert snapshot_name("vault", local, 7).file_name == "vault-20261123T192942Z-7.snap"


def test_naive_time_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        snapshot_name("vault", datetime(2026, 1, 1), 1)


@pytest.mark.parametrize("prefix", ["vault", "vault-prod", "v", "a.b_c-1", "X" * 64])
def test_round_trip(prefix: str) -> None:
    name = snapshot_name(prefix, T0, 18446744073709551615)
    assert parse_name(name.file_name, prefix) == name
    assert parse_manifest_name(name.manifest_name, prefix) == name
    assert parse_name(name.manifest_name, prefix) is None
    assert parse_manifest_name(name.file_name, prefix) is None


@pytest.mark.parametrize("prefix", ["", "-x", ".x", "a/b", "a b", "é", "X" * 65, "vault\n"])
def test_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="snapshot prefix"):
        check_prefix(prefix)


@pytest.mark.parametrize(
    "file_name",
    [
        "vault-20261123T192942Z-39.snap.bak",
        "vault-20261123T192942Z-39.snap~",
        "vault-20261123T192942Z-39.SNAP",
        "vault-20261123T192942Z-039.snap",  # we never write leading zeros
        "vault-20261123T192942Z-.snap",
        "vault-20261123T192942Z--1.snap",
        "vault-20261123T192942-39.snap",  # no Z
        "vault-2026-11-23T19:29:42Z-39.snap",
        "vault-20261399T192942Z-39.snap",  # no such date
        "vault-20261123T256042Z-39.snap",  # no such time
        "vault-prod-20261123T192942Z-39.snap",  # another prefix's
        "xvault-20261123T192942Z-39.snap",
        ".vault-20261123T192942Z-39.snap",
        "vault-20261123T192942Z-39",
        "vault-20261123T192942Z-39.snap/",
        "vault-20261123T192942Z-123456789012345678901.snap",  # more digits than a uint64
        "vault.snap",
        "",
    ],
)
def test_only_exact_names_are_ours(file_name: str) -> None:
    assert parse_name(file_name, "vault") is None
    assert parse_manifest_name(file_name.replace(".snap", ".json"), "vault") is None


def test_prefix_with_dash_does_not_claim_a_shorter_prefix() -> None:
    name = snapshot_name("vault", T0, 1).file_name
    assert parse_name(name, "vault-20261123T192942Z") is None
    assert parse_name(snapshot_name("vault-prod", T0, 1).file_name, "vault") is None


def test_partial_names() -> None:
    name = partial_name("vault", "0123abcd0123abcd")
    assert name == ".vault-0123abcd0123abcd.partial"
    assert is_partial(name, "vault")
    assert parse_name(name, "vault") is None
    assert not is_partial(".vault-XYZ.partial", "vault")
    assert not is_partial(".other-0123abcd.partial", "vault")
    with pytest.raises(ValueError, match="nonce"):
        partial_name("vault", "../../x")


def test_classify() -> None:
    a = snapshot_name("vault", T0, 39)
    b = snapshot_name("vault", T0 + timedelta(hours=1), 40)
    names = [
        b.file_name,
        a.manifest_name,
        a.file_name,
        ".vault-0123abcd.partial",
        "notes.txt",
        "vault-latest.snap",
        "other-20261123T192942Z-39.snap",
        b.file_name + ".tmp",
    ]
    listing = classify(names, "vault")
    assert listing.snapshots == (a, b)
    assert listing.manifests == {a}
    assert listing.partials == (".vault-0123abcd.partial",)
    assert set(listing.foreign) == {
        "notes.txt",
        "vault-latest.snap",
        "other-20261123T192942Z-39.snap",
        b.file_name + ".tmp",
    }


# ---- retention ----------------------------------------------------------------


def files(*names: SnapshotName) -> tuple[str, ...]:
    return tuple(f for n in names for f in (n.file_name, n.manifest_name))


S = [snap(h) for h in (100, 80, 60, 40, 20, 1)]  # oldest first


@pytest.mark.parametrize(
    ("policy", "verified", "ok", "deleted"),
    [
        # keep N: the N newest verified stay
        (Retention(keep=3), [True] * 6, True, files(*S[:3])),
        (Retention(keep=6), [True] * 6, True, ()),
        (Retention(keep=10), [True] * 6, True, ()),
        (Retention(keep=1), [True] * 6, True, files(*S[:5])),
        # a failed run deletes nothing, whatever the limits
        (Retention(keep=1), [True] * 6, False, ()),
        (Retention(keep=1, max_age=timedelta(hours=2)), [True] * 6, False, ()),
        # no limit: nothing goes
        (Retention(), [True] * 6, True, ()),
        # max age alone
        (Retention(max_age=timedelta(hours=50)), [True] * 6, True, files(*S[:3])),
        (Retention(max_age=timedelta(hours=60)), [True] * 6, True, files(*S[:2])),  # exactly 60h old stays
        # both are limits: beyond the count OR too old goes
        (Retention(keep=4, max_age=timedelta(hours=90)), [True] * 6, True, files(*S[:2])),
        (Retention(keep=2, max_age=timedelta(hours=90)), [True] * 6, True, files(*S[:4])),
        # the newest verified one stays even when too old
        (Retention(max_age=timedelta(minutes=1)), [True] * 6, True, files(*S[:5])),
        (Retention(keep=1, max_age=timedelta(minutes=1)), [True, True, True, True, True, False], True, files(*S[:4])),
        # unverified ones are neither counted nor deleted
        (Retention(keep=2), [True, False, True, False, True, False], True, files(S[0])),
        (Retention(keep=1), [False] * 6, True, ()),
        (Retention(max_age=timedelta(hours=1)), [False, False, False, False, False, True], True, ()),
    ],
)
def test_retention_table(policy: Retention, verified: list[bool], ok: bool, deleted: tuple[str, ...]) -> None:
    present = [Present(n, v) for n, v in zip(S, verified, strict=True)]
    plan = plan_retention(present, policy, NOW, ok)
    assert plan.delete == deleted
    assert plan.unverified == tuple(n for n, v in zip(S, verified, strict=True) if not v)
    doomed = {f for f in deleted if f.endswith(".snap")}
    assert {n.file_name for n in plan.kept} == {n.file_name for n, v in zip(S, verified, strict=True) if v} - doomed
    if not deleted:
        assert plan.reason


def test_never_the_newest_good_one() -> None:
    present = [Present(n, True) for n in S]
    for keep in range(1, 8):
        for hours in (0.01, 1, 10, 1000):
            plan = plan_retention(present, Retention(keep=keep, max_age=timedelta(hours=hours)), NOW, True)
            assert S[-1].file_name not in plan.delete
            assert S[-1] in plan.kept


def test_input_order_does_not_matter() -> None:
    present = [Present(n, True) for n in S]
    forward = plan_retention(present, Retention(keep=2), NOW, True)
    backward = plan_retention(list(reversed(present)), Retention(keep=2), NOW, True)
    assert forward == backward


def test_each_snap_before_its_manifest_oldest_first() -> None:
    plan = plan_retention([Present(n, True) for n in S], Retention(keep=2), NOW, True)
    assert plan.delete == (
        S[0].file_name,
        S[0].manifest_name,
        S[1].file_name,
        S[1].manifest_name,
        S[2].file_name,
        S[2].manifest_name,
        S[3].file_name,
        S[3].manifest_name,
    )


def test_same_second_ordered_by_index() -> None:
    a = snapshot_name("vault", T0, 10)
    b = snapshot_name("vault", T0, 11)
    plan = plan_retention([Present(b, True), Present(a, True)], Retention(keep=1), NOW, True)
    assert plan.delete == files(a)


def test_future_snapshot_is_not_too_old() -> None:
    future = snapshot_name("vault", NOW + timedelta(hours=5), 999)
    plan = plan_retention(
        [Present(S[-1], True), Present(future, True)], Retention(max_age=timedelta(minutes=30)), NOW, True
    )
    assert plan.delete == files(S[-1])


def test_keep_n_over_n_plus_2_runs() -> None:
    """Each successful run adds one verified snapshot and applies keep=3: three stay, the oldest go."""
    present: list[Present] = []
    for run in range(5):
        taken = T0 + timedelta(hours=run)
        present.append(Present(snapshot_name("vault", taken, 100 + run), True))
        plan = plan_retention(present, Retention(keep=3), taken, True)
        gone = set(plan.delete)
        present = [p for p in present if p.name.file_name not in gone]
    assert [p.name.index for p in present] == [102, 103, 104]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"keep": 0}, "keep at least 1"), ({"keep": -3}, "keep at least 1"), ({"max_age": timedelta(0)}, "positive")],
)
def test_bad_limits(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Retention(**kwargs)  # type: ignore[arg-type]


def test_naive_now_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_retention([], Retention(keep=1), datetime(2026, 1, 1), True)
