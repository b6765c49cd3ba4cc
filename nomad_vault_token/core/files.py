"""Atomic, private file writes: a `mkstemp` temp file in the same directory, fsync, rename."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Mapping
from pathlib import Path

from nomad_vault_token.core.errors import ConfigError


def unreadable(what: str, path: Path, exc: OSError, fix: str = "check the path in the config") -> ConfigError:
    """The one-line error for a file that cannot be read: names the setting or flag, the file, what to do.

    `fix` is said for a missing file or a directory given for a file ("give the file holding ...")."""
    if isinstance(exc, FileNotFoundError):
        return ConfigError(f"{what} {path}: file not found: {fix}")
    if isinstance(exc, IsADirectoryError):
        return ConfigError(f"{what} {path}: is a directory: {fix}")
    if isinstance(exc, PermissionError):
        return ConfigError(f"{what} {path}: permission denied: make it readable by this service's user")
    return ConfigError(f"{what} {path}: cannot read: {exc.strerror}")


def read_bytes(path: Path, what: str, fix: str = "check the path in the config") -> bytes:
    """The bytes of `path`, or `unreadable`'s one line."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise unreadable(what, path, exc, fix) from None


def ensure_private_dir(path: Path, what: str) -> None:
    """Create `path` 0700 if missing; refuse one that group or others can enter."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except PermissionError:
        raise ConfigError(f"{what} {path}: permission denied: create it owned by this service's user") from None
    except FileExistsError:
        raise ConfigError(f"{what} {path}: exists and is not a directory: remove it or choose another") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot create: {exc.strerror}") from None
    if not path.is_dir():
        raise ConfigError(f"{what} {path}: exists and is not a directory: remove it or choose another")
    if st.st_mode & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError:
            raise ConfigError(f"{what} {path}: others can enter it: chmod 700 {path}") from None


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Temp file beside `path`, exact mode, fsync, rename, fsync the directory: old or new, never half.

    The temp file is made by `mkstemp`: a random name, `O_CREAT|O_EXCL` (never a file someone else
    made, never through a symlink), 0600 from the start; and the file opened must be this process's
    (its owner is our effective uid) before a byte goes in. In a shared sticky directory, nobody can
    pre-create the name, hand us their file, or make us write through their link.

    Raises OSError; the temp file is removed first.
    """
    import tempfile

    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        try:
            if os.fstat(fd).st_uid != os.geteuid():
                raise PermissionError(errno.EPERM, "the temp file is not ours", name)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_private(path: Path, data: bytes, what: str) -> None:
    """Write `data` to `path` atomically with mode 0600; old or new content, never half."""
    try:
        write_atomic(path, data, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"{what} {path}: cannot write: {exc.strerror}: check the directory's owner and mode"
        ) from None


def publish_json(path: Path, doc: Mapping[str, object]) -> None:
    """A process's view for `status` (tracker.json, unseal.json): one JSON line, 0600, written atomically.

    Raises OSError; the callers log it (a view is never worth stopping for)."""
    import json

    write_atomic(path, (json.dumps(doc) + "\n").encode(), 0o600)
