"""Unit tests of the stand-in Nomad agent (tests/fake_nomad.py).

Pure functions first; then a few runs of the program itself against an
in-process stub of the Vault HTTP API (no OpenBao needed).
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

FAKE = Path(__file__).resolve().parent / "fake_nomad.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fake_nomad", FAKE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fake_nomad"] = module
    spec.loader.exec_module(module)
    return module


fn = _load()


# --------------------------------------------------------------------------
# parse_vault_block
# --------------------------------------------------------------------------


def test_strings_bools_ints() -> None:
    text = """
vault {
  enabled = true
  address = "https://127.0.0.1:8200"
  allow_unauthenticated = false
  retries = 3
}
"""
    assert fn.parse_vault_block(text) == {
        "enabled": True,
        "address": "https://127.0.0.1:8200",
        "allow_unauthenticated": False,
        "retries": 3,
    }


def test_string_escapes() -> None:
    text = r'vault { token = "a\"b\\c\n\u00e9" }'
    assert fn.parse_vault_block(text) == {"token": 'a"b\\c\né'}


def test_interpolation_quotes_do_not_end_string() -> None:
    text = 'vault { address = "${env("X")}" }'
    assert fn.parse_vault_block(text) == {"address": '${env("X")}'}


def test_commas_separate_entries_on_one_line() -> None:
    text = 'vault { token = "s.x", create_from_role = "nomad-cluster", enabled = true }'
    assert fn.parse_vault_block(text) == {"token": "s.x", "create_from_role": "nomad-cluster", "enabled": True}


def test_comments_are_ignored() -> None:
    text = """
# vault { token = "hash" }
// vault { token = "slashes" }
/* vault {
   token = "block" } */
vault {
  token = "real" # trailing
  enabled = true // trailing
  /* inline */ address = "http://127.0.0.1:1"
}
"""
    assert fn.parse_vault_block(text) == {"token": "real", "enabled": True, "address": "http://127.0.0.1:1"}


def test_hash_inside_string_is_not_a_comment() -> None:
    assert fn.parse_vault_block('vault { token = "a#b//c" }') == {"token": "a#b//c"}


def test_other_blocks_and_attributes_are_skipped() -> None:
    text = """
data_dir  = "/var/lib/nomad"
bind_addr = "0.0.0.0"
log_level = "INFO"
server {
  enabled          = true
  bootstrap_expect = 3
  server_join { retry_join = ["a", "b"] }
}
client {
  options = { "driver.raw_exec.enable" = "1" }
  meta { token = "not-the-vault-token" }
}
plugin "docker" {
  config {
    volumes { enabled = true }
    extra = [{ a = 1 }, { b = "}" }]
  }
}
vault { token = "s.t" }
consul { token = "consul-token" }
"""
    assert fn.parse_vault_block(text) == {"token": "s.t"}


def test_nested_vault_inside_other_block_is_not_the_agent_vault() -> None:
    text = 'client { vault { token = "inner" } }\nvault { enabled = true }'
    assert fn.parse_vault_block(text) == {"enabled": True}


def test_heredoc_in_other_block_is_skipped() -> None:
    text = """
