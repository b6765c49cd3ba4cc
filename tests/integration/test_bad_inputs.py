"""The bad-input corpus: every case is one line naming the problem and what to do, the documented
exit code, no traceback, and nothing written (no state, no hand-off file, no token minted)."""

from __future__ import annotations

import datetime
import os
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed.bao import Bao, Certs
from testbed.cli import CLI, Result, run_cli
from testbed.config import write_config
from testbed.env import clean_env

pytestmark = pytest.mark.vault

Setup = Callable[[Path, Certs], dict[str, object]]


@dataclass
class Case:
    name: str
    setup: Setup  # returns config overrides (may write files under the given dir)
    code: int
    needles: tuple[str, ...]
    command: tuple[str, ...] = ("token",)
    extra: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    raw_config: str | None = None  # replaces the whole config file


def _label(d: Path) -> str:
    """A DNS-safe unique name for a certificate issued in directory `d`."""
    return "".join(ch if ch.isalnum() else "-" for ch in d.name.lower())[-40:].strip("-")


def none(d: Path, c: Certs) -> dict[str, object]:
    return {}


def key_with_mode(mode: int) -> Setup:
    def setup(d: Path, c: Certs) -> dict[str, object]:
        cert, key = c.issue_client(f"mode-{mode:o}-{_label(d)}")
        os.chmod(key, mode)
        return {"client_cert": cert, "client_key": key}

    return setup


def cert_window(not_before: datetime.datetime, not_after: datetime.datetime) -> Setup:
    def setup(d: Path, c: Certs) -> dict[str, object]:
        cert, key = c.issue_client(f"window-{_label(d)}", not_before=not_before, not_after=not_after)
        return {"client_cert": cert, "client_key": key}

    return setup


def encrypted_key(d: Path, c: Certs) -> dict[str, object]:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(c.client_key.read_bytes(), password=None)
    path = d / "enc.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
        )
    )
    os.chmod(path, 0o600)
    return {"client_key": path}


def other_key(d: Path, c: Certs) -> dict[str, object]:
    _, key = c.issue_client(f"other-{_label(d)}")
    return {"client_key": key}


def file_with(name: str, text: str, key: str, mode: int = 0o644) -> Setup:
    def setup(d: Path, c: Certs) -> dict[str, object]:
        path = d / name
        path.write_text(text)
        os.chmod(path, mode)
        return {key: path}

    return setup


def a_directory(key: str) -> Setup:
    def setup(d: Path, c: Certs) -> dict[str, object]:
        (d / "adir").mkdir(exist_ok=True)
        return {key: d / "adir"}

    return setup


def not_executable(d: Path, c: Certs) -> dict[str, object]:
    (d / "nomad").write_text("#!/bin/sh\n")
    os.chmod(d / "nomad", 0o644)
    return {}


UTC = datetime.UTC
PAST = (datetime.datetime(2020, 1, 1, tzinfo=UTC), datetime.datetime(2021, 1, 1, tzinfo=UTC))
FUTURE = (datetime.datetime(2099, 1, 1, tzinfo=UTC), datetime.datetime(2100, 1, 1, tzinfo=UTC))
RUN = ("run",)

