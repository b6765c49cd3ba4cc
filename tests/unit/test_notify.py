"""sd_notify through a real AF_UNIX datagram socket: what is said once must not be dropped."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from nomad_vault_token.core.notify import Notifier, Watchdog


def test_ready_waits_for_room_in_a_full_queue_where_status_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))  # sdnotify reads it from the environment itself
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        queued = 0
        fillers: list[socket.socket] = []
        while True:  # fill the receiver's queue (net.unix.max_dgram_qlen), one sender's buffer at a time
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            fillers.append(filler)
            filler.connect(str(path))
            filler.setblocking(False)
            sent = 0
            while True:
                try:
                    filler.send(b"STATUS=filler")
                except BlockingIOError:
                    break
                sent += 1
            queued += sent
            if sent == 0:  # a fresh sender cannot queue one: the receiver is full
                break
        notifier.status("dropped")
        sender = threading.Thread(target=notifier.ready, args=("up",))
        sender.start()
        server.settimeout(0.5)
        got: list[str] = []
        deadline = time.monotonic() + 10
        while not any("READY=1" in m for m in got) and time.monotonic() < deadline:
            try:
                got.append(server.recv(4096).decode())
            except TimeoutError:
                continue
        sender.join(10)
        for filler in fillers:
            filler.close()
        assert any(m == "READY=1\nSTATUS=up" for m in got), got[-3:]
        assert "STATUS=dropped" not in got, "STATUS must not block: a full queue drops it"
        assert len(got) == queued + 1
    finally:
        server.close()


def test_watchdog_paces_at_half_the_interval_and_only_when_healthy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)
    try:
        pacer = Watchdog(Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "10000000"}))
        assert pacer.wake_at(100.0) == 0.0  # due at once
        pacer.beat(1000.0, healthy=True)
        pacer.beat(1004.0, healthy=True)  # before half of 10 s: nothing
        assert pacer.wake_at(2000.0) == 1005.0
        pacer.beat(1005.0, healthy=False)  # due, but withheld
        pacer.now_due()
        pacer.beat(1006.0, healthy=True)
        sent = []
        while True:
            try:
                sent.append(server.recv(64))
            except BlockingIOError:
                break
        assert sent == [b"WATCHDOG=1", b"WATCHDOG=1"]
    finally:
        server.close()
