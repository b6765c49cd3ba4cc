"""Secrets read from files or the environment (a token, a JWT): read when needed, never shown, one-line errors."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.files import unreadable
from nomad_vault_token.core.secret import Secret

log = logging.getLogger(__name__)


def read(path: Path, flag: str, what: str) -> Secret:
    """The one secret `path` holds (surrounding whitespace dropped); warns when others can read the file."""
    try:
        st = path.stat()
        raw = path.read_bytes()
    except OSError as exc:
        raise unreadable(flag, path, exc, f"give the file holding the {what}") from None
    try:
        value = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{flag} {path}: not a {what} (not ASCII text)") from None
    if not value:
        raise ConfigError(f"{flag} {path}: is empty: write the {what} into it")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(f"{flag} {path}: does not hold one {what} (spaces or several lines): keep only the {what}")
    if stat.S_IMODE(st.st_mode) & 0o077:
        log.warning("%s %s: others can read it: chmod 600 %s", flag, path, path)
    return Secret(value)


def token(token_file: Path | None) -> Secret:
    """A token from --token-file, else $VAULT_TOKEN."""
    if token_file is not None:
        return read(token_file, "--token-file", "token")
    value = os.environ.get("VAULT_TOKEN", "").strip()
    if not value:
        raise ConfigError("no token: set $VAULT_TOKEN or pass --token-file FILE (a file holding the token)")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError("$VAULT_TOKEN: does not hold one token (spaces or several lines)")
    return Secret(value)
