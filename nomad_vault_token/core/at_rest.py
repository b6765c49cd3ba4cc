"""Whether keys read from a file sit in plain text at rest: the one-line warning `unseal` and `check` give.

Keys at rest belong in an encrypted systemd credential (`LoadCredentialEncrypted=`: systemd decrypts it
into the unit's credentials directory, a ramfs) or in memory-backed files a scheduler renders (Nomad's
`secrets/` directory is a tmpfs). A keys file on persistent storage (ext4, xfs, overlay, a network
file system, ...) is the plain text OpenBao's docs warn about: warn once, in one line, and keep working.

`plain_file_warning` and `mount_fs_type` are pure; `fs_type` reads `/proc/self/mountinfo`.
"""

from __future__ import annotations

import os
from pathlib import Path

MEMORY_FS = frozenset({"tmpfs", "ramfs"})  # gone at power-off: not "at rest"
MOUNTINFO = Path("/proc/self/mountinfo")
HOW = "docs/custody.md, \"Keys encrypted at rest\""


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_fs_type(path: str, mountinfo: str) -> str:
    """The file system type of the mount holding the absolute, resolved `path`, from mountinfo's text
    ("" if no line matches). The longest mount point wins; of equal ones the last (it is on top)."""
    best = ""
    best_len = -1
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        sep = fields.index("-")
        if sep + 1 >= len(fields):
            continue
        point = _unescape(fields[4])
        inside = path == point or point == "/" or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best_len:
            best, best_len = fields[sep + 1], len(point)
    return best


def plain_file_warning(source: Path, fs: str, credential: bool) -> str | None:
    """The one line to warn with when keys read from `source` (on a file system of type `fs`, "" when
    unknown) sit in plain text on persistent storage; None for a credential, a tmpfs/ramfs, or unknown."""
    if credential or not fs or fs in MEMORY_FS:
        return None
    return (
        f"unseal keys {source}: a plain file on persistent storage ({fs}): encrypt it with systemd-creds and "
        f"read it through LoadCredentialEncrypted= and --credential, then remove it ({HOW})"
    )


def fs_type(path: Path) -> str:
    """The file system type holding `path` ("" when it cannot be told: no /proc, an unreadable path)."""
    try:
        resolved = os.path.realpath(path)
        text = MOUNTINFO.read_text(errors="replace")
    except OSError:
        return ""
    return mount_fs_type(resolved, text)


def warning_for(source: Path, credential: bool) -> str | None:
    """`plain_file_warning` for a file on this machine."""
    if credential:
        return None
    return plain_file_warning(source, fs_type(source), credential)
