"""`cutover -- <agent argv>`: retire this host's legacy server token after the move to workload identity.

In Nomad's order (`website/content/docs/integrations/vault/acl.mdx` v1.9.7:765-822) the legacy fields
leave the servers last. Refused, with what to do, while any of these is not so:

1. readiness is clean (`check --workload-identity-readiness`): above all Nomad tracks no legacy task
   token any more (`VaultTokens` of the upgrade check). Task tokens are children of the server token
   unless the task role was orphan when they were minted, so revoking it earlier would revoke tokens
   tasks still use; tracked tokens that are all orphans (each one asked) are only a warning;
2. `legacy_token = false`, and the agent restarted since (the hand-off file, which `run` removes when it
   starts the agent without a token, is gone): removing a server's token takes a restart, not a
   SIGHUP (`nomad/server.go` v1.9.7:896-918);
3. no agent config file sets `vault.token` (Nomad would still use it).

Then the saved token is revoked (revoke-self: a token whose children are gone) and the state file removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from nomad_vault_token.commands.check_report import Report, table
from nomad_vault_token.commands.check_workload import NomadAccess, admin_token, readiness
from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import EX_CONFIG, EX_TEMPFAIL, NvtError, TokenInvalid
from nomad_vault_token.core.results import Result
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.token import store
from nomad_vault_token.vault.client import Vault


def main(
    settings: Settings,
    *,
    agent: Sequence[str],
    dry_run: bool,
    token_file: Path | None,
    nomad_jwks_url: str | None,
    nomad_addr: str | None,
    nomad_token_file: Path | None,
    nomad_ca: Path | None,
) -> Result:
    report = Report()
    nomad = NomadAccess.of(nomad_addr, nomad_token_file, nomad_ca, settings.allow_insecure_http)
    admin = admin_token(token_file)
    tracked = readiness(report, settings, admin=admin, jwks_url=nomad_jwks_url, nomad=nomad, agent=agent)
    _host_checks(report, settings, agent)
    saved = store.read(settings.state_file)
    _orphan_task_tokens(report, settings, saved, admin, tracked)
    failed = [r for r in report.rows if r.result == "fail"]
    doc: dict[str, object] = {"checks": [asdict(r) for r in report.rows]}
    if failed:
        code = EX_CONFIG if any(r.side in ("local", "agent") for r in failed) else EX_TEMPFAIL
        if report.failed("vault") and code != EX_CONFIG:
            code = report.exit_code(False)
        doc.update(ok=False, revoked=None)
        return Result(doc, table(report), code, f"cutover refused: {len(failed)} check(s) failed: {failed[0].check}: "
                      f"{failed[0].fix or failed[0].detail}")  # fmt: skip
    if saved is None:
        line = f"no saved server token in {settings.state_file}: nothing to revoke"
        doc.update(ok=True, revoked=None, message=line)
        return Result(doc, table(report) + line + "\n")
    if dry_run:
        line = f"would revoke server token accessor {saved.accessor}"
        doc.update(ok=True, revoked=None, would_revoke=saved.accessor, message=line)
        return Result(doc, table(report) + line + "\n")
    with Vault(settings) as vault:
        try:
            vault.revoke_self(saved.token)
            line = f"revoked server token accessor {saved.accessor}"
        except TokenInvalid:
            line = f"server token accessor {saved.accessor} was already revoked or expired"
    try:
        settings.state_file.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise NvtError(f"state file {settings.state_file}: cannot remove: {exc.strerror}") from None
    line += f"; removed {settings.state_file}"
    doc.update(ok=True, revoked=saved.accessor, message=line)
    return Result(doc, table(report) + line + "\n")


def _orphan_task_tokens(
    report: Report, settings: Settings, saved: store.State | None, admin: Secret | None, tracked: Sequence[str]
) -> None:
    """Legacy task tokens Nomad still tracks are no reason to wait when every one is an orphan: revoking the server
    token leaves them alone, and Nomad's docs let them expire on their own (`acl.mdx` v1.9.7:791-797). Each token
    is asked (lookup-accessor, with the admin token): the task role's `orphan` applies when a token is minted, so a
    token minted before the role became orphan is a child of the server token whatever the role says now."""
    from nomad_vault_token.nomad.wi_readiness import orphan_verdict
    from nomad_vault_token.vault import legacy_admin

    row = next(
        (i for i, r in enumerate(report.rows) if r.check == "no legacy task tokens" and r.result == "fail"), None
    )
    if row is None or saved is None or admin is None:
        return  # nothing tracked, nothing to revoke, or no way to ask: keep the verdict
    try:
        with Vault(settings) as vault:
            role = vault.read_role(saved.token, settings.task_role)
            tokens: dict[str, bool | None] = {}
            for accessor in tracked:
                found = legacy_admin.lookup_accessor(vault, admin, accessor) if accessor else None
                tokens[accessor] = None if found is None else bool(found.get("orphan"))
    except NvtError:
        return  # cannot tell: keep refusing
    v = orphan_verdict(bool(role and role.get("orphan")), settings.task_role, tokens)
    old = report.rows[row]
    if v.ok:
        report.rows[row] = replace(old, result="warn", fix=v.detail)
    else:
        report.rows[row] = replace(old, detail=f"{old.detail}; {v.detail}", fix=v.fix)


def _host_checks(report: Report, settings: Settings, agent: Sequence[str]) -> None:
    """What only this host can tell: run hands over no token any more, and nothing else gives Nomad one."""
    if settings.legacy_token:
        report.add("local", "legacy_token = false", "fail", "run still hands the agent a server token",
                   "set legacy_token = false in the config, then restart the agent (systemctl restart nomad: a "
                   "reload cannot remove a token, server.go v1.9.7:896-918)")  # fmt: skip
    elif settings.token_config_path.exists():
        report.add("nomad", "agent restarted without the token", "fail",
                   f"{settings.token_config_path} still exists: the agent was not restarted since legacy_token = false",
                   "systemctl restart nomad (run removes the file when it starts the agent without a token)")  # fmt: skip
    else:
        report.add("local", "legacy_token = false", "pass", "run hands the agent no token; the hand-off file is gone")
    if not agent:
        return
    from nomad_vault_token.nomad import argv as agent_argv
    from nomad_vault_token.nomad.agent_config import load_vault_block

    try:
        parsed = agent_argv.parse(agent)
        block = load_vault_block(parsed.configs, parsed)
    except NvtError as exc:
        report.add("agent", "agent config", "fail", exc.message)
        return
    if block.token_set:
        report.add("agent", "no vault.token in agent config", "fail", f"{block.where('token')} sets vault.token",
                   "remove it (Nomad would keep using that token), then restart the agent")  # fmt: skip
    else:
        report.add("agent", "no vault.token in agent config", "pass", "no config file or flag sets it")
