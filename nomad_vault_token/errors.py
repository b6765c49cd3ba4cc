"""The project's errors: each carries the exit code documented in DESIGN.md.

Messages are one line, name the file, field or Vault path, and say what to do.
They never contain a token.
"""

from __future__ import annotations

EX_USAGE = 2
EX_UNAVAILABLE = 69
EX_NOPERM = 77
EX_CONFIG = 78


class NvtError(Exception):
    """Base of every error a user can cause; `cli` prints it as one line."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(NvtError):
    """Bad configuration, file, key or certificate: fix it before restarting (78)."""

    exit_code = EX_CONFIG


class VaultUnavailable(NvtError):
    """Vault unreachable, sealed or not initialised (69)."""

    exit_code = EX_UNAVAILABLE


class VaultDenied(NvtError):
    """Vault refused: certificate rejected, permission denied, broken role (77)."""

    exit_code = EX_NOPERM


class TokenInvalid(VaultDenied):
    """The token itself is gone: revoked, expired or unknown to Vault."""
