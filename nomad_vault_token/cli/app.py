"""The typer app, built from the command table (`table`) and the option table (`options`): parse, then
hand over to `dispatch`.

Each command's signature is made from the tables, so an option shared by several commands is declared
once. Command bodies live in `commands/` and are imported only when that command runs. Plain, well-formed
command lines never come here (`fastrun` parses them from the same tables, without typer).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nomad_vault_token import __version__
from nomad_vault_token.cli import dispatch
from nomad_vault_token.cli.table import TABLE, Command, Positional
from nomad_vault_token.core import options
from nomad_vault_token.core.errors import exit_codes_help
from nomad_vault_token.core.options import Option

app = typer.Typer(
    name="nomad-vault-token",
    help=(
        "Give a Nomad server its Vault token, safely, every time it starts, and keep it alive; "
        "keep the Vault it depends on unsealed and backed up.\n\n"
        "Logs in to Vault with a TLS client certificate, mints (or reuses) a periodic orphan "
        "token for Nomad, and hands it to the agent. " + exit_codes_help()
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

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
        help=help_text(o),
        rich_help_panel=o.panel,
        metavar=o.metavar,
        show_default=o.default is not None,
    )
    kind = (Path if o.kind == "path" else str) if o.required else _TYPES[o.kind]
    default: Any = False if o.kind == "switch" else o.default
    if o.required:
        default = inspect.Parameter.empty
    return inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info])


def help_text(o: Option) -> str:
    """An option's help; a setting's gets its Vault variable and its default from `config`, never by hand."""
    from nomad_vault_token.core import config

    if not o.setting:
        return o.help
    variables = [var for var, key in config.VAULT_ENV.items() if key == o.config_key]
    text = o.help + "".join(f" (${var})" for var in variables)
    default = config.default_text(o.config_key)
    return text if default is None else f"{text} [default: {default}]"


def _agent_parameter(row: Command) -> inspect.Parameter:
    info = typer.Argument(help=row.agent, show_default=False, metavar="-- AGENT_ARGV...")
    return inspect.Parameter(
        "agent", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[Optional[list[str]], info]
    )


def _positional(p: Positional) -> inspect.Parameter:
    info = typer.Argument(help=p.help, show_default=False, metavar=p.metavar)
    kind: Any = Optional[Path] if p.path else Optional[str]
    return inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=Annotated[kind, info])


def _add(row: Command) -> None:
    command = row.name

    def handler(**params: Any) -> None:
        dispatch.dispatch(command, params)  # looked up at call time: tests record the calls

    params = [_parameter(o) for o in options.of(command)]
    if row.agent is not None:
        params.insert(0, _agent_parameter(row))
    params[:0] = [_positional(p) for p in row.positionals]
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__annotations__ = {p.name: p.annotation for p in params}
    handler.__name__ = command.replace("-", "_")
    settings = {"allow_interspersed_args": False} if row.agent is not None else None
    app.command(command, help=row.help, context_settings=settings)(handler)


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


for _row in TABLE.values():
    _add(_row)
