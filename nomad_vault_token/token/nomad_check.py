"""Nomad's start-up checks, run now against Vault with the server token (used by `run` and `check`)."""

from __future__ import annotations

from nomad_vault_token.core.errors import VaultDenied
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.nomad import token_rules
from nomad_vault_token.nomad.token_rules import RuleResult
from nomad_vault_token.vault.client import TokenInfo, Vault


def nomad_rules_for(
    vault: Vault, token: Secret, info: TokenInfo, *, allow_unauthenticated: bool = True
) -> list[RuleResult]:
    """Every rule Nomad applies to this token and its role, with Nomad's wording on failure.

    `allow_unauthenticated`: the agent's vault block's (Nomad's default, true, when unknown).
    """
    settings = vault.settings
    role_name = token_rules.role_to_check(info.raw, settings.task_role)
    denied: VaultDenied | None = None
    try:
        role = vault.read_role(token, role_name) if role_name else None
    except VaultDenied as exc:
        role, denied = None, exc
    caps: dict[str, list[str]] | None
    try:
        needed = token_rules.required_capabilities(role_name, allow_unauthenticated=allow_unauthenticated)
        caps = vault.capabilities_self(token, list(needed))
    except VaultDenied:
        caps = None  # sys/capabilities-self refused: Nomad cannot verify, and neither can we
    results = token_rules.check_all(
        info.raw, settings.task_role, role, caps, allow_unauthenticated=allow_unauthenticated
    )
    if denied is not None:  # the role may exist: Nomad fails to look it up, it does not call it missing
        results = [
            RuleResult(r.rule, False, f"failed to lookup role {role_name!r}: {denied.message}", r.fix)  # vault.go:914-917
            if r.rule == "role.exists"
            else r
            for r in results
        ]
    return results
