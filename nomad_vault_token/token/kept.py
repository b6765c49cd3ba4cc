"""A token kept across restarts, the one flow for both of a server's tokens: reuse the saved one when Vault
says it is still good (then renewed), else mint one and save it before anyone is given it, then retire the
one it replaced; and, when Vault stays away, the saved one unverified (a degraded start).

The server token (`commands/run.py`) and the keyring token (`token/keyring.py`) each bring their own state
file, the lease they want, their minting and their retirement (`Kept`); what they share is written once here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import TokenInvalid
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.token import lease, store
from nomad_vault_token.vault.client import TokenInfo, Vault

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kept:
    label: str  # how the logs name it: "server token", "keyring token"
    state_file: Path
    wanted: lease.Wanted
    mint: Callable[[], tuple[Secret, TokenInfo]]  # a new one, not saved yet
    retire: Callable[[Vault, Secret, str], None]  # the one replaced (token, accessor), once the new one is saved


def obtain(vault: Vault, kept: Kept) -> tuple[Secret, TokenInfo]:
    """The saved token if Vault says it is still good (renewed), else a new one, saved, the old one retired."""
    saved = store.read(kept.state_file)
    if saved is not None:
        reused = _try_reuse(vault, saved, kept)
        if reused is not None:
            return reused
    token, info = kept.mint()
    save(vault.settings, kept.state_file, token, info)
    if saved is not None and saved.accessor != info.accessor:
        kept.retire(vault, saved.token, saved.accessor)
    return token, info


def save(settings: Settings, state_file: Path, token: Secret, info: TokenInfo) -> None:
    """Keep a new token (before anyone is given it: a crash after the hand-off must not lose it)."""
    store.write(state_file, store.State(token, info.accessor, settings.vault_addr, time.time()))


def observed(info: TokenInfo) -> lease.Observed:
    return lease.Observed(
        policies=frozenset(info.policies),
        ttl=info.ttl,
        renewable=info.renewable,
        orphan=info.orphan,
        period=info.effective_period,
        role=info.role,
    )


def _try_reuse(vault: Vault, saved: store.State, kept: Kept) -> tuple[Secret, TokenInfo] | None:
    addr = vault.settings.vault_addr
    if saved.vault_addr != addr:
        log.info("saved %s accessor %s is for %s, not %s: minting", kept.label, saved.accessor, saved.vault_addr, addr)
        return None
    try:
        info = vault.lookup_self(saved.token)
    except TokenInvalid:
        log.info("saved %s accessor %s is no longer valid: minting a new one", kept.label, saved.accessor)
        return None
    refusal = lease.reuse_refusal(observed(info), kept.wanted)
    if refusal is not None:
        log.info("saved %s accessor %s not reused: %s; minting a new one", kept.label, info.accessor, refusal)
        return None
    try:
        ttl = vault.renew_self(saved.token)
    except TokenInvalid:
        log.info("saved %s accessor %s could not be renewed: minting a new one", kept.label, info.accessor)
        return None
    log.info("reusing %s accessor %s (renewed, ttl %ss)", kept.label, info.accessor, ttl)
    return saved.token, vault.lookup_self(saved.token)


def saved_unverified(
    settings: Settings, state_file: Path, label: str, why: str, meaning: str, without: str
) -> tuple[Secret | None, TokenInfo]:
    """A degraded start (Vault stayed away): the saved token for this Vault, not checked, or none.
    `meaning` says what an unverified one means for Nomad; `without`, what happens with none."""
    saved = store.read(state_file)
    if saved is not None and saved.vault_addr == settings.vault_addr:
        log.warning("%s: degraded start with saved %s accessor %s, unverified%s", why, label, saved.accessor, meaning)
        return saved.token, TokenInfo.unverified(saved.accessor)
    log.warning("%s: degraded start without a %s: %s", why, label, without)
    return None, TokenInfo.unverified("")