CASES = [
    Case("malformed TOML", none, 78, ("invalid TOML",), raw_config="vault_addr = [\n"),
    Case("TOML not UTF-8", none, 78, ("not UTF-8",), raw_config='vault_addr = "\xff"\n'),
    Case("unknown key", lambda d, c: {"vault_adress": "x"}, 78, ("unknown key 'vault_adress'", "vault_addr")),
    Case("section instead of keys", none, 78, ("unknown key 'vault'",), raw_config='[vault]\naddr = "x"\n'),
    Case(
        "wrong type: bool",
        lambda d, c: {"allow_insecure_http": "perhaps"},
        78,
        ("allow_insecure_http", "true or false"),
    ),
    Case("wrong type: list", none, 78, ("policies", "list of strings"), raw_config="policies = 3\n"),
    Case("empty path", lambda d, c: {"client_key": ""}, 78, ("client_key", "empty")),
    Case("relative path", lambda d, c: {"client_cert": "certs/c.pem"}, 78, ("client_cert", "relative", "absolute")),
    Case("missing key file", lambda d, c: {"client_key": d / "nope.key"}, 78, ("nope.key", "not found")),
    Case("missing cert file", lambda d, c: {"client_cert": d / "nope.crt"}, 78, ("nope.crt", "not found")),
    Case("missing CA file", lambda d, c: {"ca_cert": d / "nope-ca.pem"}, 78, ("nope-ca.pem", "not found")),
    Case("directory as cert", a_directory("client_cert"), 78, ("client_cert", "is a directory")),
    Case("directory as key", a_directory("client_key"), 78, ("client_key", "not a regular file")),
    Case("directory as CA", a_directory("ca_cert"), 78, ("ca_cert", "is a directory")),
    Case("key mode 0644", key_with_mode(0o644), 78, ("mode 0644", "chmod 600")),
    Case("key mode 0640", key_with_mode(0o640), 78, ("mode 0640", "chmod 600")),
    Case("key mode 0604", key_with_mode(0o604), 78, ("chmod 600",)),
    Case("encrypted key", encrypted_key, 78, ("encrypted",)),
    Case("key is not a key", file_with("junk.key", "hello\n", "client_key", 0o600), 78, ("not a PEM private key",)),
    Case("key does not match cert", other_key, 78, ("does not match",)),
    Case("expired certificate", cert_window(*PAST), 78, ("expired on 2021-01-01",)),
    Case("not-yet-valid certificate", cert_window(*FUTURE), 78, ("not valid before 2099-01-01",)),
    Case("cert file holds no certificate", file_with("c.pem", "nothing\n", "client_cert"), 78, ("no PEM certificate",)),
    Case("CA that is not a CA file", file_with("ca.pem", "-----BEGIN X-----\n", "ca_cert"), 78, ("ca_cert", "no PEM")),
    Case("CA file holding a leaf cert", lambda d, c: {"ca_cert": c.client_cert}, 78, ("ca_cert", "no CA certificate")),
    Case(
        "http to a non-loopback host",
        lambda d, c: {"vault_addr": "http://vault.example.com:8200"},
        78,
        ("in clear", "--allow-insecure-http"),
    ),
    Case("address with no scheme", lambda d, c: {"vault_addr": "vault.example.com:8200"}, 78, ("with the scheme",)),
    Case("address with a bad port", lambda d, c: {"vault_addr": "https://vault:http"}, 78, ("port",)),
    Case("period without unit", lambda d, c: {"period": "72"}, 78, ("period", "no unit", "72h")),
    Case("negative period", lambda d, c: {"period": "-1h"}, 78, ("period", "not a duration")),
    Case("zero period", lambda d, c: {"period": "0"}, 78, ("period", "more than 0")),
    Case("period as a TOML number", none, 78, ("period", "unit"), raw_config="period = 72\n"),
    Case("empty policy list", lambda d, c: {"policies": []}, 78, ("policies", "empty")),
    Case("root policy", lambda d, c: {"policies": ["root"]}, 78, ("root",)),
    Case("unknown mint mode", lambda d, c: {"mint_mode": "sudo"}, 78, ("mint_mode", "role, create-orphan")),
    Case("unknown hand-off", lambda d, c: {"handoff": "pipe"}, 78, ("handoff", "file, env"), RUN, ("--", "/bin/true")),
    Case("min_ttl longer than period", lambda d, c: {"min_ttl": "100h"}, 78, ("min_ttl", "shorter than period")),
    Case("negative cert_warn_days", none, 78, ("cert_warn_days", "whole number"), raw_config="cert_warn_days = -1\n"),
    Case(
        "bad environment value",
        none,
        78,
        ("$NOMAD_VAULT_TOKEN_WAIT_TIMEOUT",),
        env={"NOMAD_VAULT_TOKEN_WAIT_TIMEOUT": "soon"},
    ),
    Case("bad flag value", none, 78, ("flag --period", "no unit"), extra=("--period", "72")),
    Case("bad --format", none, 78, ("--format",), extra=("--format", "yaml")),
    Case("--output is a directory", lambda d, c: {}, 78, ("--output", "is a directory"), extra=("--output", "/tmp")),
    Case("--output in a missing directory", none, 78, ("does not exist",), extra=("--output", "/no/such/dir/tok")),
    Case("agent argv missing", none, 78, ("no agent", "after --"), RUN),
    Case("agent not found", none, 78, ("/no/such/nomad", "not found"), RUN, ("--", "/no/such/nomad", "agent")),
    Case("agent not executable", not_executable, 78, ("not an executable",), RUN, ("--", "{dir}/nomad", "agent")),
    Case(
        "state file is a directory",
        lambda d, c: {"state_dir": d / "st"},
        78,
        ("state file", "remove it"),
        RUN,
        ("--", "/bin/true"),
    ),
]


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, bao: Bao, certs: Certs, tmp_path: Path) -> None:
    overrides = case.setup(tmp_path, certs)
    if case.name == "state file is a directory":
        (tmp_path / "st" / "token.json").mkdir(parents=True)
    cfg = write_config(tmp_path / "config.toml", bao, certs, **overrides)
    if case.raw_config is not None:
        cfg.write_bytes(case.raw_config.encode("latin-1"))
    before = set(bao.client().auth.token.list_accessors()["data"]["keys"])
    extra = tuple(a.replace("{dir}", str(tmp_path)) for a in case.extra)
    result = run_cli(*case.command, "--config", str(cfg), *extra, env=clean_env(**case.env))
    assert_clean_refusal(result, case.code, case.needles)
    after = set(bao.client().auth.token.list_accessors()["data"]["keys"])
    assert after == before, "a token was minted"
    if case.name != "state file is a directory":
        assert not (tmp_path / "state").exists(), "state written"
    assert not (tmp_path / "run").exists(), "hand-off written"


