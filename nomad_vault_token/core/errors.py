"""The project's errors: each carries the exit code documented in DESIGN.md.

Messages are one line, name the file, field or Vault path, and say what to do.
They never contain a token.
"""

from __future__ import annotations

import errno

# Every exit code the tool uses (DESIGN.md, README "Exit codes"); sysexits.h names where one exists.
EX_OK = 0
EX_FAILED = 1  # status: no token kept yet; install: systemctl daemon-reload failed
EX_USAGE = 2
EX_DATAERR = 65  # bad data: unseal keys Vault rejects, a snapshot that fails verification
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70  # internal error: a bug (any exception that is not an NvtError); `core/internal_error`
EX_IOERR = 74  # I/O: the disk is full or failing (a snapshot that cannot be written)
EX_TEMPFAIL = 75  # partial: some nodes unsealed, others not, or waiting for a seal migration; a snapshot kept but a copy of it failed
EX_NOPERM = 77
EX_CONFIG = 78
EX_INTERRUPTED = 130


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
    logs ("unreachable", "sealed", "not initialised", "error"); `detail` the reason, if any."""

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
