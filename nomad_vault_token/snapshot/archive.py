"""Raft snapshots on disk: verify one offline, receive one safely, keep it atomically. Stdlib only.

The format (OpenBao 2.7 `physical/raft/snapshot/archive.go`, seen on a real server):
one gzip member (OpenBao writes it with `gzip.NoCompression`: stored blocks, CRC-32 and
length trailer) holding a ustar archive of four regular files, mode 0600, in this order:

    meta.json          raft.SnapshotMeta + "\\n": {"Version":1,"ID":"bolt-snapshot","Index":39,
                       "Term":3,"Peers":null,"Configuration":{"Servers":[...]},
                       "ConfigurationIndex":1,"Size":16713}   (Size: bytes of state.bin)
    state.bin          the BoltDB data
    SHA256SUMS         "<64 lowercase hex>  <name>\\n" for meta.json and state.bin, in Go map
                       order (either order)
    SHA256SUMS.sealed  SHA256SUMS encrypted by the cluster's barrier: a restore without it, or
                       into another cluster, needs `snapshot-force`

then the two zero blocks that end a tar archive and nothing else. OpenBao's own reader
refuses any other entry, so `verify` does too.

`verify_stream` reads a byte stream once, in constant memory, and needs nothing else:
the whole stream's SHA-256 and size, gzip integrity (CRC and length), every tar header's
checksum, each entry's SHA-256 against SHA256SUMS, meta.json's Index/Term/Size against
state.bin, and that nothing follows the gzip member. It does no I/O of its own: the stream
may be a file (`store.verify_file`) or the HTTP body as it arrives, written to disk by the
reader on the way (`store.receive_verified`: one read of the bytes, not two), or an object
in a bucket (`remote`). `Manifest` is what a kept snapshot's `.json` says.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Protocol

from nomad_vault_token.core.errors import EX_DATAERR, NvtError
from nomad_vault_token.snapshot.retention import SnapshotName

CHUNK = 1 << 20
MANIFEST_VERSION = 1

META = "meta.json"
STATE = "state.bin"
SUMS = "SHA256SUMS"
SEALED_SUMS = "SHA256SUMS.sealed"
_SUMMED = (META, STATE)  # what SHA256SUMS lists, no more, no less
_SMALL_LIMIT = 64 * 1024  # meta.json and the sums are a few hundred bytes (OpenBao reads at most 8 KiB)
_BLOCK = 512
_SUM_LINE = re.compile(r"([0-9a-f]{64})  ([^\s]+)")


class SnapshotInvalid(NvtError):
    """A snapshot that failed verification (65): one line naming the file and what is wrong."""

    exit_code = EX_DATAERR


class Readable(Protocol):
    """What `verify_stream` reads from: `read(n)` gives 1..n bytes, b"" at the end (a raw file, a tee)."""

    def read(self, n: int, /) -> bytes | bytearray: ...


class _Bad(Exception):
    """What is wrong, without the file's name (added once, by `_verify`)."""


@dataclass(frozen=True)
class SnapshotInfo:
    """What a verified snapshot holds."""

    source: str  # what was read: a file's path, s3://bucket/key, "the snapshot stream"
    size: int  # bytes of the file
    sha256: str  # hex SHA-256 of the whole file
    index: int  # raft index (meta.json Index)
    term: int  # raft term (meta.json Term)
    state_size: int  # bytes of state.bin (meta.json Size)
    meta_version: int  # raft snapshot metadata version (meta.json Version)
    snapshot_id: str  # meta.json ID, e.g. "bolt-snapshot"
    configuration_index: int  # raft index of the cluster configuration it carries
    servers: tuple[str, ...]  # raft server IDs in that configuration
    entries: tuple[str, ...]  # tar entries, in archive order
    checked: tuple[str, ...]  # entries whose SHA-256 matched SHA256SUMS


# ---- verify -------------------------------------------------------------------


