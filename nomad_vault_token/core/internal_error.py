"""The last resort: an exception that is not the tool's own error (`errors.NvtError`) is a bug (70).

It becomes one line naming what failed (the exception's type and the command) and where to report it;
the traceback goes to the log at debug level only (`--verbose`). Neither ever holds the exception's
message or any local: a bug's message can hold what the code was handling when it broke (a token, an
unseal key: `int(key, 16)` puts the key in its ValueError), so only the type, the files, lines and
source lines are shown.
"""

from __future__ import annotations

import logging
import traceback

from nomad_vault_token import __version__

logger = logging.getLogger(__name__)

REPORT_TO = "the nomad-vault-token issue tracker"


def line(exc: BaseException, command: str) -> str:
    """The one line: what failed, that it is a bug, where to report it."""
    return (
        f"internal error: {_name(exc)} in {command!r} (a bug in nomad-vault-token {__version__}, not in your "
        f"setup): please report it to {REPORT_TO} with this line and what the same command prints with --verbose"
    )


def log_traceback(exc: BaseException) -> None:
    """The traceback at debug level: the chain of exceptions, each as its frames and its type, no message."""
    logger.debug("%s", traceback_text(exc))


def traceback_text(exc: BaseException) -> str:
    parts: list[str] = []
    for link in _chain(exc):
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(link.__traceback__))
        parts.append(f"{_name(link)} (its message is not shown: it may hold a secret)\n")
    return "".join(parts).rstrip("\n")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and the ones it came from (`raise ... from`, or raised while handling), oldest first."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and all(link is not seen for seen in chain):
        chain.append(link)
        link = link.__cause__ if link.__cause__ is not None else (None if link.__suppress_context__ else link.__context__)
    return chain[::-1]


def _name(exc: BaseException) -> str:
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
