"""Hand the token to the agent: an HCL file added as `-config`, or `VAULT_TOKEN`.

Nomad reads `vault { token }` from its config files (re-read on SIGHUP) and only
falls back to VAULT_TOKEN when no file sets it. The token never goes in argv.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.files import ensure_private_dir, write_private
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.nomad.argv import AgentArgv, with_flags

# Not a token: what the hand-off file holds while the agent runs without one (degraded start).
PLACEHOLDER = "nomad-vault-token-degraded-start"


def render_hcl(token: Secret | None, task_role: str, namespace: str | None = None) -> bytes:
    """The agent's token config. json.dumps gives HCL-compatible quoted strings.

    The namespace goes with the token: the token lives there, and Nomad would otherwise take
    VAULT_NAMESPACE from an environment this tool no longer passes on (command.go v1.9.7:308-311).

    Without a token (a degraded start: Vault was away and nothing was saved) Vault is disabled with
    a placeholder token: 1.6 refuses to start with Vault enabled and no token (vault.go:425), and
    1.7.3+ started with no token runs a no-op client that no SIGHUP can replace (server.go
    v1.9.7:902-905, 1212-1215), while a disabled client with a token is enabled by the SIGHUP that
    brings the real token (vault.go:380-415).
    """
    ns = f"  namespace        = {json.dumps(namespace)}\n" if namespace else ""
    if token is None:
        head = "# Degraded start: Vault disabled until nomad-vault-token has a token. Do not edit.\n"
        body = f"  enabled          = false\n  token            = {json.dumps(PLACEHOLDER)}\n"
    else:
        head = "# Written by nomad-vault-token; rewritten when the token is replaced. Do not edit.\n"
        body = f"  token            = {json.dumps(token.reveal())}\n"
    return (f"{head}vault {{\n{body}  create_from_role = {json.dumps(task_role)}\n{ns}}}\n").encode()


def write_token_config(settings: Settings, token: Secret | None) -> Path:
    """Write the HCL file (0600, atomically) and return its path."""
    path = settings.token_config_path
    ensure_private_dir(path.parent, "token_config directory")
    write_private(path, render_hcl(token, settings.task_role, settings.namespace), "token_config")
    return path


def check_argv(settings: Settings, parsed: AgentArgv) -> list[str]:
    """Refuse an agent command line that would override the token (ConfigError, 78); warnings to log."""
    if parsed.vault_token_given:
        raise ConfigError(
            "agent argv: -vault-token beats every config file and VAULT_TOKEN (command/agent/command.go "
            "v1.9.7:188, 287-288), so Nomad would never use the token handed over: remove it after --"
        )
    role = parsed.vault_create_from_role
    if role is not None and role != settings.task_role:
        raise ConfigError(
            f"agent argv: -vault-create-from-role={role} beats the hand-off, but task_role is {settings.task_role!r}: "
            "remove the flag after --, or set task_role to the same role"
        )
    warnings = []
    if not parsed.found:
        warnings.append(
            "agent argv: no `agent` sub-command found, so where Nomad stops reading flags is unknown: "
            "the hand-off goes at the end"
        )
    if parsed.ignored:
        warnings.append(
            f"agent argv: Nomad ignores everything from {parsed.ignored[0]!r} on (Go's flag parsing stops at the "
            "first argument that is not a flag): the hand-off goes before it"
        )
    return warnings


def agent_argv(settings: Settings, argv: Sequence[str], parsed: AgentArgv, *, tokenless: bool = False) -> list[str]:
    """The agent's argv: `-config <token file>` in file mode; in env mode Nomad's own
    `-vault-create-from-role` flag, since no file of ours carries create_from_role then
    (and `-vault-enabled=false` while there is no token). Either goes after the agent's own flags,
    where Go's flag parsing still reads it, so that the file is the last config."""
    if settings.handoff == "file":
        return with_flags(parsed, argv, ["-config", str(settings.token_config_path)])
    extra = []
    if parsed.vault_create_from_role is None:
        extra.append(f"-vault-create-from-role={settings.task_role}")
    if settings.namespace and parsed.vault_namespace is None:
        extra.append(f"-vault-namespace={settings.namespace}")
    if tokenless:
        extra.append("-vault-enabled=false")
    return with_flags(parsed, argv, extra)


# Read by Nomad's Vault client (hashicorp/vault api DefaultConfig) and able to send it elsewhere.
REDIRECTING = ("VAULT_AGENT_ADDR", "VAULT_SKIP_VERIFY")


def agent_env(settings: Settings, token: Secret | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment: without what this tool's configuration consumed, with VAULT_TOKEN
    only in env mode (never in file mode: the file carries it)."""
    from nomad_vault_token.core.config import consumed_env

    env = dict(environ)
    for var in [*consumed_env(environ), "VAULT_TOKEN"]:
        env.pop(var, None)
    if settings.handoff == "env" and token is not None:
        env["VAULT_TOKEN"] = token.reveal()
    return env


def redirect_warnings(environ: Mapping[str, str]) -> list[str]:
    """Variables this tool ignores that would make Nomad's Vault client talk to Vault differently."""
    return [
        f"${var} is set and reaches the agent: Nomad's Vault client will use it "
        f"({'replaces vault.address' if var == 'VAULT_AGENT_ADDR' else 'no TLS verification'}); "
        "unset it unless Nomad needs it"
        for var in REDIRECTING
        if environ.get(var)
    ]


def prepare(
    settings: Settings, token: Secret | None, argv: Sequence[str], parsed: AgentArgv, environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """Do the hand-off: write the file if needed; return the agent's argv and environment."""
    if settings.handoff == "file":
        write_token_config(settings, token)
    return agent_argv(settings, argv, parsed, tokenless=token is None), agent_env(settings, token, environ)


def without_token(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """After the cut-over to workload identity (`legacy_token = false`): the agent gets no token at all.

    The hand-off file (it still holds the old token) is removed and not passed; `VAULT_TOKEN` is kept
    out of the environment, since Nomad falls back to it when no config sets a token
    (`command/agent/command.go` v1.9.7:303-306). Returns the agent's environment."""
    path = settings.token_config_path
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"token_config {path}: cannot remove the old hand-off file: {exc.strerror}") from None
    return agent_env(settings, None, environ)
