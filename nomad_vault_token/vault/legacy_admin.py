"""Admin endpoints `bootstrap-roles --remove-legacy` needs: one function per endpoint.

LIST auth/token/accessors (sudo), POST auth/token/lookup-accessor, DELETE of a policy or a role.
Never a token in a message: accessors only.
"""

from __future__ import annotations

from typing import Any

from nomad_vault_token.core.errors import TokenInvalid, VaultDenied
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.client import Vault


def list_accessors(vault: Vault, token: Secret) -> list[str]:
    """LIST auth/token/accessors: every live token's accessor (needs sudo)."""
    path = "auth/token/accessors"
    with vault._admin(path, '"list" and "sudo"'):
        resp = vault._client(token).list(path)
    return [str(a) for a in ((resp or {}).get("data") or {}).get("keys") or []]


def lookup_accessor(vault: Vault, token: Secret, accessor: str) -> dict[str, Any] | None:
    """POST auth/token/lookup-accessor; None when the token went away meanwhile."""
    path = "auth/token/lookup-accessor"
    try:
        with vault._admin(path, '"update"'):
            resp = vault._client(token).write_data(path, data={"accessor": accessor})
    except (TokenInvalid, VaultDenied) as exc:
        if "invalid accessor" in exc.message or "not found" in exc.message:
            return None
        raise
    return dict((resp or {}).get("data") or {})


def delete(vault: Vault, token: Secret, path: str) -> None:
    """DELETE <path> (a policy, a token role, a cert role)."""
    with vault._admin(path, '"delete"'):
        vault._client(token).delete(path)
