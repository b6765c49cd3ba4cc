"""Wait until Vault is usable, then do a step; retry (stamina) while Vault is unavailable.

One log line per change of Vault's state, not per attempt; STATUS through sd_notify
on every attempt; EXTEND_TIMEOUT_USEC to cover a bounded --wait-timeout. Gives up with
exit 69 after `wait_timeout`, or with `StillUnavailable` after `degrade_after` (whichever
comes first) so that `run` can start the agent without Vault.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import VaultUnavailable
from nomad_vault_token.core.notify import Notifier
from nomad_vault_token.vault.client import Vault

log = logging.getLogger(__name__)
T = TypeVar("T")

WAIT_INITIAL = 0.2
WAIT_MAX = 2.0  # so `run` goes on within ~2 s of Vault becoming usable
WAIT_JITTER = 0.3


class _Reporter:
    def __init__(self, settings: Settings, notifier: Notifier, bound: float | None) -> None:
        self.settings = settings
        self.bound = bound
        self.notifier = notifier
        self.last = ""
        self.started = time.monotonic()

    def saw(self, what: str, attempt: int) -> None:
        if what != self.last:
            log.warning("waiting for Vault: %s", what)
            self.last = what
        self.notifier.status(f"waiting for Vault: {what} (attempt {attempt})")
        if self.bound:
            left = self.bound - (time.monotonic() - self.started)
            self.notifier.extend_timeout(max(left, 0) + 30)


def _attempt(vault: Vault, step: Callable[[], T]) -> T:
    health = vault.health()
    if not health.usable:
        raise VaultUnavailable(f"Vault at {vault.settings.vault_addr} {health.state}", state=health.state)
    return step()


class StillUnavailable(VaultUnavailable):
    """Vault was not usable for `degrade_after` seconds: time to start without it."""


def when_usable(vault: Vault, notifier: Notifier, step: Callable[[], T], *, degrade_after: float = 0) -> T:
    """`step()` once Vault answers, is initialised and unsealed; bounded by settings.wait_timeout
    (VaultUnavailable, exit 69) and by `degrade_after` (StillUnavailable); 0 means no bound."""
    settings = vault.settings
    try:
        return _attempt(vault, step)
    except VaultUnavailable as exc:
        first = exc
    import stamina
    import stamina.instrumentation

    stamina.instrumentation.set_on_retry_hooks([])  # we log state changes ourselves
    bounds = [b for b in (float(settings.wait_timeout), float(degrade_after)) if b > 0]
    degrading = bool(degrade_after) and (not settings.wait_timeout or degrade_after < settings.wait_timeout)
    reporter = _Reporter(settings, notifier, min(bounds) if bounds else None)
    reporter.saw(first.what, 1)
    try:
        for attempt in stamina.retry_context(
            on=VaultUnavailable,
            attempts=None,
            timeout=min(bounds) if bounds else None,
            wait_initial=WAIT_INITIAL,
            wait_max=WAIT_MAX,
            wait_jitter=WAIT_JITTER,
        ):
            with attempt:
                try:
                    result = _attempt(vault, step)
                except VaultUnavailable as exc:
                    reporter.saw(exc.what, attempt.num + 1)
                    raise
                log.info("Vault is usable after %d attempts", attempt.num + 1)
                return result
    except VaultUnavailable as exc:
        if degrading:
            raise StillUnavailable(
                f"Vault at {settings.vault_addr} still {exc.what} after degraded_start_after {int(degrade_after)}s",
                state=exc.state,
                detail=exc.detail,
            ) from None
        raise VaultUnavailable(
            f"Vault at {settings.vault_addr} still {exc.what} after "
            f"--wait-timeout {settings.wait_timeout}s: fix Vault, or raise --wait-timeout",
            state=exc.state,
            detail=exc.detail,
        ) from None
    raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover
