"""What `install` must do: the files and directories it wants, compared with what is there. Pure.

`commands/install.py` looks at the disk (`Seen`), asks `plan` for the steps, applies them and
reports them; nothing here touches the file system, so every decision is testable on its own.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from nomad_vault_token.core.errors import ConfigError

Kind = Literal["file", "dir"]
Found = Literal["missing", "file", "dir", "symlink", "other"]
Action = Literal["create", "update", "unchanged"]

UNIT_MODE = 0o644
CONFIG_MODE = 0o640
CONFIG_DIR_MODE = 0o750
PRIVATE_DIR_MODE = 0o700
PARENT_DIR_MODE = 0o755

CONFIG_HEADER = (
    "# Written by `nomad-vault-token install`: the next install overwrites changes made here.\n"
    "# Keys not set here take their defaults (see `nomad-vault-token run --help`).\n"
)


@dataclass(frozen=True)
class Want:
    """A file or directory `install` wants at `path`.

    `keep`: create it if missing, else leave it exactly as it is (a parent directory, or a
    config file nobody asked to change). `quiet`: list it only when it is created.
    """

    path: Path
    kind: Kind
    mode: int
    content: bytes = b""
    keep: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class Seen:
    """What is at a path now. `mode` is the permission bits; `content` is read for files only."""

    found: Found
    mode: int | None = None
    content: bytes | None = None

    @classmethod
    def from_stat(cls, st_mode: int, content: bytes | None = None) -> Seen:
        if stat.S_ISLNK(st_mode):
            return cls("symlink")
        if stat.S_ISDIR(st_mode):
            return cls("dir", stat.S_IMODE(st_mode))
        if stat.S_ISREG(st_mode):
            return cls("file", stat.S_IMODE(st_mode), content)
        return cls("other", stat.S_IMODE(st_mode))


MISSING = Seen("missing")


@dataclass(frozen=True)
class Step:
    """One thing to do (or not). `rewrite` False with `update` means only the mode differs."""

    want: Want
    action: Action
    rewrite: bool = False

    @property
    def listed(self) -> bool:
        return self.action != "unchanged" or not self.want.quiet

    def label(self, check: bool) -> str:
        """The action as reported: created/updated/unchanged, or would create/would update with --check."""
        if self.action == "unchanged":
            return "unchanged"
        if check:
            return f"would {self.action}"
        return "created" if self.action == "create" else "updated"


def plan(wants: Sequence[Want], seen: Mapping[Path, Seen]) -> list[Step]:
    """One step per want, in order; a ConfigError for anything in the way that `install` must not replace."""
    return [_step(want, seen.get(want.path, MISSING)) for want in wants]


def _step(want: Want, seen: Seen) -> Step:
    if seen.found == "missing":
        return Step(want, "create", rewrite=want.kind == "file")
    if seen.found == "symlink":
        hint = " (a masked unit? `systemctl unmask` it)" if want.path.suffix == ".service" else ""
        raise ConfigError(
            f"{want.path}: is a symbolic link{hint}: install writes a real {want.kind} here; remove the link first"
        )
    if seen.found != want.kind:
        raise ConfigError(
            f"{want.path}: exists and is not a {'regular file' if want.kind == 'file' else 'directory'}: "
            "move it away or choose another path"
        )
    if want.keep:
        return Step(want, "unchanged")
    rewrite = want.kind == "file" and seen.content != want.content
    if rewrite or seen.mode != want.mode:
        return Step(want, "update", rewrite=rewrite)
    return Step(want, "unchanged")


def unit_changed(steps: Iterable[Step], unit_path: Path) -> bool:
    """Whether the unit file is created or updated: then systemd must `daemon-reload`."""
    return any(s.want.path == unit_path and s.action != "unchanged" for s in steps)


def under_root(root: Path, path: PurePosixPath | Path) -> Path:
    """`path` (absolute, as the installed system sees it) inside `root`."""
    if not path.is_absolute():
        raise ConfigError(f"{path}: must be an absolute path")
    return root / path.relative_to("/")


def parents_to_create(paths: Iterable[Path], stop: Path) -> list[Path]:
    """The ancestors of `paths` strictly below `stop`, outermost first, without repeats."""
    out: list[Path] = []
    for path in paths:
        chain = [p for p in path.parents if p != stop and stop in p.parents]
        for parent in reversed(chain):
            if parent not in out:
                out.append(parent)
    return out


def render_toml(values: Mapping[str, Any]) -> str:
    """A config file with exactly `values` (str, bool, int or a list of str), in the given order."""
    lines = [CONFIG_HEADER]
    for key, value in values.items():
        lines.append(f"{key} = {_toml_value(value)}\n")
    return "".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(_toml_string(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
