"""The tracker's states and their transitions: pure, no I/O, no clock (times are passed in, monotonic).

A token counts as handed over only when Nomad has renewed it: Nomad renews right after it
validates a token (nomad/vault.go:554, 672), so the token's `last_renewal` (lookup-self, with
nanoseconds) moves without the tracker renewing. The tracker compares that value with the one
it saw when it handed the token over, never with its own clock.

States (`Track.state`):

- awaiting:    the agent holds a token (at start, or since a hand-over) and has not renewed it yet
- healthy:     the agent renewed the token it holds
- not_adopted: `adoption_timeout` passed after the hand-over without a renewal by the agent
- dead:        Vault says the token is gone; a new one is being minted
- unreachable: Vault does not answer; nothing is known, nothing is signalled
- degraded:    `run` started the agent without waiting any longer for Vault (`degraded_start_after`),
               with the saved token unverified, or without a token; until Vault answers

A new token reaches the agent by SIGHUP only once that cannot kill it: Go dies of SIGHUP until
Nomad installs its handler, after setting up the agent and joining (command/agent/command.go
v1.9.7:1010, hashicorp/nomad#3885), which is after its first renewal. So a SIGHUP waits until the
agent has adopted a token and `sighup_grace` has passed since; an agent that never renewed any
token (it started while Vault was away, or its first token died at once) gets it only
UNADOPTED_GRACE times `sighup_grace` after it started. A hand-over the agent does not
adopt within `adoption_timeout` (plus jitter, so a cluster-wide revocation does not restart every
server at once) is escalated: the agent is stopped with the unit's stop signal and systemd starts
it again with the saved token.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, get_args

State = Literal["awaiting", "healthy", "not_adopted", "dead", "unreachable", "degraded"]
STATES: tuple[State, ...] = get_args(State)  # every state, in order (the metrics' state set)
Handover = Literal["start", "sighup", "pending", "restart"]
Action = Literal["sighup", "escalate"]

# After Vault comes back, Nomad retries validation every 30 s (nomad/vault.go:488-522): give it that long.
VALIDATION_RETRY = 30.0
POLL_MIN = 1.0
POLL_MAX = 10.0
POLL_LATE = 30.0
UNADOPTED_GRACE = 4


@dataclass(frozen=True)
class Policy:
    """The knobs, from Settings (seconds)."""

    adoption_timeout: float
    sighup_grace: float
    escalate: bool  # on_not_adopted == "restart"


@dataclass(frozen=True)
class Track:
    state: State
    handover: Handover  # how the agent got (or is getting) the current token
    handed_at: float  # when the current token was handed over (or written, when pending)
    baseline: str | None  # the token's last_renewal at hand-over: a different value is the agent's
    started_at: float  # when the agent was exec'd
    jitter: float  # 0..1, drawn once by the caller
    ours: str | None = None  # last_renewal after the tracker's own renewal
    adopted_at: float | None = None  # when the agent adopted the current token
    first_adoption: float | None = None  # when the agent first adopted any token (SIGHUP is safe after)
    reachable_at: float | None = None  # when Vault last came back after being unreachable
    before_outage: State | None = None  # the state to return to when Vault answers again
    escalated: bool = False
    last_renewal: str | None = None
    degraded_until: float | None = None  # when a degraded start ended (Vault answered)

    # ---- derived ----------------------------------------------------------------------

    def escalate_at(self, policy: Policy) -> float:
        """When a hand-over not adopted is escalated (jittered by up to half the timeout)."""
        due = self.handed_at + policy.adoption_timeout * (1 + self.jitter / 2)
        if self.reachable_at is not None:
            due = max(due, self.reachable_at + VALIDATION_RETRY * 2)
        return due

    def watchdog_ok(self) -> bool:
        """WATCHDOG only while the agent is known to hold, or may still take, a live token.

        A Vault outage is not the agent's fault: unreachable and degraded keep it."""
        return self.state in ("healthy", "awaiting", "unreachable", "degraded")

    def degraded_for(self, now: float) -> float | None:
        """How long the degraded start lasted (so far); None when the start was not degraded."""
        if self.state == "degraded":
            return now - self.started_at
        return None if self.degraded_until is None else self.degraded_until - self.started_at

    def adopted(self) -> bool:
        return self.adopted_at is not None


