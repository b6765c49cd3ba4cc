"""`run`'s command line without typer: the start-up path of every Nomad restart.

typer builds a pydantic validator for each option it parses; for `run`'s options that is about
100 ms, on top of 40 ms to import typer, in a process that should be done in a fraction of a
second. This module parses the plain, well-formed `run` command lines a unit file holds, from the
same option table typer's commands are built from (`options`), and only those: anything else
(`--help`, an unknown or abbreviated option, a missing value, a value that looks like an option,
bundled short flags) returns None and `entry` hands the whole command line to typer, which gives its
usual help and usage errors.

Pure: no I/O, stdlib only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nomad_vault_token.core import options


def parse(argv: Sequence[str]) -> dict[str, Any] | None:
    """`run`'s arguments (after the word `run`) as the parameters typer would give, or None: let typer."""
    table = {flag: (o, value) for flag, o, value in options.flags_of(options.RUN)}
    params: dict[str, Any] = {o.name: False if o.kind == "switch" else o.default for o in options.of(options.RUN)}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return _done(params, argv[i + 1 :])
        if not arg.startswith("-") or arg == "-":
            return _done(params, argv[i:])  # the agent starts here (no interspersed options)
        flag, eq, inline = arg.partition("=")
        if flag not in table or (eq and not flag.startswith("--")):
            return None  # --help, unknown, abbreviated, bundled short flags, -cFILE: typer's job
        o, value = table[flag]
        if o.kind in ("bool", "switch"):
            if eq:
                return None  # --verbose=x: typer's error
            params[o.name] = value
            i += 1
            continue
        if eq:
            text = inline
            i += 1
        else:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None  # missing value, or one that looks like an option: typer decides
            text = argv[i + 1]
            i += 2
        if o.kind == "list":
            params[o.name] = [*(params[o.name] or []), text]
        else:
            params[o.name] = Path(text) if o.kind == "path" else text
    return _done(params, [])


def _done(params: dict[str, Any], agent: Sequence[str]) -> dict[str, Any]:
    return {**params, "agent": list(agent) or None}  # as typer gives an absent argument
