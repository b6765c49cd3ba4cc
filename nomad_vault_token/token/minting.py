"""Log in with the certificate and mint the server token (and the keyring token); refuse a token Nomad could
not use. One `Login` serves every token of one start-up: the server token and the keyring token."""

from __future__ import annotations

import logging

from nomad_vault_token.core.errors import NvtError, VaultDenied
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.client import TokenInfo, Vault

log = logging.getLogger(__name__)


class Login:
    """One certificate login, made on first use and shared by the mints that follow; `drop` revokes it.

    A mint that came out non-orphan keeps it alive (revoking the login would revoke that child too)."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._token: Secret | None = None
        self.keep = False

    def token(self) -> Secret:
        if self._token is None:
            self._token = self.vault.login()  # the key is read from disk now
        return self._token

    def drop(self) -> None:
        token, self._token = self._token, None
        if token is not None and not self.keep:
            _drop_login_token(self.vault, token)


def login_and_mint(vault: Vault, login: Login | None = None) -> tuple[Secret, TokenInfo]:
    """Cert login (key read from disk now), mint, lookup-self; then drop the login token (unless `login`
    is shared: its owner drops it)."""
    settings = vault.settings
    own = login is None
    session = login if login is not None else Login(vault)
    minted = vault.mint(session.token())
    info = vault.lookup_self(minted.token)
    where = f"mint role '{settings.mint_role}'" if settings.mint_mode == "role" else "auth/token/create-orphan"
    if not info.orphan:
        # Never revoke the login token now: that would revoke its child, this token, too.
        session.keep = True
        raise VaultDenied(
            f"{where} minted a non-orphan token (accessor {info.accessor}) that dies with the login token: "
            "set orphan=true on the mint role (run bootstrap-roles)"
        )
    if own:
        session.drop()
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


def mint_keyring(vault: Vault, login: Login) -> tuple[Secret, TokenInfo]:
    """The keyring token, through the keyring role, with the login `login` shares (its owner drops it)."""
    settings = vault.settings
    minted = vault.mint_keyring(login.token())
    info = vault.lookup_self(minted.token)
    where = f"keyring role '{settings.keyring_role}'"
    if not info.orphan:
        login.keep = True
        raise VaultDenied(
            f"{where} minted a non-orphan keyring token (accessor {info.accessor}) that dies with the login "
            "token: set orphan=true on the keyring role (run bootstrap-roles --keyring)"
        )
    if not info.renewable:
        raise VaultDenied(f"{where} minted a non-renewable keyring token: run bootstrap-roles --keyring")
    if settings.keyring_policy not in info.policies:
        raise VaultDenied(
            f"{where} minted a keyring token without policy {settings.keyring_policy!r}: "
            "run bootstrap-roles --keyring"
        )
    log.info("minted keyring token accessor %s via %s (ttl %ss)", info.accessor, where, info.ttl)
    return minted.token, info


def _drop_login_token(vault: Vault, startup: Secret) -> None:
    """Revoke the short-lived login token so none are left lying around (best effort)."""
    try:
        vault.revoke_self(startup)
    except NvtError as exc:
        log.debug("could not revoke the login token: %s", exc)
