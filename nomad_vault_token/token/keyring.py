"""The keyring token's life at start-up: reuse the saved one when Vault says it is still good, else mint one
with the shared login; save it (a second state, in the same store) and write it for the agent.

It is never the legacy server token: its own policy (encrypt/decrypt on one transit key), its own role,
its own state file (`keyring_state_file`), its own file for the agent (`keyring_token_file`).
"""

from __future__ import annotations

import logging
import time

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import NvtError, TokenInvalid
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.token import lease, store
from nomad_vault_token.token.minting import Login, mint_keyring
from nomad_vault_token.vault.client import TokenInfo, Vault

log = logging.getLogger(__name__)


def wanted(settings: Settings) -> lease.Wanted:
    return lease.Wanted(
        policies=frozenset({settings.keyring_policy}),
        period=settings.period,
        mint_mode="role",
        mint_role=settings.keyring_role,
        min_ttl=settings.min_ttl,
    )


def obtain(vault: Vault, login: Login) -> tuple[Secret, TokenInfo]:
    """The keyring token: the saved one if still good (then renewed), else a new one, saved."""
    settings = vault.settings
    saved = store.read(settings.keyring_state_file)
    if saved is not None:
        reused = _try_reuse(vault, saved)
        if reused is not None:
            return reused
    token, info = mint(vault, login)
    if saved is not None and saved.accessor != info.accessor:
        retire(vault, saved.token, saved.accessor)
    return token, info


def mint(vault: Vault, login: Login) -> tuple[Secret, TokenInfo]:
    """Mint a keyring token and save it (before anyone is given it)."""
    settings = vault.settings
    token, info = mint_keyring(vault, login)
    store.write(settings.keyring_state_file, store.State(token, info.accessor, settings.vault_addr, time.time()))
    return token, info


def saved_unverified(settings: Settings, why: str) -> tuple[Secret | None, TokenInfo]:
    """A degraded start: the saved keyring token, not checked (Vault is away), or none."""
    saved = store.read(settings.keyring_state_file)
    if saved is not None and saved.vault_addr == settings.vault_addr:
        log.warning(
            "%s: degraded start with saved keyring token accessor %s, unverified: Nomad waits for Vault to unwrap "
            "its keyring",
            why,
            saved.accessor,
        )
        return saved.token, TokenInfo.unverified(saved.accessor)
    log.warning("%s: degraded start without a keyring token: the tracker mints one when Vault is back", why)
    return None, TokenInfo.unverified("")


def retire(vault: Vault, token: Secret, accessor: str) -> None:
    """Revoke a replaced keyring token (it has no children; nothing else uses it once the file is rewritten)."""
    try:
        vault.revoke_self(token)
        log.info("revoked replaced keyring token accessor %s", accessor)
    except NvtError as exc:
        log.debug("could not revoke keyring accessor %s: %s", accessor, exc)


def _try_reuse(vault: Vault, saved: store.State) -> tuple[Secret, TokenInfo] | None:
    settings = vault.settings
    if saved.vault_addr != settings.vault_addr:
        return None
    try:
        info = vault.lookup_self(saved.token)
    except TokenInvalid:
        log.info("saved keyring token accessor %s is no longer valid: minting a new one", saved.accessor)
        return None
    refusal = lease.reuse_refusal(
        lease.Observed(
            policies=frozenset(info.policies),
            ttl=info.ttl,
            renewable=info.renewable,
            orphan=info.orphan,
            period=info.effective_period,
            role=info.role,
        ),
        wanted(settings),
    )
    if refusal is not None:
        log.info("saved keyring token accessor %s not reused: %s; minting a new one", info.accessor, refusal)
        return None
    try:
        vault.renew_self(saved.token)
    except TokenInvalid:
        return None
    log.info("reusing keyring token accessor %s (renewed)", info.accessor)
    return saved.token, vault.lookup_self(saved.token)
