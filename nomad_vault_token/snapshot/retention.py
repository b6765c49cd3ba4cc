"""Snapshot file names and retention. Pure: no I/O, no clock (the time is passed in).

A kept snapshot is `<prefix>-<YYYYMMDDTHHMMSSZ>-<index>.snap` (the UTC time it was
taken, the raft index it holds), its manifest `<prefix>-<YYYYMMDDTHHMMSSZ>-<index>.json`
beside it, and while it is being received `.<prefix>-<random>.partial` (hidden, and
never a `.snap`, so nothing that lists `*.snap` sees a half-written file).

Only names this module would have written, character for character, are ours:
`parse_name` answers None for anything else, and nothing but what it parsed is ever
deleted. The time has no colons (SMB/NTFS mounts refuse them) and sorts as text.

Retention (`plan_retention`) counts only verified snapshots (a manifest vouches for
them); `keep` and `max_age` are limits, both applied when both are given: a verified
snapshot goes when it is beyond the `keep` newest or older than `max_age`. Never on a
failed run, never the newest verified snapshot, never an unverified file (it is
reported, left for an operator or `snapshot verify`), never a name that is not ours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

SNAP_SUFFIX = ".snap"
MANIFEST_SUFFIX = ".json"
PARTIAL_SUFFIX = ".partial"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"

_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NONCE = re.compile(r"[0-9a-f]{8,64}")
_TAIL = re.compile(r"-(?P<time>[0-9]{8}T[0-9]{6}Z)-(?P<index>0|[1-9][0-9]{0,19})(?P<suffix>\.snap|\.json)")


def check_prefix(prefix: str) -> str:
    """`prefix` if it can start a snapshot name, else ValueError saying what is allowed."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"snapshot prefix {prefix!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return prefix


@dataclass(frozen=True)
class SnapshotName:
    """One kept snapshot's identity: prefix, UTC time taken (whole seconds), raft index."""

    prefix: str
    taken_at: datetime
    index: int

    @property
    def stem(self) -> str:
        return f"{self.prefix}-{self.taken_at.strftime(TIME_FORMAT)}-{self.index}"

    @property
    def file_name(self) -> str:
        return self.stem + SNAP_SUFFIX

    @property
    def manifest_name(self) -> str:
        return self.stem + MANIFEST_SUFFIX

    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.taken_at, self.index, self.prefix)


def snapshot_name(prefix: str, taken_at: datetime, index: int) -> SnapshotName:
    """The name for a snapshot of raft `index` taken at `taken_at` (timezone-aware; stored as UTC seconds)."""
    check_prefix(prefix)
    if taken_at.tzinfo is None:
        raise ValueError("taken_at must be timezone-aware")
    if index < 0:
        raise ValueError(f"raft index {index} is negative")
    return SnapshotName(prefix, taken_at.astimezone(UTC).replace(microsecond=0), index)


