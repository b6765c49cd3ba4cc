"""The keyring token's life at start-up: reuse the saved one when Vault says it is still good, else mint one
with the shared login; save it (a second state, in the same store) and write it for the agent.

It is never the legacy server token: its own policy (encrypt/decrypt on one transit key), its own role,
its own state file (`keyring_state_file`), its own file for the agent (`keyring_token_file`).
"""

from __future__ import annotations

import logging

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import NvtError
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.token import kept, lease
from nomad_vault_token.token.minting import Login, mint_keyring
from nomad_vault_token.vault.client import TokenInfo, Vault

log = logging.getLogger(__name__)
LABEL = "keyring token"


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
    return kept.obtain(
        vault,
        kept.Kept(LABEL, settings.keyring_state_file, wanted(settings), lambda: mint_keyring(vault, login), retire),
    )


def mint(vault: Vault, login: Login) -> tuple[Secret, TokenInfo]:
    """Mint a keyring token and save it (before anyone is given it)."""
    token, info = mint_keyring(vault, login)
    kept.save(vault.settings, vault.settings.keyring_state_file, token, info)
    return token, info


def saved_unverified(settings: Settings, why: str) -> tuple[Secret | None, TokenInfo]:
    """A degraded start: the saved keyring token, not checked (Vault is away), or none."""
    return kept.saved_unverified(
        settings, settings.keyring_state_file, LABEL, why,
        ": Nomad waits for Vault to unwrap its keyring", "the tracker mints one when Vault is back",
    )  # fmt: skip


def retire(vault: Vault, token: Secret, accessor: str) -> None:
    """Revoke a replaced keyring token (it has no children; nothing else uses it once the file is rewritten)."""
    try:
        vault.revoke_self(token)
        log.info("revoked replaced keyring token accessor %s", accessor)
    except NvtError as exc:
        log.debug("could not revoke keyring accessor %s: %s", accessor, exc)
