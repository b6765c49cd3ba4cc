"""Log in with the certificate and mint the server token; refuse a token Nomad could not use."""

from __future__ import annotations

import logging

from nomad_vault_token.core.errors import NvtError, VaultDenied
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.client import TokenInfo, Vault

log = logging.getLogger(__name__)


def login_and_mint(vault: Vault) -> tuple[Secret, TokenInfo]:
    """Cert login (key read from disk now), mint, lookup-self; then drop the login token."""
    settings = vault.settings
    startup = vault.login()
    minted = vault.mint(startup)
    info = vault.lookup_self(minted.token)
    where = f"mint role '{settings.mint_role}'" if settings.mint_mode == "role" else "auth/token/create-orphan"
    if not info.orphan:
        # Never revoke the login token now: that would revoke its child, this token, too.
        raise VaultDenied(
            f"{where} minted a non-orphan token (accessor {info.accessor}) that dies with the login token: "
            "set orphan=true on the mint role (run bootstrap-roles)"
        )
    _drop_login_token(vault, startup)
    if not info.renewable:
        raise VaultDenied(f"{where} minted a non-renewable token: set renewable=true on the mint role")
    missing = set(settings.policies) - set(info.policies)
    if missing:
        raise VaultDenied(
            f"{where} minted a token without policies {sorted(missing)}: "
            "add them to the mint role's allowed_policies (run bootstrap-roles)"
        )
    log.info(
        "minted server token accessor %s via %s (policies %s, ttl %ss)",
        info.accessor,
        where,
        ",".join(info.policies),
        info.ttl,
    )
    return minted.token, info


def _drop_login_token(vault: Vault, startup: Secret) -> None:
    """Revoke the short-lived login token so none are left lying around (best effort)."""
    try:
        vault.revoke_self(startup)
    except NvtError as exc:
        log.debug("could not revoke the login token: %s", exc)
