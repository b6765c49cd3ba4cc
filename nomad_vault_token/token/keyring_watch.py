"""The tracker's watch over the keyring token: looked up on the same adaptive schedule as the server token,
renewed when nobody else renews it, replaced in its file when Vault says it is gone, with no signal to the
agent (Nomad reads the file again at its next wrapper build). The states are `tracker_state`'s `Ring`.
"""

from __future__ import annotations

import logging
import time

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import NvtError, TokenInvalid, VaultUnavailable
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.token import lease, tracker_state
from nomad_vault_token.token.tracker_report import RingView
from nomad_vault_token.vault.client import TokenInfo, Vault

log = logging.getLogger(__name__)


class KeyringWatch:
    def __init__(
        self, settings: Settings, vault: Vault, token: Secret | None, info: TokenInfo, *, degraded: bool
    ) -> None:
        self.settings = settings
        self.vault = vault
        self.token = token
        self.info = info
        self.ring = tracker_state.ring_start(_mark(info), has_token=token is not None, degraded=degraded)
        self.ttl = float(info.ttl)
        self.checked_at = time.monotonic()
        self.last_renewal = _wall(info)
        self.renewed_by = ""
        self.dead_since: float | None = None
        self.unreachable_since: float | None = None
        self.problem = ""
        self.vault_state = ""
        self.failures = 0
        self.last_lookup: float | None = None
        self.last_mint: float | None = None
        self.started_at = self.next_at = time.monotonic()  # look at once: Nomad uses it while it starts

    def ttl_now(self) -> float:
        return lease.ttl_now(self.ttl, self.checked_at, time.monotonic())

    def started(self) -> None:
        """The agent was just exec'd: it reads its keyring now."""
        self.started_at = self.next_at = time.monotonic()

    def tick(self) -> None:
        """One look at the keyring token; sets `next_at`."""
        delay = self._tick()
        now = time.monotonic()
        poll = tracker_state.ring_poll_delay(self.ring, now - self.started_at, self.settings.adoption_timeout)
        self.next_at = now + min(delay, poll)

    def _tick(self) -> float:
        cap = self.settings.check_interval
        if self.token is None:
            health = self.vault.health()
            if not health.usable:
                return self._unreachable(VaultUnavailable(f"Vault at {self.settings.vault_addr} {health.state}",
                                                          state=health.state))  # fmt: skip
            return self.replace("there was none (Vault was away at start)")
        try:
            info = self.vault.lookup_self(self.token)
            self.last_lookup = time.time()
        except TokenInvalid as exc:
            return self.replace(str(exc))
        except VaultUnavailable as exc:
            return self._unreachable(exc)
        except NvtError as exc:
            self.failures += 1
            self.problem = exc.message
            log.warning("keyring token check failed: %s", exc.message)
            return lease.retry_delay(self.failures, cap)
        self._back()
        self.observe(info, by="Nomad")
        if self.ttl_now() < lease.renew_threshold(self.settings.period):
            try:
                self.vault.renew_self(self.token)
                self.observe(self.vault.lookup_self(self.token), by="the tracker")
            except NvtError as exc:
                log.warning("tracker renewal of keyring accessor %s failed: %s", self.info.accessor, exc.message)
        return lease.check_delay(self.ttl_now(), self.settings.period, cap)

    def observe(self, info: TokenInfo, by: str) -> None:
        was_used = self.ring.used
        mark = _mark(info)
        if by == "Nomad":
            self.ring = tracker_state.ring_looked(self.ring, mark)
        else:
            self.ring = tracker_state.ring_renewed_by_us(self.ring, mark)
        if self.ring.used and not was_used:
            log.info("keyring token accessor %s is in use by Nomad (its keyring wrapper renewed it)", info.accessor)
        wall = _wall(info)
        if wall is not None and wall != self.last_renewal:
            self.renewed_by = by
            self.last_renewal = wall
        self.info = info
        self.ttl = float(info.ttl)
        self.checked_at = time.monotonic()
        self.dead_since = None
        self.problem = ""
        self.failures = 0

    def replace(self, why: str) -> float:
        """The keyring token is gone (or there is none): mint one and write it to the file. No signal."""
        from nomad_vault_token.nomad import keyring_file
        from nomad_vault_token.token import keyring
        from nomad_vault_token.token.minting import Login

        self._back()
        self.ring = tracker_state.ring_gone(self.ring) if self.token is not None else self.ring
        if self.dead_since is None:
            self.dead_since = time.time()
            if self.token is None:
                log.warning("Vault is usable: minting the keyring token (%s)", why)
            else:
                log.error("keyring token accessor %s is gone (%s): replacing it in %s", self.info.accessor, why,
                          self.settings.keyring_token_path)  # fmt: skip
        self.ttl = 0
        self.checked_at = time.monotonic()
        self.failures += 1
        login = Login(self.vault)
        try:
            token, info = keyring.mint(self.vault, login)
            keyring_file.write(self.settings, token)
        except NvtError as exc:
            self.problem = f"replacement failed: {exc.message}"
            log.warning("keyring token replacement failed (attempt %d): %s", self.failures, exc.message)
            return lease.retry_delay(self.failures, self.settings.check_interval)
        finally:
            login.drop()
        old, old_token = self.info.accessor, self.token
        self.token, self.info = token, info
        self.ring = tracker_state.ring_replaced(self.ring, _mark(info))
        self.ttl, self.checked_at = float(info.ttl), time.monotonic()
        self.last_renewal, self.renewed_by = _wall(info), ""
        self.dead_since, self.problem, self.failures = None, "", 0
        self.last_mint = self.last_lookup = time.time()
        if old_token is not None:
            keyring.retire(self.vault, old_token, old)
        log.info(
            "keyring token accessor %s replaced by %s in %s: Nomad reads it at its next keyring use (no signal sent)",
            old or "(none)",
            info.accessor,
            self.settings.keyring_token_path,
        )
        return lease.check_delay(self.ttl_now(), self.settings.period, self.settings.check_interval)

    def _unreachable(self, exc: VaultUnavailable) -> float:
        self.failures += 1
        self.ring = tracker_state.ring_unreachable(self.ring)
        if self.unreachable_since is None:
            self.unreachable_since = time.time()
        self.problem = exc.message
        self.vault_state = exc.what
        return lease.retry_delay(self.failures, self.settings.check_interval)

    def _back(self) -> None:
        self.unreachable_since = None
        self.vault_state = ""

    def view(self) -> RingView:
        return RingView(
            accessor=self.info.accessor,
            ring=self.ring,
            ttl=self.ttl_now(),
            last_renewal=self.last_renewal,
            renewed_by=self.renewed_by,
            dead_since=self.dead_since,
            unreachable_since=self.unreachable_since,
            vault_state=self.vault_state,
            problem=self.problem,
            last_lookup=self.last_lookup,
            last_mint=self.last_mint,
            path=str(self.settings.keyring_token_path),
            agent_age=time.monotonic() - self.started_at,
        )


def _mark(info: TokenInfo) -> str | None:
    mark = info.raw.get("last_renewal") or info.raw.get("last_renewal_time")
    return str(mark) if mark else None


def _wall(info: TokenInfo) -> float | None:
    value = info.raw.get("last_renewal_time")
    try:
        return float(value) if value else None
    except (TypeError, ValueError):
        return None
