"""A small typed wrapper over `sdnotify`: READY, STATUS, WATCHDOG, EXTEND_TIMEOUT_USEC.

Reads NOTIFY_SOCKET / WATCHDOG_USEC when constructed (never at import). Without a
socket every call is a no-op, so commands behave the same outside systemd.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


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

    def send(self, *lines: str) -> None:
        """Send one datagram of KEY=value lines; sdnotify encodes latin-1, so keep to that."""
        if self._notifier is None:
            return
        text = "\n".join(lines).replace("\u2026", "...")
        text = text.encode("latin-1", "replace").decode("latin-1")
        self._notifier.notify(text)  # type: ignore[attr-defined]

    def status(self, text: str) -> None:
        self.send(f"STATUS={_one_line(text)}")

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={_one_line(status)}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")


def _one_line(text: str) -> str:
    return " ".join(text.split())
