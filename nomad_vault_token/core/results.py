"""What a command returns, and the one place that prints it: text, or the versioned JSON envelope.

Every JSON document this tool prints, errors included, is `{"version": 1, ...}`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

VERSION = 1
FORMATS = ("text", "json")


@dataclass
class Result:
    """A command's outcome: `data` for JSON, `text` for people; `error` goes to stderr as one line."""

    data: dict[str, object] = field(default_factory=dict)
    text: str = ""
    exit_code: int = 0
    error: str | None = None


def envelope(data: Mapping[str, object]) -> dict[str, object]:
    return {"version": VERSION, **data}


def render(result: Result, fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(envelope(result.data)) + "\n")
    elif result.text:
        sys.stdout.write(result.text if result.text.endswith("\n") else result.text + "\n")
    sys.stdout.flush()
    if result.error:
        error_line(result.error)


def render_error(message: str, exit_code: int, fmt: str) -> None:
    """An error the user can cause: one line on stderr; with --format json, the envelope on stdout too."""
    if fmt == "json":
        doc = envelope({"ok": False, "error": {"message": one_line(message), "exit_code": exit_code}})
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
    error_line(message)


def error_line(message: str) -> None:
    print(f"nomad-vault-token: error: {one_line(message)}", file=sys.stderr)


def one_line(text: str) -> str:
    return " ".join(text.split())