def _parse(file_name: str, prefix: str, suffix: str) -> SnapshotName | None:
    if not file_name.startswith(prefix):
        return None
    m = _TAIL.fullmatch(file_name, len(prefix))
    if m is None or m["suffix"] != suffix:
        return None
    try:
        taken_at = datetime.strptime(m["time"], TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # 20261399T...: digits in the right places, no such time
        return None
    name = SnapshotName(prefix, taken_at, int(m["index"]))
    # Only what `snapshot_name` itself would write is ours.
    return name if (name.file_name if suffix == SNAP_SUFFIX else name.manifest_name) == file_name else None


def parse_name(file_name: str, prefix: str) -> SnapshotName | None:
    """The snapshot a `.snap` file name stands for, or None when the name is not exactly ours."""
    check_prefix(prefix)
    return _parse(file_name, prefix, SNAP_SUFFIX)


def parse_manifest_name(file_name: str, prefix: str) -> SnapshotName | None:
    """The snapshot a manifest (`.json`) name belongs to, or None when the name is not exactly ours."""
    check_prefix(prefix)
    return _parse(file_name, prefix, MANIFEST_SUFFIX)


def only_ours(names: Iterable[str], prefix: str) -> list[str]:
    """`names` (to delete), or ValueError naming the first that is not exactly a `prefix` snapshot or manifest
    name: checked before anything is removed, on disk or in a bucket."""
    wanted = list(names)
    for name in wanted:
        if parse_name(name, prefix) is None and parse_manifest_name(name, prefix) is None:
            raise ValueError(f"refusing to delete {name!r}: not a {prefix} snapshot or manifest name")
    return wanted


def partial_name(prefix: str, nonce: str) -> str:
    """The hidden name of a snapshot being received (`nonce`: random lowercase hex)."""
    check_prefix(prefix)
    if not _NONCE.fullmatch(nonce):
        raise ValueError(f"nonce {nonce!r} is not 8-64 lowercase hex digits")
    return f".{prefix}-{nonce}{PARTIAL_SUFFIX}"


def is_partial(file_name: str, prefix: str) -> bool:
    """Whether `file_name` is one of our temp files (left behind only by a killed run)."""
    head = f".{check_prefix(prefix)}-"
    return (
        file_name.startswith(head)
        and file_name.endswith(PARTIAL_SUFFIX)
        and bool(_NONCE.fullmatch(file_name[len(head) : -len(PARTIAL_SUFFIX)]))
    )


@dataclass(frozen=True)
class Listing:
    """A directory's names, sorted into ours and not ours."""

    snapshots: tuple[SnapshotName, ...]  # `.snap` files, oldest first
    manifests: frozenset[SnapshotName]  # snapshots a manifest file names (whether or not the `.snap` exists)
    partials: tuple[str, ...]  # our temp files
    foreign: tuple[str, ...]  # everything else: never touched


def classify(names: Iterable[str], prefix: str) -> Listing:
    """Sort a directory listing into our snapshots, manifests and temp files, and the rest."""
    check_prefix(prefix)
    snaps: list[SnapshotName] = []
    manifests: set[SnapshotName] = set()
    partials: list[str] = []
    foreign: list[str] = []
    for name in sorted(names):
        if (snap := _parse(name, prefix, SNAP_SUFFIX)) is not None:
            snaps.append(snap)
        elif (man := _parse(name, prefix, MANIFEST_SUFFIX)) is not None:
            manifests.add(man)
        elif is_partial(name, prefix):
            partials.append(name)
        else:
            foreign.append(name)
    snaps.sort(key=SnapshotName.sort_key)
    return Listing(tuple(snaps), frozenset(manifests), tuple(partials), tuple(foreign))


@dataclass(frozen=True)
class Present:
    """A `.snap` file in the directory and whether its manifest vouches for it (verified implies a manifest)."""

    name: SnapshotName
    verified: bool


@dataclass(frozen=True)
class Retention:
    """Limits on verified snapshots: at most `keep` of them, none older than `max_age`. None: no limit."""

    keep: int | None = None
    max_age: timedelta | None = None

    def __post_init__(self) -> None:
        if self.keep is not None and self.keep < 1:
            raise ValueError(f"keep {self.keep}: keep at least 1 snapshot (the newest verified one is always kept)")
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise ValueError(f"max age {self.max_age}: must be positive")


@dataclass(frozen=True)
class RetentionPlan:
    """What to delete (file names, each `.snap` before its manifest, oldest first) and why the rest stays."""

    delete: tuple[str, ...]
    kept: tuple[SnapshotName, ...]  # verified snapshots that stay, oldest first
    unverified: tuple[SnapshotName, ...]  # left alone, never counted
    reason: str  # why nothing was deleted, when nothing was


def plan_retention(present: Iterable[Present], policy: Retention, now: datetime, run_succeeded: bool) -> RetentionPlan:
    """The files retention deletes, given the snapshots present, the limits, the time and this run's outcome."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    items = sorted(present, key=lambda p: p.name.sort_key())
    good = [p.name for p in items if p.verified]
    unverified = tuple(p.name for p in items if not p.verified)
    if not run_succeeded:
        return RetentionPlan((), tuple(good), unverified, "this run failed: retention deletes nothing")
    if not good:
        return RetentionPlan((), (), unverified, "no verified snapshot: retention deletes nothing")
    newest = good[-1]
    doomed: list[SnapshotName] = []
    for position, name in enumerate(reversed(good)):  # 0: newest
        if name == newest:
            continue
        beyond_count = policy.keep is not None and position >= policy.keep
        too_old = policy.max_age is not None and now - name.taken_at > policy.max_age
        if beyond_count or too_old:
            doomed.append(name)
    doomed.sort(key=SnapshotName.sort_key)
    delete: list[str] = []
    for name in doomed:
        delete += [name.file_name, name.manifest_name]
    kept = tuple(n for n in good if n not in doomed)
    return RetentionPlan(tuple(delete), kept, unverified, "" if doomed else "within the limits: nothing to delete")
