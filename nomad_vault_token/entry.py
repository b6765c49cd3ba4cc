"""The console script: one line and the documented exit code for every user error.

A well-formed `run` command line (what the unit's ExecStart holds) skips typer altogether
(`fastrun`); everything else, `run --help` included, goes through the typer app in `cli`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"]:
        from nomad_vault_token import fastrun

        parsed = fastrun.parse(args[1:])
        if parsed is not None:
            _reporting(lambda: fastrun.dispatch(parsed))
            return
    from nomad_vault_token.cli import app

    _reporting(lambda: app(args=args, prog_name="nomad-vault-token"))


def _reporting(command: Callable[[], None]) -> None:
    from nomad_vault_token.errors import NvtError

    try:
        command()
    except NvtError as exc:
        message = " ".join(exc.message.split())  # one line, whatever the cause put in it
        print(f"nomad-vault-token: error: {message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