def start(now: float, baseline: str | None, jitter: float, *, degraded: bool = False) -> Track:
    """The agent was just exec'd with a token whose last_renewal is `baseline` (degraded: a token
    not verified, or none, because Vault was away)."""
    return Track("degraded" if degraded else "awaiting", "start", now, baseline, now, jitter, last_renewal=baseline)


def looked(track: Track, renewal: str | None, now: float) -> Track:
    """A lookup-self answered: the token is alive and its last_renewal is `renewal`."""
    t = _back(_undegraded(track, now), now)
    t = replace(t, last_renewal=renewal)
    if t.state == "dead":
        t = replace(t, state="awaiting" if not t.adopted() else "healthy")
    if renewal is not None and renewal not in (t.baseline, t.ours) and not t.adopted():
        return replace(
            t,
            state="healthy",
            adopted_at=now,
            first_adoption=t.first_adoption if t.first_adoption is not None else now,
        )
    return t


def renewed_by_us(track: Track, renewal: str | None) -> Track:
    """The tracker renewed the token itself: that renewal is not the agent's."""
    return replace(track, ours=renewal, last_renewal=renewal)


def unreachable(track: Track) -> Track:
    if track.state in ("unreachable", "degraded"):
        return track
    return replace(track, state="unreachable", before_outage=track.state)


def gone(track: Track, now: float) -> Track:
    """Vault says the token is gone (403, revoked, expired)."""
    return replace(_undegraded(track, now), state="dead", before_outage=None, reachable_at=None)


def handed_over(track: Track, how: Handover, baseline: str | None, now: float) -> Track:
    """A new token was written for the agent: delivered now (`sighup`, `restart`) or not yet (`pending`)."""
    return replace(
        _undegraded(track, now),
        state="awaiting",
        handover=how,
        handed_at=now,
        baseline=baseline,
        ours=None,
        adopted_at=None,
        escalated=False,
        reachable_at=None,
        before_outage=None,
        last_renewal=baseline,
    )


def sighup_safe_at(track: Track, policy: Policy) -> float:
    """From when on the agent has installed its signal handlers, as far as anyone can tell."""
    if track.first_adoption is not None:
        return track.first_adoption + policy.sighup_grace
    return track.started_at + UNADOPTED_GRACE * policy.sighup_grace


def sighup_safe(track: Track, policy: Policy, now: float) -> bool:
    return now >= sighup_safe_at(track, policy)


def due(track: Track, policy: Policy, now: float) -> tuple[Track, Action | None]:
    """What time alone makes due: a pending SIGHUP that became safe, `not_adopted`, an escalation."""
    if track.state == "awaiting" and track.handover == "pending" and sighup_safe(track, policy, now):
        return replace(track, handover="sighup", handed_at=now), "sighup"
    if track.state not in ("awaiting", "not_adopted") or now < track.escalate_at(policy):
        return track, None
    t = replace(track, state="not_adopted")
    may_escalate = (
        policy.escalate
        and t.handover in ("sighup", "pending")
        and not t.escalated
        and now >= t.started_at + policy.sighup_grace  # the stop signal too must not meet Go's default handler
    )
    if may_escalate:
        return replace(t, escalated=True), "escalate"
    return t, None


def poll_delay(track: Track, now: float) -> float:
    """How soon to look again while adoption is open: often at first, then every POLL_MAX."""
    if track.state == "awaiting":
        return min(max((now - track.handed_at) / 4, POLL_MIN), POLL_MAX)
    if track.state == "not_adopted":
        return POLL_LATE
    return float("inf")


def _undegraded(track: Track, now: float) -> Track:
    """Vault answered after a degraded start: from now on Nomad's next validation (30 s) may adopt."""
    if track.state != "degraded":
        return track
    return replace(track, state="awaiting", degraded_until=now, reachable_at=now)


def _back(track: Track, now: float) -> Track:
    """Vault answered: leave `unreachable` for the state it interrupted."""
    if track.state != "unreachable":
        return track
    return replace(track, state=track.before_outage or "awaiting", before_outage=None, reachable_at=now)


def describe(track: Track, policy: Policy, now: float) -> str:
    """The adoption part of STATUS, for people."""
    if track.state == "degraded":
        return f"degraded start {_short(now - track.started_at)} ago: Vault unreachable, token unverified"
    since = {"start": "start", "sighup": "SIGHUP", "pending": "the new token", "restart": "restart"}[track.handover]
    if track.adopted_at is not None:
        return f"adopted by Nomad {_short(track.adopted_at - track.handed_at)} after {since}"
    waited = _short(now - track.handed_at)
    if track.state == "not_adopted":
        text = f"NOT adopted by Nomad {waited} after {since}: check vault {{ enabled, address }} and -vault-token"
        if track.escalated:
            text += "; agent stopped for systemd to restart it"
        return text
    if track.handover == "pending":
        return f"new token waiting {waited} for a safe SIGHUP (the agent's signal handling may not be up yet)"
    return f"awaiting adoption by Nomad ({waited} after {since})"


