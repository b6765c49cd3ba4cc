"""`nomad-vault-token run -- <stand-in Nomad>` as real processes, the agent's own config, and a notify
socket standing in for systemd's. The stand-in itself is `testbed/nomad_standin/`, run as `testbed/fake_nomad.py`."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from testbed import ROOT, jsonl, procs
from testbed.bao import Bao
from testbed.cli import CLI
from testbed.env import clean_env
from testbed.procs import wait_for

FAKE_NOMAD = ROOT / "testbed" / "fake_nomad.py"
Event = dict[str, Any]


def agent_config(path: Path, server: Bao, create_from_role: str | None = None) -> Path:
    """The agent's own config: where Vault is (Nomad ignores VAULT_ADDR), and optionally the task role
    (as the bash script's setup has it)."""
    role = f'  create_from_role = "{create_from_role}"\n' if create_from_role else ""
    path.write_text(
        f'data_dir = "{path.parent}/data"\nvault {{\n  enabled = true\n  address = "{server.addr}"\n'
        f'  ca_file = "{server.certs.ca_path}"\n{role}}}\n'
    )
    return path


def keyring_block(addr: str, ca: Path, token: str) -> str:
    """The agent's `keyring "transit"` block (Nomad 1.8.3+) for the Vault at `addr` (CA `ca`), every extra value
    an HCL string as Nomad wants; `token` is the token line's value, e.g. file:///run/.../keyring-token."""
    return (
        'keyring "transit" {\n  active = true\n  mount_path = "transit"\n  key_name = "nomad-keyring"\n'
        f'  address = "{addr}"\n  tls_ca_cert = "{ca}"\n  token = "{token}"\n}}\n'
    )


def fake_nomad(agent_hcl: Path) -> list[str]:
    """The stand-in agent's command line: `nomad agent -config FILE`."""
    return [sys.executable, str(FAKE_NOMAD), "agent", "-config", str(agent_hcl)]


def run_argv(config: Path, agent_hcl: Path, *run_args: str, cli: Sequence[str] = CLI) -> list[str]:
    """`nomad-vault-token run --config CONFIG [RUN_ARGS] -- <stand-in Nomad> agent -config AGENT_HCL`."""
    return [*cli, "run", "--config", str(config), *run_args, "--", *fake_nomad(agent_hcl)]


class AgentRun:
    """One `run` process (which becomes the agent) and the agent's report file."""

    def __init__(
        self,
        workdir: Path,
        config: Path,
        server: Bao,
        *run_args: str,
        env: dict[str, str] | None = None,
        renew_every: float | None = 0.5,
        keyring_token: str | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.report = workdir / f"report-{time.monotonic_ns()}.jsonl"
        self.stderr_path = workdir / f"stderr-{time.monotonic_ns()}.log"
        self.config = config
        agent_hcl = agent_config(workdir / "agent.hcl", server)
        if keyring_token is not None:  # the agent's keyring block, e.g. token = "file://..."
            with agent_hcl.open("a") as f:
                f.write(keyring_block(server.addr, server.certs.ca_path, keyring_token))
        extra = {"FAKE_NOMAD_REPORT": str(self.report)}
        if renew_every is not None:
            extra["FAKE_NOMAD_RENEW_EVERY"] = str(renew_every)
        self.env = {**(env if env is not None else clean_env()), **extra}
        self.argv = run_argv(config, agent_hcl, *run_args)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        self.pid = self.proc.pid

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self, name: str | None = None) -> list[Event]:
        return jsonl.events(self.report, name)

    def wait_event(
        self, name: str, match: Callable[[Event], bool] = lambda e: True, timeout: float = 30, after: int = 0
    ) -> Event:
        def find() -> Event | None:
            return next((e for e in self.events(name)[after:] if match(e)), None)

        found: Event = wait_for(find, timeout, f"agent event {name}", proc=self.proc, detail=lambda: self.stderr)
        return found

    def wait_exit(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        return procs.stop(self.proc, timeout=15)

    def trackers(self) -> list[int]:
        """PIDs of tracker processes of this run (forked from it: same cmdline, another PID)."""
        return [p.pid for p in procs.mentioning(str(self.config)) if p.pid != self.pid and "run" in p.cmdline]


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET, read all the time as systemd
    reads its own.

    A receiver that reads only when a test asks lets the queue fill (`net.unix.max_dgram_qlen`: 10 by the
    kernel's default, 512 where systemd's sysctl.d raises it) while the tracker sends WATCHDOG=1 every few
    hundred ms; then the agent's own blocking sd_notify (Nomad's `conn.Write`, command/agent/sdnotify_linux.go,
    and the stand-in's) blocks its signal loop right after "Caught signal: SIGHUP", and no reload, no exit
    follows. systemd never lets that happen, so neither does this: a thread reads whatever arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []  # what the test has looked at (drain, wait_for): it may clear it
        self._inbox: list[str] = []  # read by the thread, not yet looked at: as a queue the test has not read
        self._lock = threading.Lock()  # every recv and append under it: the order received is the order kept
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"notify-socket {path.name}", daemon=True)
        self._reader.start()

    def _receive(self) -> None:
        with self._lock:
            while True:
                try:
                    self._inbox.append(self.sock.recv(65536).decode("latin-1"))
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:  # closed
                    return

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                readable, _, _ = select.select([self.sock], [], [], 0.2)
            except (OSError, ValueError):  # closed under us
                return
            if readable:
                self._receive()

    def drain(self) -> list[str]:
        """Every message received so far, including any still queued this instant, moved to `messages`.

        Only this moves messages there, as reading the socket did before the thread: a test that clears
        `messages` clears what it has looked at, and what arrived since is still to come."""
        self._receive()
        with self._lock:
            self.messages.extend(self._inbox)
            self._inbox.clear()
        return self.messages

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        def find() -> str | None:
            for message in self.drain():
                if predicate(message):
                    return message
            return None

        found: str = wait_for(find, timeout, what, interval=0.01)
        return found

    def close(self) -> None:
        self._closed.set()
        self._reader.join(timeout=5)
        self.sock.close()
