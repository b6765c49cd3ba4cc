"""Pure token-lifetime logic: reuse rules and the tracker's schedule (no server)."""

from __future__ import annotations

import dataclasses

import pytest

from nomad_vault_token.token import lease

PERIOD = 72 * 3600
WANTED = lease.Wanted(
    policies=frozenset({"nomad_cluster"}), period=PERIOD, mint_mode="role", mint_role="nomad-server-mint", min_ttl=600
)
GOOD = lease.Observed(
    policies=frozenset({"default", "nomad_cluster"}),
    ttl=PERIOD - 5,
    renewable=True,
    orphan=True,
    period=PERIOD,
    role="nomad-server-mint",
)


def test_good_token_is_reused() -> None:
    assert lease.reuse_refusal(GOOD, WANTED) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"renewable": False}, "not renewable"),
        ({"orphan": False}, "not an orphan"),
        ({"policies": frozenset({"default", "other"})}, "policies"),
        ({"policies": frozenset({"nomad_cluster", "extra"})}, "policies"),
        ({"role": "someone-else"}, "not minted through role"),
        ({"period": 3600}, "period"),
        ({"ttl": 599}, "min_ttl"),
    ],
)
def test_each_reason_to_mint_anew(change: dict[str, object], reason: str) -> None:
    refusal = lease.reuse_refusal(dataclasses.replace(GOOD, **change), WANTED)  # type: ignore[arg-type]
    assert refusal is not None and reason in refusal


def test_create_orphan_mode_refuses_a_role_token() -> None:
    wanted = dataclasses.replace(WANTED, mint_mode="create-orphan")
    assert lease.reuse_refusal(GOOD, wanted) is not None
    assert lease.reuse_refusal(dataclasses.replace(GOOD, role=""), wanted) is None


def test_healthy_token_is_checked_at_the_cap() -> None:
    assert lease.check_delay(PERIOD * 0.75, PERIOD, 1200) == 1200


def test_checks_get_more_frequent_near_the_threshold() -> None:
    threshold = lease.renew_threshold(PERIOD)
    far = lease.check_delay(threshold + 8000, PERIOD, 1e9)
    near = lease.check_delay(threshold + 800, PERIOD, 1e9)
    assert far > near >= lease.MIN_DELAY
    assert lease.check_delay(threshold - 1, PERIOD, 1200) == lease.MIN_DELAY


def test_cap_below_min_delay_is_respected() -> None:
    assert lease.check_delay(PERIOD, PERIOD, 1) == 1
    assert lease.check_delay(0, PERIOD, 1) == 1


def test_threshold_is_below_where_the_agent_renews() -> None:
    # the agent renews at half the remaining TTL, so it never lets the TTL drop under half the period
    assert lease.renew_threshold(PERIOD) < PERIOD / 2


def test_retry_delay_backs_off_and_is_capped() -> None:
    delays = [lease.retry_delay(n, 1200) for n in range(1, 10)]
    assert delays == sorted(delays) and delays[0] == lease.MIN_DELAY and delays[-1] == 60
    assert lease.retry_delay(5, 5) == 5


def test_ttl_extrapolates_on_the_monotonic_clock() -> None:
    assert lease.ttl_now(100, checked_at=50.0, now=80.0) == 70


def test_steady_state_checks_per_day_with_defaults() -> None:
    """Default schedule: a healthy token (agent renewing at half TTL) is looked up at most 100 times a day."""
    cap = 20 * 60
    ttl, t, checks = float(PERIOD), 0.0, 0
    while t < 86400:
        delay = lease.check_delay(ttl, PERIOD, cap)
        t += delay
        ttl -= delay
        if ttl < PERIOD / 2:  # the agent renews
            ttl = PERIOD
        checks += 1
    assert checks <= 100


def test_a_revoked_token_is_replaced_and_adopted_within_90s_with_default_settings() -> None:
    """A dead server token means no task tokens for new allocations: the defaults must notice it fast."""
    from nomad_vault_token.core.config import Settings
    from nomad_vault_token.token import tracker_state

    s = Settings()
    noticed = lease.check_delay(float(s.period), s.period, s.check_interval)  # revoked just after a check
    # The agent adopted its first token long ago, so the replacement goes by SIGHUP at once; Nomad renews
    # it right after validating (nomad/vault.go:554). The tracker looks at POLL_MIN, then every elapsed/4.
    t = tracker_state.looked(tracker_state.start(0.0, "r0", 0.0), "r1", 10.0)
    t = tracker_state.handed_over(tracker_state.gone(t, 1000.0), "sighup", "b", 1000.0)
    nomad_renews_within = 5.0  # generous: Nomad validates and renews as soon as the reload lands
    now = 1000.0
    while now < 1000.0 + nomad_renews_within:
        now += tracker_state.poll_delay(t, now)
    minting_and_signals = 10.0  # login, mint, state file, SIGHUP: a few Vault requests
    assert noticed + (now - 1000.0) + minting_and_signals <= 90, (noticed, now - 1000.0)
    assert 86400 / noticed <= 2000, "lookup-self requests per host per day"
