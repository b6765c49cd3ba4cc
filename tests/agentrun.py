"""Start `nomad-vault-token run -- <stand-in agent>` as real processes and watch what the agent reports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bao import Bao, wait_for
from conftest import CLI, clean_env

FAKE_NOMAD = Path(__file__).resolve().parent / "fake_nomad.py"
Event = dict[str, Any]


def agent_config(path: Path, server: Bao) -> Path:
    """The agent's own config: where Vault is (Nomad ignores VAULT_ADDR)."""
    path.write_text(
        f'data_dir = "{path.parent}/data"\nvault {{\n  enabled = true\n  address = "{server.addr}"\n'
        f'  ca_file = "{server.certs.ca_path}"\n}}\n'
    )
    return path


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
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.report = workdir / f"report-{time.monotonic_ns()}.jsonl"
        self.stderr_path = workdir / f"stderr-{time.monotonic_ns()}.log"
        self.config = config
        agent_hcl = agent_config(workdir / "agent.hcl", server)
        extra = {"FAKE_NOMAD_REPORT": str(self.report)}
        if renew_every is not None:
            extra["FAKE_NOMAD_RENEW_EVERY"] = str(renew_every)
        self.env = {**(env if env is not None else clean_env()), **extra}
        self.argv = [
            *CLI,
            "run",
            "--config",
            str(config),
            *run_args,
            "--",
            sys.executable,
            str(FAKE_NOMAD),
            "agent",
            "-config",
            str(agent_hcl),
        ]
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        self.pid = self.proc.pid

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self, name: str | None = None) -> list[Event]:
        try:
            lines = self.report.read_text().splitlines()
        except FileNotFoundError:
            return []
        found = [json.loads(line) for line in lines if line.strip()]
        return [e for e in found if name is None or e["event"] == name]

    def wait_event(
        self, name: str, match: Callable[[Event], bool] = lambda e: True, timeout: float = 30, after: int = 0
    ) -> Event:
        def find() -> Event | None:
            if self.proc.poll() is not None and not self.events(name)[after:]:
                raise AssertionError(f"run/agent exited {self.proc.returncode} before {name}: {self.stderr}")
            for event in self.events(name)[after:]:
                if match(event):
                    return event
            return None

        found: Event = wait_for(find, timeout, f"agent event {name}")
        return found

    def wait_exit(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def trackers(self) -> list[int]:
        """PIDs of tracker processes of this run (forked from it: same cmdline, another PID)."""
        return [pid for pid, cmd in processes() if pid != self.pid and str(self.config) in cmd and "run" in cmd]


def processes() -> list[tuple[int, str]]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        found.append((int(entry), raw.replace(b"\0", b" ").decode(errors="replace")))
    return found


def kill_all_mentioning(text: str) -> None:
    """Stop, by PID, every process whose command line mentions `text` (test clean-up)."""
    for pid, cmd in processes():
        if text in cmd and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(65536).decode("latin-1"))
            except (TimeoutError, BlockingIOError):
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
        self.sock.close()
