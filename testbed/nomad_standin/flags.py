"""The stand-in Nomad: Command line (Go's flag package)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from testbed.nomad_standin.common import AGENT_FLAGS, ConfigError, go_bool


def parse_go_flags(args: Sequence[str]) -> list[tuple[str, str]]:
    """Go's FlagSet.Parse (flag.ContinueOnError, command.go v1.9.7:79) over the agent's flags.

    Returns (name, value) in order; a boolean flag's value is "true" or what
    followed ``=``. Stops at the first non-flag argument (everything after it
    is ignored, ``-config`` too) and after ``--``. Raises ConfigError with
    Go's message on an unknown flag (``-h`` included), a missing value, a bad
    boolean or bad syntax.
    """
    found: list[tuple[str, str]] = []
    rest = list(args)
    while rest:
        arg = rest[0]
        if len(arg) < 2 or arg[0] != "-":
            break
        if arg == "--":
            break
        name = arg[2:] if arg[1] == "-" else arg[1:]
        if not name or name[0] in "-=":
            raise ConfigError(f"bad flag syntax: {arg}")
        rest.pop(0)
        name, eq, value = name.partition("=")
        if name not in AGENT_FLAGS:
            if name in ("h", "help"):
                raise ConfigError("flag: help requested")
            raise ConfigError(f"flag provided but not defined: -{name}")
        if AGENT_FLAGS[name]:
            value = value if eq else "true"
            if go_bool(value) is None:
                raise ConfigError(
                    f"invalid boolean value {json.dumps(value)} for -{name}: "
                    f"strconv.ParseBool: parsing {json.dumps(value)}: invalid syntax"
                )
        elif not eq:
            if not rest:
                raise ConfigError(f"flag needs an argument: -{name}")
            value = rest.pop(0)
        found.append((name, value))
    return found
