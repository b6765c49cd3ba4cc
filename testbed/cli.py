"""The tool's command line, run as a real process, and what a user-facing error must look like."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from testbed.env import clean_env

# The package as this interpreter sees it (`python -m`): what the tests run.
CLI = [sys.executable, "-m", "nomad_vault_token"]


def console_script() -> list[str]:
    """How systemd would start the tool: the venv's `nomad-vault-token` (`python -m` if there is none)."""
    script = Path(sys.executable).parent / "nomad-vault-token"
    return [str(script)] if script.exists() else CLI


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None) -> Result:
    proc = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else clean_env(),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: Result, code: int, *needles: str) -> None:
    """The documented exit code, one line on stderr naming the problem, no traceback."""
    assert result.code == code, f"exit {result.code}, want {code}; stderr: {result.err}"
    assert "Traceback" not in result.err, result.err
    assert len(result.err_lines) == 1, f"want one line, got: {result.err!r}"
    for needle in needles:
        assert needle in result.err, f"{needle!r} not in {result.err!r}"
