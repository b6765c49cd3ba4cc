"""The console script: the fast path, else the typer app; both end in `dispatch`.

A well-formed command line (what a unit's ExecStart or a job holds: `run -- nomad agent ...`,
`snapshot --config ...`) skips typer altogether (`fastrun` parses it from the same tables);
everything else, `--help` included, goes through the typer app in `app`, built from the command
table (`table`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """The console script. What the commands do not end themselves (`dispatch` does, for each) ends
    here: a bug while parsing is one line and 70, a closed stdout (`--help | head -0`) ends quietly."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        _main(args)
    except BrokenPipeError:
        from nomad_vault_token.cli import last_resort

        last_resort.closed_stdout()
    except Exception as exc:
        from nomad_vault_token.cli import last_resort

        command = args[0] if args and not args[0].startswith("-") else "nomad-vault-token"
        last_resort.crash(exc, command, "text")


def _main(args: list[str]) -> None:
    from nomad_vault_token.cli.table import TABLE

    if args and args[0] in TABLE:
        from nomad_vault_token.cli import fastrun

        parsed = fastrun.parse(args[1:], args[0])
        if parsed is not None:
            from nomad_vault_token.cli.dispatch import dispatch

            dispatch(args[0], parsed)
    from nomad_vault_token.cli.app import app

    app(args=args, prog_name="nomad-vault-token")
