"""`check`: everything Nomad will check, checked now, plus the local things Nomad never sees."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from nomad_vault_token.commands.check_report import Report, table
from nomad_vault_token.core import config
from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.durations import format_duration
from nomad_vault_token.core.errors import (
    EX_TEMPFAIL,
    ConfigError,
    NvtError,
    TokenInvalid,
    VaultUnavailable,
)
from nomad_vault_token.core.results import Result
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.token import store
from nomad_vault_token.vault import tls
from nomad_vault_token.vault.client import TokenInfo, Vault

if TYPE_CHECKING:
    from nomad_vault_token.commands import check_workload


def main(
    loaded: config.Loaded,
    *,
    mint: bool,
    agent: Sequence[str] = (),
    workload_identity: bool = False,
    token_file: Path | None = None,
    nomad_jwks_url: str | None = None,
    readiness: bool = False,
    nomad_addr: str | None = None,
    nomad_token_file: Path | None = None,
    nomad_ca: Path | None = None,
) -> Result:
    """`loaded` holds the settings, or the error that kept them from loading: a finding like the others."""
    if workload_identity or readiness:
        from nomad_vault_token.commands import check_workload

        insecure = loaded.settings.allow_insecure_http if loaded.settings is not None else False
        nomad = check_workload.NomadAccess.of(nomad_addr, nomad_token_file, nomad_ca, insecure)
        return _workload(loaded, token_file, nomad_jwks_url, nomad if readiness else None, agent)
    report = Report()
    settings = loaded.settings
    if settings is not None:
        report.add("local", "config", "pass", f"{loaded.source} and environment")
    else:
        report.add("local", "config", "fail", loaded.error or "")
    unavailable = False
    if settings is not None:
        local_checks(report, settings)
        allow_unauthenticated = agent_checks(report, settings, agent) if settings.legacy_token else True
        if settings.keyring and agent:
            from nomad_vault_token.commands import check_keyring

            check_keyring.agent_side(report, settings, agent)
        if settings.legacy_token:
            unavailable = vault_checks(report, settings, mint=mint, allow_unauthenticated=allow_unauthenticated)
        if settings.keyring:
            unavailable = keyring_checks(report, settings, token_file, nomad_addr, nomad_token_file, nomad_ca) or unavailable
    ok = not (report.failed("local") or report.failed("agent") or report.failed("vault"))
    doc = {"ok": ok, "checks": [asdict(r) for r in report.rows]}
    return Result(doc, table(report), report.exit_code(unavailable))


def _workload(
    loaded: config.Loaded,
    token_file: Path | None,
    url: str | None,
    nomad: check_workload.NomadAccess | None,
    agent: Sequence[str],
) -> Result:
    """`check --workload-identity` (commands/check_workload.py): the JWT side instead of the server token's."""
    from nomad_vault_token.commands import check_workload

    report = Report()
    unavailable = False
    settings = loaded.settings
    try:
        if settings is None:
            raise ConfigError(loaded.error or "config did not load")
        report.add("local", "config", "pass", f"{loaded.source} and environment")
        admin = check_workload.admin_token(token_file)
    except NvtError as exc:
        report.add("local", "config", "fail", exc.message)
    else:
        try:
            if nomad is None:
                unavailable = check_workload.checks(report, settings, admin=admin, jwks_url=url)
            else:
                check_workload.readiness(report, settings, admin=admin, jwks_url=url, nomad=nomad, agent=agent)
        except VaultUnavailable as exc:
            report.add("vault", "Vault reachable and unsealed", "fail", exc.message)
            unavailable = True
    ok = not any(r.result == "fail" for r in report.rows)
    doc = {"ok": ok, "checks": [asdict(r) for r in report.rows]}
    code = report.exit_code(unavailable)
    if nomad is not None and code == 0 and not ok:
        code = EX_TEMPFAIL  # not ready yet: what is left is listed
    if nomad is not None:
        doc["ready"] = ok
    return Result(doc, table(report), code)


def local_checks(report: Report, settings: Settings) -> None:
    if settings.ca_cert is not None:
        ca = settings.ca_cert
        report.attempt("local", "CA certificate", f"{ca} holds a CA", lambda: tls.check_ca(ca))
    unseal_keys_at_rest(report, settings)
    try:
        cert, key = settings.client_tls()
    except NvtError as exc:
        report.add("local", "client certificate", "fail", exc.message)
        return
    if report.attempt("local", "client key mode", f"{key} is private", lambda: tls.check_key_mode(key)):
        try:
            info = tls.check_client(cert, key, settings.cert_warn_days)
        except NvtError as exc:
            report.add("local", "client certificate", "fail", exc.message)
        else:
            detail = f"{info.subject}, key matches, expires {info.not_after:%Y-%m-%d} ({info.days_left} days)"
            if info.warnings:
                report.add("local", "client certificate", "warn", detail, info.warnings[0])
            else:
                report.add("local", "client certificate", "pass", detail)
    if settings.legacy_token:
        report.attempt(
            "local", "state file", f"{settings.state_file} usable", lambda: store.check_writable(settings.state_file)
        )
        tracker_checks(report, settings)
    if settings.keyring:
        ring = settings.keyring_state_file
        report.attempt("local", "keyring state file", f"{ring} usable", lambda: store.check_writable(ring))
        keyring_tracker_check(report, settings)


