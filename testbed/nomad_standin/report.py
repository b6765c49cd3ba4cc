"""The stand-in Nomad: Report."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from testbed.nomad_standin.rules import scrub


class Reporter:
    """JSON lines, one writer at a time; nothing after the ``exit`` line."""

    def __init__(self, path: str | None) -> None:
        if path:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        else:
            self._fd = sys.stderr.fileno()
        self._secrets: list[str] = []
        self._lock = threading.Lock()
        self._closed = False

    def secret(self, value: str) -> None:
        if value and value not in self._secrets:
            self._secrets.append(value)

    def emit(self, event: str, **fields: Any) -> None:
        record: dict[str, Any] = {"event": event, "pid": os.getpid(), "time": time.time()}
        record.update(fields)
        with self._lock:
            if self._closed:
                return
            self._closed = event == "exit"
            data = scrub(json.dumps(record) + "\n", self._secrets).encode()
            while data:
                data = data[os.write(self._fd, data) :]
