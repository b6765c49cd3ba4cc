"""The state file: the server token kept across restarts so it is reused, not re-minted.

Written atomically, 0600 in a 0700 directory. Reading is tolerant: anything wrong
with the file is a warning and `None`, never a crash (the caller then mints).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.files import ensure_private_dir, write_private
from nomad_vault_token.core.secret import Secret

log = logging.getLogger(__name__)
VERSION = 1


@dataclass(frozen=True)
class State:
    token: Secret
    accessor: str
    vault_addr: str
    minted_at: float


def read(path: Path) -> State | None:
    """The saved token, or None (with a warning saying why) when it cannot be used."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("state file %s unreadable (%s): a new token will be minted", path, exc.strerror)
        return None
    if not stat.S_ISREG(st.st_mode):
        log.warning("state file %s is not a regular file: ignoring it; remove it", path)
        return None
    if st.st_uid != os.geteuid():
        log.warning("state file %s is owned by uid %d, not us: ignoring it; remove it", path, st.st_uid)
        return None
    if st.st_mode & 0o077:
        log.warning("state file %s is readable by others: ignoring it and minting anew; chmod 600", path)
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != VERSION:
            raise ValueError("version")
        state = State(
            token=Secret(str(data["token"])),
            accessor=str(data["accessor"]),
            vault_addr=str(data.get("vault_addr", "")),
            minted_at=float(data.get("minted_at", 0)),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("state file %s is corrupt: ignoring it, a new token will be minted", path)
        return None
    if not state.token or not state.accessor:
        log.warning("state file %s is incomplete: ignoring it, a new token will be minted", path)
        return None
    return state


def check_writable(path: Path) -> None:
    """Before minting: the state directory can be made private and the file is not in the way."""
    ensure_private_dir(path.parent, "state_dir")
    if (path.exists() or path.is_symlink()) and not path.is_file():
        raise ConfigError(f"state file {path}: exists and is not a regular file: remove it")
    if path.is_symlink():
        raise ConfigError(f"state file {path}: is a symbolic link: remove it")


def write(path: Path, state: State) -> None:
    """Save `state` atomically (0600, directory 0700)."""
    ensure_private_dir(path.parent, "state_dir")
    doc = {
        "version": VERSION,
        "token": state.token.reveal(),
        "accessor": state.accessor,
        "vault_addr": state.vault_addr,
        "minted_at": state.minted_at,
    }
    write_private(path, (json.dumps(doc, indent=1) + "\n").encode(), "state file")
