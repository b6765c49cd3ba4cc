"""Shamir unseal keys read from a file: the one reader for `unseal` (`--keys-file`, a systemd credential)
and `snapshot restore-test --keys-file`. Never from argv or the environment.

Who may read it: a regular file, owned by the effective user and unreadable by group and others
(0600/0400), the same rule as the client key; a systemd credential (`credential=True`,
`$CREDENTIALS_DIRECTORY/NAME`) is made read-only and readable by the unit's user only by systemd (by
ownership or an ACL, so its owner may be root and its group bits show the ACL mask): only "no access
for others" is checked there.

Format: one key per line, hex or base64 as `bao operator init` prints them (`keys` or `keys_base64`);
blank lines and `#` comments allowed. Or the JSON `operator init -format=json` (or `sys/init`) prints:
its `unseal_keys_hex`, `unseal_keys_b64`, `keys` or `keys_base64` list. A key is 16 to 33 bytes
(OpenBao refuses others: `invalid key: key is shorter than minimum 16 bytes` / `longer than maximum 33
bytes`), all keys the same length (else `all parts must be the same length` at the threshold), no key twice.

Each key is an `UnsealKey`: its `str`/`repr` never show it; `reveal()` gives the hex string to put
in `sys/unseal`'s body, and nowhere else. Errors are `ConfigError` (exit 78), one line naming the
file (and line) and what to do, never a key or a piece of one.
"""


from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.files import unreadable

MIN_BYTES = 16
MAX_BYTES = 33
MAX_FILE_BYTES = 64 * 1024  # a keys file is a few lines; anything larger is not one

_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@dataclass(frozen=True, eq=False)
class UnsealKey:
    """One unseal key share. Never shown: `reveal()` where it must go out (the sys/unseal body)."""

    _value: bytes = field(repr=False)
    line: int = 0  # where it was read, for messages

    def reveal(self) -> str:
        return self._value.hex()

    def __str__(self) -> str:
        return "<unseal key>"

    def __repr__(self) -> str:
        return f"UnsealKey(line={self.line})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("an unseal key is not pickled")


@dataclass(frozen=True, eq=False)
class UnsealKeys:
    """The keys this instance holds, and where they came from (for messages)."""

    source: Path
    keys: tuple[UnsealKey, ...] = field(repr=False)

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[UnsealKey]:
        return iter(self.keys)

    def __getitem__(self, index: int) -> UnsealKey:
        return self.keys[index]

    def __repr__(self) -> str:
        return f"UnsealKeys(source={str(self.source)!r}, count={len(self.keys)})"

    def same_as(self, other: UnsealKeys) -> bool:
        """The same keys, in any order (did a reload change them?)."""
        return sorted(k._value for k in self.keys) == sorted(k._value for k in other.keys)


def decode_key(text: str) -> bytes | None:
    """The bytes of one key given as hex or base64 (hex first, as OpenBao reads it), or None."""
    if _HEX.fullmatch(text) and len(text) % 2 == 0:
        return bytes.fromhex(text)
    if _BASE64.fullmatch(text) and len(text) % 4 == 0:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


JSON_FIELDS = ("unseal_keys_hex", "keys", "unseal_keys_b64", "keys_base64", "keys_b64")


def parse_keys(text: str, source: Path, what: str = "unseal_keys_file") -> tuple[UnsealKey, ...]:
    """Every key in `text`: operator init's JSON, or one per line (blank lines and `#` comments skipped)."""
    if text.lstrip().startswith("{"):
        entries = _json_entries(text, source, what)
    else:
        entries = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if line:
                entries.append((number, f"line {number}", line))
    keys: list[UnsealKey] = []
    seen: dict[bytes, str] = {}
    for number, where, entry in entries:
        value = decode_key(entry)
        if value is None:
            raise ConfigError(
                f"{what} {source}: {where} is not a hex or base64 unseal key: "
                "one key per line, as `bao operator init` prints them"
            )
        if not MIN_BYTES <= len(value) <= MAX_BYTES:
            raise ConfigError(
                f"{what} {source}: {where} is a {len(value)}-byte key, unseal keys are "
                f"{MIN_BYTES} to {MAX_BYTES} bytes: check that the {where.split()[0]} holds one whole key"
            )
        if value in seen:
            raise ConfigError(f"{what} {source}: {where} repeats the key on {seen[value]}: give each key share once")
        if keys and len(value) != len(keys[0]._value):
            raise ConfigError(
                f"{what} {source}: {where} is a {len(value)}-byte key, {entries[0][1]} a "
                f"{len(keys[0]._value)}-byte one: all keys of a cluster have the same length"
            )
        seen[value] = where
        keys.append(UnsealKey(value, number))
    if not keys:
        raise ConfigError(f"{what} {source}: holds no unseal key: put one key per line")
    return tuple(keys)


def _json_entries(text: str, source: Path, what: str) -> list[tuple[int, str, str]]:
    """The keys of operator init's JSON, as (position, where, text)."""
    doc = _json(text)
    if doc is None:
        raise ConfigError(
            f"{what} {source}: starts like JSON but does not parse: give operator init's JSON or one key a line"
        )
    for name in JSON_FIELDS:
        value = doc.get(name) if isinstance(doc, dict) else None
        if isinstance(value, list):
            if not all(isinstance(k, str) for k in value):
                raise ConfigError(f"{what} {source}: {name} holds something else than key strings")
            return [(i, f"key {i} of {name}", k.strip()) for i, k in enumerate(value, start=1)]
    raise ConfigError(f"{what} {source}: JSON without unseal keys: expected one of {', '.join(JSON_FIELDS)}")


def _json(text: str) -> object:
    """The parsed JSON, or None. Returned outside any except block: a JSONDecodeError holds the whole text."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _check_mode(path: Path, st: os.stat_result, what: str, credential: bool) -> None:
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{what} {path}: is a directory: give the file holding the keys")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{what} {path}: not a regular file: give the file holding the keys")
    if credential:
        if mode & 0o007:
            raise ConfigError(
                f"{what} {path}: mode {stat.S_IMODE(mode):04o} lets others read the keys: "
                "check the unit's LoadCredentialEncrypted= (systemd makes credentials private)"
            )
        return
    if mode & 0o077:
        raise ConfigError(f"{what} {path}: mode {stat.S_IMODE(mode):04o} lets others read the keys: chmod 600 {path}")
    euid = os.geteuid()
    if st.st_uid != euid:
        raise ConfigError(
            f"{what} {path}: owned by uid {st.st_uid}, not by this service's user (uid {euid}): "
            f"chown it to the service's user"
        )


def read_keys(path: Path, what: str = "unseal_keys_file", credential: bool = False) -> UnsealKeys:
    """The keys in `path`, after checking who may read it (`credential`: a systemd credential)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise unreadable(what, path, exc) from None
    try:
        st = os.fstat(fd)  # the file opened, not whatever the path names a moment later
        _check_mode(path, st, what, credential)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{what} {path}: larger than {MAX_FILE_BYTES} bytes: not a keys file")
    # Raised outside the except block: a UnicodeDecodeError holds the whole file, and `from None`
    # only hides the context from tracebacks, it still hangs on the exception.
    text = _text(data)
    if text is None:
        raise ConfigError(f"{what} {path}: not text: one hex or base64 key per line")
    return UnsealKeys(source=path, keys=parse_keys(text, path, what))


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
