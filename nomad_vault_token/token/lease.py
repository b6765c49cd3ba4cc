"""Pure token-lifetime logic: may a saved token be reused, when to check, when to renew.

No I/O and no clock: every input, the time included, is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

IMPLICIT_POLICIES = frozenset({"default"})


@dataclass(frozen=True)
class Wanted:
    """What the configuration asks of the server token."""

    policies: frozenset[str]
    period: int
    mint_mode: str
    mint_role: str
    min_ttl: int


@dataclass(frozen=True)
class Observed:
    """What lookup-self says of a token (the fields this module needs)."""

    policies: frozenset[str]
    ttl: int
    renewable: bool
    orphan: bool
    period: int
    role: str


def policy_set(policies: Iterable[str]) -> frozenset[str]:
    """Policies as Vault reports them, without the implicit `default`."""
    return frozenset(policies) - IMPLICIT_POLICIES


def reuse_refusal(token: Observed, wanted: Wanted) -> str | None:
    """Why a saved token must not be reused, or None when it may be."""
    if not token.renewable:
        return "it is not renewable"
    if not token.orphan:
        return "it is not an orphan"
    if policy_set(token.policies) != wanted.policies:
        return f"its policies {sorted(policy_set(token.policies))} differ from {sorted(wanted.policies)}"
    if wanted.mint_mode == "role" and token.role != wanted.mint_role:
        return f"it was not minted through role {wanted.mint_role!r}"
    if wanted.mint_mode == "create-orphan" and token.role:
        return f"it was minted through role {token.role!r}, not create-orphan"
    if token.period != wanted.period:
        return f"its period {token.period}s differs from {wanted.period}s"
    if token.ttl < wanted.min_ttl:
        return f"only {token.ttl}s left, under min_ttl {wanted.min_ttl}s"
    return None


# ---- the tracker's schedule --------------------------------------------------------

MIN_DELAY = 2.0


def renew_threshold(period: int) -> float:
    """TTL under which the tracker renews itself: a quarter of the period.

    The agent renews at half the remaining TTL, so a healthy token never gets here.
    """
    return period / 4


def check_delay(ttl: float, period: int, cap: float) -> float:
    """Seconds until the next lookup-self: rarely when healthy (`cap`), more often near the threshold."""
    margin = ttl - renew_threshold(period)
    if margin <= 0:
        return min(MIN_DELAY, cap)
    return max(min(margin / 4, cap), min(MIN_DELAY, cap))


def retry_delay(failures: int, cap: float) -> float:
    """Back-off while Vault is unreachable or recovery fails: 2, 4, 8 ... seconds, at most `cap` (and 60)."""
    return float(min(MIN_DELAY * 2 ** max(failures - 1, 0), max(cap, MIN_DELAY), 60.0))


def ttl_now(ttl_at_check: float, checked_at: float, now: float) -> float:
    """The TTL extrapolated from the last lookup (monotonic times)."""
    return ttl_at_check - (now - checked_at)
