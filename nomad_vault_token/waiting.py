"""Wait until Vault is usable, then do a step; retry (stamina) while Vault is unavailable.

One log line per change of Vault's state, not per attempt; STATUS through sd_notify
on every attempt; EXTEND_TIMEOUT_USEC to cover a bounded --wait-timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from nomad_vault_token import vault
from nomad_vault_token.config import Settings
from nomad_vault_token.errors import VaultUnavailable
from nomad_vault_token.notify import Notifier

log = logging.getLogger(__name__)
T = TypeVar("T")

WAIT_INITIAL = 0.2
WAIT_MAX = 2.0  # so `run` goes on within ~2 s of Vault becoming usable
WAIT_JITTER = 0.3


class _Reporter:
    def __init__(self, settings: Settings, notifier: Notifier) -> None:
        self.settings = settings
        self.notifier = notifier
        self.last = ""
        self.started = time.monotonic()

    def saw(self, what: str, attempt: int) -> None:
        if what != self.last:
            log.warning("waiting for Vault: %s", what)
            self.last = what
        self.notifier.status(f"waiting for Vault: {what} (attempt {attempt})")
        if self.settings.wait_timeout:
            left = self.settings.wait_timeout - (time.monotonic() - self.started)
            self.notifier.extend_timeout(max(left, 0) + 30)


def _state(exc: VaultUnavailable, addr: str) -> str:
    return exc.message.replace(f"Vault at {addr} ", "").replace(f"Vault at {addr}", "")


def _attempt(settings: Settings, step: Callable[[], T]) -> T:
    health = vault.health(settings)
    if not health.usable:
        raise VaultUnavailable(f"Vault at {settings.vault_addr} {health.state}")
    return step()


def when_usable(settings: Settings, notifier: Notifier, step: Callable[[], T]) -> T:
    """`step()` once Vault answers, is initialised and unsealed; bounded by settings.wait_timeout."""
    try:
        return _attempt(settings, step)
    except VaultUnavailable as exc:
        first = exc
    import stamina
    import stamina.instrumentation

    stamina.instrumentation.set_on_retry_hooks([])  # we log state changes ourselves
    reporter = _Reporter(settings, notifier)
    reporter.saw(_state(first, settings.vault_addr), 1)
    try:
        for attempt in stamina.retry_context(
            on=VaultUnavailable,
            attempts=None,
            timeout=float(settings.wait_timeout) or None,
            wait_initial=WAIT_INITIAL,
            wait_max=WAIT_MAX,
            wait_jitter=WAIT_JITTER,
        ):
            with attempt:
                try:
                    result = _attempt(settings, step)
                except VaultUnavailable as exc:
                    reporter.saw(_state(exc, settings.vault_addr), attempt.num + 1)
                    raise
                log.info("Vault is usable after %d attempts", attempt.num + 1)
                return result
    except VaultUnavailable as exc:
        raise VaultUnavailable(
            f"Vault at {settings.vault_addr} still {_state(exc, settings.vault_addr)} after "
            f"--wait-timeout {settings.wait_timeout}s: fix Vault, or raise --wait-timeout"
        ) from None
    raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover
