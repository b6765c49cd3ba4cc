"""Tests of the stand-in Nomad agent (testbed/nomad_standin, run as testbed/fake_nomad.py).

Pure functions first (Go's flag parsing, config files through pyhcl, how the
Vault client is built from the block and the environment, Nomad's rules); then
runs of the program itself against an in-process stub of the Vault HTTP API
(no OpenBao needed). Every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import trustme

from testbed import jsonl, procs
from testbed.agent import FAKE_NOMAD, Event
from testbed.nomad_standin.agent import Settings
from testbed.nomad_standin.common import (
    AGENT_FLAGS,
    DEFAULT_VAULT,
    VAULT_FLAGS,
    VAULT_KEYS,
    ClientError,
    ConfigError,
    UsageError,
    go_bool,
    go_duration,
)
from testbed.nomad_standin.config import read_config
from testbed.nomad_standin.flags import parse_go_flags
from testbed.nomad_standin.rules import (
    as_int,
    capabilities_from_response,
    capability_error,
    choose_role,
    go_quote_list,
    next_backoff,
    renew_is_fatal,
    required_capabilities,
    role_errors,
    scrub,
    token_errors,
)
from testbed.nomad_standin.vault_api import build_client

FAKE = FAKE_NOMAD


DEFAULTS = DEFAULT_VAULT["1.9"]


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------
# Go's flag parsing
# --------------------------------------------------------------------------


def test_flag_forms() -> None:
    args = ["-config", "a", "-config=b", "--config", "c", "--config=d", "-server", "-bind", "x", "-dev=false"]
    assert parse_go_flags(args) == [
        ("config", "a"),
        ("config", "b"),
        ("config", "c"),
        ("config", "d"),
        ("server", "true"),
        ("bind", "x"),
        ("dev", "false"),
    ]


def test_parsing_stops_at_the_first_non_flag_argument() -> None:
    assert parse_go_flags(["-config", "a", "extra", "-config", "b"]) == [("config", "a")]
    assert parse_go_flags(["-", "-config", "b"]) == []
    assert parse_go_flags(["-config=a", "--", "-config=b"]) == [("config", "a")]


def test_a_bool_flag_never_takes_the_next_argument() -> None:
    # "false" is the first non-flag argument: the flags end there, the -config after it is ignored
    assert parse_go_flags(["-vault-enabled", "false", "-config", "a"]) == [("vault-enabled", "true")]
    assert parse_go_flags(["-vault-enabled=false", "-acl-enabled"]) == [
        ("vault-enabled", "false"),
        ("acl-enabled", "true"),
    ]


def test_a_value_flag_takes_the_next_argument_whatever_it_is() -> None:
    assert parse_go_flags(["-bind", "-config", "a"]) == [("bind", "-config")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-bogus"], "flag provided but not defined: -bogus"),
        (["-config", "a", "--vault-tokn=x"], "flag provided but not defined: -vault-tokn"),
        (["-config"], "flag needs an argument: -config"),
        (["-vault-enabled=maybe"], 'invalid boolean value "maybe" for -vault-enabled'),
        (["-h"], "flag: help requested"),
        (["---config=a"], "bad flag syntax: ---config=a"),
        (["-=a"], "bad flag syntax: -=a"),
    ],
)
def test_flag_errors(args: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_go_flags(args)


def test_vault_flags_are_agent_flags_of_the_right_kind() -> None:
    for flag, key in VAULT_FLAGS.items():
        assert AGENT_FLAGS[flag] == (VAULT_KEYS[key] is bool), flag


# --------------------------------------------------------------------------
# Config files and the merged vault block
# --------------------------------------------------------------------------


def test_defaults_without_config() -> None:
    assert read_config([], {}).vault == DEFAULTS
    assert read_config([], {}, "1.6").vault == {
        "address": "https://vault.service.consul:8200",
        "allow_unauthenticated": True,
    }


def test_blocks_merge_in_order_set_keys_override(tmp_path: Path) -> None:
    a = write(tmp_path / "a.hcl", 'vault {\n enabled = true\n address = "https://one"\n token = "s.old"\n}\n')
    b = write(tmp_path / "b.hcl", 'vault { token = "s.new", create_from_role = "r", address = "", enabled = false }\n')
    loaded = read_config(["-config", a, "-config", b], {})
    assert loaded.vault == {
        **DEFAULTS,
        "enabled": False,
        "address": "https://one",
        "token": "s.new",
        "create_from_role": "r",
    }
    assert loaded.files == [a, b] and loaded.token_source == "config"


def test_only_the_default_cluster_counts_from_1_7(tmp_path: Path) -> None:
    # pyhcl alone would fold these three blocks into one dict and lose which key came from which
    text = (
        'vault {\n name = "default"\n token = "s.a"\n}\n'
        'vault {\n name = "other"\n token = "s.b"\n enabled = true\n}\n'
        'vault {\n create_from_role = "r"\n}\n'
    )
    f = write(tmp_path / "v.hcl", text)
    assert read_config(["-config", f], {}).vault == {**DEFAULTS, "token": "s.a", "create_from_role": "r"}
    # 1.6 has one vault block: every block is it
    assert read_config(["-config", f], {}, "1.6").vault == {
        **DEFAULT_VAULT["1.6"],
        "token": "s.b",
        "enabled": True,
        "create_from_role": "r",
    }


def test_weak_decoding_and_case_insensitive_keys(tmp_path: Path) -> None:
    f = write(
        tmp_path / "v.hcl", 'vault {\n enabled = "true"\n tls_skip_verify = 0\n address = 8200\n Token = "s.c"\n}\n'
    )
    vault = read_config(["-config", f], {}).vault
    assert (vault["enabled"], vault["tls_skip_verify"], vault["address"], vault["token"]) == (
        True,
        False,
        "8200",
        "s.c",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('vault { enabled = "maybe" }', "cannot parse 'enabled' as bool"),
        ('vault { token = ["a"] }', "'token' expected type 'string'"),
        ('vault = "x"', "error parsing 'vault'"),
        ('vault { token = "unterminated }', "failed to decode HCL file"),
        ('leave_on_terminate = "true"', "leave_on_terminate"),
    ],
)
def test_a_bad_file_names_itself(tmp_path: Path, text: str, message: str) -> None:
    f = write(tmp_path / "bad.hcl", text)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        read_config(["-config", f], {})
    assert str(info.value).startswith(f"Error loading configuration from {f}: Error loading {f}: ")


def test_missing_path() -> None:
    with pytest.raises(
        ConfigError, match=r"^Error loading configuration from /no/such\.hcl: stat /no/such\.hcl: no such"
    ):
        read_config(["-config", "/no/such.hcl"], {})


def test_a_file_is_parsed_whatever_its_name_json_too(tmp_path: Path) -> None:
    hcl_file = write(tmp_path / "agent.conf", "vault { enabled = true }\n")
    json_file = write(tmp_path / "token.txt", json.dumps({"vault": [{"token": "s.j"}, {"create_from_role": "r"}]}))
    vault = read_config(["-config", hcl_file, "-config", json_file], {}).vault
    assert (vault["enabled"], vault["token"], vault["create_from_role"]) == (True, "s.j", "r")


def test_a_directory_gives_its_hcl_and_json_files_sorted(tmp_path: Path) -> None:
    d = tmp_path / "d"
    for name in ("b.hcl", "a.json", ".hidden.hcl", "c.hcl~", ".#e.hcl", "#f.hcl#", "notes.txt", "x.hcl.bak"):
        body = json.dumps({"vault": {"token": name}}) if name.endswith(".json") else f'vault {{ token = "{name}" }}'
        write(d / name, body)
    (d / "sub.hcl").mkdir()
    loaded = read_config(["-config", str(d)], {})
    assert [Path(f).name for f in loaded.files] == [".hidden.hcl", "a.json", "b.hcl"]
    assert loaded.vault["token"] == "b.hcl"


def test_vault_inside_another_block_is_not_the_agents(tmp_path: Path) -> None:
    f = write(tmp_path / "a.hcl", 'client {\n vault { token = "inner" }\n}\nvault { enabled = true }\n')
    assert "token" not in read_config(["-config", f], {}).vault


def test_leave_flags_once_true_stay_true(tmp_path: Path) -> None:
    a = write(tmp_path / "a.hcl", "leave_on_terminate = true\n")
    b = write(tmp_path / "b.hcl", "leave_on_terminate = false\n")
    loaded = read_config(["-config", a, "-config", b], {})
    assert (loaded.leave_on_terminate, loaded.leave_on_interrupt) == (True, False)


def test_flags_over_files_and_the_token_sources(tmp_path: Path) -> None:
    f = write(tmp_path / "a.hcl", 'vault {\n enabled = true\n address = "https://file"\n create_from_role = "fr"\n}\n')
    env = {"VAULT_TOKEN": "s.env", "VAULT_ADDR": "https://env"}
    loaded = read_config(["-config", f, "-vault-create-from-role=flag", "-vault-tls-skip-verify=false"], env)
    assert loaded.vault["create_from_role"] == "flag" and loaded.vault["tls_skip_verify"] is False
    assert loaded.vault["address"] == "https://file"  # VAULT_ADDR never counts
    assert (loaded.vault["token"], loaded.token_source) == ("s.env", "env")

    tok = write(tmp_path / "t.hcl", 'vault { token = "s.file" }')
    loaded = read_config(["-config", f, "-config", tok, "-vault-token="], env)
    assert (loaded.vault["token"], loaded.token_source) == ("s.file", "config")  # an empty flag sets nothing
    loaded = read_config(["-config", f, "-config", tok, "-vault-token", "s.flag"], env)
    assert (loaded.vault["token"], loaded.token_source) == ("s.flag", "flag")
    assert read_config(["-config", f], {}).token_source == "none"


def test_vault_namespace_only_when_the_block_has_none(tmp_path: Path) -> None:
    f = write(tmp_path / "a.hcl", 'vault { namespace = "cfg" }')
    assert read_config(["-config", f], {"VAULT_NAMESPACE": "env"}).vault["namespace"] == "cfg"
    assert read_config([], {"VAULT_NAMESPACE": "env"}).vault["namespace"] == "env"


def test_config_after_a_positional_argument_is_ignored(tmp_path: Path) -> None:
    a = write(tmp_path / "a.hcl", 'vault { token = "s.a" }')
    loaded = read_config(["-config", a, "positional", "-config", "/no/such/file"], {})
    assert loaded.files == [a]


# --------------------------------------------------------------------------
# The Vault client: the block and the environment
# --------------------------------------------------------------------------

CFG = {**DEFAULTS, "enabled": True, "token": "s.t", "address": "https://vault.example:8200"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("pki")
    files: dict[str, Any] = {}
    for name in ("ca1", "ca2"):
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(d / f"{name}.pem"))
        files[name] = str(d / f"{name}.pem")
        files[f"{name}-der"] = ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode())
    leaf = trustme.CA().issue_cert("client")
    leaf.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(d / "key.pem"))
    files["cert"], files["key"] = str(d / "cert.pem"), str(d / "key.pem")
    return files


def client_error(cfg: dict[str, Any], env: dict[str, str]) -> str:
    with pytest.raises(ClientError) as info:
        build_client(cfg, env)
    return str(info.value)


def test_a_key_without_a_cert_in_the_environment_fails(pki: dict[str, Any]) -> None:
    expected = "error encountered setting up default configuration: both client cert and client key must be provided"
    assert client_error(CFG, {"VAULT_CLIENT_KEY": pki["key"]}) == expected
    assert client_error(CFG, {"VAULT_CLIENT_CERT": pki["cert"]}) == expected
    # even when the block has its own pair: NewClient reads the environment again
    assert (
        client_error({**CFG, "cert_file": pki["cert"], "key_file": pki["key"]}, {"VAULT_CLIENT_KEY": pki["key"]})
        == expected
    )


def test_the_blocks_own_errors_come_first(pki: dict[str, Any]) -> None:
    error = client_error({**CFG, "cert_file": pki["cert"]}, {"VAULT_CLIENT_KEY": pki["key"]})
    assert error == "Failed to create Vault API config: both client cert and client key must be provided"
    assert client_error({**CFG, "ca_file": "/no/ca.pem"}, {}).startswith("Failed to create Vault API config: ")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VAULT_SKIP_VERIFY": "maybe"}, "could not parse VAULT_SKIP_VERIFY"),
        ({"VAULT_MAX_RETRIES": "-1"}, 'strconv.ParseUint: parsing "-1": invalid syntax'),
        ({"VAULT_CACERT": "/no/ca.pem"}, "FileNotFoundError"),
        ({"VAULT_CAPATH": str(FAKE)}, f"Error loading file from CAPath: Couldn't parse PEM in: {FAKE}"),
        ({"VAULT_CAPATH": "/no/ca-dir"}, "FileNotFoundError"),
    ],
)
def test_bad_environment_values(env: dict[str, str], message: str) -> None:
    error = client_error(CFG, env)
    assert error.startswith("error encountered setting up default configuration: ") and message in error


def test_what_build_client_checks_first() -> None:
    assert client_error({**CFG, "token": ""}, {}) == "Vault token must be set"
    assert client_error({**CFG, "address": ""}, {}) == "Vault address must be set"
    assert (
        client_error({**CFG, "task_token_ttl": "soon"}, {})
        == 'failed to parse TaskTokenTTL "soon": time: invalid duration "soon"'
    )
    assert client_error({**CFG, "task_token_ttl": "4m59s"}, {}) == "ChildTokenTTL is less than minimum allowed of 5m0s"
    assert build_client({**CFG, "task_token_ttl": "1h30m"}, {}).address == CFG["address"]


def test_address_vault_agent_addr_replaces_it_vault_addr_never() -> None:
    assert build_client(CFG, {"VAULT_ADDR": "https://addr:1"}).address == CFG["address"]
    env = {"VAULT_ADDR": "https://addr:1", "VAULT_AGENT_ADDR": "http://agent:2"}
    client = build_client(CFG, env)
    assert client.address == "http://agent:2" and client.context is None


def test_tls_settings_block_over_environment(pki: dict[str, Any]) -> None:
    env = {"VAULT_CACERT": pki["ca1"], "VAULT_TLS_SERVER_NAME": "env-name", "VAULT_SKIP_VERIFY": "true"}
    env |= {"VAULT_MAX_RETRIES": "5", "VAULT_NAMESPACE": "ignored-here"}
    client = build_client({**CFG, "ca_file": pki["ca2"], "tls_skip_verify": False, "namespace": "ns"}, env)
    assert client.context.get_ca_certs(binary_form=True) == [pki["ca2-der"]]  # the block's CA replaces the env's
    assert client.context.verify_mode == ssl.CERT_NONE  # a false in the block does not undo VAULT_SKIP_VERIFY
    assert client.server_name == "env-name" and client.max_retries == 5 and client.namespace == "ns"
    client = build_client({**CFG, "tls_server_name": "cfg-name"}, {"VAULT_CACERT": pki["ca1"]})
    assert client.context.get_ca_certs(binary_form=True) == [pki["ca1-der"]]
    assert client.server_name == "cfg-name" and client.context.verify_mode == ssl.CERT_REQUIRED
    assert client.max_retries == 2


def test_client_pair_from_block_or_environment(pki: dict[str, Any]) -> None:
    env = {"VAULT_CLIENT_CERT": pki["cert"], "VAULT_CLIENT_KEY": pki["key"]}
    assert build_client(CFG, env).context is not None
    with pytest.raises(ClientError, match="Failed to create Vault API config"):
        build_client({**CFG, "cert_file": pki["key"], "key_file": pki["key"]}, env)


# --------------------------------------------------------------------------
# Nomad's rules
# --------------------------------------------------------------------------

GOOD_TOKEN = {"renewable": True, "ttl": 259000, "creation_ttl": 259200, "role": "mint", "policies": ["default", "p"]}


def test_token_errors_none_for_good_token() -> None:
    assert token_errors(GOOD_TOKEN, "mint") == []


def test_token_errors_each_rule() -> None:
    bad = {"renewable": False, "ttl": 0, "creation_ttl": 0, "policies": ["default"]}
    assert token_errors(bad, "") == [
        "Vault token is not renewable or root",
        "invalid lease duration of zero",
        "token TTL is zero",
        "token role name must be set when not using a root token",
    ]


def test_token_errors_root() -> None:
    assert token_errors({"policies": ["root"], "ttl": 0, "creation_ttl": 0, "renewable": False}, "") == []
    root = {"policies": ["root"], "ttl": 10, "creation_ttl": 60, "renewable": False}
    assert token_errors(root, "") == ["Vault token has a TTL but is not renewable"]


def test_choose_role() -> None:
    assert choose_role({"create_from_role": "task"}, {"role": "mint"}) == "task"
    assert choose_role({}, {"role": "mint"}) == "mint"
    assert choose_role({}, {}) == ""


def test_required_capabilities() -> None:
    paths = [p for p, _ in required_capabilities("r", True)]
    assert paths == ["auth/token/renew-self", "auth/token/revoke-accessor", "auth/token/roles/r", "auth/token/create/r"]
    assert required_capabilities("", False) == [
        ("auth/token/lookup", ("update", "root")),
        ("auth/token/renew-self", ("update", "root")),
        ("auth/token/revoke-accessor", ("update", "root")),
    ]
    assert dict(required_capabilities("r", True))["auth/token/roles/r"] == ("read", "root")


def test_capabilities_from_response() -> None:
    assert capabilities_from_response({"data": {"p": ["read"], "capabilities": ["x"]}}, "p") == ["read"]
    assert capabilities_from_response({"data": {"capabilities": ["update"]}}, "p") == ["update"]
    assert capabilities_from_response({"p": ["read"]}, "p") is None


def test_capability_error() -> None:
    assert capability_error("a", ("update", "root"), ["update"]) is None
    assert capability_error("a", ("update", "root"), ["sudo"]) == (
        'token must have one of the following capabilities ["update" "root"] on "a"; has [sudo]'
    )
    assert capability_error("a", ("read", "root"), []).endswith("has []")


def test_role_errors() -> None:
    good = {"renewable": True, "token_explicit_max_ttl": 0, "token_period": 259200}
    assert role_errors(good) == [] and role_errors({"renewable": True, "period": 3600}) == []
    assert role_errors({"renewable": False, "token_explicit_max_ttl": 60, "token_period": 0}) == [
        "Role must allow tokens to be renewed",
        "Role can not use an explicit max ttl. Token must be periodic.",
        "Role must have a non-zero period to make tokens periodic.",
    ]


def test_renew_is_fatal_on_400_403_404_only() -> None:
    fatal = [c for c in (400, 401, 403, 404, 429, 500, 503) if renew_is_fatal(f"x: Code: {c}. Errors: y")]
    assert fatal == [400, 403, 404]
    assert not renew_is_fatal("failed to renew the vault token: PUT x: ConnectionRefusedError")


def test_next_backoff() -> None:
    day = 86400.0
    assert next_backoff(0, day) == 5.0
    for _ in range(50):
        assert 6.25 <= next_backoff(5, day) <= 12.5
        assert 30 <= next_backoff(24, day) <= 60
        assert 60 <= next_backoff(30, -1) <= 120  # past expiry
    assert next_backoff(24, 20) == 10.0  # never more than half the time left...
    assert next_backoff(24, 4) == 5.0  # ...but at least 5 s


def test_go_values() -> None:
    assert [go_bool(v) for v in ("1", "t", "TRUE", "True", "0", "F", "false", "yes", "tRUE")] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        None,
        None,
    ]
    assert [go_duration(v) for v in ("72h", "1h30m", "1.5s", "0", "300ms")] == [259200, 5400, 1.5, 0, 0.3]
    for bad in ("", "5", "h", "1d", "1h x"):
        with pytest.raises(ValueError, match="time: invalid duration"):
            go_duration(bad)


def test_misc_helpers() -> None:
    assert [as_int(v) for v in (5, 5.9, "7", "x", None, True)] == [5, 5, 7, 0, 0, 1]
    assert go_quote_list(["update", "root"]) == '["update" "root"]'
    assert scrub('{"x": "s.secret s.secret"}', ["s.secret", ""]) == '{"x": "[REDACTED] [REDACTED]"}'


def test_settings_default_to_nomads_numbers() -> None:
    s = Settings.from_env({})
    assert (s.version, s.signal_delay, s.validate_retry, s.renew_every, s.backoff_scale) == (
        "1.9",
        2.0,
        30.0,
        None,
        1.0,
    )
    for bad in ({"FAKE_NOMAD_VERSION": "1.8"}, {"FAKE_NOMAD_SIGNAL_DELAY": "soon"}, {"FAKE_NOMAD_BACKOFF_SCALE": "-1"}):
        with pytest.raises(UsageError):
            Settings.from_env(bad)


# --------------------------------------------------------------------------
# The program, against a stub of Vault's HTTP API
# --------------------------------------------------------------------------

TOKEN = "s.UnitTestToken0000000001"
TOKEN2 = "s.UnitTestToken0000000002"
ACCESSORS = {TOKEN: "acc1", TOKEN2: "acc2"}


class Call(NamedTuple):
    method: str
    path: str
    token: str
    namespace: str | None


class StubVault:
    """The endpoints Nomad's server uses; what it answers is settable."""

    def __init__(self) -> None:
        self.renew_status = 200
        self.capabilities_status = 200
        self.role_exists = True
        self.caps: dict[str, list[str]] = {}  # per path; default ["update", "read"]
        self.calls: list[Call] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self) -> None:
                token = self.headers.get("X-Vault-Token", "")
                length = int(self.headers.get("Content-Length") or 0)
                body: dict[str, Any] = json.loads(self.rfile.read(length)) if length else {}
                stub.calls.append(Call(self.command, self.path, token, self.headers.get("X-Vault-Namespace")))
                route = (self.command, self.path)
                if token not in ACCESSORS:
                    self._send(403, {"errors": ["permission denied"]})
                elif route in (("GET", "/v1/auth/token/lookup-self"), ("POST", "/v1/auth/token/lookup")):
                    looked_up = body.get("token", token)
                    self._send(200, {"data": dict(GOOD_TOKEN, accessor=ACCESSORS[looked_up], id=looked_up)})
                elif route == ("POST", "/v1/sys/capabilities-self"):
                    if stub.capabilities_status != 200:
                        self._send(stub.capabilities_status, {"errors": ["permission denied"]})
                    else:
                        caps = stub.caps.get(body["path"], ["update", "read"])
                        self._send(200, {"data": {"capabilities": caps, body["path"]: caps}})
                elif route == ("GET", "/v1/auth/token/roles/mint") and stub.role_exists:
                    self._send(200, {"data": {"renewable": True, "token_period": 259200}})
                elif route == ("PUT", "/v1/auth/token/renew-self"):
                    if stub.renew_status == 200:
                        auth = {"client_token": token, "accessor": ACCESSORS[token], "lease_duration": 259200}
                        self._send(200, {"auth": auth})
                    else:
                        self._send(stub.renew_status, {"errors": ["nope"]})
                else:
                    self._send(404, {"errors": []})

            do_GET = _handle
            do_POST = _handle
            do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def renewals(self, token: str | None = None) -> list[Call]:
        return [c for c in list(self.calls) if c.path.endswith("/renew-self") and token in (None, c.token)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[StubVault]:
    s = StubVault()
    yield s
    s.close()


_RUNNING: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _kill_leftovers() -> Iterator[None]:
    """A failed assertion must not leave a fake agent running."""
    yield
    procs.stop_all(_RUNNING, signal.SIGKILL)
    _RUNNING.clear()


def _default_signals() -> None:
    """Start as systemd starts a service: SIGHUP and SIGINT at their defaults, whatever this runner inherited
    (`nohup` ignores SIGHUP, a shell's `&` SIGINT; the stand-in keeps an inherited SIG_IGN, as Go does)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ignore_sighup() -> None:
    _default_signals()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


class Run:
    """One fake agent: `agent *args`, signal handlers after 0.2 s unless env says otherwise."""

    def __init__(self, tmp: Path, args: list[str], env: dict[str, str] | None = None, ignore_sighup: bool = False):
        self.report = tmp / f"report-{time.monotonic_ns()}.jsonl"
        self.stderr = tmp / f"stderr-{time.monotonic_ns()}.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "FAKE_NOMAD_"))}
        full |= {"FAKE_NOMAD_SIGNAL_DELAY": "0.2", **(env or {}), "FAKE_NOMAD_REPORT": str(self.report)}
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(FAKE), "agent", *args],
                env=full,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                preexec_fn=_ignore_sighup if ignore_sighup else _default_signals,
            )
        _RUNNING.append(self.proc)

    def events(self, name: str | None = None) -> list[Event]:
        return jsonl.events(self.report, name)

    def wait_for(self, pred: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        return procs.wait_for(pred, timeout, what, 0.02, proc=self.proc, detail=lambda: f"events: {self.events()}")

    def wait_event(self, name: str, match: Callable[[Event], bool] = lambda e: True, after: int = 0) -> Event:
        found: Event = self.wait_for(
            lambda: next((e for e in self.events(name)[after:] if match(e)), None), f"{name} event"
        )
        return found

    def holds(self, pred: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert pred(), f"{what} stopped holding; events: {self.events()}"
            time.sleep(0.02)

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def reload(self) -> Event:
        """SIGHUP, and the reload event it gives (the agent must be signals_ready)."""
        seen = len(self.events("reload"))
        self.send(signal.SIGHUP)
        return self.wait_event("reload", after=seen)

    def wait_exit(self, timeout: float = 10) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int:
        """SIGTERM once the handlers are installed (before, it would die of it)."""
        if self.proc.poll() is None:
            self.wait_event("signals_ready")
            self.send(signal.SIGTERM)
        return self.proc.wait(10)

    def text(self) -> str:
        return (self.report.read_text() if self.report.exists() else "") + self.stderr.read_text()


def vault_hcl(tmp: Path, stub: StubVault, extra: str = "", name: str = "agent.hcl") -> str:
    return write(tmp / name, f'vault {{\n  enabled = true\n  address = "{stub.address}"\n{extra}}}\n')


def token_hcl(tmp: Path, token: str | None, name: str = "token.hcl") -> str:
    return write(tmp / name, f'vault {{ token = "{token}" }}\n' if token else "vault {}\n")


def names(events: list[Event]) -> list[str]:
    return [e["event"] for e in events]


def test_renews_at_once_and_sigterm_exits_1(tmp_path: Path, stub: StubVault) -> None:
    cfg = vault_hcl(tmp_path, stub, f'  token = "{TOKEN}"\n')
    env = {"FAKE_NOMAD_RENEW_EVERY": "0.1", "VAULT_TOKEN": TOKEN2, "VAULT_ADDR": "http://127.0.0.1:1"}
    run = Run(tmp_path, ["-config", cfg], env)
    run.wait_for(lambda: len(run.events("renewed")) >= 2 and run.events("signals_ready"), "2 renewals")
    assert run.stop() == 1
    # signals_ready comes when the handlers are installed, on its own clock: before or after the first
    # validation (a loaded machine) as in Nomad, where they are separate goroutines. The order asserted is the
    # token's: start (after the first validation attempt), validated, renewed.
    evs = [e for e in run.events() if e["event"] != "signals_ready"]
    start, validated, first_renewal = evs[0], evs[1], evs[2]
    assert start["event"] == "start" and start["token_source"] == "config" and start["token_accessor"] == "acc1"
    assert (start["client"], start["address"], start["version"]) == ("vault", stub.address, "1.9")
    assert validated["event"] == "validated" and validated["ok"] is True and validated["role"] == "mint"
    assert validated["errors"] == [] and validated["renewing"] is True
    assert first_renewal["event"] == "renewed" and first_renewal["increment"] == GOOD_TOKEN["creation_ttl"]
    assert first_renewal["ttl"] == 259200 and first_renewal["accessor"] == "acc1"
    assert [(e["event"], e.get("signal"), e["code"]) for e in evs[-2:]] == [("signal", "SIGTERM", 1), ("exit", None, 1)]
    assert {c.token for c in stub.calls} == {TOKEN}  # VAULT_TOKEN unused when the config has one, VAULT_ADDR never
    assert {c.method for c in stub.renewals()} == {"PUT"}
    assert TOKEN not in run.text() and TOKEN2 not in run.text()


@pytest.mark.parametrize(
    ("sig", "setting", "code"),
    [
        (signal.SIGTERM, "", 1),
        (signal.SIGINT, "", 1),
        (signal.SIGTERM, "leave_on_terminate = true", 0),
        (signal.SIGINT, "leave_on_interrupt = true", 0),
        (signal.SIGINT, "leave_on_terminate = true", 1),
    ],
)
def test_exit_code_on_a_signal(tmp_path: Path, sig: signal.Signals, setting: str, code: int) -> None:
    cfg = write(tmp_path / "a.hcl", f"{setting}\nvault {{ enabled = false }}\n")
    run = Run(tmp_path, ["-config", cfg])
    run.wait_event("signals_ready")
    run.send(sig)
    assert run.wait_exit() == code
    assert run.events()[-2:] == [
        {**run.events()[-2], "event": "signal", "signal": sig.name, "code": code},
        {**run.events()[-1], "event": "exit", "reason": "signal", "code": code},
    ]


def test_an_early_sighup_kills_it_after_it_renewed(tmp_path: Path, stub: StubVault) -> None:
    cfg = vault_hcl(tmp_path, stub, f'  token = "{TOKEN}"\n')
    run = Run(tmp_path, ["-config", cfg], {"FAKE_NOMAD_SIGNAL_DELAY": "30"})
    run.wait_event("renewed")  # validating and renewing before its signal handlers exist
    run.send(signal.SIGHUP)
    assert run.wait_exit() == -signal.SIGHUP
    assert "signals_ready" not in names(run.events()) and "reload" not in names(run.events())


def test_the_default_signal_delay_is_not_zero(tmp_path: Path) -> None:
    run = Run(tmp_path, [], {"FAKE_NOMAD_SIGNAL_DELAY": ""})
    start = run.wait_event("start")
    ready = run.wait_event("signals_ready")
    assert ready["time"] - start["time"] >= 1.5
    assert run.stop() == 1


def test_an_inherited_ignored_sighup_stays_ignored_until_handlers(tmp_path: Path) -> None:
    cfg = write(tmp_path / "a.hcl", "vault { enabled = false }\n")
    run = Run(tmp_path, ["-config", cfg], {"FAKE_NOMAD_SIGNAL_DELAY": "1.0"}, ignore_sighup=True)
    run.wait_event("start")
    run.send(signal.SIGHUP)  # ignored: lost, not queued
    run.wait_event("signals_ready")
    assert run.proc.poll() is None and not run.events("reload")
    assert run.reload()["error"] is None  # handled from now on
    assert run.stop() == 1


def test_a_client_the_environment_breaks_stops_the_start(tmp_path: Path, stub: StubVault) -> None:
    cfg = vault_hcl(tmp_path, stub, f'  token = "{TOKEN}"\n')
    run = Run(tmp_path, ["-config", cfg], {"VAULT_CLIENT_KEY": str(tmp_path / "key.pem")})
    assert run.wait_exit() == 1
    assert names(run.events()) == ["client_error", "exit"]
    error = run.events("client_error")[0]
    assert error["phase"] == "start"
    assert error["error"].endswith("both client cert and client key must be provided")
    assert "Failed to setup Vault client" in run.stderr.read_text()
    assert stub.calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-config", "/no/such.hcl"], "Error loading configuration from /no/such.hcl"),
        (["-bogus"], "flag provided but not defined: -bogus"),
        (["-config", "BAD"], "failed to decode HCL file"),
        (["-vault-enabled=maybe"], "invalid boolean value"),
    ],
)
def test_a_bad_start_exits_1(tmp_path: Path, args: list[str], message: str) -> None:
    bad = write(tmp_path / "bad.hcl", "vault {\n")
    run = Run(tmp_path, [bad if a == "BAD" else a for a in args])
    assert run.wait_exit() == 1
    assert names(run.events()) == ["config_error", "exit"]
    assert message in run.events("config_error")[0]["error"]


def test_ignored_arguments_do_not_stop_the_start(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.hcl", "vault {\n")
    run = Run(tmp_path, ["-config", write(tmp_path / "a.hcl", ""), "positional", "-config", bad])
    assert run.wait_event("start")["config_files"] == [str(tmp_path / "a.hcl")]
    assert run.stop() == 1


def test_not_an_agent_is_a_usage_error() -> None:
    assert subprocess.run([sys.executable, str(FAKE), "server"], capture_output=True).returncode == 2


def test_1_6_refuses_to_start_without_a_token(tmp_path: Path, stub: StubVault) -> None:
    run = Run(tmp_path, ["-config", vault_hcl(tmp_path, stub)], {"FAKE_NOMAD_VERSION": "1.6"})
    assert run.wait_exit() == 1
    assert run.events("client_error")[0]["error"] == "Vault token must be set"


def test_validation_is_retried_until_it_passes(tmp_path: Path, stub: StubVault) -> None:
    stub.role_exists = False
    cfg = vault_hcl(tmp_path, stub, f'  token = "{TOKEN}"\n')
    run = Run(tmp_path, ["-config", cfg], {"FAKE_NOMAD_VALIDATE_RETRY": "0.2"})
    failed = run.wait_event("validated")
    assert failed["ok"] is False and failed["errors"] == ['Role "mint" does not exist']
    run.wait_for(lambda: len(run.events("validated")) >= 2, "a second attempt")
    assert not stub.renewals()
    stub.role_exists = True
    run.wait_event("validated", lambda e: e["ok"])
    run.wait_event("renewed")
    assert run.stop() == 1


@pytest.mark.parametrize("allow", [True, False])
def test_capabilities(tmp_path: Path, stub: StubVault, allow: bool) -> None:
    stub.caps["auth/token/lookup"] = ["read"]
    extra = f'  token = "{TOKEN}"\n' + ("" if allow else "  allow_unauthenticated = false\n")
    run = Run(tmp_path, ["-config", vault_hcl(tmp_path, stub, extra)])
    validated = run.wait_event("validated")
    if allow:  # auth/token/lookup is only checked with allow_unauthenticated = false
        assert validated["ok"] is True
    else:
        assert validated["errors"] == [
            'token must have one of the following capabilities ["update" "root"] on "auth/token/lookup"; has [read]'
        ]
    assert run.stop() == 1


def test_capabilities_refused_is_only_a_warning(tmp_path: Path, stub: StubVault) -> None:
    stub.capabilities_status = 403
    run = Run(tmp_path, ["-config", vault_hcl(tmp_path, stub, f'  token = "{TOKEN}"\n')])
    validated = run.wait_event("validated")
    assert validated["ok"] is True and "can not lookup token capabilities" in validated["warnings"][0]
    assert len([c for c in stub.calls if c.path == "/v1/sys/capabilities-self"]) == 1  # nothing else checked
    run.wait_event("renewed")
    assert run.stop() == 1


def test_renewal_refused_stops_for_good(tmp_path: Path, stub: StubVault) -> None:
    stub.renew_status = 403
    cfg = vault_hcl(tmp_path, stub, f'  token = "{TOKEN}"\n')
    run = Run(tmp_path, ["-config", cfg], {"FAKE_NOMAD_BACKOFF_SCALE": "0.01"})
    failed = run.wait_event("renew_failed")
    assert (failed["status"], failed["stopped"], failed["retry_in"]) == (403, True, None)
    run.holds(lambda: len(stub.renewals()) == 1, 1.0, "no renewal after a 403")  # a retry would come in 0.05 s
    assert run.stop() == 1


def test_renewal_errors_back_off_then_recover(tmp_path: Path, stub: StubVault) -> None:
    stub.renew_status = 500
    cfg = vault_hcl(tmp_path, stub, f'  token = "{TOKEN}"\n')
    env = {"FAKE_NOMAD_BACKOFF_SCALE": "0.1", "VAULT_MAX_RETRIES": "1"}
    run = Run(tmp_path, ["-config", cfg], env)
    run.wait_event("renew_failed")
    assert len(stub.renewals()) == 2  # the API client's own retry (VAULT_MAX_RETRIES=1)
    run.wait_for(lambda: len(run.events("renew_failed")) >= 3, "3 failed renewals")
    failed = run.events("renew_failed")
    assert all(e["status"] == 500 and e["stopped"] is False and 5 <= e["retry_in"] <= 60 for e in failed)
    assert failed[0]["retry_in"] == 5.0 and 6.25 <= failed[1]["retry_in"] <= 12.5
    stub.renew_status = 200
    run.wait_event("renewed")
    assert run.stop() == 1


def test_vault_agent_addr_and_namespace_from_the_environment(tmp_path: Path, stub: StubVault) -> None:
    cfg = write(
        tmp_path / "a.hcl", f'vault {{\n enabled = true\n address = "http://127.0.0.1:1"\n token = "{TOKEN}"\n}}\n'
    )
    env = {"VAULT_AGENT_ADDR": stub.address, "VAULT_ADDR": "http://127.0.0.1:2", "VAULT_NAMESPACE": "ns1"}
    run = Run(tmp_path, ["-config", cfg], env)
    assert run.wait_event("validated")["ok"] is True
    assert run.events("start")[0]["address"] == stub.address
    assert stub.calls and {c.namespace for c in stub.calls} == {"ns1"}
    assert run.stop() == 1


def test_disabled_vault_does_nothing(tmp_path: Path, stub: StubVault) -> None:
    cfg = write(tmp_path / "a.hcl", f'vault {{\n address = "{stub.address}"\n token = "{TOKEN}"\n}}\n')
    run = Run(tmp_path, ["-config", cfg])
    start = run.wait_event("start")
    assert (start["client"], start["address"], start["token_accessor"]) == ("disabled", None, None)
    run.wait_event("signals_ready")
    assert run.reload()["config_changed"] is False
    assert stub.calls == [] and not run.events("validated")
    assert run.stop() == 1


def test_sighup_unchanged_then_a_new_token(tmp_path: Path, stub: StubVault) -> None:
    base, tok = vault_hcl(tmp_path, stub), token_hcl(tmp_path, TOKEN)
    run = Run(tmp_path, ["-config", base, "-config", tok], {"FAKE_NOMAD_RENEW_EVERY": "5"})
    run.wait_event("renewed")
    run.wait_event("signals_ready")
    same = run.reload()
    assert (same["token_changed"], same["config_changed"], same["error"], same["accessor"]) == (
        False,
        False,
        None,
        "acc1",
    )
    token_hcl(tmp_path, TOKEN2)
    new = run.reload()
    assert (new["token_changed"], new["config_changed"], new["error"], new["accessor"]) == (True, True, None, "acc2")
    assert run.wait_event("validated", after=1)["accessor"] == "acc2"
    assert run.wait_event("renewed", after=1)["accessor"] == "acc2"  # at once, not 5 s later
    assert stub.renewals()[-1].token == TOKEN2
    assert run.stop() == 1
    assert TOKEN not in run.text() and TOKEN2 not in run.text()


def test_a_failed_reload_keeps_the_old_token(tmp_path: Path, stub: StubVault) -> None:
    base, tok = vault_hcl(tmp_path, stub), token_hcl(tmp_path, TOKEN)
    run = Run(tmp_path, ["-config", base, "-config", tok], {"FAKE_NOMAD_RENEW_EVERY": "0.1"})
    run.wait_event("signals_ready")
    write(Path(tok), f'vault {{ token = "{TOKEN2}"\n')  # unbalanced: the file does not load
    failed = run.reload()
    assert failed["error"].startswith("Failed to reload configs: Error loading configuration from ")
    assert (failed["token_changed"], failed["config_changed"]) == (False, False)
    renewed = len(run.events("renewed"))
    run.wait_event("renewed", after=renewed + 1)
    assert {c.token for c in stub.calls} == {TOKEN} and len(run.events("validated")) == 1
    assert run.stop() == 1


def test_a_reload_that_cannot_build_the_client_leaves_none(tmp_path: Path, stub: StubVault) -> None:
    base, tok = vault_hcl(tmp_path, stub), token_hcl(tmp_path, TOKEN)
    run = Run(tmp_path, ["-config", base, "-config", tok], {"FAKE_NOMAD_RENEW_EVERY": "0.1"})
    run.wait_event("renewed")
    run.wait_event("signals_ready")
    write(Path(tok), f'vault {{\n token = "{TOKEN2}"\n cert_file = "/no/cert.pem"\n}}\n')
    broken = run.reload()
    assert broken["config_changed"] is True
    assert broken["error"] == "Failed to create Vault API config: both client cert and client key must be provided"
    assert run.events("client_error")[-1]["phase"] == "reload"
    calls = len(stub.calls)
    run.holds(lambda: len(stub.calls) == calls, 0.5, "no request without a client")
    token_hcl(tmp_path, TOKEN2)
    assert run.reload()["accessor"] == "acc2"
    run.wait_event("renewed", lambda e: e["accessor"] == "acc2")
    assert run.stop() == 1


def test_from_1_7_3_a_token_cannot_be_set_by_reload(tmp_path: Path, stub: StubVault) -> None:
    base, tok = vault_hcl(tmp_path, stub), token_hcl(tmp_path, None)
    run = Run(tmp_path, ["-config", base, "-config", tok])
    assert run.wait_event("start")["client"] == "noop"
    run.wait_event("signals_ready")
    token_hcl(tmp_path, TOKEN)
    refused = run.reload()
    assert refused["error"] == "setting a Vault token requires restarting the Nomad agent"
    assert refused["token_changed"] is True and stub.calls == [] and not run.events("validated")
    assert run.stop() == 1


def test_from_1_7_3_a_token_cannot_be_removed_by_reload(tmp_path: Path, stub: StubVault) -> None:
    base, tok = vault_hcl(tmp_path, stub), token_hcl(tmp_path, TOKEN)
    run = Run(tmp_path, ["-config", base, "-config", tok], {"FAKE_NOMAD_RENEW_EVERY": "0.1"})
    run.wait_event("signals_ready")
    token_hcl(tmp_path, None)
    assert run.reload()["error"] == "removing the Vault token requires restarting the Nomad agent"
    run.wait_event("renewed", after=len(run.events("renewed")) + 1)  # still renewing the old one
    assert run.stop() == 1


def test_1_6_reload_without_a_token_stops_the_client(tmp_path: Path, stub: StubVault) -> None:
    base, tok = vault_hcl(tmp_path, stub), token_hcl(tmp_path, TOKEN)
    env = {"FAKE_NOMAD_VERSION": "1.6", "FAKE_NOMAD_RENEW_EVERY": "0.1"}
    run = Run(tmp_path, ["-config", base, "-config", tok], env)
    run.wait_event("renewed")
    run.wait_event("signals_ready")
    token_hcl(tmp_path, None)
    assert run.reload()["error"] == "Vault token must be set"
    calls = len(stub.calls)
    run.holds(lambda: len(stub.calls) == calls, 0.5, "no request without a client")
    assert run.stop() == 1


def test_an_environment_token_is_the_same_on_reload(tmp_path: Path, stub: StubVault) -> None:
    run = Run(tmp_path, ["-config", vault_hcl(tmp_path, stub)], {"VAULT_TOKEN": TOKEN})
    assert run.wait_event("start")["token_source"] == "env"
    run.wait_event("signals_ready")
    reload = run.reload()
    assert (reload["token_changed"], reload["config_changed"], reload["token_source"]) == (False, False, "env")
    assert run.stop() == 1


def test_unreachable_vault_is_retried(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "a.hcl", f'vault {{\n enabled = true\n address = "http://127.0.0.1:1"\n token = "{TOKEN}"\n}}\n'
    )
    run = Run(tmp_path, ["-config", cfg], {"FAKE_NOMAD_VALIDATE_RETRY": "0.1", "VAULT_MAX_RETRIES": "0"})
    run.wait_for(lambda: len(run.events("validated")) >= 2, "a second validation")
    validated = run.events("validated")
    assert not any(v["ok"] for v in validated) and not run.events("renewed")
    assert "failed to lookup Vault periodic token" in validated[0]["errors"][0]
    assert run.stop() == 1
    assert TOKEN not in run.text()


def test_exit_after(tmp_path: Path) -> None:
    run = Run(tmp_path, [], {"FAKE_NOMAD_EXIT_AFTER": "0.5", "FAKE_NOMAD_SIGNAL_DELAY": "0"})
    assert run.wait_exit() == 0
    assert names(run.events()) == ["start", "signals_ready", "exit"]
    assert run.events()[-1]["reason"] == "FAKE_NOMAD_EXIT_AFTER"


@pytest.mark.parametrize(("version", "sent"), [("1.9", True), ("1.6", False)])
def test_systemd_notify_from_1_8(tmp_path: Path, version: str, sent: bool) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.05)
    messages: list[str] = []

    def received() -> list[str]:
        try:
            while True:
                messages.append(sock.recv(4096).decode())
        except TimeoutError:
            return messages

    try:
        cfg = write(tmp_path / "a.hcl", "leave_on_terminate = true\nvault { enabled = false }\n")
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "FAKE_NOMAD_VERSION": version}
        run = Run(tmp_path, ["-config", cfg], env)
        run.wait_event("signals_ready")
        if sent:
            assert run.wait_for(received, "READY=1") == ["READY=1"]
        run.reload()
        if sent:
            run.wait_for(lambda: len(received()) >= 4, "the reload's messages")
            assert messages[1] == "RELOADING=1" and messages[3] == "READY=1"
            assert re.fullmatch(r"MONOTONIC_USEC=\d+", messages[2])
        assert run.stop() == 0
        assert received()[-1:] == (["STOPPING=1"] if sent else [])
    finally:
        sock.close()
