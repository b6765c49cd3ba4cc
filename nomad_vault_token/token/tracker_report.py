"""What the tracker tells people and machines: STATUS, `tracker.json` for `status`, the metrics textfile.

Pure: the tracker hands a `View` (what it knows now, the clock read once) and gets back text, a JSON
document and gauges. Writing them is the tracker's (`Tracker.report`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, get_args

from nomad_vault_token.core.durations import format_duration
from nomad_vault_token.token.tracker_state import (
    RING_STATES,
    STATES,
    Handover,
    Ring,
    State,
    Track,
    ring_waiting_for_vault,
)

if TYPE_CHECKING:  # the metrics module is loaded only by a tracker that writes metrics
    from nomad_vault_token.core.metrics import Gauge


@dataclass
class Health:
    """What the tracker last knew of the token and of Vault."""

    ttl: float = 0.0
    checked_at: float = 0.0  # monotonic
    last_renewal: float | None = None  # wall clock, from lookup-self
    renewed_by: str = ""
    unreachable_since: float | None = None  # wall clock
    dead_since: float | None = None  # wall clock: token gone and not yet replaced
    problem: str = ""
    vault_state: str = ""  # VaultUnavailable.what while unreachable


@dataclass(frozen=True)
class RingView:
    """What the tracker knows of the keyring token at one instant."""

    accessor: str
    ring: Ring
    ttl: float  # extrapolated to now
    last_renewal: float | None  # wall clock
    renewed_by: str
    dead_since: float | None  # wall clock
    unreachable_since: float | None  # wall clock
    vault_state: str
    problem: str
    last_lookup: float | None
    last_mint: float | None
    path: str
    agent_age: float = 0.0  # seconds since the agent was exec'd


# Nomad reads its keyring while it starts (well within its 30 s start_timeout): after this long without a sign
# of it, STATUS says Nomad has not read its keyring (up to 1.10.0 a failed start waits for ever).
KEYRING_READ_WITHIN = 60.0


@dataclass(frozen=True)
class View:
    """The tracker's knowledge at one instant, for reporting."""

    accessor: str
    agent_pid: int
    track: Track
    health: Health
    ttl: float  # extrapolated to now
    has_token: bool
    adoption: str  # tracker_state.describe(...)
    degraded_for: float | None
    config_problem: str
    cert_days: int | None
    cert_warning: str
    cert_not_after: float | None  # wall clock
    last_lookup: float | None  # wall clock
    last_mint: float | None  # wall clock
    wall: float  # time.time() when the view was taken
    legacy: bool = True  # the legacy server token is handed to the agent
    ring: RingView | None = None  # the keyring token, when `keyring = true`


def ring_status(r: RingView, wall: float) -> str:
    """The keyring token's part of STATUS. Never hides that Nomad cannot read its keyring."""
    name = f"keyring token {r.accessor[:8]}..."
    state = r.ring.state
    if ring_waiting_for_vault(r.ring):
        return f"waiting for Vault to unwrap Nomad's keyring: {r.vault_state or 'unreachable'}"
    if state == "missing":
        return f"NO keyring token: Nomad cannot read its keyring; {r.problem or 'minting one'}"
    if state == "dead":
        return (f"{name} DEAD since {_clock(r.dead_since or wall)}: Nomad cannot read its keyring at its next "
                f"rotation or restart; {r.problem or 'replacing it'}")  # fmt: skip
    text = f"{name} ttl {format_duration(r.ttl)}"
    if state == "unreachable":
        return f"{text}; Vault unreachable since {_clock(r.unreachable_since or wall)} ({r.vault_state})"
    if state == "in_use":
        text += ", in use by Nomad"
    elif not r.ring.used_once and r.agent_age > KEYRING_READ_WITHIN:
        text += (f", NOT read by Nomad {format_duration(r.agent_age)} after its start: Nomad has not read its keyring "
                 "(up to 1.10.0 a start that found Vault away waits for ever): restart the agent")  # fmt: skip
    else:
        text += f", in {r.path}, not used by Nomad yet"
    if r.last_renewal is not None:
        text += f", renewed {format_duration(max(wall - r.last_renewal, 0))} ago"
        if r.renewed_by:
            text += f" by {r.renewed_by}"
    if r.problem:
        text += f"; {r.problem}"
    return text


