"""What the unseal, seal-migration and KMS tests share: the unsealer's config and keys files, `--once`
as a real process, the watcher as a real process reading STATUS from a notify socket (`Watcher`, the
`watchers` fixture), counting proxies in front of nodes (the `proxies` fixture), and the operator's
steps of a seal migration (a new stanza and a restart, a step-down with the root token).

A test module uses the fixtures by importing `watchers_fixture` / `proxies_fixture` (pytest registers the
fixtures a module holds) and naming `watchers` / `proxies` as arguments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.agent import NotifySocket
from testbed.bao import Certs
from testbed.cli import CLI, Result, run_cli
from testbed.env import clean_env
from testbed.procs import wait_for
from testbed.proxy import CountingProxy
from testbed.raft_cluster import Node, RaftCluster

STEP = 60  # seconds for one step of a migration (a restart, an election) on a loaded 2-core machine



def write_keys(path: Path, keys: list[str], mode: int = 0o600) -> Path:
    path.write_text("# unseal keys\n" + "\n".join(keys) + "\n")
    os.chmod(path, mode)
    return path


def write_cfg(path: Path, certs: Certs, nodes: list[str], keys: Path | None, **extra: str) -> Path:
    values = {"ca_cert": str(certs.ca_path), "state_dir": str(path.parent / "state"), "request_timeout": "3s"}
    if keys is not None:
        values["unseal_keys_file"] = str(keys)
    values |= extra
    lines = [f'unseal_nodes = [{", ".join(json.dumps(n) for n in nodes)}]']
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def once(cfg: Path, *args: str, timeout: float = 120) -> Result:
    return run_cli("unseal", "--once", "--config", str(cfg), *args, timeout=timeout)


def standby(c: RaftCluster) -> int:
    leader = c.leader()
    return next(i for i in (1, 2, 3) if i != leader)


def name(node: Node) -> str:
    return f"127.0.0.1:{node.port}"


class Watcher:
    """`unseal` in watch mode as a real process, its STATUS read from a notify socket; stopped by PID."""

    def __init__(self, cfg: Path, notify: NotifySocket, log: Path, *args: str) -> None:
        self.notify = notify
        self.seen = 0  # notify messages wait_status has looked at
        self.log_path = log
        env = clean_env(NOTIFY_SOCKET=str(notify.path))
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [*CLI, "unseal", "--config", str(cfg), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def statuses(self) -> list[str]:
        return [m for m in self.notify.drain() if "STATUS=" in m]

    def wait_status(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first STATUS after the one the previous call returned that satisfies `predicate`."""

        def find() -> str | None:
            messages = self.notify.drain()
            while self.seen < len(messages):
                message = messages[self.seen]
                self.seen += 1
                for line in message.splitlines():
                    if line.startswith("STATUS=") and predicate(line[7:]):
                        return line[7:]
            return None

        found: str = wait_for(find, timeout, what, interval=0.02)
        return found

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture(name="watchers")
def watchers_fixture(tmp_path: Path) -> Iterator[Callable[..., Watcher]]:
    started: list[tuple[Watcher, NotifySocket]] = []

    def start(cfg: Path, *args: str) -> Watcher:
        sock = NotifySocket(tmp_path / f"notify-{len(started)}.sock")
        w = Watcher(cfg, sock, tmp_path / f"watcher-{len(started)}.log", *args)
        started.append((w, sock))
        return w

    yield start
    for w, sock in started:
        w.stop()
        sock.close()


@pytest.fixture(name="proxies")
def proxies_fixture(certs: Certs) -> Iterator[Callable[[Node], CountingProxy]]:
    made: list[CountingProxy] = []

    def make(node: Node) -> CountingProxy:
        p = CountingProxy(node, certs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


# ---- a seal migration's operator steps ----------------------------------------------------------------


def leader(c: RaftCluster) -> int:
    found: int = wait_for(c.leader, STEP, "an active node", interval=0.2)
    return found


def canary(c: RaftCluster) -> Any:
    answer = c.node(leader(c)).get("canary/data", token=c.root_token)
    return answer.body.get("data", {}).get("value")


def restart_with(node: Node, seal: str, kill: bool = False) -> None:
    """The operator's step: the new stanza in the config, the process restarted."""
    if kill and node.running:
        os.kill(node.pid, signal.SIGKILL)
        assert node.proc is not None
        node.proc.wait(10)
    node.stop()
    node.set_seal(seal)
    node.launch()


def step_down(c: RaftCluster, i: int) -> None:
    """`bao operator step-down` on node-`i` (needs sudo on sys/step-down: the root token here)."""
    answer = c.node(i).post("sys/step-down", token=c.root_token, timeout=30)
    assert answer.code == 204, f"step-down answered {answer}"


def all_unsealed_on(c: RaftCluster, seal_type: str) -> bool:
    try:
        statuses = [n.seal_status(timeout=2) for n in c.nodes]
    except Exception:  # a node restarting or answering 500: not yet
        return False
    return all(s.get("type") == seal_type and s.get("sealed") is False and not s.get("migration") for s in statuses)


def leaks(c: RaftCluster, *texts: str) -> list[str]:
    forms = set(c.keys) | set(c.keys_base64)
    return [t[:80] for t in texts if any(k in t for k in forms)]


def files_text(*dirs: Path) -> str:
    return "".join(p.read_text(errors="replace") for d in dirs if d.exists() for p in d.rglob("*") if p.is_file())
