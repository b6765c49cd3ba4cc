"""The typer app, built from the option table (`options`): parse, then hand over to `entry.dispatch`.

Each command's signature is made from the table, so an option shared by several commands is declared
once. Command bodies live in `commands/` and are imported only when that command runs. `run`'s plain
command lines never come here (`fastrun` parses them from the same table, without typer).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nomad_vault_token import __version__
from nomad_vault_token.core import options
from nomad_vault_token.core.options import Option

app = typer.Typer(
    name="nomad-vault-token",
    help=(
        "Give a Nomad server its Vault token, safely, every time it starts, and keep it alive.\n\n"
        "Logs in to Vault with a TLS client certificate, mints (or reuses) a periodic orphan "
        "token for Nomad, and hands it to the agent. Exit codes: 69 Vault unavailable, "
        "77 Vault refused, 78 configuration error, 65 a snapshot that failed verification."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

HELP = {
    "token": """Log in, mint a server token and print it: the drop-in for the old script's two `vault` lines.

    Example: NOMAD_TOKEN=$(nomad-vault-token token)
    """,
    "check": """Check now everything Nomad will check, with Nomad's own wording, plus config, key and certificate.

    Give the agent's command line after -- (check -- /usr/bin/nomad agent -config /etc/nomad.d) to check
    its argv and the vault block of its config files too. Exit 0 when all pass (warnings allowed), 78 on
    a local or agent-config failure, 77 on a Vault-side one, 69 if Vault is down.
    """,
    "status": """Show the server token run keeps: accessor, policies, role, TTL, expiry, last renewal; and the certificate.

    Never prints the token. Exit 1 if there is no saved token, 77 if Vault says it is no longer valid.
    """,
    "run": """Get the server token (reused across restarts), hand it to the agent, and exec the agent.

    The systemd ExecStart wrapper: nomad-vault-token run -- /usr/bin/nomad agent -config /etc/nomad.d
    The agent keeps this process's PID; a tracker process beside it keeps the token alive.
    """,
    "install": """Install the systemd unit, the config file and the service's directories; idempotent, for Ansible.

    Writes /etc/systemd/system/nomad.service (0644), /etc/nomad-vault-token/config.toml (0640, in a 0750
    directory), /var/lib/nomad-vault-token and /run/nomad-vault-token (0700), only where they differ.
    The config holds exactly the keys given by flags and --set (environment variables are not read), or a copy
    of --config-source; with neither, an existing config is left alone.

    Prints one JSON object: {"version": 1, "changed": ..., "changes": [{"path": ..., "action": ...}]},
    action one of created, updated, unchanged (or would create, would update with --check).

    Exit codes: 0 done (changed or not), 2 usage, 78 bad config or path (nothing in the way is replaced),
    1 systemctl daemon-reload failed (the unit file is put back, so the next install retries).
    """,
    "bootstrap-roles": """As an admin, once: write the policies, token roles, cert auth mount and cert role the other commands need.

    Idempotent: reads everything, writes only what differs, and prints one line per object (created, updated
    with the fields that differ, or unchanged). The admin token comes from $VAULT_TOKEN or --token-file; no
    client certificate is needed. Names, period and mint mode come from the same config as the other commands.

    Exit codes: 0 done (or --check), 69 Vault unavailable, 77 the admin token may not do it, 78 bad input.
    """,
    "snapshot": """Take a raft snapshot from the active node, verify it, keep it, apply retention; or check one.

    \b
    snapshot                    take one into --dir: streamed to a 0600 temp file, verified
                                (gzip, tar, SHA256SUMS, meta.json), renamed to
                                PREFIX-<UTC time>-<index>.snap with a manifest beside it;
                                then retention (--keep, --max-age), only after a success
    snapshot verify FILE        check a snapshot file offline
    snapshot restore-test FILE  restore it into a throwaway local OpenBao, unseal it with
                                --keys-file (the source cluster's keys), read --canary back

    Exit codes: 0 done, 65 the snapshot failed verification, 69 Vault unavailable, 77 Vault refused,
    78 configuration error.
    """,
    "unseal": """Unseal a Vault cluster's Shamir-sealed nodes: --once, or watching (for systemd or a Nomad job).

    Needs no token. Keys: --keys-file FILE (0600/0400, owned by this user) or --credential NAME (systemd
    LoadCredential=), one hex or base64 key per line; never on the command line or in the environment.
    Nodes: --node ADDR, repeated (config unseal_nodes) [default: vault_addr]. Success means a leader.
    Auto-unseal, uninitialised and sealed-on-purpose nodes are never given keys; a hold file stops all.

    Exit codes (--once): 0 a leader and every reachable Shamir node unsealed, 65 keys refused (or
    threshold/shares not as expected), 69 nodes unreachable and no quorum, 75 partial, 78 bad config.
    """,
}

SNAPSHOT_ACTIONS = ("take", "verify", "restore-test")

# Commands whose options end at `--` and take the agent's command line after it.
AGENT_ARGUMENT = {
    options.RUN: "the agent's command, after --: e.g. -- /usr/bin/nomad agent -config /etc/nomad.d",
    options.CHECK: "the agent's command line, after --, as in the unit's ExecStart: its -config files are checked too",
}

_TYPES: dict[str, Any] = {
    "str": Optional[str],
    "path": Optional[Path],
    "list": Optional[list[str]],
    "bool": Optional[bool],
    "switch": bool,
}


def _parameter(o: Option) -> inspect.Parameter:
    decls = [f"{o.flags[0]}/{o.negation}", *o.flags[1:]] if o.negation else list(o.flags)
    info = typer.Option(
        *decls,
        help=o.help,
        rich_help_panel=o.panel,
        metavar=o.metavar,
        show_default=o.default is not None,
    )
    kind = (Path if o.kind == "path" else str) if o.required else _TYPES[o.kind]
    default: Any = False if o.kind == "switch" else o.default
    if o.required:
        default = inspect.Parameter.empty
    return inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info])


def _agent_parameter(command: str) -> inspect.Parameter:
    info = typer.Argument(help=AGENT_ARGUMENT[command], show_default=False, metavar="-- AGENT_ARGV...")
    return inspect.Parameter(
        "agent", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[Optional[list[str]], info]
    )


def _snapshot_parameters() -> list[inspect.Parameter]:
    action = typer.Argument(help="verify or restore-test; none: take a snapshot", show_default=False,
                            metavar="[verify|restore-test]")
    file = typer.Argument(help="the snapshot file (verify, restore-test)", show_default=False, metavar="[FILE]")
    return [
        inspect.Parameter("action", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                          annotation=Annotated[Optional[str], action]),
        inspect.Parameter("file", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                          annotation=Annotated[Optional[Path], file]),
    ]  # fmt: skip


def _add(command: str) -> None:
    def handler(**params: Any) -> None:
        from nomad_vault_token.cli.entry import dispatch

        dispatch(command, params)

    params = [_parameter(o) for o in options.of(command)]
    if command in AGENT_ARGUMENT:
        params.insert(0, _agent_parameter(command))
    if command == options.SNAPSHOT:
        params[:0] = _snapshot_parameters()
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__annotations__ = {p.name: p.annotation for p in params}
    handler.__name__ = command.replace("-", "_")
    settings = {"allow_interspersed_args": False} if command in AGENT_ARGUMENT else None
    app.command(command, help=HELP[command], context_settings=settings)(handler)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nomad-vault-token {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """Give a Nomad server its Vault token."""


for _command in options.COMMANDS:
    _add(_command)
