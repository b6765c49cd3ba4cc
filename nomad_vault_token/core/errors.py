"""The project's errors: each carries the exit code documented in DESIGN.md.

Messages are one line, name the file, field or Vault path, and say what to do.
They never contain a token.
"""

from __future__ import annotations

import errno
from typing import NamedTuple

# Every exit code the tool uses (DESIGN.md); sysexits.h names where one exists. EXIT_CODES below says what
# each means: the top-level --help and docs/exit-codes.md are made from it.
EX_OK = 0
EX_FAILED = 1
EX_USAGE = 2
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78
EX_INTERRUPTED = 130


class ExitCode(NamedTuple):
    code: int
    brief: str  # a few words, for the top-level --help
    meaning: str  # when, and which commands (docs/exit-codes.md)
    systemd: str  # what systemd (or the operator) does about it


EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(EX_OK, "success", "success (`run` does not return: it execs the agent)", ""),
    ExitCode(EX_FAILED, "no token kept (status) or systemctl failed (install)",
             "`status`: no token kept yet; `install`: `systemctl daemon-reload` failed (the unit file is put back, "
             "so the next `install` retries)", ""),
    ExitCode(EX_USAGE, "usage error", "usage error: an unknown option, a missing value, a flag this mode needs", ""),
    ExitCode(EX_DATAERR, "bad data (keys refused, a snapshot that failed verification)",
             "bad data: a snapshot that failed verification (`snapshot`, `snapshot verify`), unseal keys a node or "
             "a restored snapshot refuses (`unseal --once`, `restore-test`)",
             "alert, no retry storm: a restart would not help"),
    ExitCode(EX_UNAVAILABLE, "Vault unavailable",
             "Vault unavailable (unreachable, sealed, not initialised; a snapshot stream broken off) until "
             "`--wait-timeout`; Nomad's API unreachable (readiness)", "restarted"),
    ExitCode(EX_SOFTWARE, "internal error (a bug: report it)",
             "internal error: a bug (an exception that is not the tool's own error): one line, the traceback only "
             "at debug level", "report it"),
    ExitCode(EX_IOERR, "disk full or failing",
             "I/O error: the disk is full or failing (`snapshot`: ENOSPC, EDQUOT, EFBIG, EIO while writing the "
             "snapshot or its manifest; nothing kept, older snapshots untouched); a directory this user may not "
             "write is a configuration error (78)", "retry once there is room (the timer's next run)"),
    ExitCode(EX_TEMPFAIL, "partial or not ready yet",
             "partial: some nodes unsealed, others not, no leader yet, or a seal migration waiting (`unseal "
             "--once`); not ready yet (`check --workload-identity-readiness`, `cutover`, `bootstrap-roles "
             "--remove-legacy`); a snapshot kept and verified locally whose copy to a `--copy-to` destination "
             "failed (`snapshot`)", "retry later"),
    ExitCode(EX_NOPERM, "Vault refused",
             "Vault refused: certificate rejected, permission denied, a rule Nomad would reject",
             "restarted after `RestartSec`"),
    ExitCode(EX_CONFIG, "configuration error",
             "configuration error: bad file, key, certificate, path; an agent command line that would override the "
             "token", "not restarted (`RestartPreventExitStatus=78`)"),
    ExitCode(EX_INTERRUPTED, "interrupted (Ctrl-C)", "interrupted: SIGINT (Ctrl-C) while a command ran", ""),
)  # fmt: skip


def exit_codes_help() -> str:
    """The exit codes in one sentence, for the top-level --help."""
    return "Exit codes: " + ", ".join(f"{c.code} {c.brief}" for c in EXIT_CODES) + "."

class NvtError(Exception):
    """Base of every error a user can cause; `cli` prints it as one line."""

    exit_code = EX_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(NvtError):
    """Bad configuration, file, key or certificate: fix it before restarting (78)."""

    exit_code = EX_CONFIG


class UsageError(NvtError):
    """A flag a command needs in this mode is missing (2, as typer's own usage errors)."""

    exit_code = EX_USAGE


class DiskError(NvtError):
    """A local write failed for a reason of the disk, not of the configuration: full (ENOSPC, EDQUOT),
    too large (EFBIG), failing (EIO) (74). Free space or fix the disk; the same run then works."""

    exit_code = EX_IOERR


DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})  # the disk's fault, not the config's


class VaultUnavailable(NvtError):
    """Vault unreachable, sealed or not initialised (69). `state` is one word or phrase for STATUS and
    logs ("unreachable", "sealed", "not initialised", "standby", "error"); `detail` the reason, if any."""

    exit_code = EX_UNAVAILABLE

    def __init__(self, message: str, *, state: str = "unreachable", detail: str = "") -> None:
        super().__init__(message)
        self.state = state
        self.detail = detail

    @property
    def what(self) -> str:
        """`state (detail)`: Vault's condition without its address."""
        return f"{self.state} ({self.detail})" if self.detail else self.state


class Partial(NvtError):
    """Part of the work is done, part failed (75): a snapshot kept and verified locally whose copy failed."""

    exit_code = EX_TEMPFAIL


class VaultDenied(NvtError):
    """Vault refused: certificate rejected, permission denied, broken role (77)."""

    exit_code = EX_NOPERM


class TokenInvalid(VaultDenied):
    """The token itself is gone: revoked, expired or unknown to Vault."""


class NotFound(VaultDenied):
    """Vault has nothing at `path` (404)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class JwksError(NvtError):
    """Nomad's JWKS cannot be fetched or verified (by Vault, or from this host): 78 for what the admin must fix
    (a wrong CA, a client certificate Nomad demands, a wrong URL), 69 when it is only unreachable."""

    def __init__(self, message: str, code: int = EX_CONFIG) -> None:
        super().__init__(message)
        self.exit_code = code


class NomadError(NvtError):
    """Nomad's HTTP API refused or could not be reached (readiness): 78 (address, CA, an old Nomad), 77 (ACL
    token refused), 69 (unreachable)."""

    def __init__(self, message: str, code: int = EX_UNAVAILABLE) -> None:
        super().__init__(message)
        self.exit_code = code
