"""`run`'s command line without typer: the start-up path of every Nomad restart.

typer builds a pydantic validator for each option it parses; for `run`'s twenty-odd options that is
about 100 ms, on top of 40 ms to import typer, in a process that should be done in a fraction of a
second. This module parses the plain, well-formed `run` command lines a unit file holds, and only
those: anything else (`--help`, an unknown or abbreviated option, a missing value, a value that looks
like an option, bundled short flags) returns None and `entry` hands the whole command line to typer,
which gives its usual help and usage errors. `OPTIONS` mirrors `cli.run`'s declarations; a test
checks that they agree, flag for flag, and that both parse the same command lines to the same call.

Pure: no I/O, stdlib only (and `params`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nomad_vault_token.params import conn_flags, mint_flags

Kind = Literal["str", "path", "list", "true", "false"]

# flag -> (parameter of cli.run, kind). "true"/"false": a flag without a value setting it to that.
OPTIONS: dict[str, tuple[str, Kind]] = {
    "--config": ("config", "path"),
    "-c": ("config", "path"),
    "--handoff": ("handoff", "str"),
    "--token-config": ("token_config", "path"),
    "--state-dir": ("state_dir", "path"),
    "--min-ttl": ("min_ttl", "str"),
    "--wait-timeout": ("wait_timeout", "str"),
    "--check-interval": ("check_interval", "str"),
    "--degraded-start-after": ("degraded_start_after", "str"),
    "--no-check": ("no_check", "true"),
    "--vault-addr": ("vault_addr", "str"),
    "--ca-cert": ("ca_cert", "path"),
    "--client-cert": ("client_cert", "path"),
    "--client-key": ("client_key", "path"),
    "--tls-server-name": ("tls_server_name", "str"),
    "--namespace": ("namespace", "str"),
    "--allow-insecure-http": ("allow_insecure_http", "true"),
    "--no-allow-insecure-http": ("allow_insecure_http", "false"),
    "--auth-mount": ("auth_mount", "str"),
    "--cert-role": ("cert_role", "str"),
    "--mint-mode": ("mint_mode", "str"),
    "--mint-role": ("mint_role", "str"),
    "--policy": ("policy", "list"),
    "--period": ("period", "str"),
    "--task-role": ("task_role", "str"),
    "--strict": ("strict", "true"),
    "--no-strict": ("strict", "false"),
    "--verbose": ("verbose", "true"),
    "-v": ("verbose", "true"),
}

# Parameters whose absence typer reports as False rather than None.
_FALSE_BY_DEFAULT = frozenset({"no_check", "verbose"})


@dataclass(frozen=True)
class RunArgs:
    """What `cli.run` would have been called with."""

    params: dict[str, Any]
    agent: list[str]


def parse(argv: Sequence[str]) -> RunArgs | None:
    """`run`'s arguments (after the word `run`) as cli.run's parameters, or None: let typer do it."""
    params: dict[str, Any] = {name: None for name, _ in OPTIONS.values()}
    params.update(dict.fromkeys(_FALSE_BY_DEFAULT, False))
    policies: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return _done(params, policies, list(argv[i + 1 :]))
        if not arg.startswith("-") or arg == "-":
            return _done(params, policies, list(argv[i:]))  # the agent starts here (no interspersed options)
        flag, eq, inline = arg.partition("=")
        if flag not in OPTIONS or (eq and not flag.startswith("--")):
            return None  # --help, unknown, abbreviated, bundled short flags, -cFILE: typer's job
        name, kind = OPTIONS[flag]
        if kind in ("true", "false"):
            if eq:
                return None  # --verbose=x: typer's error
            params[name] = kind == "true"
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        else:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None  # missing value, or one that looks like an option: typer decides
            value = argv[i + 1]
            i += 2
        if kind == "list":
            policies.append(value)
        else:
            params[name] = Path(value) if kind == "path" else value
    return _done(params, policies, [])


def _done(params: dict[str, Any], policies: list[str], agent: list[str]) -> RunArgs:
    params["policy"] = policies or None
    return RunArgs(params, agent)


def flags_of(params: dict[str, Any]) -> dict[str, Any]:
    """The `flags` mapping `commands.run.main` takes, from cli.run's parameters."""
    p = params
    return (
        conn_flags(
            p["vault_addr"],
            p["ca_cert"],
            p["client_cert"],
            p["client_key"],
            p["tls_server_name"],
            p["namespace"],
            p["allow_insecure_http"],
            p["auth_mount"],
            p["cert_role"],
        )
        | mint_flags(p["mint_mode"], p["mint_role"], p["policy"], p["period"], p["task_role"])
        | {
            key: p[key]
            for key in (
                "handoff",
                "token_config",
                "state_dir",
                "min_ttl",
                "wait_timeout",
                "check_interval",
                "degraded_start_after",
                "strict",
            )
        }
    )


def dispatch(args: RunArgs) -> None:
    """Call `commands.run.main` as cli.run would."""
    from nomad_vault_token.commands import run as cmd

    cmd.main(
        args.params["config"],
        flags_of(args.params),
        args.agent,
        check=not args.params["no_check"],
        verbose=args.params["verbose"],
    )
