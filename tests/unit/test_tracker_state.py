"""The tracker's states and transitions (nomad_vault_token.token.tracker_state), table-tested without processes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nomad_vault_token.token import tracker_state
from nomad_vault_token.token.tracker_state import Policy, Track

POLICY = Policy(adoption_timeout=120, sighup_grace=30, escalate=True)
T0 = 1000.0


def started(baseline: str | None = None, jitter: float = 0.0) -> Track:
    return tracker_state.start(T0, baseline, jitter)


def adopted_at(when: float) -> Track:
    return tracker_state.looked(started("r0"), "r1", when)


# ---- adoption ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "seen", "state", "adopted"),
    [
        (None, None, "awaiting", False),  # minted, never renewed: nothing yet
        (None, "r1", "healthy", True),  # the agent's first renewal
        ("r0", "r0", "awaiting", False),  # the value run's own renew-self left: not the agent's
        ("r0", "r1", "healthy", True),
    ],
)
def test_adoption_is_a_renewal_after_the_hand_over(
    baseline: str | None, seen: str | None, state: str, adopted: bool
) -> None:
    t = tracker_state.looked(started(baseline), seen, T0 + 3)
    assert (t.state, t.adopted()) == (state, adopted)
    if adopted:
        assert t.adopted_at == T0 + 3 and t.first_adoption == T0 + 3


def test_the_trackers_own_renewal_is_not_adoption() -> None:
    t = tracker_state.renewed_by_us(started("r0"), "ours")
    t = tracker_state.looked(t, "ours", T0 + 5)
    assert t.state == "awaiting" and not t.adopted()
    assert tracker_state.looked(t, "agents", T0 + 6).adopted()


def test_later_renewals_keep_it_healthy_and_first_adoption_fixed() -> None:
    t = adopted_at(T0 + 2)
    for i, when in enumerate((T0 + 50, T0 + 100), start=2):
        t = tracker_state.looked(t, f"r{i}", when)
    assert t.state == "healthy" and t.first_adoption == T0 + 2 and t.adopted_at == T0 + 2


# ---- not adopted and escalation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("handover", "escalate", "after", "state", "action"),
    [
        ("start", True, 119, "awaiting", None),
        ("start", True, 121, "not_adopted", None),  # at start a restart would not help: report only
        ("sighup", True, 119, "awaiting", None),
        ("sighup", True, 121, "not_adopted", "escalate"),
        ("sighup", False, 121, "not_adopted", None),  # on_not_adopted = warn
        ("pending", True, 121, "not_adopted", "escalate"),  # no SIGHUP could be sent safely: restart it
    ],
)
def test_not_adopted_within_the_bound(
    handover: tracker_state.Handover, escalate: bool, after: float, state: str, action: str | None
) -> None:
    # grace 60: a pending SIGHUP is not safe before T0 + 240, the escalation is due at T0 + 220
    policy = replace(POLICY, escalate=escalate, sighup_grace=60)
    t = started("r0")
    if handover != "start":
        t = tracker_state.handed_over(tracker_state.gone(t, T0), handover, None, T0 + 100)
    base = T0 if handover == "start" else T0 + 100
    t2, got = tracker_state.due(t, policy, base + after)
    assert (t2.state, got) == (state, action)


def test_escalation_happens_once() -> None:
    t = tracker_state.handed_over(adopted_at(T0 + 1), "sighup", "n0", T0 + 200)
    t, first = tracker_state.due(t, POLICY, T0 + 400)
    t, second = tracker_state.due(t, POLICY, T0 + 500)
    assert (first, second) == ("escalate", None) and t.escalated
    assert "agent stopped for systemd to restart it" in tracker_state.describe(t, POLICY, T0 + 500)


@pytest.mark.parametrize(("jitter", "due_at"), [(0.0, 120.0), (0.5, 150.0), (1.0, 180.0)])
def test_escalation_is_jittered_by_up_to_half_the_timeout(jitter: float, due_at: float) -> None:
    t = tracker_state.handed_over(replace(adopted_at(T0 + 1), jitter=jitter), "sighup", None, T0 + 200)
    assert tracker_state.due(t, POLICY, T0 + 200 + due_at - 0.1)[1] is None
    assert tracker_state.due(t, POLICY, T0 + 200 + due_at)[1] == "escalate"


def test_a_vault_outage_pushes_the_escalation_past_nomads_next_validation() -> None:
    t = tracker_state.handed_over(adopted_at(T0 + 1), "sighup", "n0", T0 + 200)
    t = tracker_state.unreachable(t)
    assert t.state == "unreachable" and tracker_state.due(t, POLICY, T0 + 1000)[1] is None  # never while Vault is away
    t = tracker_state.looked(t, "n0", T0 + 1000)  # back, still not adopted
    assert t.state == "awaiting"
    assert tracker_state.due(t, POLICY, T0 + 1000 + 2 * tracker_state.VALIDATION_RETRY - 1)[1] is None
    assert tracker_state.due(t, POLICY, T0 + 1000 + 2 * tracker_state.VALIDATION_RETRY)[1] == "escalate"


def test_late_adoption_clears_not_adopted() -> None:
    t, _ = tracker_state.due(started("r0"), POLICY, T0 + 500)
    assert t.state == "not_adopted"
    t = tracker_state.looked(t, "r1", T0 + 600)
    assert t.state == "healthy" and t.watchdog_ok()


# ---- SIGHUP only when it cannot kill the agent ---------------------------------------------


@pytest.mark.parametrize(
    ("first_adoption", "now", "safe"),
    [
        (None, T0 + 119, False),  # never renewed a token: its handler may not be installed yet
        (None, T0 + 120, True),  # ... but surely is UNADOPTED_GRACE graces after it started
        (T0 + 5, T0 + 34, False),  # inside the grace after the first renewal
        (T0 + 5, T0 + 35, True),
    ],
)
def test_sighup_safety(first_adoption: float | None, now: float, safe: bool) -> None:
    t = replace(started(), first_adoption=first_adoption)
    assert tracker_state.sighup_safe(t, POLICY, now) is safe


def test_a_pending_token_gets_its_sighup_once_safe() -> None:
    t = tracker_state.looked(started("r0"), "r1", T0 + 5)  # first adoption at T0+5
    t = tracker_state.handed_over(tracker_state.gone(t, T0), "pending", None, T0 + 10)
    assert tracker_state.due(t, POLICY, T0 + 34) == (t, None)
    t2, action = tracker_state.due(t, POLICY, T0 + 35)
    assert action == "sighup" and t2.handover == "sighup" and t2.handed_at == T0 + 35
    assert tracker_state.due(t2, POLICY, T0 + 36)[1] is None  # sent once


def test_the_stop_signal_also_waits_for_the_grace_after_start() -> None:
    policy = replace(POLICY, adoption_timeout=1, sighup_grace=30)
    t = tracker_state.handed_over(tracker_state.gone(started(), T0), "pending", None, T0 + 2)
    assert tracker_state.due(t, policy, T0 + 10)[1] is None
    assert tracker_state.due(t, policy, T0 + 30)[1] == "escalate"


def test_an_agent_that_never_renewed_gets_its_sighup_long_after_start() -> None:
    t = tracker_state.handed_over(tracker_state.gone(started(), T0), "pending", None, T0 + 2)
    t = replace(t, jitter=1.0)  # escalation not before T0 + 2 + 180
    assert tracker_state.due(t, POLICY, T0 + 119)[1] is None
    t2, action = tracker_state.due(t, POLICY, T0 + 120)
    assert (action, t2.handover) == ("sighup", "sighup")


# ---- watchdog, polling, words --------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "ok"),
    [
        (lambda: started(), True),
        (lambda: adopted_at(T0 + 1), True),
        (lambda: tracker_state.unreachable(adopted_at(T0 + 1)), True),
        (lambda: tracker_state.gone(adopted_at(T0 + 1), T0 + 2), False),
        (lambda: tracker_state.due(started(), POLICY, T0 + 500)[0], False),
    ],
)
def test_watchdog_only_while_the_agent_may_hold_a_live_token(make: object, ok: bool) -> None:
    assert make().watchdog_ok() is ok  # type: ignore[operator]


def test_polling_is_quick_at_first_then_capped_and_stops_once_adopted() -> None:
    t = started()
    delays = [tracker_state.poll_delay(t, T0 + s) for s in (0, 8, 40, 100)]
    assert delays == [tracker_state.POLL_MIN, 2.0, tracker_state.POLL_MAX, tracker_state.POLL_MAX]
    assert tracker_state.poll_delay(adopted_at(T0 + 1), T0 + 2) == float("inf")
    assert tracker_state.poll_delay(tracker_state.due(t, POLICY, T0 + 500)[0], T0 + 500) == tracker_state.POLL_LATE


@pytest.mark.parametrize(
    ("make", "now", "text"),
    [
        (lambda: adopted_at(T0 + 4), T0 + 9, "adopted by Nomad 4s after start"),
        (lambda: started(), T0 + 12, "awaiting adoption by Nomad (12s after start)"),
        (
            lambda: tracker_state.due(tracker_state.handed_over(adopted_at(T0 + 1), "sighup", None, T0 + 10), POLICY, T0 + 130)[
                0
            ],
            T0 + 130,
            "NOT adopted by Nomad 2m after SIGHUP: check vault { enabled, address } and -vault-token",
        ),
        (
            lambda: tracker_state.handed_over(started(), "pending", None, T0 + 1),
            T0 + 11,
            "new token waiting 10s for a safe SIGHUP",
        ),
    ],
)
def test_describe(make: object, now: float, text: str) -> None:
    assert text in tracker_state.describe(make(), POLICY, now)  # type: ignore[operator]


# ---- degraded start ------------------------------------------------------------------------


def test_a_degraded_start_keeps_the_watchdog_until_vault_answers() -> None:
    t = tracker_state.start(T0, None, 0.0, degraded=True)
    assert t.state == "degraded" and t.watchdog_ok()
    assert tracker_state.unreachable(t) == t  # still degraded, not merely unreachable
    assert tracker_state.due(t, POLICY, T0 + 10_000) == (t, None)  # never not_adopted, never escalated
    assert "degraded start 3m ago: Vault unreachable, token unverified" in tracker_state.describe(t, POLICY, T0 + 180)
    assert t.degraded_for(T0 + 180) == 180


def test_vault_back_with_the_saved_token_alive_then_nomad_adopts_it() -> None:
    t = tracker_state.start(T0, "r0", 0.0, degraded=True)
    t = tracker_state.looked(t, "r0", T0 + 300)  # Vault answers: the token is alive, Nomad has not renewed yet
    assert t.state == "awaiting" and t.degraded_for(T0 + 999) == 300
    # Nomad validates again within 30 s (vault.go:488-522): no escalation before that has had its chance
    assert tracker_state.due(t, POLICY, T0 + 300 + 2 * tracker_state.VALIDATION_RETRY - 1)[0].state == "awaiting"
    t = tracker_state.looked(t, "r1", T0 + 320)
    assert t.state == "healthy" and t.adopted()


def test_vault_back_with_the_saved_token_dead_or_none_goes_to_recovery() -> None:
    t = tracker_state.gone(tracker_state.start(T0, None, 0.0, degraded=True), T0 + 60)
    assert t.state == "dead" and t.degraded_for(T0 + 999) == 60
    t = tracker_state.handed_over(t, "pending", None, T0 + 61)
    assert t.state == "awaiting" and t.degraded_for(T0 + 999) == 60
