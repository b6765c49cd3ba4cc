"""The last resort, in real processes: a bug is one line and exit 70 (the JSON envelope under --format json),
its traceback only with --verbose, and never what the broken code held (a token, an unseal key); a closed
stdout ends quietly; a bug in `run` before the exec still starts the agent.

The bug is put in by a `sitecustomize` on PYTHONPATH: it replaces one function of the package with one that
holds a token and an unseal key in its locals and raises a ValueError whose message holds both (what
`int(key, 16)` does with a bad key).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from testbed.bao import Certs
from testbed.cli import CLI, Result, assert_one_line_error, run_cli
from testbed.env import clean_env

TOKEN = "s.BugTestTokenNeverShown0123"
KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

SITECUSTOMIZE = f'''
import importlib, os

def _bug(*args, **kwargs):
    from nomad_vault_token.core.secret import Secret
    token = Secret({TOKEN!r})
    unseal_key = {KEY!r}
    return int(unseal_key + token.reveal(), 16)

_where = os.environ.get("NVT_TEST_BUG_AT")
if _where:
    _module, _name = _where.split(":")
    setattr(importlib.import_module(_module), _name, _bug)
'''


def buggy_env(tmp_path: Path, where: str) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return clean_env(PYTHONPATH=str(site), NVT_TEST_BUG_AT=where)


@pytest.fixture
def cfg(tmp_path: Path, certs: Certs) -> Path:
    """A config no Vault answers: the bugs below come first."""
    path = tmp_path / "config.toml"
    path.write_text(
        f'vault_addr = "https://127.0.0.1:1"\nca_cert = "{certs.ca_path}"\nclient_cert = "{certs.client_cert}"\n'
        f'client_key = "{certs.client_key}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'token_config = "{tmp_path / "run" / "vault-token.hcl"}"\n'
    )
    return path


def assert_no_secret(result: Result) -> None:
    for secret in (TOKEN, KEY, KEY[:16], TOKEN[2:]):
        assert secret not in result.err and secret not in result.out, result.err


def test_a_bug_in_a_command_is_one_line_and_70(cfg: Path, tmp_path: Path) -> None:
    env = buggy_env(tmp_path, "nomad_vault_token.token.store:read")
    result = run_cli("status", "--config", str(cfg), env=env)
    assert_one_line_error(result, 70, "internal error: ValueError in 'status'", "report it")
    assert_no_secret(result)


def test_with_verbose_the_traceback_shows_where_but_not_what_it_held(cfg: Path, tmp_path: Path) -> None:
    env = buggy_env(tmp_path, "nomad_vault_token.token.store:read")
    result = run_cli("status", "--config", str(cfg), "--verbose", env=env)
    assert result.code == 70, result.err
    assert "Traceback (most recent call last)" in result.err
    assert "sitecustomize.py" in result.err and "in _bug" in result.err  # the frame that broke
    assert "commands/status.py" in result.err  # and who called it
    assert "internal error: ValueError in 'status'" in result.err_lines[-1]
    assert_no_secret(result)


def test_with_format_json_the_bug_is_in_the_envelope(cfg: Path, tmp_path: Path) -> None:
    env = buggy_env(tmp_path, "nomad_vault_token.token.store:read")
    result = run_cli("status", "--config", str(cfg), "--format", "json", env=env)
    assert_one_line_error(result, 70, "ValueError")
    doc = json.loads(result.out)
    assert doc["version"] == 1 and doc["ok"] is False
    assert doc["error"]["exit_code"] == 70 and "ValueError in 'status'" in doc["error"]["message"]
    assert_no_secret(result)


def test_a_bug_while_parsing_is_70_too(cfg: Path, tmp_path: Path) -> None:
    env = buggy_env(tmp_path, "nomad_vault_token.cli.fastrun:parse")
    result = run_cli("status", "--config", str(cfg), env=env)
    assert_one_line_error(result, 70, "internal error: ValueError in 'status'")
    assert_no_secret(result)


def test_the_tools_own_errors_keep_their_codes(tmp_path: Path) -> None:
    result = run_cli("status", "--config", str(tmp_path / "missing.toml"))
    assert result.code == 78, result.err
    assert "internal error" not in result.err


@pytest.mark.parametrize("args", [("status", "--format", "json"), ("--help",)], ids=["status-json", "help"])
def test_a_closed_stdout_ends_quietly(cfg: Path, args: tuple[str, ...]) -> None:
    """`nomad-vault-token status | head -0`: the reader is gone before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with_config = [*args, "--config", str(cfg)] if args[0] == "status" else list(args)
    try:
        proc = subprocess.run(
            [*CLI, *with_config],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=60,
            env=clean_env(),
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""


def test_a_bug_in_run_before_the_exec_still_starts_the_agent(cfg: Path, tmp_path: Path) -> None:
    """DESIGN: the tool never keeps Nomad down where Nomad alone would run. The agent starts degraded (no saved
    token: Vault disabled in the hand-off file), unwatched, and the bug is one line in the log."""
    agent = tmp_path / "agent"
    seen = tmp_path / "argv.txt"
    agent.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}\nenv > {tmp_path / "env.txt"}\n')
    agent.chmod(0o755)
    env = buggy_env(tmp_path, "nomad_vault_token.token.tls_verdict:preflight")
    result = run_cli("run", "--config", str(cfg), "--", str(agent), "agent", env=env)
    assert result.code == 0, result.err  # the agent's own exit: it was exec'd
    argv = seen.read_text().split()
    hcl = tmp_path / "run" / "vault-token.hcl"
    assert argv == ["agent", "-config", str(hcl)]
    assert "enabled = false" in " ".join(hcl.read_text().split())
    assert any("internal error: ValueError in 'run'" in line for line in result.err_lines), result.err
    assert "Traceback" not in result.err
    assert_no_secret(result)
    assert TOKEN not in (tmp_path / "env.txt").read_text()
