"""JSON-lines files: the stand-in agent's report (`FAKE_NOMAD_REPORT`) and OpenBao's audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def read(path: Path, start: int = 0, end: int | None = None, skip_invalid: bool = False) -> list[Record]:
    """The complete lines of `path` between byte offsets `start` and `end`, parsed; [] if there is no file.

    A last line without its newline is still being written: it is left for the next read. A line that
    is not JSON fails, unless `skip_invalid`.
    """
    try:
        with open(path, "rb") as f:
            f.seek(start)
            raw = f.read() if end is None else f.read(max(end - start, 0))
    except FileNotFoundError:
        return []
    found = []
    for line in raw.split(b"\n")[:-1]:
        if not line.strip():
            continue
        try:
            found.append(json.loads(line))
        except ValueError:
            if not skip_invalid:
                raise
    return found


def events(path: Path, name: str | None = None) -> list[Record]:
    """The stand-in agent's report: every event, or those called `name`, in order."""
    return [e for e in read(path) if name is None or e.get("event") == name]
