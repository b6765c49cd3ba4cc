"""How the console script ends when a command did not: a bug (70), or a reader that went away.

A bug is one line on stderr (the JSON envelope too under `--format json`), its traceback at debug level
only (`core/internal_error`). A closed stdout (`status | head -0`) ends quietly, the way Python's own
docs end a tool whose reader went away: stdout pointed at /dev/null so the exit's flush cannot fail
again, then exit 1, no message (docs.python.org/3/library/signal.html, "Note on SIGPIPE"; click does
the same for its own output).
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from nomad_vault_token.core.errors import EX_FAILED, EX_SOFTWARE
from nomad_vault_token.core.results import render_error


def crash(exc: BaseException, command: str, fmt: str) -> NoReturn:
    """`exc` is not the tool's own error: the traceback at debug level, then the one line; exit 70."""
    from nomad_vault_token.core import internal_error  # only when it happens: `traceback` is not free

    internal_error.log_traceback(exc)
    try:
        render_error(internal_error.line(exc, command), EX_SOFTWARE, fmt)
    except BrokenPipeError:
        closed_stdout()
    sys.exit(EX_SOFTWARE)


def closed_stdout() -> NoReturn:
    """Whoever read stdout has gone: nothing more to say to anyone."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(EX_FAILED)
