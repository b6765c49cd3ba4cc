"""Shared fixtures: the real OpenBao server, certificates, configs, and the CLI as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bao import Bao, Certs

if TYPE_CHECKING:
    from agentrun import AgentRun, NotifySocket  # agentrun imports this module

CLI = [sys.executable, "-m", "nomad_vault_token"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without anything Vault- or tool-related."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "VAULT_",
                "NOMAD_VAULT_TOKEN_",
                "NOTIFY_SOCKET",
                "JOURNAL_STREAM",
                "STATE_DIRECTORY",
                "RUNTIME_DIRECTORY",
                "WATCHDOG_",
            )
        )
    }
    env.update(extra)
    return env


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


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Bao]:
    """One configured OpenBao for the session; stopped by PID even when tests fail."""
    server = Bao(tmp_path_factory.mktemp("bao"), certs)
    try:
        server.start()
        server.configure()
        yield server
    finally:
        server.stop()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    """A real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""
    from agentrun import NotifySocket

    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def server(new_bao: Callable[[], Bao]) -> Bao:
    """A private OpenBao for one test (tests that seal, stop or break it)."""
    return new_bao()


@pytest.fixture
def new_bao(tmp_path: Path, certs: Certs) -> Iterator[Callable[[], Bao]]:
    """A factory of private, configured OpenBao servers for tests that seal, stop or break them."""
    started: list[Bao] = []

    def make() -> Bao:
        server = Bao(tmp_path / f"bao{len(started)}", certs)
        started.append(server)
        server.start()
        server.configure()
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


def write_config(path: Path, server: Bao, certs: Certs, **overrides: object) -> Path:
    """A TOML config pointing at `server` with the session's client certificate."""
    values: dict[str, object] = {
        "vault_addr": server.addr,
        "ca_cert": str(certs.ca_path),
        "client_cert": str(certs.client_cert),
        "client_key": str(certs.client_key),
        "state_dir": str(path.parent / "state"),
        "token_config": str(path.parent / "run" / "vault-token.hcl"),
    }
    values.update(overrides)
    lines = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, (list, tuple)):
            lines.append(f"{key} = [{', '.join(repr(str(v)).replace(chr(39), chr(34)) for v in value)}]")
        else:
            lines.append(f'{key} = "{value}"')
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def config(tmp_path: Path, bao: Bao, certs: Certs) -> Path:
    return write_config(tmp_path / "config.toml", bao, certs)


@pytest.fixture
def durable(tmp_path: Path, certs: Certs) -> Iterator[Bao]:
    """An OpenBao on raft storage: its tokens survive being killed and started again."""
    server = Bao(tmp_path / "durable", certs, durable=True)
    try:
        server.start()
        server.configure()
        yield server
    finally:
        server.stop()


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Callable[..., AgentRun]]:
    """Start `run` processes; every one (and its tracker) is stopped by PID at the end."""
    from agentrun import AgentRun, kill_all_mentioning

    started: list[AgentRun] = []

    def start(config: Path, server: Bao, *args: str, **kw: object) -> AgentRun:
        r = AgentRun(tmp_path / "agent", config, server, *args, **kw)  # type: ignore[arg-type]
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()
    kill_all_mentioning(str(tmp_path))
