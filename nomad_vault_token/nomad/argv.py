"""The agent's command line, read the way ``nomad agent`` reads it. Pure, standard library only.

``run -- /usr/bin/nomad agent -config /etc/nomad.d -server`` hands us the agent's argv. Nomad
gives everything after ``agent`` to one Go ``flag.FlagSet`` (``command/agent/command.go``
v1.9.7:79, parsed at 206 with ``flags.Parse(c.args)``) and never looks at ``flags.Args()``: what
follows the first non-flag argument or ``--`` is silently ignored. So an extra ``-config FILE``
must go before that point to be read, and there it is the last ``-config`` (files merge in
``-config`` order, a later value wins).

Go's flag syntax (Go ``src/flag/flag.go``, ``(*FlagSet).parseOne``; the same in Go 1.20, which
builds Nomad 1.6, and Go 1.23, which builds 1.9): ``-name``, ``--name``, ``-name=value``,
``-name value`` (non-boolean flags take the next argument whatever it looks like, even ``-x``);
boolean flags never take a separate value (``-server false`` sets ``-server`` and then stops at
the positional ``false``). ``--`` ends the flags and is consumed; ``-`` and ``""`` are
positional. An unknown flag, a non-boolean flag without a value, a bad boolean value, ``---x``
or ``-=x`` make Nomad print its usage and exit 1 (``readConfig`` returns nil, command.go
v1.9.7:206-208, ``Run`` returns 1 at 789-792).

No token value is ever kept: only whether ``-vault-token`` was given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, NamedTuple

from nomad_vault_token.core.errors import ConfigError


class AgentFlag(NamedTuple):
    boolean: bool  # BoolVar, or flaghelper.FuncBoolVar (IsBoolFlag() true, helper/flags/flag.go v1.9.7:47)
    since: str  # the first release tag that defines it


# Every flag `nomad agent` defines, as the union over EVERY release tag from v1.6.0 to v1.9.7
# (v1.6.0-v1.6.10, v1.7.0-v1.7.7, v1.8.0-v1.8.4, v1.9.0-v1.9.7: 32 tags), extracted from
# command/agent/command.go `readConfig` in each tag. No flag was removed and none changed between
# boolean and valued in that range. The comment is the line in command.go v1.9.7. Valued flags are
# StringVar, IntVar, flaghelper.StringFlag (repeatable: -config, -join, -retry-join, -meta) and
# flaghelper.FuncDurationVar (-retry-interval).
AGENT_FLAGS: Final[Mapping[str, AgentFlag]] = MappingProxyType(
    {
        "dev": AgentFlag(True, "v1.6.0"),  # 87
        "dev-connect": AgentFlag(True, "v1.6.0"),  # 88
        "dev-consul": AgentFlag(True, "v1.7.1"),  # 89
        "dev-vault": AgentFlag(True, "v1.7.1"),  # 90
        "server": AgentFlag(True, "v1.6.0"),  # 91
        "client": AgentFlag(True, "v1.6.0"),  # 92
        "bootstrap-expect": AgentFlag(False, "v1.6.0"),  # 95
        "encrypt": AgentFlag(False, "v1.6.0"),  # 96
        "raft-protocol": AgentFlag(False, "v1.6.0"),  # 97
        "rejoin": AgentFlag(True, "v1.6.0"),  # 98
        "join": AgentFlag(False, "v1.6.0"),  # 99
        "retry-join": AgentFlag(False, "v1.6.0"),  # 100
        "retry-max": AgentFlag(False, "v1.6.0"),  # 101
        "retry-interval": AgentFlag(False, "v1.6.0"),  # 102
        "state-dir": AgentFlag(False, "v1.6.0"),  # 108
        "alloc-dir": AgentFlag(False, "v1.6.0"),  # 109
        "alloc-mounts-dir": AgentFlag(False, "v1.8.0"),  # 110
        "node-class": AgentFlag(False, "v1.6.0"),  # 111
        "node-pool": AgentFlag(False, "v1.6.0"),  # 112
        "servers": AgentFlag(False, "v1.6.0"),  # 113
        "meta": AgentFlag(False, "v1.6.0"),  # 114
        "network-interface": AgentFlag(False, "v1.6.0"),  # 115
        "preferred-address-family": AgentFlag(False, "v1.8.2"),  # 116
        "network-speed": AgentFlag(False, "v1.6.0"),  # 117
        "config": AgentFlag(False, "v1.6.0"),  # 120
        "bind": AgentFlag(False, "v1.6.0"),  # 121
        "region": AgentFlag(False, "v1.6.0"),  # 122
        "data-dir": AgentFlag(False, "v1.6.0"),  # 123
        "plugin-dir": AgentFlag(False, "v1.6.0"),  # 124
        "dc": AgentFlag(False, "v1.6.0"),  # 125
        "log-level": AgentFlag(False, "v1.6.0"),  # 126
        "log-json": AgentFlag(True, "v1.6.0"),  # 127
        "log-include-location": AgentFlag(True, "v1.6.3"),  # 128
        "node": AgentFlag(False, "v1.6.0"),  # 129
        "consul-auth": AgentFlag(False, "v1.6.0"),  # 133
        "consul-auto-advertise": AgentFlag(True, "v1.6.0"),  # 134
        "consul-ca-file": AgentFlag(False, "v1.6.0"),  # 138
        "consul-cert-file": AgentFlag(False, "v1.6.0"),  # 139
        "consul-key-file": AgentFlag(False, "v1.6.0"),  # 140
        "consul-checks-use-advertise": AgentFlag(True, "v1.6.0"),  # 141
        "consul-client-auto-join": AgentFlag(True, "v1.6.0"),  # 145
        "consul-client-service-name": AgentFlag(False, "v1.6.0"),  # 149
        "consul-client-http-check-name": AgentFlag(False, "v1.6.0"),  # 150
        "consul-client-failures-before-critical": AgentFlag(False, "v1.7.3"),  # 151
        "consul-client-failures-before-warning": AgentFlag(False, "v1.7.3"),  # 152
        "consul-server-service-name": AgentFlag(False, "v1.6.0"),  # 153
        "consul-server-http-check-name": AgentFlag(False, "v1.6.0"),  # 154
        "consul-server-serf-check-name": AgentFlag(False, "v1.6.0"),  # 155
        "consul-server-rpc-check-name": AgentFlag(False, "v1.6.0"),  # 156
        "consul-server-failures-before-critical": AgentFlag(False, "v1.7.3"),  # 157
        "consul-server-failures-before-warning": AgentFlag(False, "v1.7.3"),  # 158
        "consul-server-auto-join": AgentFlag(True, "v1.6.0"),  # 159
        "consul-ssl": AgentFlag(True, "v1.6.0"),  # 163
        "consul-token": AgentFlag(False, "v1.6.0"),  # 167
        "consul-verify-ssl": AgentFlag(True, "v1.6.0"),  # 168
        "consul-address": AgentFlag(False, "v1.6.0"),  # 172
        "consul-allow-unauthenticated": AgentFlag(True, "v1.6.0"),  # 173
        "vault-enabled": AgentFlag(True, "v1.6.0"),  # 180
        "vault-allow-unauthenticated": AgentFlag(True, "v1.6.0"),  # 184
        "vault-token": AgentFlag(False, "v1.6.0"),  # 188
        "vault-address": AgentFlag(False, "v1.6.0"),  # 189
        "vault-namespace": AgentFlag(False, "v1.6.0"),  # 190
        "vault-create-from-role": AgentFlag(False, "v1.6.0"),  # 191
        "vault-ca-file": AgentFlag(False, "v1.6.0"),  # 192
        "vault-ca-path": AgentFlag(False, "v1.6.0"),  # 193
        "vault-cert-file": AgentFlag(False, "v1.6.0"),  # 194
        "vault-key-file": AgentFlag(False, "v1.6.0"),  # 195
        "vault-tls-skip-verify": AgentFlag(True, "v1.6.0"),  # 196
        "vault-tls-server-name": AgentFlag(False, "v1.6.0"),  # 200
        "acl-enabled": AgentFlag(True, "v1.6.0"),  # 203
        "acl-replication-token": AgentFlag(False, "v1.6.0"),  # 204
    }
)

AGENT_WORD: Final = "agent"
TOKEN_FLAG: Final = "vault-token"  # noqa: S105 - a flag name
REDACTED: Final = "<redacted>"
# strconv.ParseBool, used by Go's boolValue.Set and flaghelper.FuncBoolVar.Set (helper/flags/flag.go v1.9.7:39-45).
_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
# Nomad's CLI library acts on these anywhere in the arguments before the first "--", whichever
# command follows, and exits 0 without starting the agent: hashicorp/cli v1.1.6 cli.go:636-658
# (processArgs) and 198-253 (Run); Nomad 1.6 uses mitchellh/cli v1.1.5, the same code.
_CLI_EXITS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "-h": "print its help",
        "-help": "print its help",
        "--help": "print its help",
        "-autocomplete-install": "install shell completion",
        "--autocomplete-install": "install shell completion",
        "-autocomplete-uninstall": "uninstall shell completion",
        "--autocomplete-uninstall": "uninstall shell completion",
    }
)
_FIX: Final = "fix the command after --"


@dataclass(frozen=True)
class AgentArgv:
    """What ``nomad agent`` will make of an argv. Never holds a token value."""

    found: bool  # an `agent` word was found; False: nothing below was parsed
    configs: tuple[str, ...] = ()  # the -config values Nomad reads, in order
    insert_at: int = 0  # where `-config FILE` goes to be read, and read last
    vault_token_given: bool = False  # -vault-token appears among the flags Nomad reads
    vault_token_set: bool = False  # ... and its last value is non-empty (so it overrides the files)
    # The last value of every -vault-* flag Nomad reads except -vault-token, by flag name
    # ("vault-address": "https://...", "vault-enabled": True). Go: a later occurrence wins.
    vault_flags: Mapping[str, str | bool] = field(default_factory=dict, hash=False)
    dev_vault: bool = False  # -dev-vault (1.7.1+): Nomad's defaults become enabled, http://localhost:8200
    # The arguments after the stop (a positional argument, or what follows a consumed "--"),
    # which Nomad never reads; a -vault-token value among them is replaced by REDACTED.
    ignored: tuple[str, ...] = ()
    stopped_by_dashdash: bool = False  # the flags ended with "--" (at insert_at)

    def _vault_str(self, name: str) -> str | None:
        value = self.vault_flags.get(name)
        return value if isinstance(value, str) else None

    def _vault_bool(self, name: str) -> bool | None:
        value = self.vault_flags.get(name)
        return value if isinstance(value, bool) else None

    @property
    def vault_create_from_role(self) -> str | None:
        return self._vault_str("vault-create-from-role")

    @property
    def vault_address(self) -> str | None:
        return self._vault_str("vault-address")

    @property
    def vault_namespace(self) -> str | None:
        return self._vault_str("vault-namespace")

    @property
    def vault_enabled(self) -> bool | None:
        return self._vault_bool("vault-enabled")

    @property
    def vault_allow_unauthenticated(self) -> bool | None:
        return self._vault_bool("vault-allow-unauthenticated")


def parse(argv: Sequence[str]) -> AgentArgv:
    """Read ``argv`` (program first) as ``nomad agent`` would; ConfigError when Nomad would not start."""
    agent = _agent_index(argv)
    if agent is None:
        return AgentArgv(found=False, insert_at=len(argv))
    _refuse_cli_exits(argv, agent + 1)
    configs: list[str] = []
    vault: dict[str, str | bool] = {}
    token_given = token_set = dev_vault = False
    i = agent + 1
    while i < len(argv):
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":  # positional, "-" or "": the flags end here
            break
        if arg == "--":  # ends the flags and is consumed
            break
        name, value = _split(arg, i)
        spec = AGENT_FLAGS.get(name)
        if spec is None:
            raise ConfigError(
                f"agent argv: flag -{name} is not a `nomad agent` flag (Nomad 1.6-1.9 would refuse to start): {_FIX}"
            )
        i += 1
        if spec.boolean:
            flag_value: str | bool = _go_bool(name, True if value is None else value)
        else:
            if value is None:
                if i >= len(argv):
                    raise ConfigError(
                        f"agent argv: flag -{name} needs a value and none follows "
                        f"(Nomad would refuse to start: flag needs an argument): {_FIX}"
                    )
                value = argv[i]
                i += 1
            flag_value = value
        if name == "config":
            configs.append(str(flag_value))
        elif name == TOKEN_FLAG:
            token_given, token_set = True, flag_value != ""
        elif name == "dev-vault":
            dev_vault = bool(flag_value)
        elif name.startswith("vault-"):
            vault[name] = flag_value
    stop = i
    dashdash = stop < len(argv) and argv[stop] == "--"
    rest = argv[stop + 1 :] if dashdash else argv[stop:]
    return AgentArgv(
        found=True,
        configs=tuple(configs),
        insert_at=stop,
        vault_token_given=token_given,
        vault_token_set=token_set,
        vault_flags=MappingProxyType(vault),
        dev_vault=dev_vault,
        ignored=_redact_tokens(rest),
        stopped_by_dashdash=dashdash,
    )


def with_config(parsed: AgentArgv, argv: Sequence[str], path: str) -> list[str]:
    """``argv`` with ``-config path`` where Nomad reads it last (at the end when no `agent` word)."""
    return with_flags(parsed, argv, ["-config", path])


def with_flags(parsed: AgentArgv, argv: Sequence[str], extra: Sequence[str]) -> list[str]:
    """``argv`` with ``extra`` flags where Go's flag parsing still reads them, after every other flag."""
    at = parsed.insert_at if parsed.found else len(argv)
    return [*argv[:at], *extra, *argv[at:]]


