"""`check --workload-identity`: the Vault side of Nomad's JWT integration, checked live.

With an admin token ($VAULT_TOKEN or --token-file, optional): the JWT mount, its config, its role.
From this host: Nomad's JWKS fetched with the CA Vault was given, and whether its keys are ones
Vault accepts. With a task's JWT (--jwt-file, e.g. `secrets/nomad_vault_default.jwt`): the login,
the token's policies, and a probe (sys/capabilities-self, no secret is read) that the task may read
its own job's path and not a neighbour's, nor its job's path in another namespace. The login token is
revoked afterwards. The JWT and every token stay unprinted; the token's accessor is shown.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nomad_vault_token.commands.check_report import Report
from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import NvtError, VaultUnavailable
from nomad_vault_token.core.options import DEFAULT_NOMAD_ADDR
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.setup import workload_identity as wi
from nomad_vault_token.vault import jwt_auth
from nomad_vault_token.vault.client import Vault

SIDE = "vault"


def checks(report: Report, settings: Settings, *, admin: Secret | None, jwks_url: str | None) -> bool:
    """Adds the rows; returns True when Vault itself was unavailable."""
    with Vault(settings) as vault:
        health = vault.health()
        if not health.usable:
            report.add(
                SIDE,
                "Vault reachable and unsealed",
                "fail",
                f"{settings.vault_addr}: {health.state}",
                "start or unseal Vault, or fix vault_addr",
            )
            return True
        report.add(SIDE, "Vault reachable and unsealed", "pass", f"{settings.vault_addr}: {health.state}")
        config = _admin_side(report, vault, admin)
        url = jwks_url or str((config or {}).get("jwks_url") or "")
        ca_pem = str((config or {}).get("jwks_ca_pem") or "")
        algs = set((config or {}).get("jwt_supported_algs") or [])
        _jwks_side(report, url, ca_pem, algs)
        _task_side(report, vault)
    return False


def _admin_side(report: Report, vault: Vault, admin: Secret | None) -> dict[str, Any] | None:
    s = vault.settings
    if admin is None:
        report.add(
            SIDE,
            "JWT auth mount",
            "skip",
            "no admin token ($VAULT_TOKEN or --token-file): mount, config and role not read",
            "give one to check them; --nomad-jwks-url checks the JWKS without it",
        )
        return None
    try:
        vault.lookup_self(admin, admin=True)
        mounts = jwt_auth.auth_mounts(vault, admin)
    except NvtError as exc:
        report.add(SIDE, "JWT auth mount", "fail", exc.message)
        return None
    found = mounts.get(s.jwt_mount)
    if found is None or found.type != "jwt":
        what = "missing" if found is None else f"a {found.type!r} mount"
        report.add(
            SIDE,
            "JWT auth mount",
            "fail",
            f"sys/auth/{s.jwt_mount}: {what}",
            "nomad-vault-token bootstrap-roles --workload-identity --nomad-jwks-url URL",
        )
        return None
    report.add(SIDE, "JWT auth mount", "pass", f"auth/{s.jwt_mount} (accessor {found.accessor})")
    config = vault.admin_read(admin, f"auth/{s.jwt_mount}/config") or {}
    if not config.get("jwks_url"):
        report.add(
            SIDE,
            "JWT config",
            "fail",
            f"auth/{s.jwt_mount}/config has no jwks_url",
            "bootstrap-roles --workload-identity --nomad-jwks-url URL",
        )
        return None
    report.add(
        SIDE,
        "JWT config",
        "pass",
        f"jwks_url {config['jwks_url']}, algorithms "
        f"{', '.join(config.get('jwt_supported_algs') or ['RS256 (default)'])}, default_role "
        f"{config.get('default_role') or '(none)'}",
    )
    role = vault.admin_read(admin, f"auth/{s.jwt_mount}/role/{s.workload_role}")
    if role is None:
        report.add(
            SIDE,
            "workload role",
            "fail",
            f"auth/{s.jwt_mount}/role/{s.workload_role} missing",
            "bootstrap-roles --workload-identity",
        )
    elif role.get("user_claim") in ("nomad_job_id", "/nomad_job_id"):
        report.add(
            SIDE,
            "workload role",
            "warn",
            f"user_claim {role.get('user_claim')}: {wi.JOB_ID_COLLISION_WARNING}",
            "bootstrap-roles --workload-identity (unique-id: add " + wi.SERVER_CONFIG_LINE + " to the servers)",
        )
    else:
        report.add(
            SIDE,
            "workload role",
            "pass",
            f"user_claim {role.get('user_claim')}, policies {', '.join(role.get('token_policies') or [])}",
        )
    return dict(config)


def _jwks_side(report: Report, url: str, ca_pem: str, algs: set[str]) -> None:
    if not url:
        report.add(SIDE, "Nomad JWKS", "skip", "no jwks_url known", "give --nomad-jwks-url or an admin token")
        return
    try:
        jwks = jwt_auth.fetch_jwks(url, ca_pem)
    except NvtError as exc:
        report.add(SIDE, "Nomad JWKS", "fail", exc.message)
        return
    if not jwks.keys:
        report.add(
            SIDE,
            "Nomad JWKS",
            "fail",
            f"{url}: no key",
            "is Nomad's keyring initialised (nomad operator root keyring list)?",
        )
        return
    have = jwks.algorithms
    report.add(
        SIDE,
        "Nomad JWKS",
        "pass",
        f"{url}: {len(jwks.keys)} key(s), {', '.join(sorted(have))} (fetched from this host)",
    )
    supported = algs or {"RS256"}
    if not have & supported:
        report.add(
            SIDE,
            "JWKS keys Vault accepts",
            "fail",
            f"keys sign {', '.join(sorted(have))}; Vault accepts {', '.join(sorted(supported))}",
            "bootstrap-roles --workload-identity (RS256 and EdDSA)",
        )
    elif "RS256" not in have:
        report.add(
            SIDE,
            "JWKS keys Vault accepts",
            "warn",
            "EdDSA keys only: a keyring made before Nomad 1.7 "
            "signs EdDSA until rotated, which RS256-only relying parties refuse (hashicorp/nomad#20227)",
            "nomad operator root keyring rotate (Nomad 1.7+ adds an RSA key)",
        )
    else:
        report.add(SIDE, "JWKS keys Vault accepts", "pass", "an RSA key (RS256)")


def _task_side(report: Report, vault: Vault) -> None:
    s = vault.settings
    if s.jwt_file is None:
        report.add(
            SIDE,
            "task login",
            "skip",
            "no --jwt-file",
            "give a task's JWT (secrets/nomad_vault_default.jwt) to test a login and its paths",
        )
        return
    from nomad_vault_token.core import secret_files

    try:
        jwt = secret_files.read(s.jwt_file, "--jwt-file", "JWT")
        claims = _claims(jwt)
    except NvtError as exc:
        report.add(SIDE, "task login", "fail", exc.message)
        return
    ns, job = str(claims.get("nomad_namespace") or ""), str(claims.get("nomad_job_id") or "")
    role = str(claims.get("vault_role") or s.workload_role)
    try:
        token = jwt_auth.login(vault, s.jwt_mount, role, jwt)
    except NvtError as exc:
        report.add(SIDE, "task login", "fail", exc.message)
        return
    try:
        info = vault.lookup_self(token)
        report.add(
            SIDE,
            "task login",
            "pass",
            f"job {job!r} in namespace {ns!r} logged in as role {role}: "
            f"accessor {info.accessor}, policies {', '.join(info.policies)}",
        )
        if s.workload_policy not in info.policies and role == s.workload_role:
            report.add(
                SIDE,
                "task policies",
                "fail",
                f"no {s.workload_policy} among {', '.join(info.policies)}",
                "bootstrap-roles --workload-identity",
            )
        ws = wi.WorkloadSettings(kv_mount=s.kv_mount, kv_version=s.kv_version)
        own, neighbour = wi.own_paths(ws, ns, job)
        other_ns = wi.own_paths(ws, ns + "-other", job)[0]
        caps = vault.capabilities_self(token, [own, neighbour, other_ns])
        if "read" in caps[own]:
            report.add(SIDE, "task reads its own path", "pass", f"{own}: {', '.join(caps[own])}")
        else:
            why = (
                " (the job ID holds '/', '*' or '+': see allow_slashes_in_job_ids)"
                if any(c in job for c in "/*+")
                else ""
            )
            report.add(
                SIDE,
                "task reads its own path",
                "fail",
                f"{own}: {', '.join(caps[own]) or 'deny'}{why}",
                "bootstrap-roles --workload-identity (the workload policy)",
            )
        leaks = [p for p in (neighbour, other_ns) if set(caps[p]) - {"deny"}]
        if leaks:
            report.add(
                SIDE,
                "task cannot read neighbours",
                "fail",
                f"{', '.join(leaks)}: readable",
                "check the policies the role and the entity give (bootstrap-roles --workload-identity)",
            )
        else:
            report.add(SIDE, "task cannot read neighbours", "pass", f"{neighbour} and {other_ns}: deny")
    except NvtError as exc:
        hint = ""
        if any(c in job for c in "/*+"):
            hint = (
                f"job ID {job!r} holds '/', '*' or '+': OpenBao 2.6+ then refuses the whole templated policy "
                "(every request: 400 Forbidden) unless the policy allows it: rename the job, or set "
                "allow_slashes_in_job_ids = true, knowing that its parent job then reads its secrets "
                "(no setting allows '*' or '+')"
            )
        report.add(SIDE, "task token", "fail", exc.message, hint)
    finally:
        with contextlib.suppress(NvtError):
            vault.revoke_self(token)


def _claims(jwt: Secret) -> dict[str, Any]:
    """The JWT's claims, unverified (Vault verifies it); never its signature or the JWT itself in a message."""
    from nomad_vault_token.core.errors import ConfigError

    parts = jwt.reveal().split(".")
    if len(parts) != 3:
        raise ConfigError("--jwt-file: does not hold a JWT (three dot-separated parts): give the task's identity file")
    try:
        doc = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        raise ConfigError("--jwt-file: its claims are not JSON: give the task's identity file") from None
    if not isinstance(doc, dict):
        raise ConfigError("--jwt-file: its claims are not a JSON object")
    return doc


