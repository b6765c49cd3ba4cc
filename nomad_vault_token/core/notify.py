"""A small typed wrapper over `sdnotify`: READY, STATUS, WATCHDOG, EXTEND_TIMEOUT_USEC.

Reads NOTIFY_SOCKET / WATCHDOG_USEC when constructed (never at import). Without a
socket every call is a no-op, so commands behave the same outside systemd.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

READY_WAIT = 5.0  # seconds READY=1 may wait for room in systemd's queue


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.socket_path = env.get("NOTIFY_SOCKET", "")
        self._notifier: object | None = None
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_usec = int(usec) if usec.isdigit() else 0
        if self.socket_path:
            import sdnotify

            self._notifier = sdnotify.SystemdNotifier()
            sock = getattr(self._notifier, "socket", None)
            if sock is not None:
                sock.setblocking(False)  # a full queue drops a message, never stalls us

    @property
    def enabled(self) -> bool:
        return self._notifier is not None

    @property
    def watchdog_enabled(self) -> bool:
        return self.enabled and self.watchdog_usec > 0

    def send(self, *lines: str, wait: float = 0.0) -> None:
        """Send one datagram of KEY=value lines; sdnotify encodes latin-1, so keep to that.

        Without `wait`, a full queue drops the message (STATUS and WATCHDOG come again). With it, the
        send waits up to `wait` seconds for room: for what is said once (READY=1: lost, systemd would
        time the start out and stop the agent; an AF_UNIX datagram queue holds only 10 by default)."""
        if self._notifier is None:
            return
        text = "\n".join(lines).replace("\u2026", "...")
        text = text.encode("latin-1", "replace").decode("latin-1")
        sock = getattr(self._notifier, "socket", None)
        if wait and sock is not None:
            sock.settimeout(wait)
        try:
            self._notifier.notify(text)  # type: ignore[attr-defined]
        finally:
            if wait and sock is not None:
                sock.setblocking(False)

    def status(self, text: str) -> None:
        self.send(f"STATUS={_one_line(text)}")

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={_one_line(status)}", wait=READY_WAIT)

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")


class Watchdog:
    """WATCHDOG=1 pacing shared by the long-running processes (the tracker, the unsealer): at most one
    keep-alive per half of WATCHDOG_USEC, and only while the caller says it is healthy."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.next_at = 0.0  # monotonic

    def wake_at(self, other: float) -> float:
        """When to wake next: `other`, or sooner when a keep-alive falls due first."""
        return min(other, self.next_at) if self.notifier.watchdog_enabled else other

    def now_due(self) -> None:
        """A fresh verdict: send (or withhold) the next keep-alive right away."""
        self.next_at = 0.0

    def beat(self, now: float, healthy: bool) -> None:
        if not self.notifier.watchdog_enabled or now < self.next_at:
            return
        self.next_at = now + self.notifier.watchdog_usec / 2_000_000
        if healthy:
            self.notifier.watchdog()


def _one_line(text: str) -> str:
    return " ".join(text.split())