def _agent_index(argv: Sequence[str]) -> int | None:
    """The first `agent` after the program itself (argv[0] is never the sub-command)."""
    for i in range(1, len(argv)):
        if argv[i] == AGENT_WORD:
            return i
    return None


def _refuse_cli_exits(argv: Sequence[str], start: int) -> None:
    for arg in argv[start:]:
        if arg == "--":
            return
        if arg in _CLI_EXITS:
            raise ConfigError(
                f"agent argv: {arg} makes Nomad {_CLI_EXITS[arg]} and exit instead of starting "
                f"(even as a flag's value): remove it from the command after --"
            )


def _split(arg: str, index: int) -> tuple[str, str | None]:
    """``-name`` / ``--name`` / ``-name=value`` into (name, value or None); Go's checks."""
    body = arg[2:] if arg[1] == "-" else arg[1:]
    if not body or body[0] in "-=":
        # Go: "bad flag syntax: %s"; the argument itself is not echoed, it may hold a secret.
        raise ConfigError(
            f"agent argv: argument {index} is bad flag syntax for Go (it starts with '---' or '-='): {_FIX}"
        )
    name, eq, value = body.partition("=")
    return name, (value if eq else None)


def _go_bool(name: str, value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise ConfigError(
        f"agent argv: -{name}={value} is not a boolean (Go accepts true/false, 1/0, t/f): write -{name}=true "
        f"or -{name}=false after --"
    )


def _redact_tokens(args: Sequence[str]) -> tuple[str, ...]:
    """The ignored tail, with the value of any -vault-token replaced (Nomad never reads it, nor do we)."""
    out: list[str] = []
    redact_next = False
    for arg in args:
        if redact_next:
            out.append(REDACTED)
            redact_next = False
            continue
        name, eq, _ = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name == TOKEN_FLAG:
            if eq:
                out.append(arg[: arg.index("=") + 1] + REDACTED)
            else:
                out.append(arg)
                redact_next = True
            continue
        out.append(arg)
    return tuple(out)