def unseal_keys_at_rest(report: Report, settings: Settings) -> None:
    """Where the unsealer's keys sit (config `unseal_keys_file`): one warning line for plain text on
    persistent storage. The keys themselves are not read here (the unsealer's user may own them)."""
    from nomad_vault_token.core import at_rest

    path = settings.unseal_keys_file
    if path is None:
        return  # none configured, or a systemd credential (unseal_credential): nothing at rest in plain text
    if not path.exists():
        report.add("local", "unseal keys at rest", "skip", f"{path}: not here (the unsealer runs elsewhere?)")
        return
    fs = at_rest.fs_type(path)
    warning = at_rest.plain_file_warning(path, fs, credential=False)
    if warning:
        report.add("local", "unseal keys at rest", "warn", warning)
    elif fs:
        report.add("local", "unseal keys at rest", "pass", f"{path}: on {fs}, gone at power-off")
    else:
        report.add("local", "unseal keys at rest", "skip", f"{path}: its file system could not be told")


def tracker_checks(report: Report, settings: Settings) -> None:
    """What the running tracker last knew: adoption, a degraded start (warnings only: it is history)."""
    from nomad_vault_token.commands.status import tracker_view

    saved = store.read(settings.state_file)
    view = tracker_view(settings.tracker_file, saved.accessor if saved else "")
    if view is None:
        return
    if not view["running"]:
        report.add("local", "tracker", "warn", f"not running (last: {view['adoption']})", "start the service")
    else:
        result = "pass" if view["state"] == "healthy" else "warn"
        report.add("local", "tracker", result, f"{view['state']}: {view['adoption']}")
    if view.get("degraded_for") is not None:
        how_long = format_duration(view["degraded_for"])
        if view["state"] == "degraded":
            report.add("local", "degraded start", "warn", f"started without Vault {how_long} ago; still degraded")
        else:
            report.add("local", "degraded start", "pass", f"started without Vault; that lasted {how_long}")


def keyring_tracker_check(report: Report, settings: Settings) -> None:
    """What the running tracker last knew of the keyring token (tracker.json), when it runs."""
    import json

    try:
        ring = json.loads(settings.tracker_file.read_text(encoding="utf-8")).get("keyring")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(ring, dict):
        return
    from nomad_vault_token.commands.status import tracker_view

    view = tracker_view(settings.tracker_file, "")
    if view is not None and not view["running"]:
        report.add("local", "tracker: keyring", "warn", f"not running (last: {ring.get('status')})", "start the service")
        return
    result = "pass" if ring.get("state") in ("in_use", "written") and not ring.get("waiting_for_vault") else "warn"
    report.add("local", "tracker: keyring", result, str(ring.get("status")))


def agent_checks(report: Report, settings: Settings, agent: Sequence[str]) -> bool:
    """The agent's command line and the vault block of its config files, as Nomad merges them.

    Returns the block's allow_unauthenticated (Nomad's default, true, when it cannot be read)."""
    if not agent:
        report.add(
            "agent",
            "agent config",
            "skip",
            "no agent command line: give it after --, as in the unit: check -- /usr/bin/nomad agent -config ...",
        )
        return True
    from nomad_vault_token.nomad import argv as agent_argv
    from nomad_vault_token.nomad import handoff, review

    try:
        parsed = agent_argv.parse(agent)
        warnings = handoff.check_argv(settings, parsed)
    except ConfigError as exc:
        report.add("agent", "agent argv", "fail", exc.message)
        return True
    report.add("agent", "agent argv", "pass", f"-config {' '.join(parsed.configs) or '(none)'}")
    for warning in [*warnings, *handoff.redirect_warnings(os.environ)]:
        report.add("agent", "agent argv", "warn", warning)
    block, found = review.review(settings, parsed, os.environ)
    for f in found:
        report.add("agent", f"vault.{f.key}" if f.key != "config" else "agent config", f.severity, f.message, f.fix)
    return block.allow_unauthenticated if block is not None else True


