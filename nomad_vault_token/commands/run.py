"""`run -- <agent argv>`: the systemd ExecStart wrapper.

the agent's argv (refuse what overrides the token) -> TLS preflight (or its kept verdict) -> wait
for Vault -> reuse or mint -> state file -> check as Nomad would -> hand-off -> tracker -> exec the
agent (which keeps our PID). Vault still away after degraded_start_after: the agent is exec'd with
the saved token unverified, or with Vault disabled, and the tracker brings it to a token later.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError, NvtError, TokenInvalid, VaultDenied
from nomad_vault_token.core.notify import Notifier
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.token import lease, store
from nomad_vault_token.vault.client import TokenInfo, Vault

if TYPE_CHECKING:
    from nomad_vault_token.token.minting import Login

logger = logging.getLogger(__name__)

# The keyring token and what Vault said of it (None: a degraded start without a saved one).
Ring = tuple["Secret | None", TokenInfo]
SERVER = "server token"


def main(settings: Settings, *, agent: Sequence[str], no_check: bool) -> None:
    """Never returns: execs the agent, or raises."""
    argv, check = agent, not no_check
    agent = resolve_agent(argv)
    agent_args = [agent, *argv[1:]]
    try:
        _start(settings, agent, agent_args, check)
    except NvtError:
        raise
    except Exception as exc:  # a bug here must not keep Nomad down: start it anyway
        _start_anyway(settings, agent, agent_args, exc)


def _start(settings: Settings, agent: str, agent_args: list[str], check: bool) -> None:
    from nomad_vault_token.nomad import argv as agent_argv
    from nomad_vault_token.nomad import handoff

    parsed = agent_argv.parse(agent_args)
    argv_warnings = [*handoff.check_argv(settings, parsed), *handoff.redirect_warnings(os.environ)]
    if not settings.legacy_token and not settings.keyring:
        _exec_without_token(settings, agent, agent_args, argv_warnings)
    legacy = settings.legacy_token
    if legacy:
        store.check_writable(settings.state_file)
    if settings.keyring:
        store.check_writable(settings.keyring_state_file)
    from nomad_vault_token.token import tls_verdict

    for warning in tls_verdict.preflight(settings):
        logger.warning("%s", warning)
    notifier = Notifier()
    from nomad_vault_token.token import waiting

    token: Secret | None = None
    info = TokenInfo.unverified("")
    ring: Ring | None = None
    degraded_start = False
    with Vault(settings) as v:  # one kept-alive connection for the start-up, closed before the tracker forks
        try:
            token, info, ring = waiting.when_usable(
                v, notifier, lambda: obtain_all(v), degrade_after=settings.degraded_start_after
            )
        except waiting.StillUnavailable as exc:
            if legacy:
                token, info = degraded(settings, exc.message)
            if settings.keyring:
                from nomad_vault_token.token import keyring

                ring = keyring.saved_unverified(settings, exc.message)
            degraded_start = True
        else:
            legacy_token = token
            if check and legacy_token is not None:
                waiting.when_usable(v, notifier, lambda: nomad_check(v, legacy_token, info))
    for warning in argv_warnings:  # once nothing can fail any more: no warning before an error
        logger.warning("%s", warning)
    if ring is not None:
        _write_keyring(settings, ring)
    if legacy:
        final_argv, agent_env = handoff.prepare(settings, token, agent_args, parsed, os.environ)
    else:  # Nomad 1.10+: the keyring token alone, in its file; no vault token, none in the environment
        final_argv, agent_env = agent_args, handoff.without_token(settings, os.environ)
    from nomad_vault_token.token import tracker

    try:
        tracker.spawn(settings, token, info, notifier, parsed, degraded=degraded_start, ring=ring)
    except OSError as exc:  # the agent matters more than its watcher: start it anyway
        logger.error("could not start the tracker (%s): the token will not be watched", exc.strerror)
    if legacy:
        logger.info(
            "starting agent %s with token accessor %s (%s hand-off)", agent, info.accessor or "(none)", settings.handoff
        )
    if ring is not None:
        logger.info(
            "starting agent %s with keyring token accessor %s in %s",
            agent,
            ring[1].accessor or "(none)",
            settings.keyring_token_path,
        )
    try:
        os.execve(agent, final_argv, agent_env)
    except OSError as exc:
        raise ConfigError(f"agent {agent}: cannot execute: {exc.strerror}") from None


def _start_anyway(settings: Settings, agent: str, agent_args: list[str], exc: Exception) -> NoReturn:
    """A bug before the exec (an exception that is not the tool's own error): the agent starts all the
    same, since this tool must never keep Nomad down where Nomad alone would run (a unit's restarts
    would only meet the same bug again). As a degraded start does: the saved token unverified, or Vault
    disabled; failing that too, the agent's own argv with none of ours. No tracker: it may be what broke.
    The bug is logged as the one line (`core/internal_error`), its traceback at debug level only."""
    from nomad_vault_token.core import internal_error
    from nomad_vault_token.nomad import argv as agent_argv
    from nomad_vault_token.nomad import handoff

    internal_error.log_traceback(exc)
    logger.error("%s; starting the agent anyway, unwatched", internal_error.line(exc, "run"))
    final_argv, env = agent_args, handoff.agent_env(settings, None, os.environ)
    try:
        if settings.keyring:  # the saved keyring token back in its file, if there is one
            from nomad_vault_token.token import keyring

            _write_keyring(settings, keyring.saved_unverified(settings, "after the internal error"))
        if settings.legacy_token:
            token, _info = degraded(settings, "after the internal error")
            final_argv, env = handoff.prepare(settings, token, agent_args, agent_argv.parse(agent_args), os.environ)
        else:
            env = handoff.without_token(settings, os.environ)
    except Exception as again:  # the agent's own command line is the last way left
        internal_error.log_traceback(again)
        logger.error("%s; starting the agent with its own command line", internal_error.line(again, "run"))
    try:
        os.execve(agent, final_argv, env)
    except OSError as failed:
        raise ConfigError(f"agent {agent}: cannot execute: {failed.strerror}") from None


def _exec_without_token(settings: Settings, agent: str, agent_args: list[str], warnings: list[str]) -> None:
    """`legacy_token = false` (after the cut-over to workload identity): no Vault, no token, no tracker.

    Removing a server's token takes a restart, not a SIGHUP (`nomad/server.go` v1.9.7:896-918: "removing
    the Vault token requires restarting the Nomad agent"); this is what that restart runs."""
    from nomad_vault_token.nomad import handoff

    for warning in warnings:
        logger.warning("%s", warning)
    env = handoff.without_token(settings, os.environ)
    logger.info("legacy_token = false: starting agent %s without a Vault token (workload identity)", agent)
    try:
        os.execve(agent, agent_args, env)
    except OSError as exc:
        raise ConfigError(f"agent {agent}: cannot execute: {exc.strerror}") from None


def degraded(settings: Settings, why: str) -> tuple[Secret | None, TokenInfo]:
    """Vault stayed away for degraded_start_after: start the agent anyway, rather than never.

    With the saved token, unverified (Nomad validates it every 30 s until Vault answers); without
    one, with Vault disabled until the tracker has minted a token. The tracker takes it from there.
    """
    from nomad_vault_token.token import kept

    return kept.saved_unverified(
        settings, settings.state_file, SERVER, why, "",
        "Vault is disabled in the agent until the tracker can mint one",
    )  # fmt: skip


def resolve_agent(argv: Sequence[str]) -> str:
    """The agent's executable as an absolute path, or a ConfigError saying what is wrong."""
    if not argv:
        raise ConfigError(
            "no agent to start: give its command after --, e.g. run -- /usr/bin/nomad agent -config /etc/nomad.d"
        )
    name = argv[0]
    found = (
        shutil.which(name)
        if os.sep not in name
        else (name if os.access(name, os.X_OK) and os.path.isfile(name) else None)
    )
    if found is None:
        if os.sep in name and os.path.exists(name):
            raise ConfigError(f"agent {name}: not an executable file: chmod +x it or fix the path after --")
        raise ConfigError(f"agent {name}: not found: give the full path of the nomad binary after --")
    return os.path.abspath(found)


def obtain_all(vault: Vault) -> tuple[Secret | None, TokenInfo, Ring | None]:
    """The tokens this server needs: the legacy server token, the keyring token, or both, with ONE login
    (made only when one of them has to be minted, dropped afterwards)."""
    from nomad_vault_token.token.minting import Login

    settings = vault.settings
    login = Login(vault)
    try:
        token: Secret | None = None
        info = TokenInfo.unverified("")
        if settings.legacy_token:
            token, info = obtain(vault, login)
        ring: Ring | None = None
        if settings.keyring:
            from nomad_vault_token.token import keyring

            ring = keyring.obtain(vault, login)
    finally:
        login.drop()
    return token, info, ring


def _write_keyring(settings: Settings, ring: Ring) -> None:
    from nomad_vault_token.nomad import keyring_file

    ktoken = ring[0]
    if ktoken is None:
        logger.warning(
            "no keyring token yet (Vault away, none saved): Nomad cannot read its keyring until the tracker mints "
            "one into %s",
            settings.keyring_token_path,
        )
        return
    keyring_file.write(settings, ktoken)


def obtain(vault: Vault, login: Login | None = None) -> tuple[Secret, TokenInfo]:
    """Reuse the saved token when Vault says it is still good; otherwise mint and save a new one."""
    from nomad_vault_token.token import kept
    from nomad_vault_token.token.minting import login_and_mint

    settings = vault.settings
    return kept.obtain(
        vault, kept.Kept(SERVER, settings.state_file, wanted(settings), lambda: login_and_mint(vault, login), retire)
    )


def wanted(settings: Settings) -> lease.Wanted:
    return lease.Wanted(
        policies=frozenset(settings.policies),
        period=settings.period,
        mint_mode=settings.mint_mode,
        mint_role=settings.mint_role,
        min_ttl=settings.min_ttl,
    )


def retire(vault: Vault, token: Secret, accessor: str) -> None:
    """Revoke a replaced server token, but only when its task tokens would survive (orphan task role)."""
    settings = vault.settings
    try:
        role = vault.read_role(token, settings.task_role)
    except (TokenInvalid, VaultDenied):
        return  # already gone, or we cannot tell: leave it to expire
    except NvtError as exc:
        logger.debug("cannot read task role to retire accessor %s: %s", accessor, exc)
        return
    if role is None or not role.get("orphan"):
        logger.warning(
            "replaced token accessor %s left to expire: task role %r is not orphan, revoking it "
            "would revoke its task tokens",
            accessor,
            settings.task_role,
        )
        return
    try:
        vault.revoke_self(token)
        logger.info("revoked replaced server token accessor %s", accessor)
    except NvtError as exc:
        logger.debug("could not revoke accessor %s: %s", accessor, exc)


def nomad_check(vault: Vault, token: Secret, info: TokenInfo) -> None:
    """Nomad's own start-up checks, now: one line per broken rule (Nomad's words), exit 77."""
    from nomad_vault_token.nomad import token_rules
    from nomad_vault_token.token import nomad_check as verify

    settings = vault.settings
    results = verify.nomad_rules_for(vault, token, info)
    broken = token_rules.failures(results, strict=settings.strict)
    for r in token_rules.warnings(results):
        if r not in broken:
            logger.warning("Nomad will warn: %s (%s)", r.message, r.fix)
    for r in broken:
        logger.error("Nomad would refuse the token: %s (%s)", r.message, r.fix)
    if broken:
        what = "rule(s) broken" if not settings.strict else "rule(s) broken or warned about (--strict)"
        raise VaultDenied(
            f"Nomad would refuse token accessor {info.accessor}: {len(broken)} {what}, listed above; "
            "fix the Vault side (nomad-vault-token bootstrap-roles) or pass --no-check"
        )