def _short(seconds: float) -> str:
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"


# ---- the keyring token (Nomad's `keyring "transit"` block) ------------------------------------------
#
# Nomad reads it from its file at every wrapper build (start, key rotation) and renews it as itself then
# (go-kms-wrapping `transit_client.go`:141-181), so its `last_renewal` moving without the tracker renewing
# shows Nomad used it. A replaced token is written to the file and nothing else: no SIGHUP (keyring blocks
# are not reloaded, `server.go` v2.0.5:910-958, and none is needed: the next build reads the file).
#
# States (`Ring.state`):
# - written:     in the file; Nomad has not been seen using it yet (it uses it at its next start or rotation)
# - in_use:      Nomad renewed it: its keyring wrapper took it
# - dead:        Vault says it is gone; a new one is being minted into the file
# - unreachable: Vault does not answer (or is sealed): nothing is known
# - degraded:    the agent started without Vault's word on it (saved token unverified)
# - missing:     no keyring token at all: Nomad cannot read its keyring

RingState = Literal["written", "in_use", "dead", "unreachable", "degraded", "missing"]
RING_STATES: tuple[RingState, ...] = get_args(RingState)


@dataclass(frozen=True)
class Ring:
    state: RingState
    baseline: str | None  # last_renewal when the token was written: another value is Nomad's
    ours: str | None = None  # last_renewal after the tracker's own renewal
    used: bool = False  # Nomad used the current token
    used_once: bool = False  # Nomad used a keyring token since the agent started (it read its keyring)
    before_outage: RingState | None = None


def ring_start(baseline: str | None, *, has_token: bool, degraded: bool) -> Ring:
    if not has_token:
        return Ring("missing", None)
    return Ring("degraded" if degraded else "written", baseline)


def ring_looked(ring: Ring, renewal: str | None) -> Ring:
    """lookup-self answered for the keyring token: it is alive, its last_renewal is `renewal`."""
    r = ring
    if r.state == "degraded":  # the first word from Vault on a token saved earlier: its renewals so far were
        # the agent's before this start (nobody renews through an outage): they set the baseline
        return replace(r, state="written", baseline=renewal, before_outage=None)
    if r.state in ("unreachable", "dead"):
        r = replace(r, state=r.before_outage if r.before_outage in ("written", "in_use") else "written",
                    before_outage=None)  # fmt: skip
    if renewal is not None and renewal not in (r.baseline, r.ours):
        return replace(r, state="in_use", used=True, used_once=True)
    return r


def ring_renewed_by_us(ring: Ring, renewal: str | None) -> Ring:
    return replace(ring, ours=renewal)


def ring_unreachable(ring: Ring) -> Ring:
    if ring.state in ("unreachable", "degraded", "missing"):
        return ring
    return replace(ring, state="unreachable", before_outage=ring.state)


def ring_gone(ring: Ring) -> Ring:
    return replace(ring, state="dead", before_outage=None)


def ring_replaced(ring: Ring, baseline: str | None) -> Ring:
    """A new keyring token is in the file."""
    return replace(ring, state="written", baseline=baseline, ours=None, used=False, before_outage=None)


def ring_waiting_for_vault(ring: Ring) -> bool:
    """Nomad has not read its keyring since it started and Vault cannot be asked: it is waiting to unwrap it
    (up to 1.10.0 for ever, from 1.10.1 until start_timeout, `server.go` v1.10.1:579-582)."""
    return not ring.used_once and ring.state in ("unreachable", "degraded", "missing")


def ring_poll_delay(ring: Ring, since_start: float, window: float) -> float:
    """How soon to look at the keyring token again while the agent starts: Nomad reads its keyring then, and
    seeing it renew the token is the proof it could. Often at first, then every POLL_MAX, for `window` seconds
    after the agent started (a token replaced later is used at Nomad's next rotation: days away)."""
    if ring.used_once or since_start > window:
        return float("inf")
    return min(max(since_start / 4, POLL_MIN), POLL_MAX)