def keyring_checks(
    report: Report,
    settings: Settings,
    token_file: Path | None,
    nomad_addr: str | None,
    nomad_token_file: Path | None,
    nomad_ca: Path | None,
) -> bool:
    """`keyring = true`: the keyring token live, the key, the cold-start trap. True when Vault was unavailable."""
    from nomad_vault_token.commands import check_keyring
    from nomad_vault_token.commands.check_workload import NomadAccess, admin_token

    nomad = NomadAccess(nomad_addr, nomad_token_file, nomad_ca) if nomad_addr else None
    check_keyring.cold_start(report, settings, nomad)
    try:
        admin = admin_token(token_file)
    except NvtError as exc:
        report.add("local", "--token-file", "fail", exc.message)
        return False
    with Vault(settings) as vault:
        health = vault.health()
        if not health.usable:
            report.add("vault", "keyring: Vault reachable and unsealed", "fail", f"{settings.vault_addr}: {health.state}",
                       "start or unseal Vault: a Nomad server restarted now cannot read its keyring")  # fmt: skip
            return True
        try:
            check_keyring.vault_side(report, vault, admin)
        except VaultUnavailable as exc:
            report.add("vault", "keyring: Vault reachable and unsealed", "fail", exc.message)
            return True
    return False


def vault_checks(report: Report, settings: Settings, *, mint: bool, allow_unauthenticated: bool = True) -> bool:
    """The Vault side; returns True when Vault itself was unavailable."""
    with Vault(settings) as vault:
        return _vault_checks(report, vault, mint=mint, allow_unauthenticated=allow_unauthenticated)


def _vault_checks(report: Report, vault: Vault, *, mint: bool, allow_unauthenticated: bool) -> bool:
    settings = vault.settings
    health = vault.health()
    if not health.usable:
        report.add(
            "vault",
            "Vault reachable and unsealed",
            "fail",
            f"{settings.vault_addr}: {health.state}",
            "start or unseal Vault, or fix vault_addr",
        )
        return True
    report.add("vault", "Vault reachable and unsealed", "pass", f"{settings.vault_addr}: {health.state}")
    if report.failed("local"):
        report.add("vault", "certificate login", "skip", "fix the local failures first")
        return False
    try:
        token, info = (minted_token if mint else saved_token)(report, vault)
    except VaultUnavailable as exc:
        report.add("vault", "Vault reachable and unsealed", "fail", exc.message)
        return True
    if token is None or info is None:
        return False
    try:
        from nomad_vault_token.token import nomad_check

        for rule in nomad_check.nomad_rules_for(vault, token, info, allow_unauthenticated=allow_unauthenticated):
            result = "pass" if rule.ok else "warn" if rule.warning and not settings.strict else "fail"
            report.add("vault", f"nomad: {rule.rule}", result, rule.message, rule.fix)
    finally:
        if mint:
            _discard(vault, token)
    if settings.mint_mode == "create-orphan":
        report.add(
            "vault",
            "minting mode",
            "warn",
            "create-orphan: the startup certificate can mint orphan tokens with ANY policy except root",
            'switch to role mode: nomad-vault-token bootstrap-roles, then mint_mode = "role"',
        )
    return False


def minted_token(report: Report, vault: Vault) -> tuple[Secret | None, TokenInfo | None]:
    from nomad_vault_token.token.minting import login_and_mint

    try:
        token, info = login_and_mint(vault)
    except VaultUnavailable:
        raise
    except NvtError as exc:
        report.add("vault", "certificate login and mint", "fail", exc.message)
        return None, None
    report.add(
        "vault", "certificate login and mint", "pass", f"minted accessor {info.accessor} (revoked after the check)"
    )
    return token, info


def saved_token(report: Report, vault: Vault) -> tuple[Secret | None, TokenInfo | None]:
    settings = vault.settings

    def login() -> None:
        vault.revoke_self(vault.login())

    detail = f"logged in through auth/{settings.auth_mount} role {settings.cert_role}"
    if not report.attempt("vault", "certificate login", detail, login):
        return None, None
    saved = store.read(settings.state_file)
    if saved is None:
        report.add(
            "vault",
            "server token",
            "warn",
            f"no saved token in {settings.state_file}",
            "run `nomad-vault-token check --mint` to test minting, or start the service",
        )
        return None, None
    try:
        info = vault.lookup_self(saved.token)
    except TokenInvalid as exc:
        report.add(
            "vault",
            "server token",
            "warn",
            f"saved token accessor {saved.accessor}: {exc.message}",
            "the next start mints a new one; check --mint tests that",
        )
        return None, None
    report.add("vault", "server token", "pass", f"saved token accessor {info.accessor}, ttl {info.ttl}s")
    return saved.token, info


def _discard(vault: Vault, token: Secret) -> None:
    """Revoke the token minted for the check: fresh, so it has no task tokens to take with it."""
    with contextlib.suppress(NvtError):
        vault.revoke_self(token)
