"""Processes: the one /proc scan, the one way to stop a process, and waiting with a deadline.

Everything goes by PID: a process is found by what its command line mentions (a work directory, a
config path), never stopped by name. `stop` is the only place that signals, waits and then kills.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_GIVEN: set[int] = set()


def free_port() -> int:
    """A free loopback port that this process has not been given before. The kernel picks bind(0)'s port at
    random and may give a just-closed one again: a cluster's six ports are all picked before any node starts,
    and once node-1's API port and node-2's cluster port were the same (node-2: "bind: address already in use")."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port

Target = subprocess.Popen[Any] | int


@dataclass(frozen=True)
class Proc:
    """One process as /proc shows it."""

    pid: int
    ppid: int
    state: str  # R, S, D, T, Z ...
    argv: tuple[str, ...]
    cmdline: str  # /proc/PID/cmdline with its NULs as spaces: each argument followed by one


def _read(pid: int | str) -> Proc | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile, or not ours to read
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
    argv = tuple(arg.decode(errors="replace") for arg in raw.split(b"\0")[:-1])
    return Proc(int(pid), int(fields[1]), fields[0], argv, raw.replace(b"\0", b" ").decode(errors="replace"))


def scan() -> list[Proc]:
    """Every process this one can see."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := _read(entry)) is not None:
            found.append(proc)
    return found


def mentioning(text: str) -> list[Proc]:
    """Live processes other than this one whose command line contains `text` (e.g. a work directory)."""
    return [p for p in scan() if text in p.cmdline and p.pid != os.getpid() and p.state != "Z"]


def environ(pid: int) -> list[str]:
    """The environment a process started with, as `NAME=value` strings (OSError if it is gone)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return [item.decode(errors="replace") for item in raw.split(b"\0") if item]


def descendants(pid: int) -> list[int]:
    """The PIDs of `pid`'s children, their children, and so on (the ones still there)."""
    children: dict[int, list[int]] = {}
    for p in scan():
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its parent."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = _read(pid)
    return proc is not None and proc.state != "Z"


def _running(target: Target) -> bool:
    return target.poll() is None if isinstance(target, subprocess.Popen) else alive(target)


def _signal(target: Target, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(target.pid if isinstance(target, subprocess.Popen) else target, sig)


def stop_all(targets: Iterable[Target], sig: int | None = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop processes by PID: send `sig` to each (None: send nothing, they are exiting on their own),
    wait for all of them until `timeout`, then SIGKILL what is left. A `Popen` (a child we started) is
    reaped; a bare PID (someone else's child, e.g. a forked tracker) counts as gone once it is a zombie."""
    left = [t for t in targets if _running(t)]
    if sig is not None:
        for target in left:
            _signal(target, sig)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        left = [t for t in left if _running(t)]
        if left:
            time.sleep(0.01)
    for target in left:
        _signal(target, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_running(t) for t in left) and time.monotonic() < deadline:
        time.sleep(0.01)


def stop(target: Target, sig: int | None = signal.SIGTERM, timeout: float = 10.0) -> int | None:
    """Stop one process: `sig`, wait up to `timeout`, then SIGKILL. Returns a child's exit code (its
    return code: negative for a signal), None for a bare PID."""
    stop_all([target], sig, timeout)
    return target.poll() if isinstance(target, subprocess.Popen) else None


def stop_tree(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
    """Stop a child we started, then whatever it started that outlived it (e.g. a supervisor's child)."""
    below = descendants(proc.pid)
    code = stop(proc, sig, timeout)
    stop_all(below, sig, timeout=5)
    return code


def stop_mentioning(text: str, sig: int | None = signal.SIGTERM, timeout: float = 10.0) -> list[int]:
    """Stop every process whose command line mentions `text` (clean-up after a test or a run); their PIDs."""
    pids = [p.pid for p in mentioning(text)]
    stop_all(pids, sig, timeout)
    return pids


class Started:
    """The processes one run (of the bench, say) started, and the command-line fragments (`markers`) of
    those they fork and do not wait for (trackers): `stop_all` stops every one of them by PID."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []
        self.markers: list[str] = []

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        proc: subprocess.Popen[bytes] = subprocess.Popen(list(argv), **kwargs)
        self.children.append(proc)
        return proc

    def stop_all(self, timeout: float = 5.0) -> None:
        """SIGTERM to every child still running (SIGKILL after `timeout`), then to what they started
        that outlived them, then SIGKILL to whatever mentions a marker."""
        live = [p for p in self.children if p.poll() is None]
        below = [pid for p in live for pid in descendants(p.pid)]
        stop_all(live, signal.SIGTERM, timeout)
        stop_all(below, signal.SIGTERM, timeout)
        for marker in self.markers:
            stop_mentioning(marker, signal.SIGKILL)


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.05,
    *,
    proc: subprocess.Popen[Any] | None = None,
    detail: Callable[[], object] | None = None,
) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; fail naming `what` (and
    `detail()`, e.g. a log's tail) when `timeout` passes, or as soon as `proc` has exited without it."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if proc is not None and proc.poll() is not None:
            last = predicate()  # what it wrote last may have come with its exit
            if last:
                return last
            why = f"the process exited ({proc.returncode}) before {what}"
            break
        if time.monotonic() >= deadline:
            why = f"timed out after {timeout}s waiting for {what} (last: {last!r})"
            break
        time.sleep(interval)
    raise AssertionError(why + (f": {detail()}" if detail is not None else ""))


def holds_for(check: Callable[[], object], seconds: float, interval: float = 0.2) -> None:
    """Run `check` (it asserts) again and again until `seconds` have passed: for what must STAY true
    (a node left sealed, an agent not stopped), where `wait_for` is for what must BECOME true. The
    last check runs at or after the end, so a slow machine checks no less than a fast one."""
    end = time.monotonic() + seconds
    while True:
        check()
        if time.monotonic() >= end:
            return
        time.sleep(interval)