class _Gunzip:
    """The decompressed bytes of the one gzip member in `f`; the SHA-256 and count of every raw byte read."""

    def __init__(self, f: Readable) -> None:
        self._f = f
        self._d = zlib.decompressobj(wbits=31)  # gzip wrapper only: header, CRC-32 and length are checked
        self._buf = b""
        self._pos = 0
        self.raw_sha = hashlib.sha256()
        self.raw_size = 0
        self._pending: bytes | bytearray | None = None

    def peek(self) -> bool:
        """Whether the stream holds any byte (read ahead, kept for the decompressor)."""
        if self._pending is None:
            self._pending = self._raw()
        return bool(self._pending)

    def _raw(self) -> bytes | bytearray:
        if self._pending is not None:
            data, self._pending = self._pending, None
            return data
        data = self._f.read(CHUNK)
        self.raw_sha.update(data)
        self.raw_size += len(data)
        return data

    def _fill(self) -> bool:
        """Decompress more into the buffer; False once the gzip member ended (its trailer checked)."""
        while not self._d.eof:
            data = self._d.unconsumed_tail or self._raw()
            if not data:
                raise _Bad("truncated: the file ends inside the gzip stream")
            try:
                out = self._d.decompress(data, CHUNK)
            except zlib.error as exc:
                raise _Bad(_gzip_problem(str(exc), self.raw_size)) from None
            if out:
                self._buf, self._pos = out, 0
                return True
        return False

    def read(self, n: int) -> bytes:
        """Up to `n` decompressed bytes; b"" at the end of the gzip member."""
        if self._pos >= len(self._buf) and not self._fill():
            return b""
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def read_exact(self, n: int, what: str) -> bytes:
        parts: list[bytes] = []
        left = n
        while left:
            part = self.read(left)
            if not part:
                raise _Bad(f"truncated tar: the archive ends inside {what}")
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def copy(self, n: int, sink: Callable[[bytes], object], what: str) -> None:
        left = n
        while left:
            part = self.read(min(left, CHUNK))
            if not part:
                raise _Bad(f"truncated tar: the archive ends inside {what}")
            sink(part)
            left -= len(part)

    def finish(self) -> None:
        """The rest of the archive is zero padding, the gzip trailer checks out, and nothing follows it."""
        while part := self.read(CHUNK):
            if part.count(0) != len(part):
                raise _Bad("bad tar: data after the end-of-archive marker")
        if self._d.unused_data or self._raw():
            raise _Bad("trailing data after the gzip stream")


def _gzip_problem(detail: str, raw_size: int) -> str:
    if "incorrect header check" in detail or "unknown compression method" in detail:
        return "not a gzip file" if raw_size <= CHUNK else f"corrupted gzip data ({detail})"
    if "incorrect data check" in detail:
        return "corrupted: the gzip CRC-32 does not match the data"
    if "incorrect length check" in detail:
        return "corrupted: the gzip length trailer does not match the data"
    return f"corrupted gzip data ({detail})"


def _number(field: bytes, what: str) -> int:
    """A tar numeric field: octal text, or GNU/PAX-era base-256 when its high bit is set."""
    if field and field[0] & 0x80:
        if field[0] == 0xFF:
            raise _Bad(f"bad tar: negative {what}")
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise _Bad(f"bad tar: {what} field {text[:12]!r} is not a number") from None


def _cstring(field: bytes, what: str) -> str:
    try:
        return field.split(b"\0", 1)[0].decode()
    except UnicodeDecodeError:
        raise _Bad(f"bad tar: {what} is not UTF-8") from None


