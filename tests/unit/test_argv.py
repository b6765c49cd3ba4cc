"""agent_argv: the agent's argv read as `nomad agent` reads it (Go flag package, command.go v1.9.7:79-208)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.nomad import argv as agent_argv
from nomad_vault_token.nomad.argv import AGENT_FLAGS, REDACTED, AgentArgv, parse, with_config

NOMAD = ["/usr/bin/nomad", "agent"]
FAKE = ["/usr/bin/python3", "/x/fake_nomad.py", "agent"]
SECRET = "s.SECRETSECRET"


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    configs: tuple[str, ...] = ()
    insert_at: int | None = None  # None: len(argv)
    ignored: tuple[str, ...] = ()
    vault: dict[str, str | bool] = field(default_factory=dict)
    token_given: bool = False
    token_set: bool = False
    dashdash: bool = False
    dev_vault: bool = False


CASES = [
    Case("plain", [*NOMAD, "-config", "/etc/nomad.d", "-server"], configs=("/etc/nomad.d",)),
    Case("fake nomad under python", [*FAKE, "-config", "a.hcl"], configs=("a.hcl",)),
    Case("nothing after agent", [*NOMAD]),
    Case("= form", [*NOMAD, "-config=/a.hcl", "-config", "/b.hcl"], configs=("/a.hcl", "/b.hcl")),
    Case("-- prefix", [*NOMAD, "--config", "/a", "--config=/b", "--server"], configs=("/a", "/b")),
    Case("empty value with =", [*NOMAD, "-config="], configs=("",)),
    Case("value may start with a dash", [*NOMAD, "-config", "-server"], configs=("-server",)),
    Case(
        "bool with =false",
        [*NOMAD, "-server=false", "-vault-enabled=false", "-config", "a"],
        configs=("a",),
        vault={"vault-enabled": False},
    ),
    Case(
        "go bool spellings",
        [*NOMAD, "-vault-enabled=T", "-vault-allow-unauthenticated=0", "-vault-tls-skip-verify=FALSE"],
        vault={"vault-enabled": True, "vault-allow-unauthenticated": False, "vault-tls-skip-verify": False},
    ),
    Case(
        "bool takes no separate value: 'false' is positional and stops parsing",
        [*NOMAD, "-server", "false", "-config", "late.hcl"],
        insert_at=3,
        ignored=("false", "-config", "late.hcl"),
    ),
    Case(
        "positional then -config: ignored",
        [*NOMAD, "-config", "a", "extra", "-config", "b"],
        configs=("a",),
        insert_at=4,
        ignored=("extra", "-config", "b"),
    ),
    Case(
        "-- stops and is consumed",
        [*NOMAD, "-config", "a", "--", "-config", "b"],
        configs=("a",),
        insert_at=4,
        ignored=("-config", "b"),
        dashdash=True,
    ),
    Case(
        "- alone is positional",
        [*NOMAD, "-config", "a", "-", "-server"],
        configs=("a",),
        insert_at=4,
        ignored=("-", "-server"),
    ),
    Case("empty string is positional", [*NOMAD, "", "-config", "a"], insert_at=2, ignored=("", "-config", "a")),
    Case(
        "-vault-token before the stop: given, value not kept",
        [*NOMAD, "-vault-token", SECRET, "-config", "a"],
        configs=("a",),
        token_given=True,
        token_set=True,
    ),
    Case(
        "-vault-token=value",
        [*NOMAD, "-config", "a", f"-vault-token={SECRET}"],
        configs=("a",),
        token_given=True,
        token_set=True,
    ),
    Case(
        "-vault-token emptied by a later one",
        [*NOMAD, f"-vault-token={SECRET}", "-vault-token="],
        token_given=True,
        token_set=False,
    ),
    Case(
        "-vault-token after the stop: ignored by Nomad, value redacted",
        [*NOMAD, "x", "-vault-token", SECRET, f"--vault-token={SECRET}"],
        insert_at=2,
        ignored=("x", "-vault-token", REDACTED, f"--vault-token={REDACTED}"),
    ),
    Case(
        "repeated -vault-create-from-role: the later wins",
        [*NOMAD, "-vault-create-from-role", "a", "-vault-create-from-role=b"],
        vault={"vault-create-from-role": "b"},
    ),
    Case(
        "vault flags kept",
        [*NOMAD, "-vault-address=https://v:8200", "-vault-namespace", "ns", "-vault-ca-file", "/ca.pem"],
        vault={"vault-address": "https://v:8200", "vault-namespace": "ns", "vault-ca-file": "/ca.pem"},
    ),
    Case("-dev-vault", [*NOMAD, "-dev", "-dev-vault"], dev_vault=True),
    Case("first agent word counts, later is a value", [*NOMAD, "-node", "agent", "-config", "a"], configs=("a",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_parse(case: Case) -> None:
    got = parse(case.argv)
    assert got.found
    assert got.configs == case.configs
    assert got.insert_at == (len(case.argv) if case.insert_at is None else case.insert_at)
    assert got.ignored == case.ignored
    assert dict(got.vault_flags) == case.vault
    assert (got.vault_token_given, got.vault_token_set) == (case.token_given, case.token_set)
    assert got.stopped_by_dashdash == case.dashdash
    assert got.dev_vault == case.dev_vault
    assert SECRET not in repr(got)
    assert SECRET not in str(got.__dict__)


ERRORS = [
    ("unknown flag", [*NOMAD, "-config", "a", "-confg", "b"], "flag -confg is not a `nomad agent` flag"),
    ("unknown flag with =, value not echoed", [*NOMAD, f"-vault-tokne={SECRET}"], "flag -vault-tokne is not"),
    ("missing value at the end", [*NOMAD, "-server", "-config"], "flag -config needs a value"),
    ("missing value for -vault-token", [*NOMAD, "-vault-token"], "flag -vault-token needs a value"),
    ("bad boolean", [*NOMAD, "-server=yes"], "-server=yes is not a boolean"),
    ("triple dash", [*NOMAD, "---config", "a"], "bad flag syntax"),
    ("-=x", [*NOMAD, f"-={SECRET}"], "bad flag syntax"),
    ("-help", [*NOMAD, "-config", "a", "-help"], "-help makes Nomad print its help"),
    ("-h even as a value", [*NOMAD, "-config", "-h"], "-h makes Nomad print its help"),
    ("--help after a positional", [*NOMAD, "x", "--help"], "--help makes Nomad print its help"),
    ("autocomplete", [*NOMAD, "-autocomplete-install"], "install shell completion"),
]


@pytest.mark.parametrize(("argv", "needle"), [(a, n) for _, a, n in ERRORS], ids=[i for i, _, _ in ERRORS])
def test_parse_refuses(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(argv)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert SECRET not in message
    assert info.value.exit_code == 78


def test_help_after_dashdash_is_not_nomads() -> None:
    got = parse([*NOMAD, "-config", "a", "--", "-help"])
    assert got.ignored == ("-help",)


def test_no_agent_word() -> None:
    argv = ["/usr/bin/nomad", "-config", "a"]
    got = parse(argv)
    assert got == AgentArgv(found=False, insert_at=3)
    assert with_config(got, argv, "/run/t.hcl") == [*argv, "-config", "/run/t.hcl"]


def test_program_named_agent_is_not_the_subcommand() -> None:
    assert not parse(["agent", "-config", "a"]).found


WITH_CONFIG = [
    ([*NOMAD, "-config", "/etc/nomad.d"], [*NOMAD, "-config", "/etc/nomad.d", "-config", "T"]),
    ([*NOMAD, "-config", "a", "x", "-server"], [*NOMAD, "-config", "a", "-config", "T", "x", "-server"]),
    ([*NOMAD, "-config", "a", "--", "b"], [*NOMAD, "-config", "a", "-config", "T", "--", "b"]),
    ([*FAKE], [*FAKE, "-config", "T"]),
]


@pytest.mark.parametrize(("argv", "want"), WITH_CONFIG)
def test_with_config_is_read_last(argv: list[str], want: list[str]) -> None:
    parsed = parse(argv)
    out = with_config(parsed, argv, "T")
    assert out == want
    assert parse(out).configs[-1] == "T"
    assert parse(out).configs == (*parsed.configs, "T")


def test_properties() -> None:
    got = parse(
        [
            *NOMAD,
            "-vault-create-from-role=r",
            "-vault-address",
            "https://a",
            "-vault-namespace=n",
            "-vault-enabled",
            "-vault-allow-unauthenticated=false",
        ]
    )
    assert got.vault_create_from_role == "r"
    assert got.vault_address == "https://a"
    assert got.vault_namespace == "n"
    assert got.vault_enabled is True
    assert got.vault_allow_unauthenticated is False
    empty = parse(NOMAD)
    assert (empty.vault_create_from_role, empty.vault_enabled) == (None, None)


FLAG_TABLE = [
    ("config", False, "v1.6.0"),
    ("vault-token", False, "v1.6.0"),
    ("dev", True, "v1.6.0"),
    ("server", True, "v1.6.0"),
    ("vault-enabled", True, "v1.6.0"),  # flaghelper.FuncBoolVar
    ("vault-allow-unauthenticated", True, "v1.6.0"),
    ("vault-tls-skip-verify", True, "v1.6.0"),
    ("retry-interval", False, "v1.6.0"),  # flaghelper.FuncDurationVar
    ("join", False, "v1.6.0"),  # flaghelper.StringFlag
    ("dev-vault", True, "v1.7.1"),
    ("consul-client-failures-before-critical", False, "v1.7.3"),
    ("alloc-mounts-dir", False, "v1.8.0"),
    ("preferred-address-family", False, "v1.8.2"),
]


@pytest.mark.parametrize(("name", "boolean", "since"), FLAG_TABLE)
def test_flag_table(name: str, boolean: bool, since: str) -> None:
    assert AGENT_FLAGS[name] == (boolean, since)


def test_flag_table_has_no_help_and_all_vault_flags() -> None:
    assert "help" not in AGENT_FLAGS and "h" not in AGENT_FLAGS
    assert len(AGENT_FLAGS) == 71
    vault = {n for n in AGENT_FLAGS if n.startswith("vault-")}
    assert len(vault) == 12


def test_stdlib_only() -> None:
    source = Path(agent_argv.__file__).read_text(encoding="utf-8")
    imports = {line.split()[1] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "collections.abc", "dataclasses", "types", "typing", "nomad_vault_token.core.errors"}
