"""Run one command from the table: make its settings, call its module's `main`, print, exit.

The one place that turns a command's parameters into a call, renders its `Result` (text or the JSON
envelope), turns a user's error into one line and its exit code, and exits. Nothing else prints or
exits. Knows no command by name: `table` says what each one needs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from nomad_vault_token.cli.table import Command
    from nomad_vault_token.core.results import Result


def dispatch(command: str, params: dict[str, Any]) -> NoReturn:
    """Run `command` with its parsed parameters; print its result or its error; exit with its code."""
    from nomad_vault_token.cli import last_resort
    from nomad_vault_token.cli.table import TABLE
    from nomad_vault_token.core import options
    from nomad_vault_token.core.errors import EX_INTERRUPTED, ConfigError, NvtError
    from nomad_vault_token.core.results import FORMATS, render, render_error

    row = TABLE[command]
    flags, own = options.split(command, params)
    fmt = str(own.pop("fmt", None) or row.default_format)
    fmt = "text" if fmt == "table" else fmt  # check's earlier name for it
    try:
        if fmt not in FORMATS:
            raise ConfigError(f"--format {fmt!r}: use text or json")
        from nomad_vault_token.core import log

        log.setup(bool(own.pop("verbose", False)))
        for positional in row.positionals:
            own[positional.name] = params.get(positional.name)
        if row.agent is not None:
            own["agent"] = list(params.get("agent") or [])
        if row.passes_format:
            own["fmt"] = fmt
        result = _call(row, flags, own)
    except NvtError as exc:
        message, code = exc.message, exc.exit_code
        _say(lambda: render_error(message, code, fmt), command, fmt)
        sys.exit(code)
    except KeyboardInterrupt:
        sys.exit(EX_INTERRUPTED)
    except Exception as exc:  # a bug: one line, exit 70 (`last_resort`)
        last_resort.crash(exc, command, fmt)
    _say(lambda: render(result, fmt), command, fmt)
    sys.exit(result.exit_code)


def _say(write: Callable[[], None], command: str, fmt: str) -> None:
    """Print, ending quietly when stdout's reader has gone; a bug while printing is still a bug (70)."""
    from nomad_vault_token.cli import last_resort

    try:
        write()
    except BrokenPipeError:
        last_resort.closed_stdout()
    except Exception as exc:
        last_resort.crash(exc, command, fmt)


def _call(row: Command, flags: dict[str, Any], own: dict[str, Any]) -> Result:
    import importlib

    from nomad_vault_token.core import config

    config_file = own.pop("config", None)
    main: Callable[..., Result] = importlib.import_module(row.module_path).main  # each command's `main`
    if row.settings == "flags":
        return main(flags, **own)
    if row.settings == "lenient":
        return main(config.load_lenient(config_file, flags), **own)
    first = own.get(row.positionals[0].name) if row.positionals else None
    settings = config.Settings() if first in row.offline else config.load(config_file, flags)
    return main(settings, **own)