def status_line(v: View) -> str:
    if not v.legacy:  # Nomad 1.10+: the keyring token is the only one
        parts = [ring_status(v.ring, v.wall)] if v.ring is not None else ["no token"]
        if v.config_problem:
            parts.append(f"agent config: {v.config_problem}")
        if v.cert_warning:
            parts.append(f"WARNING: {v.cert_warning}")
        elif v.cert_days is not None:
            parts.append(f"client cert expires in {v.cert_days} days")
        return "; ".join(parts)
    h = v.health
    parts = [f"token {v.accessor[:8]}... ttl {format_duration(v.ttl)}"]
    if v.track.state == "degraded":
        since = _clock(h.unreachable_since or v.wall)
        held = f"token {v.accessor[:8]}... unverified" if v.has_token else "no token yet"
        parts = [f"degraded: Vault unreachable since {since}, {held}"]
    elif h.dead_since is None:
        parts[0] += ", " + v.adoption
    if h.dead_since is not None:
        parts = [f"token {v.accessor[:8]}... DEAD since {_clock(h.dead_since)}, {h.problem or 'recovering'}"]
    elif h.last_renewal is not None:
        parts[0] += f", renewed {format_duration(v.wall - h.last_renewal)} ago"
        if h.renewed_by:
            parts[0] += f" by {h.renewed_by}"
    if h.unreachable_since is not None and v.track.state != "degraded":
        parts.append(f"Vault unreachable since {_clock(h.unreachable_since)} ({h.vault_state})")
    elif h.problem and h.dead_since is None:
        parts.append(h.problem)
    if v.ring is not None:
        parts.append(ring_status(v.ring, v.wall))
    if v.config_problem:
        parts.append(f"agent config: {v.config_problem}")
    if v.cert_warning:
        parts.append(f"WARNING: {v.cert_warning}")
    elif v.cert_days is not None:
        parts.append(f"client cert expires in {v.cert_days} days")
    return "; ".join(parts)


