"""4. Vault requests per host per day in steady state: counted in OpenBao's audit log over the steady
window (by the token's accessor and the client's User-Agent), scaled to a day; and computed from the
pure schedule (`lease.check_delay`) for the defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.common import DEFAULT_CHECK_INTERVAL, accessor, paths, user_agent
from bench.steady import Window
from nomad_vault_token.token import lease
from testbed.bao import PERIOD


@dataclass
class Count:
    count: int
    paths: dict[str, int]
    per_day: float


@dataclass
class VaultLoad:
    window_s: float
    scale: int
    scaled_hours: float
    tracker: Count
    agent: Count
    bao_agent_real_time: Count
    bao_agent_user_agents: list[str]
    schedule: dict[str, float]


def tracker(window: Window) -> list[dict[str, Any]]:
    """The tracker's requests: the server token's, made with requests (the stand-in Nomad sends no User-Agent)."""
    return [e for e in window.entries if accessor(e) == window.accessor and user_agent(e).startswith("python-requests")]


def vault_load(window: Window, scale: int) -> VaultLoad:
    ours = [e for e in window.entries if accessor(e) == window.accessor]
    agent = [e for e in ours if not user_agent(e)]
    others = [e for e in window.entries if accessor(e) != window.accessor]
    bao_agent = [e for e in others if "python" not in user_agent(e) and user_agent(e)]
    per_day = 86400 / (window.seconds * scale)
    mine = tracker(window)
    return VaultLoad(
        window_s=window.seconds,
        scale=scale,
        scaled_hours=window.seconds * scale / 3600,
        tracker=Count(len(mine), paths(mine), len(mine) * per_day),
        agent=Count(len(agent), paths(agent), len(agent) * per_day),
        bao_agent_real_time=Count(len(bao_agent), paths(bao_agent), len(bao_agent) * 86400 / window.seconds),
        bao_agent_user_agents=sorted({user_agent(e) for e in bao_agent}),
        schedule=schedule_per_day(),
    )


DEFAULT_LABEL = f"default (period 72h, check_interval {DEFAULT_CHECK_INTERVAL}s)"


def schedule_per_day(days: int = 30) -> dict[str, float]:
    """VaultLoad per day from the pure schedule (`lease.check_delay`), Nomad renewing at half the TTL.

    Simulated over `days` (of the schedule's own time: a scaled period gives per-equivalent-day figures).
    """
    found = {}
    for label, period, cap in (
        (DEFAULT_LABEL, PERIOD, DEFAULT_CHECK_INTERVAL),
        ("as benched, scaled 600x (432s, 1s)", PERIOD // 600, max(DEFAULT_CHECK_INTERVAL // 600, 1)),
        ("check_interval 20m (the default before revocations had to be noticed fast)", PERIOD, 1200),
    ):
        day = 86400 * period / PERIOD
        lookups = renewals = agent_renewals = 0
        t, expiry, agent_next = 0.0, float(period), period / 2
        while t < days * day:
            t += lease.check_delay(expiry - t, period, cap)
            while agent_next <= t:  # the agent renews at half the remaining TTL, to a full period
                expiry, agent_next = agent_next + period, agent_next + period / 2
                agent_renewals += 1
            lookups += 1
            if expiry - t < lease.renew_threshold(period):
                renewals += 1
                expiry = t + period
        found[f"{label}: tracker lookups + renewals"] = (lookups + renewals) / days
        found[f"{label}: of which tracker renewals"] = renewals / days
        found[f"{label}: the agent's own renewals"] = agent_renewals / days
    return found
