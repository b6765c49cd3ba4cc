"""A command line without typer: `run` is on the start-up path of every Nomad restart, `snapshot` on a timer.

typer builds a pydantic validator for each option it parses; for `run`'s options that is about
100 ms, on top of 40 ms to import typer, in a process that should be done in a fraction of a
second. This module parses the plain, well-formed command lines a unit file or a job holds, from the
same tables typer's commands are built from (`options`, `table`), and only those: anything else
(`--help`, an unknown or abbreviated option, a missing value, a value that looks like an option,
bundled short flags, an extra argument) returns None and `entry` hands the whole command line to
typer, which gives its usual help and usage errors.

As typer reads them: a command that takes an agent command line (`run`, `check`, `cutover`) takes it
from the first word that is not an option on; another command's words fill its positionals in order,
options between them allowed; after `--` every word is a word.

Pure: no I/O, stdlib only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nomad_vault_token.cli.table import TABLE
from nomad_vault_token.core import options


def parse(argv: Sequence[str], command: str = options.RUN) -> dict[str, Any] | None:
    """`command`'s arguments (after its name) as the parameters typer would give, or None: let typer."""
    row = TABLE[command]
    table = {flag: (o, value) for flag, o, value in options.flags_of(command)}
    params: dict[str, Any] = {o.name: False if o.kind == "switch" else o.default for o in options.of(command)}
    words: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            words.extend(argv[i + 1 :])
            break
        if not arg.startswith("-") or arg == "-":
            if row.agent is not None:
                words.extend(argv[i:])  # the agent starts here (no interspersed options)
                break
            words.append(arg)
            i += 1
            continue
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
    if row.agent is not None:
        return {**params, "agent": words or None}  # as typer gives an absent argument
    if len(words) > len(row.positionals):
        return None  # an extra argument: typer's error
    for i, p in enumerate(row.positionals):
        word = words[i] if i < len(words) else None
        params[p.name] = Path(word) if p.path and word is not None else word
    return params