@dataclass(frozen=True)
class Published:
    """tracker.json (no token in it): what the tracker writes and `status` and `check` read, one model for both."""

    pid: int
    agent_pid: int
    accessor: str
    state: State
    adopted: bool
    adoption: str
    handover: Handover
    degraded_for: float | None
    status: str
    updated_at: float  # wall clock
    legacy: bool = True  # false: the agent holds no server token, only the keyring's
    keyring: Mapping[str, Any] | None = None  # `ring_document`: the keyring token's state, when keyring = true

    VERSION: ClassVar[int] = 1

    def to_json(self) -> dict[str, Any]:
        return {"version": self.VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Published:
        """The document as the tracker wrote it; ValueError when it is not one (another version, a torn file)."""
        try:
            state, handover = doc["state"], doc["handover"]
            if doc.get("version") != cls.VERSION or state not in STATES or handover not in get_args(Handover):
                raise ValueError(f"not a version {cls.VERSION} tracker.json")
            degraded_for = doc.get("degraded_for")
            return cls(
                pid=int(doc["pid"]),
                agent_pid=int(doc["agent_pid"]),
                accessor=str(doc["accessor"]),
                state=state,
                adopted=bool(doc["adopted"]),
                adoption=str(doc["adoption"]),
                handover=handover,
                degraded_for=None if degraded_for is None else float(degraded_for),
                status=str(doc["status"]),
                updated_at=float(doc["updated_at"]),
                legacy=bool(doc.get("legacy", True)),
                keyring=ring if isinstance(ring := doc.get("keyring"), dict) else None,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a tracker.json: {exc!r}") from None


def document(v: View, pid: int) -> dict[str, Any]:
    """tracker.json, for `status` (no token in it)."""
    return Published(
        pid=pid,
        agent_pid=v.agent_pid,
        accessor=v.accessor,
        state=v.track.state,
        adopted=v.track.adopted(),
        adoption=v.adoption,
        handover=v.track.handover,
        degraded_for=v.degraded_for,
        status=status_line(v),
        updated_at=v.wall,
        legacy=v.legacy,
        keyring=None if v.ring is None else ring_document(v.ring, v.wall),
    ).to_json()


def ring_document(r: RingView, wall: float) -> dict[str, Any]:
    """The keyring token's part of tracker.json (its accessor, never the token)."""
    return {
        "accessor": r.accessor,
        "state": r.ring.state,
        "in_use": r.ring.used,
        "waiting_for_vault": ring_waiting_for_vault(r.ring),
        "ttl": None if r.ring.state in ("dead", "missing", "degraded") else max(r.ttl, 0.0),
        "file": r.path,
        "status": ring_status(r, wall),
    }


def gauges(v: View) -> list[Gauge]:
    """nomad_vault_token_tracker.prom: what is unknown is left out, never written as 0."""
    from nomad_vault_token.core import metrics
    from nomad_vault_token.core.metrics import flag, gauge

    out = [] if v.ring is None else ring_gauges(v.ring, v.wall)
    if not v.legacy:
        return out
    out += metrics.state_set("nomad_vault_token_tracker_state", STATES, v.track.state)
    out.append(gauge("nomad_vault_token_token_adopted", flag(v.track.adopted())))
    out.append(gauge("nomad_vault_token_degraded_start", flag(v.degraded_for is not None)))
    if v.degraded_for is not None:
        out.append(gauge("nomad_vault_token_degraded_duration_seconds", v.degraded_for))
    if v.has_token and v.health.dead_since is None and v.health.checked_at:
        ttl = max(v.ttl, 0.0)
        out.append(gauge("nomad_vault_token_token_ttl_seconds", ttl))
        out.append(gauge("nomad_vault_token_token_expiry_timestamp_seconds", v.wall + ttl))
    elif v.health.dead_since is not None:
        out.append(gauge("nomad_vault_token_token_ttl_seconds", 0.0))
    for name, value in (
        ("nomad_vault_token_token_last_renewal_timestamp_seconds", v.health.last_renewal),
        ("nomad_vault_token_token_last_lookup_timestamp_seconds", v.last_lookup),
        ("nomad_vault_token_token_last_mint_timestamp_seconds", v.last_mint),
        ("nomad_vault_token_client_cert_expiry_timestamp_seconds", v.cert_not_after),
    ):
        if value is not None:
            out.append(gauge(name, value))
    return out


def ring_gauges(r: RingView, wall: float) -> list[Gauge]:
    from nomad_vault_token.core import metrics
    from nomad_vault_token.core.metrics import flag, gauge

    out = metrics.state_set("nomad_vault_token_keyring_state", RING_STATES, r.ring.state)
    out.append(gauge("nomad_vault_token_keyring_token_in_use", flag(r.ring.used)))
    out.append(gauge("nomad_vault_token_keyring_waiting_for_vault", flag(ring_waiting_for_vault(r.ring))))
    if r.ring.state in ("dead", "missing"):
        out.append(gauge("nomad_vault_token_keyring_token_ttl_seconds", 0.0))
    elif r.ring.state != "degraded":
        out.append(gauge("nomad_vault_token_keyring_token_ttl_seconds", max(r.ttl, 0.0)))
    if r.last_mint is not None:
        out.append(gauge("nomad_vault_token_keyring_token_last_mint_timestamp_seconds", r.last_mint))
    if r.last_lookup is not None:
        out.append(gauge("nomad_vault_token_keyring_token_last_lookup_timestamp_seconds", r.last_lookup))
    return out


def _clock(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))
