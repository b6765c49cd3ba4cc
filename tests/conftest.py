"""Shared fixtures: the real OpenBao server, certificates, configs, `run` processes, a notify socket.

Everything else (the OpenBao launcher, processes, the CLI, configs) is in the test bed, `testbed/`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed import procs
from testbed.agent import AgentRun, NotifySocket
from testbed.bao import Bao, Certs
from testbed.config import write_config

# The raft cluster's fixtures (`raft_cluster`, `raft_cluster_session`) for every test that names them.
pytest_plugins = ["testbed.raft_cluster"]

# A test that names one of these fixtures starts OpenBao: it gets the `vault` marker, whatever its
# folder, so `-m "not vault"` never starts a server.
VAULT_FIXTURES = frozenset({"bao", "new_bao", "server", "durable", "config", "runs", "raft_cluster", "raft_cluster_session"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if VAULT_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.vault)


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
def new_bao(tmp_path: Path, certs: Certs) -> Iterator[Callable[..., Bao]]:
    """A factory of private OpenBao servers for tests that seal, stop or break them; each stopped by PID.

    `new_bao()` is configured as an admin would have it; `configure=False` is only initialised and
    unsealed; `durable=True` keeps its data on raft storage across a stop and start."""
    started: list[Bao] = []

    def make(configure: bool = True, durable: bool = False) -> Bao:
        server = Bao(tmp_path / f"bao{len(started)}", certs, durable=durable)
        started.append(server)
        server.start()
        if configure:
            server.configure()
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def server(new_bao: Callable[..., Bao]) -> Bao:
    """A private, configured OpenBao for this test."""
    return new_bao()


@pytest.fixture
def durable(new_bao: Callable[..., Bao]) -> Bao:
    """An OpenBao on raft storage: its tokens survive being killed and started again."""
    return new_bao(durable=True)


@pytest.fixture
def config(tmp_path: Path, bao: Bao, certs: Certs) -> Path:
    return write_config(tmp_path / "config.toml", bao, certs)


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    """A notify socket standing in for systemd's (give its path as NOTIFY_SOCKET)."""
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Callable[..., AgentRun]]:
    """Start `run` processes; every one (and its tracker) is stopped by PID at the end."""
    started: list[AgentRun] = []

    def start(config: Path, server: Bao, *args: str, **kw: object) -> AgentRun:
        r = AgentRun(tmp_path / "agent", config, server, *args, **kw)  # type: ignore[arg-type]
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()
    procs.stop_mentioning(str(tmp_path), signal.SIGKILL)
