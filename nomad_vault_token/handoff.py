"""Hand the token to the agent: an HCL file added as `-config`, or `VAULT_TOKEN`.

Nomad reads `vault { token }` from its config files (re-read on SIGHUP) and only
falls back to VAULT_TOKEN when no file sets it. The token never goes in argv.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from nomad_vault_token.config import Settings
from nomad_vault_token.fsutil import ensure_private_dir, write_private
from nomad_vault_token.vault import Secret


def render_hcl(token: Secret, task_role: str, namespace: str | None = None) -> bytes:
    """The agent's token config. json.dumps gives HCL-compatible quoted strings.

    The namespace goes with the token: the token lives there, and Nomad would otherwise take
    VAULT_NAMESPACE from an environment this tool no longer passes on (command.go v1.9.7:308-311).
    """
    ns = f"  namespace        = {json.dumps(namespace)}\n" if namespace else ""
    return (
        "# Written by nomad-vault-token; rewritten when the token is replaced. Do not edit.\n"
        "vault {\n"
        f"  token            = {json.dumps(token.reveal())}\n"
        f"  create_from_role = {json.dumps(task_role)}\n"
        f"{ns}"
        "}\n"
    ).encode()


def write_token_config(settings: Settings, token: Secret) -> Path:
    """Write the HCL file (0600, atomically) and return its path."""
    path = settings.token_config_path
    ensure_private_dir(path.parent, "token_config directory")
    write_private(path, render_hcl(token, settings.task_role, settings.namespace), "token_config")
    return path


def agent_argv(settings: Settings, argv: Sequence[str]) -> list[str]:
    """The agent's argv: `-config <token file>` in file mode; in env mode Nomad's own
    `-vault-create-from-role` flag, since no file of ours carries create_from_role then."""
    if settings.handoff == "file":
        return [*argv, "-config", str(settings.token_config_path)]
    return [*argv, f"-vault-create-from-role={settings.task_role}"]


# Read by Nomad's Vault client (hashicorp/vault api DefaultConfig) and able to send it elsewhere.
REDIRECTING = ("VAULT_AGENT_ADDR", "VAULT_SKIP_VERIFY")


def agent_env(settings: Settings, token: Secret, environ: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment: without what this tool's configuration consumed, with VAULT_TOKEN
    only in env mode (never in file mode: the file carries it)."""
    from nomad_vault_token.config import consumed_env

    env = dict(environ)
    for var in [*consumed_env(environ), "VAULT_TOKEN"]:
        env.pop(var, None)
    if settings.handoff == "env":
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
    settings: Settings, token: Secret, argv: Sequence[str], environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """Do the hand-off: write the file if needed; return the agent's argv and environment."""
    if settings.handoff == "file":
        write_token_config(settings, token)
    return agent_argv(settings, argv), agent_env(settings, token, environ)