def admin_token(token_file: object) -> Secret | None:
    """An optional admin token: --token-file, else $VAULT_TOKEN, else None."""
    if isinstance(token_file, Path):
        from nomad_vault_token.core import secret_files

        return secret_files.read(token_file, "--token-file", "token")
    value = os.environ.get("VAULT_TOKEN", "").strip()
    return Secret(value) if value else None


@dataclass(frozen=True)
class NomadAccess:
    """Where Nomad's HTTP API is, and how to read it (readiness)."""

    addr: str
    token_file: Path | None
    ca: Path | None
    allow_insecure_http: bool = False

    @classmethod
    def of(cls, addr: str | None, token_file: Path | None, ca: Path | None, allow_insecure_http: bool) -> NomadAccess:
        """`--nomad-addr` read by the one URL reader (`scheme://host:port`, http only to loopback): 78 otherwise."""
        from nomad_vault_token.core.address import canonical

        origin = canonical(addr or DEFAULT_NOMAD_ADDR, "--nomad-addr", allow_insecure_http)
        return cls(origin, token_file, ca, allow_insecure_http)


def readiness(
    report: Report,
    settings: Settings,
    *,
    admin: Secret | None,
    jwks_url: str | None,
    nomad: NomadAccess,
    agent: Sequence[str],
) -> list[str]:
    """Everything that must hold before the legacy server token can go, in Nomad's documented order.

    Returns the accessors of the legacy task tokens Nomad still tracks (`VaultTokens`), for cutover to judge."""
    from nomad_vault_token.nomad import wi_readiness as ready

    # 1. the Vault side
    with Vault(settings) as vault:
        health = vault.health()
        if not health.usable:
            raise VaultUnavailable(f"Vault at {settings.vault_addr}: {health.state}", state=health.state)
        config = _admin_side(report, vault, admin)
        if admin is None:
            report.rows[-1] = replace(report.rows[-1], result="fail")  # readiness needs to see the Vault side
        _jwks_side(report, jwks_url or str((config or {}).get("jwks_url") or ""),
                   str((config or {}).get("jwks_ca_pem") or ""), set((config or {}).get("jwt_supported_algs") or []))  # fmt: skip
    # 2. this server's agent config
    if not agent:
        report.add("nomad", "server vault.default_identity", "fail", "no agent command line to read the config of",
                   "give the agent's command line after --, as in the unit (run on every server)")  # fmt: skip
    else:
        from nomad_vault_token.nomad import argv as agent_argv
        from nomad_vault_token.nomad.agent_config import load_default_identity

        try:
            identity = load_default_identity(agent_argv.parse(agent).configs)
        except NvtError as exc:
            report.add("agent", "agent config", "fail", exc.message)
        else:
            v = ready.server_config(identity, user_claim=settings.workload_user_claim, audience=wi.AUDIENCE,
                                    line=wi.SERVER_CONFIG_LINE)  # fmt: skip
            report.add("nomad", v.check, "pass" if v.ok else "fail", v.detail, v.fix)
    # 3. nodes and 4. jobs and legacy tokens, from Nomad's API
    from nomad_vault_token.core import secret_files
    from nomad_vault_token.vault import nomad_api

    try:
        token = secret_files.read(nomad.token_file, "--nomad-token-file", "Nomad token") if nomad.token_file else None
        ca_pem = nomad.ca.read_text() if nomad.ca else ""
        verdicts = [ready.nodes(nomad_api.nodes(nomad.addr, token, ca_pem, nomad.allow_insecure_http))]
        doc = nomad_api.upgrade_check(nomad.addr, token, ca_pem, nomad.allow_insecure_http)
        verdicts += ready.upgrade_check(doc)
    except OSError as exc:
        report.add("local", "--nomad-ca", "fail", f"{nomad.ca}: {exc.strerror}: give a readable PEM file")
        return []
    except NvtError as exc:
        report.add("nomad", "Nomad API", "fail", exc.message)
        return []
    for v in verdicts:
        report.add("nomad", v.check, "pass" if v.ok else "fail", v.detail, v.fix)
    return ready.tracked_accessors(doc)
