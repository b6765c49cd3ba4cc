"""The console script: logging set-up, config load, dispatch, rendering and exit codes, once for every command.

A well-formed `run` command line (what the unit's ExecStart holds) skips typer altogether
(`fastrun` parses it from the same option table); everything else, `run --help` included, goes
through the typer app in `cli`, whose commands all land in `dispatch`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"]:
        from nomad_vault_token.cli import fastrun

        parsed = fastrun.parse(args[1:])
        if parsed is not None:
            dispatch("run", parsed)
    from nomad_vault_token.cli.app import app

    app(args=args, prog_name="nomad-vault-token")


def dispatch(command: str, params: dict[str, Any]) -> NoReturn:
    """Run `command` with its parsed parameters; print its result or its error; exit with its code."""
    from nomad_vault_token.core import options
    from nomad_vault_token.core.errors import EX_INTERRUPTED, ConfigError, NvtError
    from nomad_vault_token.core.results import FORMATS, render, render_error

    flags, own = options.split(command, params)
    if command == options.SNAPSHOT:
        own["action"], own["file"] = params.get("action"), params.get("file")
    fmt = str(own.pop("fmt", None) or ("json" if command == options.INSTALL else "text"))
    fmt = "text" if fmt == "table" else fmt  # check's earlier name for it
    try:
        if fmt not in FORMATS:
            raise ConfigError(f"--format {fmt!r}: use text or json")
        from nomad_vault_token.core import log

        log.setup(bool(own.pop("verbose", False)))
        result = _call(command, flags, own, list(params.get("agent") or []), fmt)
    except NvtError as exc:
        render_error(exc.message, exc.exit_code, fmt)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EX_INTERRUPTED)
    render(result, fmt)
    sys.exit(result.exit_code)


def _call(command: str, flags: dict[str, Any], own: dict[str, Any], agent: list[str], fmt: str) -> Any:
    from nomad_vault_token.core import config, options

    if command == options.INSTALL:  # writes a config; reads none
        from nomad_vault_token.commands import install

        return install.main(flags, **own)
    if command == options.CHECK:  # a config that does not load is one of its findings
        from nomad_vault_token.commands import check

        return check.main(own.pop("config"), flags, agent=agent, **own)
    if command == options.SNAPSHOT and own.get("action") == "verify":  # offline: no config, no Vault
        from nomad_vault_token.commands import snapshot

        return snapshot.verify_file(own["file"])
    settings = config.load(own.pop("config"), flags)
    if command == options.RUN:
        from nomad_vault_token.commands import run

        run.main(settings, agent, check=not own["no_check"])  # execs the agent, or raises
    if command == options.TOKEN:
        from nomad_vault_token.commands import token

        return token.main(settings, fmt=fmt, **own)
    if command == options.STATUS:
        from nomad_vault_token.commands import status

        return status.main(settings)
    if command == options.SNAPSHOT:
        from nomad_vault_token.commands import snapshot

        return snapshot.main(settings, **own)
    if command == options.UNSEAL:
        from nomad_vault_token.commands import unseal

        return unseal.main(settings, **own)
    from nomad_vault_token.commands import bootstrap

    return bootstrap.main(settings, **own)