def assert_clean_refusal(result: Result, code: int, needles: tuple[str, ...]) -> None:
    assert result.code == code, f"exit {result.code}, want {code}: {result.err}"
    assert "Traceback" not in result.err
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("nomad-vault-token: error: ")
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"


def test_unreadable_key(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    """Root reads everything: drop CAP_DAC_OVERRIDE (setpriv) and make the key someone else's."""
    if os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists():
        pytest.skip("needs root and setpriv")
    key = tmp_path / "key.pem"
    key.write_bytes(certs.client_key.read_bytes())
    os.chmod(key, 0o600)
    os.chown(key, 65534, 65534)
    cfg = write_config(tmp_path / "config.toml", bao, certs, client_key=key)
    proc = subprocess.run(
        [
            "/usr/bin/setpriv",
            "--bounding-set=-dac_override,-dac_read_search",
            "--",
            *CLI,
            "token",
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )
    assert_clean_refusal(Result(proc.returncode, proc.stdout, proc.stderr), 78, (str(key), "permission denied"))


def test_state_file_garbage_truncated_or_foreign_is_a_warning(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", bao, certs)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    good = run_cli("run", "--config", str(cfg), "--", "/bin/true")
    assert good.code == 0, good.err
    content = (state / "token.json").read_bytes()
    variants = {"garbage": b"\x00garbage", "truncated": content[: len(content) // 2]}
    for name, data in variants.items():
        (state / "token.json").write_bytes(data)
        result = run_cli("run", "--config", str(cfg), "--", "/bin/true")
        assert result.code == 0 and "corrupt" in result.err and "Traceback" not in result.err, (name, result.err)
    os.chown(state / "token.json", 65534, 65534)
    result = run_cli("run", "--config", str(cfg), "--", "/bin/true")
    assert result.code == 0 and "owned by uid 65534" in result.err
    assert stat.S_IMODE((state / "token.json").stat().st_mode) == 0o600
    assert (state / "token.json").stat().st_uid == os.geteuid()
