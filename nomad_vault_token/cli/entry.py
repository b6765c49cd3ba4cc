"""The console script: `run`'s fast path, else the typer app; both end in `dispatch`.

A well-formed `run` command line (what the unit's ExecStart holds) skips typer altogether
(`fastrun` parses it from the same option table); everything else, `run --help` included, goes
through the typer app in `app`, built from the command table (`table`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"]:
        from nomad_vault_token.cli import fastrun

        parsed = fastrun.parse(args[1:])
        if parsed is not None:
            from nomad_vault_token.cli.dispatch import dispatch

            dispatch("run", parsed)
    from nomad_vault_token.cli.app import app

    app(args=args, prog_name="nomad-vault-token")