acl {
  policy = <<EOF
path "x" { capabilities = ["read"] }
}}}
EOF
}
vault { token = "after" }
"""
    assert fn.parse_vault_block(text) == {"token": "after"}


def test_no_vault_block_gives_empty_dict() -> None:
    assert fn.parse_vault_block('data_dir = "/x"\nserver { enabled = true }') == {}


def test_later_vault_block_wins_within_a_file() -> None:
    text = 'vault { token = "one", address = "a" }\nvault { token = "two" }'
    assert fn.parse_vault_block(text) == {"token": "two", "address": "a"}


def test_vault_assignment_form() -> None:
    assert fn.parse_vault_block('vault = { token = "s.eq" }') == {"token": "s.eq"}


def test_quoted_keys() -> None:
    assert fn.parse_vault_block('vault { "token" = "s.q" }') == {"token": "s.q"}


def test_non_scalar_values_in_vault_are_dropped() -> None:
    text = 'vault { token = "t", ratio = 1.5, list = ["a"], obj = { x = 1 }, inner { y = 2 } }'
    assert fn.parse_vault_block(text) == {"token": "t"}


def test_negative_and_hex_ints() -> None:
    assert fn.parse_vault_block("vault { a = -5, b = 0x10 }") == {"a": -5, "b": 16}


@pytest.mark.parametrize(
    "text",
    [
        'vault { token = "unterminated }',
        'vault { token = "x"',
        "vault { enabled = yes }",
        'vault { token "x" }',
        "}",
        "vault { /* never closed }",
        "server { x = [1, 2 }",
        "vault { token = }",
        "a = <<EOF\nno end\n",
        "vault { token = @ }",
    ],
)
def test_syntax_errors_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        fn.parse_vault_block(text)


def test_error_names_the_line() -> None:
    with pytest.raises(ValueError, match="line 3"):
        fn.parse_vault_block('data_dir = "/x"\n\nvault { enabled = maybe }')


# --------------------------------------------------------------------------
# merging, arguments, files, token source
# --------------------------------------------------------------------------


def test_merge_later_wins() -> None:
    merged = fn.merge_vault_configs([{"token": "a", "address": "x", "enabled": True}, {"token": "b", "enabled": False}])
    assert merged == {"token": "b", "address": "x", "enabled": False}


def test_merge_empty_string_does_not_override() -> None:
    assert fn.merge_vault_configs([{"token": "a"}, {"token": ""}]) == {"token": "a"}


def test_parse_agent_args_forms() -> None:
    args = ["-config", "a.hcl", "-config=b.hcl", "--config", "dir", "--config=c.hcl", "-bind", "x", "-dev"]
    assert fn.parse_agent_args(args) == (["a.hcl", "b.hcl", "dir", "c.hcl"], {})


def test_parse_agent_args_ignores_lookalikes() -> None:
    assert fn.parse_agent_args(["-configs", "x", "config", "y"]) == ([], {})


def test_parse_agent_args_missing_value() -> None:
    with pytest.raises(fn.UsageError):
        fn.parse_agent_args(["-config"])
    with pytest.raises(fn.UsageError):
        fn.parse_agent_args(["-config", "a.hcl", "-vault-create-from-role"])


def test_parse_agent_args_vault_flags() -> None:
    args = [
        "-vault-create-from-role=task",
        "--vault-address",
        "https://v:8200",
        "-vault-enabled",
        "-vault-tls-skip-verify=false",
        "-vault-allow-unauthenticated=F",
        "-config",
        "a.hcl",
        "-vault-ca-file=/ca.pem",
    ]
    assert fn.parse_agent_args(args) == (
        ["a.hcl"],
        {
            "create_from_role": "task",
            "address": "https://v:8200",
            "enabled": True,
            "tls_skip_verify": False,
            "allow_unauthenticated": False,
            "ca_file": "/ca.pem",
        },
    )


def test_parse_agent_args_bool_flag_takes_no_separate_value() -> None:
    # as in Go's flag package a bool flag never takes the next argument as its value
    assert fn.parse_agent_args(["-vault-enabled", "false"]) == ([], {"enabled": True})
    with pytest.raises(fn.UsageError):
        fn.parse_agent_args(["-vault-enabled=maybe"])


def test_parse_agent_args_double_dash_ends_flags() -> None:
    assert fn.parse_agent_args(["-config=a", "--", "-config=b"]) == (["a"], {})


def test_agent_vault_config_flags_override_files() -> None:
    files = {"enabled": True, "address": "https://file", "create_from_role": "file-role"}
    cfg, token, source = fn.agent_vault_config(files, {"create_from_role": "flag-role"}, {"VAULT_TOKEN": "s.env"})
    assert cfg["create_from_role"] == "flag-role" and cfg["address"] == "https://file"
    assert (token, source) == ("s.env", "env")


def test_agent_vault_config_token_sources() -> None:
    env = {"VAULT_TOKEN": "s.env"}
    assert fn.agent_vault_config({"token": "s.f"}, {"token": "s.flag"}, env)[1:] == ("s.flag", "flag")
    assert fn.agent_vault_config({"token": "s.f"}, {}, env)[1:] == ("s.f", "config")
    assert fn.agent_vault_config({"token": "s.f"}, {"token": ""}, env)[1:] == ("s.f", "config")
    assert fn.agent_vault_config({}, {}, {})[1:] == ("", "none")


def test_expand_config_paths_reads_directory_hcl_sorted(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    for name in ("b.hcl", "a.hcl", "c.json", ".hidden.hcl", "notes.txt"):
        (d / name).write_text("")
    single = tmp_path / "x.conf"
    single.write_text("")
    got = fn.expand_config_paths([str(single), str(d)])
    assert [p.name for p in got] == ["x.conf", "a.hcl", "b.hcl"]


def test_expand_config_paths_missing_file(tmp_path: Path) -> None:
    with pytest.raises(fn.ConfigError):
        fn.expand_config_paths([str(tmp_path / "nope.hcl")])


def test_load_config_merges_files_in_order(tmp_path: Path) -> None:
    a = tmp_path / "a.hcl"
    b = tmp_path / "b.hcl"
    a.write_text('vault {\n enabled = true\n address = "https://one"\n token = "s.old"\n}\n')
    b.write_text('vault { token = "s.new", create_from_role = "nomad-cluster" }\n')
    cfg, files = fn.load_config([str(a), str(b)])
    assert cfg == {"enabled": True, "address": "https://one", "token": "s.new", "create_from_role": "nomad-cluster"}
    assert files == [str(a), str(b)]


def test_load_config_names_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.hcl"
    bad.write_text("vault { token = nope }")
    with pytest.raises(fn.ConfigError, match=r"bad\.hcl"):
        fn.load_config([str(bad)])


def test_resolve_token_prefers_config() -> None:
    assert fn.resolve_token({"token": "s.cfg"}, {"VAULT_TOKEN": "s.env"}) == ("s.cfg", "config")


def test_resolve_token_falls_back_to_env() -> None:
    assert fn.resolve_token({"address": "x"}, {"VAULT_TOKEN": "s.env"}) == ("s.env", "env")
    assert fn.resolve_token({"token": ""}, {"VAULT_TOKEN": "s.env"}) == ("s.env", "env")


def test_resolve_token_none() -> None:
    assert fn.resolve_token({}, {"VAULT_ADDR": "https://x"}) == ("", "none")


def test_config_flag() -> None:
    assert fn.config_flag({"enabled": True}, "enabled", False) is True
    assert fn.config_flag({"enabled": "false"}, "enabled", True) is False
    assert fn.config_flag({"enabled": "true"}, "enabled", False) is True
    assert fn.config_flag({}, "enabled", False) is False
    assert fn.config_flag({}, "allow_unauthenticated", True) is True


# --------------------------------------------------------------------------
# Nomad's rules
# --------------------------------------------------------------------------

GOOD_TOKEN = {"renewable": True, "ttl": 259000, "creation_ttl": 259200, "role": "mint", "policies": ["default", "p"]}


def test_token_errors_none_for_good_token() -> None:
    assert fn.token_errors(GOOD_TOKEN, "mint") == []


def test_token_errors_each_rule() -> None:
    bad = {"renewable": False, "ttl": 0, "creation_ttl": 0, "policies": ["default"]}
    assert fn.token_errors(bad, "") == [
        "Vault token is not renewable or root",
        "invalid lease duration of zero",
        "token TTL is zero",
        "token role name must be set when not using a root token",
    ]


def test_token_errors_root_without_ttl_is_fine() -> None:
    assert fn.token_errors({"policies": ["root"], "ttl": 0, "creation_ttl": 0, "renewable": False}, "") == []


def test_token_errors_root_with_ttl_must_be_renewable() -> None:
    root = {"policies": ["root"], "ttl": 10, "creation_ttl": 60, "renewable": False}
    assert fn.token_errors(root, "") == ["Vault token has a TTL but is not renewable"]


def test_choose_role() -> None:
    assert fn.choose_role({"create_from_role": "task"}, {"role": "mint"}) == "task"
    assert fn.choose_role({}, {"role": "mint"}) == "mint"
    assert fn.choose_role({}, {}) == ""


def test_required_capabilities_default_skips_lookup() -> None:
    paths = [p for p, _ in fn.required_capabilities("r", True)]
    assert paths == ["auth/token/renew-self", "auth/token/revoke-accessor", "auth/token/roles/r", "auth/token/create/r"]


def test_required_capabilities_with_lookup_and_no_role() -> None:
    req = fn.required_capabilities("", False)
    assert req == [
        ("auth/token/lookup", ("update", "root")),
        ("auth/token/renew-self", ("update", "root")),
        ("auth/token/revoke-accessor", ("update", "root")),
    ]


def test_required_capabilities_role_read() -> None:
    assert dict(fn.required_capabilities("r", True))["auth/token/roles/r"] == ("read", "root")


def test_capabilities_from_response_shapes() -> None:
    flat = {"auth/token/renew-self": ["update"], "request_id": "x", "lease_duration": 0}
    assert fn.capabilities_from_response(flat) == {"auth/token/renew-self": ["update"]}
    nested = {"data": {"a": ["read"]}, "a": ["ignored"]}
    assert fn.capabilities_from_response(nested) == {"a": ["read"]}


def test_capability_errors() -> None:
    req = fn.required_capabilities("r", True)
    caps = {
        "auth/token/renew-self": ["update"],
        "auth/token/revoke-accessor": ["root"],
        "auth/token/roles/r": ["read", "list"],
        "auth/token/create/r": ["deny"],
    }
    assert fn.capability_errors(caps, req) == [
        'token must have one of the following capabilities ["update" "root"] on "auth/token/create/r"; has [deny]'
    ]


def test_capability_errors_sudo_alone_is_not_enough_like_nomad() -> None:
    req = [("auth/token/renew-self", ("update", "root"))]
    assert len(fn.capability_errors({"auth/token/renew-self": ["sudo"]}, req)) == 1


def test_capability_errors_missing_path_and_read_vs_update() -> None:
    req = [("auth/token/roles/r", ("read", "root")), ("auth/token/create/r", ("update", "root"))]
    errs = fn.capability_errors({"auth/token/roles/r": ["update"], "auth/token/create/r": ["read"]}, req)
    assert len(errs) == 2
    assert fn.capability_errors({}, req)[0].endswith("has []")


def test_role_errors_good_role() -> None:
    role = {"renewable": True, "token_explicit_max_ttl": 0, "explicit_max_ttl": 0, "token_period": 259200, "period": 0}
    assert fn.role_errors(role) == []


def test_role_errors_legacy_period() -> None:
    assert fn.role_errors({"renewable": True, "period": 3600}) == []


def test_role_errors_each_rule() -> None:
    assert fn.role_errors({"renewable": False, "token_explicit_max_ttl": 60, "token_period": 0}) == [
        "Role must allow tokens to be renewed",
        "Role can not use an explicit max ttl. Token must be periodic.",
        "Role must have a non-zero period to make tokens periodic.",
    ]
    assert fn.role_errors({"renewable": True, "explicit_max_ttl": 1, "token_period": 5}) == [
        "Role can not use an explicit max ttl. Token must be periodic."
    ]


def test_renew_is_fatal() -> None:
    assert [s for s in (None, 200, 400, 401, 403, 404, 429, 500, 503) if fn.renew_is_fatal(s)] == [400, 403, 404]


def test_next_renew_delay() -> None:
    assert fn.next_renew_delay(3600, None) == 1800.0
    assert fn.next_renew_delay(3600, 0.5) == 0.5
    assert fn.retry_delay(None) == fn.DEFAULT_RETRY
    assert fn.retry_delay(0.25) == 0.25


def test_as_int_weak_decoding() -> None:
    assert [fn.as_int(v) for v in (5, 5.9, "7", "x", None, True)] == [5, 5, 7, 0, 0, 1]


def test_go_formatting() -> None:
    assert fn.go_quote_list(["update", "root"]) == '["update" "root"]'
    assert fn.go_list(["a", "b"]) == "[a b]"


def test_scrub() -> None:
    assert fn.scrub('{"x": "s.secret s.secret"}', ["s.secret", ""]) == '{"x": "[REDACTED] [REDACTED]"}'


def test_env_seconds() -> None:
    assert fn.env_seconds({"X": "0.5"}, "X") == 0.5
    assert fn.env_seconds({}, "X") is None
    with pytest.raises(fn.UsageError):
        fn.env_seconds({"X": "soon"}, "X")


# --------------------------------------------------------------------------
# The program, against a stub of Vault's HTTP API
# --------------------------------------------------------------------------

TOKEN = "s.UnitTestToken0000000001"
TOKEN2 = "s.UnitTestToken0000000002"


class StubVault:
    """Answers the five endpoints the agent uses; renew status is settable."""

    def __init__(self) -> None:
        self.renew_status = 200
        self.calls: list[tuple[str, str, str]] = []
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
                stub.calls.append((self.command, self.path, token))
                if token not in (TOKEN, TOKEN2):
                    self._send(403, {"errors": ["permission denied"]})
                elif self.path == "/v1/auth/token/lookup-self":
                    accessor = "acc1" if token == TOKEN else "acc2"
                    data = dict(GOOD_TOKEN, accessor=accessor, id=token)
                    self._send(200, {"data": data})
                elif self.path == "/v1/sys/capabilities-self":
                    self._send(200, {"data": {p: ["update", "read"] for p in body["paths"]}})
                elif self.path == "/v1/auth/token/roles/mint":
                    self._send(200, {"data": {"renewable": True, "token_period": 259200}})
                elif self.path == "/v1/auth/token/renew-self":
                    if stub.renew_status == 200:
                        auth = {"client_token": token, "accessor": "acc1", "lease_duration": 259200}
                        self._send(200, {"auth": auth})
                    else:
                        self._send(stub.renew_status, {"errors": ["nope"]})
                else:
                    self._send(404, {"errors": []})

            do_GET = _handle
            do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

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
    while _RUNNING:
        proc = _RUNNING.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class Run:
    def __init__(self, tmp: Path, args: list[str], env: dict[str, str]) -> None:
        self.report = tmp / "report.jsonl"
        full_env = {k: v for k, v in os.environ.items() if k not in ("VAULT_TOKEN", "VAULT_ADDR")}
        full_env.update(env, FAKE_NOMAD_REPORT=str(self.report))
        with (tmp / "stderr").open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(FAKE), *args], env=full_env, stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )
        _RUNNING.append(self.proc)

    def events(self) -> list[dict[str, Any]]:
        if not self.report.exists():
            return []
        return [json.loads(line) for line in self.report.read_text().splitlines()]

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.events()
            if pred(evs):
                return evs
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"condition not met; events: {self.events()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)


def _names(evs: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in evs]


def _count(name: str, n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda evs: _names(evs).count(name) >= n


def test_usage_error_exit_2() -> None:
    r = subprocess.run([sys.executable, str(FAKE), "server"], capture_output=True)
    assert r.returncode == 2


def test_missing_config_file_exit_1(tmp_path: Path) -> None:
    run = Run(tmp_path, ["agent", "-config", str(tmp_path / "missing.hcl")], {})
    assert run.proc.wait(10) == 1
    run.stop()
    assert _names(run.events()) == ["config_error"]


def test_valid_token_from_config_renews_and_sigterm(tmp_path: Path, stub: StubVault) -> None:
    cfg = tmp_path / "a.hcl"
    cfg.write_text(f'vault {{\n enabled = true\n address = "{stub.address}"\n token = "{TOKEN}"\n}}\n')
    run = Run(tmp_path, ["agent", "-config", str(cfg)], {"FAKE_NOMAD_RENEW_EVERY": "0.1", "VAULT_TOKEN": TOKEN2})
    evs = run.wait_for(_count("renewed", 2))
    assert run.stop() == 0
    evs = run.events()
    start, validated = evs[0], evs[1]
    assert start["event"] == "start" and start["token_source"] == "config" and start["token_accessor"] == "acc1"
    assert validated["event"] == "validated" and validated["ok"] is True and validated["role"] == "mint"
    assert validated["errors"] == [] and validated["renewing"] is True
    assert evs[-1] == {**evs[-1], "event": "signal", "signal": "SIGTERM"}
    renewed = [e for e in evs if e["event"] == "renewed"]
    assert renewed[0]["ttl"] == 259200 and renewed[0]["increment"] == 259200
    assert TOKEN not in run.report.read_text()
    # VAULT_ADDR must not matter, VAULT_TOKEN not used when the config has one
    assert {c[2] for c in stub.calls} == {TOKEN}


def test_env_token_and_fatal_renewal_stops(tmp_path: Path, stub: StubVault) -> None:
    stub.renew_status = 403
    cfg = tmp_path / "a.hcl"
    cfg.write_text(f'vault {{ enabled = true, address = "{stub.address}" }}\n')
    run = Run(tmp_path, ["agent", f"-config={cfg}"], {"FAKE_NOMAD_RENEW_EVERY": "0.05", "VAULT_TOKEN": TOKEN})
    run.wait_for(_count("renew_failed", 1))
    time.sleep(0.3)
    assert run.stop() == 0
    evs = run.events()
    assert evs[0]["token_source"] == "env"
    failed = [e for e in evs if e["event"] == "renew_failed"]
    assert len(failed) == 1 and failed[0]["status"] == 403 and failed[0]["stopped"] is True
    assert TOKEN not in run.report.read_text()


def test_server_error_keeps_retrying(tmp_path: Path, stub: StubVault) -> None:
    stub.renew_status = 500
    cfg = tmp_path / "a.hcl"
    cfg.write_text(f'vault {{ enabled = true, address = "{stub.address}", token = "{TOKEN}" }}\n')
    run = Run(tmp_path, ["agent", "-config", str(cfg)], {"FAKE_NOMAD_RENEW_EVERY": "0.05"})
    run.wait_for(_count("renew_failed", 2))
    stub.renew_status = 200
    run.wait_for(_count("renewed", 1))
    assert run.stop() == 0
    failed = [e for e in run.events() if e["event"] == "renew_failed"]
    assert all(e["status"] == 500 and e["stopped"] is False for e in failed)


def test_create_from_role_flag_with_env_token(tmp_path: Path, stub: StubVault) -> None:
    cfg = tmp_path / "a.hcl"
    cfg.write_text(f'vault {{ enabled = true, address = "{stub.address}" }}\n')
    args = ["agent", "-config", str(cfg), "-vault-create-from-role=other"]
    run = Run(tmp_path, args, {"VAULT_TOKEN": TOKEN, "FAKE_NOMAD_EXIT_AFTER": "0.5"})
    assert run.proc.wait(10) == 0
    evs = run.events()
    assert evs[0]["token_source"] == "env"
    assert evs[1]["role"] == "other" and evs[1]["errors"] == ['Role "other" does not exist']
    assert "renewed" not in _names(evs)


def test_sighup_new_token_in_file(tmp_path: Path, stub: StubVault) -> None:
    base = tmp_path / "base.hcl"
    base.write_text(f'vault {{ enabled = true, address = "{stub.address}" }}\n')
    tok = tmp_path / "token.hcl"
    tok.write_text(f'vault {{ token = "{TOKEN}" }}\n')
    run = Run(tmp_path, ["agent", "-config", str(base), "-config", str(tok)], {"FAKE_NOMAD_RENEW_EVERY": "5"})
    run.wait_for(_count("renewed", 1))
    run.proc.send_signal(signal.SIGHUP)
    run.wait_for(_count("reload", 1))
    tok.write_text(f'vault {{ token = "{TOKEN2}" }}\n')
    run.proc.send_signal(signal.SIGHUP)
    run.wait_for(_count("reload", 2))
    run.wait_for(_count("renewed", 2))
    assert run.stop() == 0
    reloads = [e for e in run.events() if e["event"] == "reload"]
    assert reloads[0]["token_changed"] is False and reloads[0]["config_changed"] is False
    assert reloads[1]["token_changed"] is True and reloads[1]["accessor"] == "acc2"
    assert _names(run.events()).count("validated") == 2
    text = run.report.read_text()
    assert TOKEN not in text and TOKEN2 not in text


def test_unreachable_vault_and_disabled_vault(tmp_path: Path) -> None:
    cfg = tmp_path / "a.hcl"
    cfg.write_text(f'vault {{ enabled = true, address = "http://127.0.0.1:1", token = "{TOKEN}" }}\n')
    run = Run(tmp_path, ["agent", "-config", str(cfg)], {"FAKE_NOMAD_EXIT_AFTER": "0.3"})
    assert run.proc.wait(10) == 0
    run.stop()
    evs = run.events()
    assert _names(evs) == ["start", "validated", "exit"]
    assert evs[1]["ok"] is False and "failed to lookup Vault periodic token" in evs[1]["errors"][0]
    assert TOKEN not in run.report.read_text()

    cfg.write_text(f'vault {{ address = "http://127.0.0.1:1", token = "{TOKEN}" }}\n')
    (tmp_path / "report.jsonl").unlink()
    run = Run(tmp_path, ["agent", "-config", str(cfg)], {"FAKE_NOMAD_EXIT_AFTER": "0.1"})
    assert run.proc.wait(10) == 0
    run.stop()
    assert "not enabled" in run.events()[1]["errors"][0]