def _pax(data: bytes) -> dict[str, str]:
    """PAX extended header records: "<len> <key>=<value>\\n"."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        record = data[pos : pos + length]
        if length <= space - pos or not record.endswith(b"\n") or b"=" not in record:
            raise _Bad("bad tar: malformed PAX header")
        key, _, value = record[space - pos + 1 : -1].partition(b"=")
        records[key.decode(errors="replace")] = value.decode(errors="replace")
        pos += length
    return records


@dataclass
class _Entry:
    name: str
    size: int


def _entries(z: _Gunzip) -> Iterator[_Entry]:
    """Each regular file's header, positioned at its data; the caller consumes exactly `size` bytes.

    Stops after the end-of-archive marker (two zero blocks)."""
    pax: dict[str, str] = {}
    long_name: str | None = None
    number = 0
    while True:
        number += 1
        header = z.read_exact(_BLOCK, f"the header of entry {number}")
        if header.count(0) == _BLOCK:
            if z.read_exact(_BLOCK, "the end-of-archive marker").count(0) != _BLOCK:
                raise _Bad("bad tar: a lone zero block inside the archive")
            return
        stored = _number(header[148:156], "checksum")
        unsigned = sum(header[:148]) + 8 * 0x20 + sum(header[156:])
        signed = unsigned - 256 * sum(1 for b in header[:148] + header[156:] if b > 127)
        if stored not in (unsigned, signed):
            raise _Bad(f"bad tar: header checksum mismatch at entry {number}")
        name = _cstring(header[0:100], "an entry name")
        if header[257:263] == b"ustar\0" and (prefix := _cstring(header[345:500], "a name prefix")):
            name = f"{prefix}/{name}"
        size = _number(header[124:136], "size")
        kind = header[156:157]
        if kind in (b"x", b"g", b"L"):
            if size > _SMALL_LIMIT:
                raise _Bad(f"bad tar: a {size}-byte extended header")
            data = z.read_exact(size, "an extended header")
            z.read_exact(-size % _BLOCK, "padding")
            if kind == b"x":
                pax = _pax(data)
            elif kind == b"L":
                long_name = _cstring(data, "a long name")
            continue  # b"g": global PAX records change nothing this reader uses
        name = pax.get("path", long_name if long_name is not None else name)
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise _Bad(f"bad tar: PAX size {pax['size']!r} of {name}") from None
        pax, long_name = {}, None
        if kind not in (b"0", b"\0", b"7"):
            raise _Bad(f"unexpected tar entry {name!r} of type {kind.decode(errors='replace')!r}")
        yield _Entry(name, size)
        z.read_exact(-size % _BLOCK, f"the padding after {name}")


def _read_small(z: _Gunzip, entry: _Entry) -> bytes:
    if entry.size > _SMALL_LIMIT:
        raise _Bad(f"{entry.name} is {entry.size} bytes: far too big for what OpenBao writes there")
    return z.read_exact(entry.size, entry.name)


def _parse_sums(data: bytes) -> dict[str, str]:
    sums: dict[str, str] = {}
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise _Bad(f"{SUMS} is not text") from None
    if not text:
        return sums
    if not text.endswith("\n"):
        raise _Bad(f"{SUMS} does not end with a newline: cut short?")
    for number, line in enumerate(text[:-1].split("\n"), 1):
        m = _SUM_LINE.fullmatch(line)
        if m is None:
            raise _Bad(f"{SUMS} line {number} is not '<64 hex digits>  <name>': {line[:80]!r}")
        digest, name = m.groups()
        if name in sums:
            raise _Bad(f"{SUMS} lists {name} twice")
        sums[name] = digest
    return sums


def _meta_int(meta: dict[str, object], key: str, minimum: int) -> int:
    value = meta.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _Bad(f"{META} unreadable: {key} is {value!r}, not an integer >= {minimum}")
    return value


def _verify(source: str, f: Readable, size: int | None) -> SnapshotInfo:
    if size == 0:
        raise _Bad("empty file")
    z = _Gunzip(f)
    if size is None and not z.peek():
        raise _Bad("empty file")
    order: list[str] = []
    digests: dict[str, str] = {}
    small: dict[str, bytes] = {}
    state_size = 0
    for entry in _entries(z):
        if entry.name in order:
            raise _Bad(f"entry {entry.name} appears twice")
        order.append(entry.name)
        if entry.name == STATE:
            h = hashlib.sha256()
            z.copy(entry.size, h.update, STATE)
            digests[STATE] = h.hexdigest()
            state_size = entry.size
        elif entry.name in (META, SUMS, SEALED_SUMS):
            small[entry.name] = _read_small(z, entry)
            digests[entry.name] = hashlib.sha256(small[entry.name]).hexdigest()
        else:
            raise _Bad(f"unexpected entry {entry.name!r} (OpenBao refuses to restore a snapshot holding it)")
    if not order:
        raise _Bad("bad tar: no entries")
    for required in (SUMS, META, STATE, SEALED_SUMS):
        if required not in order:
            raise _Bad(f"missing {required}")
    sums = _parse_sums(small[SUMS])
    for name in sums:
        if name not in _SUMMED:
            raise _Bad(f"{SUMS} lists {name}, which a snapshot does not hold")
    for name in _SUMMED:
        if name not in sums:
            raise _Bad(f"{SUMS} does not list {name}")
        if sums[name] != digests[name]:
            raise _Bad(f"digest mismatch: {name} does not match its {SUMS} line (corrupted)")
    if not small[SEALED_SUMS]:
        raise _Bad(f"{SEALED_SUMS} is empty")
    try:
        meta = json.loads(small[META])
    except (UnicodeDecodeError, ValueError):
        raise _Bad(f"{META} unreadable: not JSON") from None
    if not isinstance(meta, dict):
        raise _Bad(f"{META} unreadable: not a JSON object")
    index = _meta_int(meta, "Index", 1)
    term = _meta_int(meta, "Term", 1)
    meta_size = _meta_int(meta, "Size", 0)
    if meta_size != state_size:
        raise _Bad(f"{META} says state.bin is {meta_size} bytes, the archive holds {state_size}")
    version = meta.get("Version")
    snapshot_id = meta.get("ID")
    conf_index = meta.get("ConfigurationIndex")
    servers = (meta.get("Configuration") or {}).get("Servers") or []
    z.finish()
    if size is not None and z.raw_size != size:
        raise _Bad(f"changed while being verified ({size} bytes, then {z.raw_size})")
    return SnapshotInfo(
        source=source,
        size=z.raw_size,
        sha256=z.raw_sha.hexdigest(),
        index=index,
        term=term,
        state_size=state_size,
        meta_version=version if isinstance(version, int) else 0,
        snapshot_id=snapshot_id if isinstance(snapshot_id, str) else "",
        configuration_index=conf_index if isinstance(conf_index, int) else 0,
        servers=tuple(str(s.get("ID", "")) for s in servers if isinstance(s, dict)),
        entries=tuple(order),
        checked=_SUMMED,
    )


def verify_stream(f: Readable, source: str, size: int | None = None) -> SnapshotInfo:
    """Check a snapshot read from `f` to its end, in constant memory; SnapshotInvalid (65) names `source` and what
    is wrong. `size`, when known beforehand (a file's), must be what was read. Errors of `f` itself propagate."""
    try:
        return _verify(source, f, size)
    except _Bad as exc:
        raise SnapshotInvalid(f"snapshot {source}: {exc}") from None


# ---- the manifest --------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """What the `.json` beside a kept snapshot says; its presence means `verify` passed before the rename."""

    file: str
    sha256: str
    size: int
    index: int
    term: int
    vault_version: str
    taken_at: str  # ISO 8601 UTC, the time in the file name
    verified_at: str  # ISO 8601 UTC
    entries: tuple[str, ...]
    version: int = MANIFEST_VERSION

    @classmethod
    def of(cls, info: SnapshotInfo, name: SnapshotName, vault_version: str, verified_at: datetime) -> Manifest:
        return cls(
            file=name.file_name,
            sha256=info.sha256,
            size=info.size,
            index=info.index,
            term=info.term,
            vault_version=vault_version,
            taken_at=_iso(name.taken_at),
            verified_at=_iso(verified_at),
            entries=info.entries,
        )

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """ValueError when `data` is not a manifest this version wrote."""
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("version") != MANIFEST_VERSION:
            raise ValueError("not a version 1 snapshot manifest")
        try:
            made = cls(**{**raw, "entries": tuple(raw.get("entries", ()))})
        except TypeError as exc:
            raise ValueError(f"not a snapshot manifest: {exc}") from None
        for key, kind in (("file", str), ("sha256", str), ("size", int), ("index", int), ("term", int)):
            if not isinstance(getattr(made, key), kind):
                raise ValueError(f"manifest field {key} is not {kind.__name__}")
        return made


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
