"""The agent's argv, environment and token file (nomad_vault_token.nomad.handoff), without processes."""

from __future__ import annotations

from pathlib import Path

import hcl
import pytest

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.nomad import argv as agent_argv
from nomad_vault_token.nomad import handoff

TOKEN = Secret("s.0123456789abcdefABCDEF01")
FILE = Settings(token_config=Path("/run/nvt/vault-token.hcl"))
ENV = Settings(handoff="env", namespace="ns1")


def argv_for(settings: Settings, argv: list[str], tokenless: bool = False) -> list[str]:
    return handoff.agent_argv(settings, argv, agent_argv.parse(argv), tokenless=tokenless)


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["nomad", "agent", "-config", "/etc/nomad.d"], ["nomad", "agent", "-config", "/etc/nomad.d", "-config", "T"]),
        # Go's flag parsing stops at the first non-flag: ours goes before it, where Nomad still reads it
        (["nomad", "agent", "-config=/a", "extra", "-x"], ["nomad", "agent", "-config=/a", "-config", "T", "extra", "-x"]),
        (["nomad", "agent", "-server", "--", "-config", "/b"], ["nomad", "agent", "-server", "-config", "T", "--", "-config", "/b"]),
        (["/usr/local/bin/wrapper", "--foo"], ["/usr/local/bin/wrapper", "--foo", "-config", "T"]),  # no `agent`: at the end
    ],
)
def test_file_hand_off_is_the_last_config_nomad_reads(argv: list[str], want: list[str]) -> None:
    got = argv_for(FILE, argv)
    assert got == [str(FILE.token_config_path) if a == "T" else a for a in want]


@pytest.mark.parametrize(
    ("argv", "tokenless", "extra"),
    [
        (["nomad", "agent"], False, ["-vault-create-from-role=nomad-cluster", "-vault-namespace=ns1"]),
        (["nomad", "agent", "-vault-create-from-role=nomad-cluster"], False, ["-vault-namespace=ns1"]),
        (["nomad", "agent", "-vault-namespace=ns1"], True, ["-vault-create-from-role=nomad-cluster", "-vault-enabled=false"]),
    ],
)
def test_env_hand_off_flags(argv: list[str], tokenless: bool, extra: list[str]) -> None:
    assert argv_for(ENV, [*argv, "positional"], tokenless) == [*argv, *extra, "positional"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["nomad", "agent", "-vault-token=s.secret"], "-vault-token beats every config file"),
        (["nomad", "agent", "-vault-create-from-role", "other"], "-vault-create-from-role=other beats the hand-off"),
    ],
)
def test_argv_that_overrides_the_token_is_refused(argv: list[str], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        handoff.check_argv(FILE, agent_argv.parse(argv))
    assert words in caught.value.message and "s.secret" not in caught.value.message


def test_argv_warnings() -> None:
    assert handoff.check_argv(FILE, agent_argv.parse(["nomad", "agent", "-config", "/a"])) == []
    (ignored,) = handoff.check_argv(FILE, agent_argv.parse(["nomad", "agent", "oops", "-config", "/b"]))
    assert "'oops'" in ignored
    (unknown,) = handoff.check_argv(FILE, agent_argv.parse(["wrapper"]))
    assert "no `agent` sub-command" in unknown


def test_the_agents_environment_loses_what_the_tool_consumed() -> None:
    environ = {
        "VAULT_ADDR": "https://v:8200",
        "VAULT_CACERT": "/ca.pem",
        "VAULT_CLIENT_CERT": "/c.pem",
        "VAULT_CLIENT_KEY": "/run/credentials/nomad.service/client.key",
        "VAULT_TLS_SERVER_NAME": "v",
        "VAULT_NAMESPACE": "ns1",
        "NOMAD_VAULT_TOKEN_MIN_TTL": "5m",
        "VAULT_TOKEN": "s.stale",
        "VAULT_CAPATH": "/etc/ssl/certs",  # not ours: Nomad's to use
        "PATH": "/usr/bin",
    }
    assert handoff.agent_env(FILE, TOKEN, environ) == {"VAULT_CAPATH": "/etc/ssl/certs", "PATH": "/usr/bin"}
    env_mode = handoff.agent_env(ENV, TOKEN, environ)
    assert env_mode["VAULT_TOKEN"] == TOKEN.reveal() and "VAULT_CLIENT_KEY" not in env_mode
    assert "VAULT_TOKEN" not in handoff.agent_env(ENV, None, environ)  # degraded, no token yet
    assert handoff.agent_env(FILE, TOKEN, {"VAULT_CACERT": ""}) == {"VAULT_CACERT": ""}  # empty: not consumed


def test_redirecting_variables_are_passed_on_with_a_warning() -> None:
    assert handoff.redirect_warnings({"PATH": "/x"}) == []
    warnings = handoff.redirect_warnings({"VAULT_AGENT_ADDR": "unix:///a", "VAULT_SKIP_VERIFY": "1"})
    assert [w.split()[0] for w in warnings] == ["$VAULT_AGENT_ADDR", "$VAULT_SKIP_VERIFY"]


@pytest.mark.parametrize(
    ("token", "namespace", "want"),
    [
        (TOKEN, None, {"token": TOKEN.reveal(), "create_from_role": "nomad-cluster"}),
        (TOKEN, "ns1", {"token": TOKEN.reveal(), "create_from_role": "nomad-cluster", "namespace": "ns1"}),
        # degraded start, no token: disabled with a placeholder, so 1.7.3+ builds a real (disabled) client
        (None, None, {"enabled": False, "token": handoff.PLACEHOLDER, "create_from_role": "nomad-cluster"}),
    ],
)
def test_token_file_parses_as_hcl(token: Secret | None, namespace: str | None, want: dict[str, object]) -> None:
    assert hcl.loads(handoff.render_hcl(token, "nomad-cluster", namespace).decode()) == {"vault": want}
