"""Snapshot verification (archive), receiving and keeping (store), against a REAL raft snapshot taken from a real OpenBao.

The session fixture starts OpenBao on raft storage, writes secrets, takes
`GET /v1/sys/storage/raft/snapshot` with the root token and stops the server.
Damaged copies are made from that file: bytes flipped and cut off in place, or
its entries repacked (so that gzip and tar are sound and only the content is wrong).
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import hashlib
import io
import json
import os
import secrets
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hvac.exceptions
import pytest
import requests

from nomad_vault_token.snapshot import store
from nomad_vault_token.snapshot.archive import Manifest, SnapshotInvalid, verify_stream
from nomad_vault_token.snapshot.retention import Retention, classify, is_partial, plan_retention, snapshot_name
from nomad_vault_token.snapshot.store import verify_file as verify
from testbed.bao import Bao, Certs
from testbed.procs import wait_for

PREFIX = "vault"
T0 = datetime(2026, 11, 23, 19, 29, 42, tzinfo=UTC)


@pytest.fixture(scope="session")
def real_snapshot(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Path:
    """A snapshot as OpenBao streams it, from a raft-backed server holding a few secrets."""
    workdir = tmp_path_factory.mktemp("snapbao")
    server = Bao(workdir / "bao", certs, durable=True)
    try:
        server.start()
        client = server.client()
        client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})

        def first_write() -> bool:  # a new KV v2 mount answers "upgrading" for a moment
            try:
                client.secrets.kv.v2.create_or_update_secret(path="canary0", secret={"value": "x" * 2000 + "0"})
            except hvac.exceptions.InvalidRequest as exc:
                if "Upgrading" in str(exc):
                    return False
                raise
            return True

        wait_for(first_write, 30, "the new KV v2 mount to take writes")
        for i in range(1, 20):
            client.secrets.kv.v2.create_or_update_secret(path=f"canary{i}", secret={"value": "x" * 2000 + str(i)})
        resp = requests.get(
            f"{server.addr}/v1/sys/storage/raft/snapshot",
            headers={"X-Vault-Token": server.root_token},
            verify=str(certs.ca_path),
            stream=True,
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"] == "application/gzip"
        path = workdir / "real.snap"
        with path.open("wb") as f:
            for chunk in resp.iter_content(64 * 1024):
                f.write(chunk)
    finally:
        server.stop()
    return path


@pytest.fixture(scope="session")
def parts(real_snapshot: Path) -> list[tuple[str, bytes]]:
    """The real snapshot's tar entries, in order."""
    out = []
    with tarfile.open(real_snapshot, "r:gz") as archive:
        for member in archive.getmembers():
            data = archive.extractfile(member)
            assert data is not None
            out.append((member.name, data.read()))
    return out


def pack(entries: list[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT, **pax: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as archive:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            info.mtime = 1795462182
            if pax:
                info.pax_headers = dict(pax)
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue())


def sums(entries: list[tuple[str, bytes]], names: tuple[str, ...] = ("meta.json", "state.bin")) -> bytes:
    found = dict(entries)
    return "".join(f"{hashlib.sha256(found[n]).hexdigest()}  {n}\n" for n in names).encode()


def replace(entries: list[tuple[str, bytes]], name: str, data: bytes) -> list[tuple[str, bytes]]:
    return [(n, data if n == name else d) for n, d in entries]


def resummed(entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return replace(entries, "SHA256SUMS", sums(entries))


def write(tmp_path: Path, data: bytes, name: str = "damaged.snap") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def invalid(path: Path, *needles: str) -> str:
    """`path` fails verification as a file, and the same bytes fail the same way streamed in (odd chunk sizes),
    leaving nothing in the directory they were received into."""
    with pytest.raises(SnapshotInvalid) as caught:
        verify(path)
    message = str(caught.value)
    assert caught.value.exit_code == 65
    assert "\n" not in message
    assert message.startswith(f"snapshot {path}: "), message
    for needle in needles:
        assert needle in message, message
    if path.is_file() and not path.is_symlink():
        into = path.parent / f"into-{secrets.token_hex(4)}"
        into.mkdir()
        for size in (1 << 20, 4093):  # as a file is read: the same words; odd chunks: which check fires first may vary
            with pytest.raises(SnapshotInvalid) as streamed:
                store.receive_verified(chunks_of(path.read_bytes(), size), into, PREFIX, "the stream")
            said = str(streamed.value)
            assert said.startswith("snapshot the stream: ") and "\n" not in said
            if size == 1 << 20:
                assert said.removeprefix("snapshot the stream: ") == message.removeprefix(f"snapshot {path}: ")
            assert os.listdir(into) == []
        into.rmdir()
    return message


# ---- the real format ------------------------------------------------------------


def test_real_snapshot_format(real_snapshot: Path, parts: list[tuple[str, bytes]]) -> None:
    """What OpenBao writes: gzip of a ustar archive, four entries, SHA256SUMS over meta.json and state.bin."""
    raw = real_snapshot.read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08"
    assert [n for n, _ in parts] == ["meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed"]
    found = dict(parts)
    lines = found["SHA256SUMS"].decode().splitlines()
    assert sorted(line.split("  ")[1] for line in lines) == ["meta.json", "state.bin"]
    meta = json.loads(found["meta.json"])
    assert set(meta) >= {"Version", "ID", "Index", "Term", "Configuration", "ConfigurationIndex", "Size"}
    assert meta["Size"] == len(found["state.bin"])
    assert found["SHA256SUMS.sealed"]


def test_real_snapshot_verifies(real_snapshot: Path, parts: list[tuple[str, bytes]]) -> None:
    info = verify(real_snapshot)
    meta = json.loads(dict(parts)["meta.json"])
    raw = real_snapshot.read_bytes()
    assert info.source == str(real_snapshot)
    assert info.size == len(raw)
    assert info.sha256 == hashlib.sha256(raw).hexdigest()
    assert (info.index, info.term) == (meta["Index"], meta["Term"])
    assert info.index > 20  # the secrets written are in it
    assert info.state_size == meta["Size"]
    assert info.meta_version == 1
    assert info.snapshot_id == "bolt-snapshot"
    assert info.servers == ("n1",)
    assert info.entries == ("meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed")
    assert info.checked == ("meta.json", "state.bin")


def test_repacked_intact_verifies(tmp_path: Path, real_snapshot: Path, parts: list[tuple[str, bytes]]) -> None:
    """The reader is not tied to Go's exact bytes: Python's ustar, GNU and PAX archives of the same entries pass."""
    want = verify(real_snapshot)
    for fmt, pax in ((tarfile.USTAR_FORMAT, {}), (tarfile.GNU_FORMAT, {}), (tarfile.PAX_FORMAT, {"comment": "x"})):
        info = verify(write(tmp_path, pack(parts, fmt, **pax)))
        assert (info.index, info.term, info.entries) == (want.index, want.term, want.entries)


# ---- damage in place -----------------------------------------------------------------


def test_flipped_byte_in_the_middle(tmp_path: Path, real_snapshot: Path) -> None:
    raw = bytearray(real_snapshot.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    invalid(write(tmp_path, bytes(raw)), "corrupted")


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.25, 0.4, 0.6, 0.75, 0.9, 0.99])
def test_flipped_byte_anywhere_in_the_data(tmp_path: Path, real_snapshot: Path, fraction: float) -> None:
    raw = bytearray(real_snapshot.read_bytes())
    raw[int(len(raw) * fraction)] ^= 0x80
    invalid(write(tmp_path, bytes(raw)))


@pytest.mark.parametrize("keep", [1, 2, 10, 512, 1024, "half", "-9", "-8", "-4", "-1"])
def test_truncated(tmp_path: Path, real_snapshot: Path, keep: int | str) -> None:
    raw = real_snapshot.read_bytes()
    if keep == "half":
        cut = len(raw) // 2
    elif isinstance(keep, str):
        cut = len(raw) + int(keep)
    else:
        cut = keep
    invalid(write(tmp_path, raw[:cut]), "truncated")


def test_empty_file(tmp_path: Path) -> None:
    invalid(write(tmp_path, b""), "empty file")


def test_an_error_body_saved_as_a_snapshot(tmp_path: Path) -> None:
    invalid(write(tmp_path, b'{"errors":["permission denied"]}\n'), "not a gzip file")


@pytest.mark.parametrize("tail", [b"x", b"\0" * 10, "twice"])
def test_trailing_data(tmp_path: Path, real_snapshot: Path, tail: bytes | str) -> None:
    raw = real_snapshot.read_bytes()
    invalid(write(tmp_path, raw + (raw if tail == "twice" else tail)), "trailing data")  # type: ignore[operator]


def test_not_a_file(tmp_path: Path, real_snapshot: Path) -> None:
    invalid(tmp_path, "not a regular file")
    invalid(tmp_path / "missing.snap", "cannot open")
    link = tmp_path / "link.snap"
    link.symlink_to(real_snapshot)
    invalid(link, "cannot open")


# ---- sound gzip and tar, wrong content ---------------------------------------------------


def test_flipped_byte_in_state_bin(tmp_path: Path, parts: list[tuple[str, bytes]]) -> None:
    state = bytearray(dict(parts)["state.bin"])
    state[len(state) // 2] ^= 0x01
    invalid(write(tmp_path, pack(replace(parts, "state.bin", bytes(state)))), "digest mismatch", "state.bin")


def test_flipped_byte_in_meta_json(tmp_path: Path, parts: list[tuple[str, bytes]]) -> None:
    meta = dict(parts)["meta.json"].replace(b'"Term":', b'"Term" :')
    invalid(write(tmp_path, pack(replace(parts, "meta.json", meta))), "digest mismatch", "meta.json")


def test_extra_entry(tmp_path: Path, parts: list[tuple[str, bytes]]) -> None:
    invalid(write(tmp_path, pack([*parts, ("extra.txt", b"hello")])), "unexpected entry 'extra.txt'")
    invalid(write(tmp_path, pack([("extra.txt", b""), *parts])), "unexpected entry 'extra.txt'")


def test_duplicate_entry(tmp_path: Path, parts: list[tuple[str, bytes]]) -> None:
    invalid(write(tmp_path, pack([*parts, parts[1]])), "state.bin appears twice")


@pytest.mark.parametrize("name", ["SHA256SUMS", "meta.json", "state.bin", "SHA256SUMS.sealed"])
def test_missing_entry(tmp_path: Path, parts: list[tuple[str, bytes]], name: str) -> None:
    invalid(write(tmp_path, pack([(n, d) for n, d in parts if n != name])), f"missing {name}")


def test_no_entries(tmp_path: Path) -> None:
    invalid(write(tmp_path, pack([])), "no entries")


def test_non_regular_entry(tmp_path: Path, parts: list[tuple[str, bytes]]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        directory = tarfile.TarInfo("state.bin")
        directory.type = tarfile.DIRTYPE
        archive.addfile(directory)
    invalid(write(tmp_path, gzip.compress(buf.getvalue())), "unexpected tar entry 'state.bin/' of type '5'")


@pytest.mark.parametrize(
    ("sums_text", "needle"),
    [
        ("wrong digest", "digest mismatch: state.bin"),
        (b"", "does not list meta.json"),
        (b"zz  meta.json\n", "SHA256SUMS line 1 is not"),
        ("upper case", "SHA256SUMS line"),
        ("one space", "SHA256SUMS line"),
        ("no newline", "does not end with a newline"),
        ("only meta", "does not list state.bin"),
        ("extra name", "lists other.bin, which a snapshot does not hold"),
        ("twice", "lists meta.json twice"),
        (b"\xff\xfe  meta.json\n", "not text"),
    ],
)
def test_wrong_sha256sums(tmp_path: Path, parts: list[tuple[str, bytes]], sums_text: bytes | str, needle: str) -> None:
    good = sums(parts)
    digest = {n: hashlib.sha256(d).hexdigest() for n, d in parts}
    data = (
        {
            "wrong digest": good.replace(digest["state.bin"].encode(), b"0" * 64),
            "upper case": good.upper().replace(b"META.JSON", b"meta.json").replace(b"STATE.BIN", b"state.bin"),
            "one space": good.replace(b"  ", b" "),
            "no newline": good[:-1],
            "only meta": sums(parts, ("meta.json",)),
            "extra name": good + f"{'1' * 64}  other.bin\n".encode(),
            "twice": good + sums(parts, ("meta.json",)),
        }.get(sums_text)
        if isinstance(sums_text, str)
        else sums_text
    )
    assert data is not None
    invalid(write(tmp_path, pack(replace(parts, "SHA256SUMS", data))), needle)


@pytest.mark.parametrize(
    ("meta", "needle"),
    [
        (b"not json\n", "meta.json unreadable: not JSON"),
        (b"[1, 2]\n", "meta.json unreadable: not a JSON object"),
        (b'{"Term": 3, "Size": 1}\n', "Index is None"),
        (b'{"Index": "39", "Term": 3, "Size": 1}\n', "Index is '39'"),
        (b'{"Index": 0, "Term": 3, "Size": 1}\n', "Index is 0"),
        (b'{"Index": 39, "Term": true, "Size": 1}\n', "Term is True"),
        (b'{"Index": 39, "Term": 3, "Size": 1}\n', "meta.json says state.bin is 1 bytes"),
    ],
)
def test_meta_json_unreadable(tmp_path: Path, parts: list[tuple[str, bytes]], meta: bytes, needle: str) -> None:
    invalid(write(tmp_path, pack(resummed(replace(parts, "meta.json", meta)))), needle)


def test_empty_sealed_sums(tmp_path: Path, parts: list[tuple[str, bytes]]) -> None:
    invalid(write(tmp_path, pack(replace(parts, "SHA256SUMS.sealed", b""))), "SHA256SUMS.sealed is empty")


def test_tar_header_checksum(tmp_path: Path, parts: list[tuple[str, bytes]]) -> None:
    tar = bytearray(gzip.decompress(pack(parts)))
    tar[1024 + 3] ^= 0x01  # the second header's name
    invalid(write(tmp_path, gzip.compress(bytes(tar))), "header checksum mismatch at entry 2")


def test_tar_without_its_end(tmp_path: Path, parts: list[tuple[str, bytes]]) -> None:
    tar = gzip.decompress(pack(parts)).rstrip(b"\0")
    tar += b"\0" * (-len(tar) % 512)
    invalid(write(tmp_path, gzip.compress(tar)), "truncated tar")


def test_data_after_the_end_of_archive(tmp_path: Path, parts: list[tuple[str, bytes]]) -> None:
    tar = gzip.decompress(pack(parts)) + b"junk"
    invalid(write(tmp_path, gzip.compress(tar)), "data after the end-of-archive marker")


def test_lone_zero_block(tmp_path: Path, parts: list[tuple[str, bytes]]) -> None:
    first = gzip.decompress(pack(parts[:1])).rstrip(b"\0")
    first += b"\0" * (-len(first) % 512)
    rest = gzip.decompress(pack(parts[1:]))
    invalid(write(tmp_path, gzip.compress(first + b"\0" * 512 + rest)), "lone zero block")


@pytest.mark.parametrize("how", ["file", "stream"])
def test_constant_memory_on_a_big_state(tmp_path: Path, parts: list[tuple[str, bytes]], how: str) -> None:
    """A 64 MiB state.bin verifies in a fresh process whose peak RSS grows by far less than that: from a file, and
    streamed in 1 MiB chunks into a temp file while it is verified."""
    size = 64 << 20
    block = os.urandom(1 << 20)
    meta = json.loads(dict(parts)["meta.json"])
    meta["Size"] = size
    meta_bytes = json.dumps(meta).encode() + b"\n"
    state_digest = hashlib.sha256()
    for _ in range(64):
        state_digest.update(block)
    sums_bytes = (
        f"{hashlib.sha256(meta_bytes).hexdigest()}  meta.json\n{state_digest.hexdigest()}  state.bin\n".encode()
    )

    class Blocks(io.RawIOBase):
        left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buf: bytearray) -> int:  # type: ignore[override]
            offset = (size - self.left) % len(block)
            n = min(len(buf), len(block) - offset, self.left)
            buf[:n] = block[offset : offset + n]
            self.left -= n
            return n

    path = tmp_path / "big.snap"
    with (
        gzip.open(path, "wb", compresslevel=1) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.USTAR_FORMAT) as archive,
    ):
        for name, data in (
            ("meta.json", meta_bytes),
            ("state.bin", None),
            ("SHA256SUMS", sums_bytes),
            ("SHA256SUMS.sealed", b"sealed"),
        ):
            info = tarfile.TarInfo(name)
            info.size = size if data is None else len(data)
            archive.addfile(info, Blocks() if data is None else io.BytesIO(data))
    into = tmp_path / "into"
    into.mkdir()
    probe = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from nomad_vault_token.snapshot.store import receive_verified, verify_file\n"
        "def chunks(f):\n"
        "    while block := f.read(1 << 20):\n"
        "        yield block\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "if sys.argv[2] == 'file':\n"
        "    info = verify_file(Path(sys.argv[1]))\n"
        "else:\n"
        "    with open(sys.argv[1], 'rb', buffering=0) as f:\n"
        "        _, info = receive_verified(chunks(f), Path(sys.argv[3]), 'vault', 'the stream')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, info.state_size)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(path), how, str(into)], capture_output=True, text=True, check=True
    ).stdout
    grown_kb, state_size = out.split()
    assert int(state_size) == size
    assert int(grown_kb) < 16 * 1024, f"peak RSS grew {grown_kb} kB verifying a {size >> 20} MiB state.bin"


# ---- receive, keep, discard --------------------------------------------------------------


def chunks_of(data: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
def target(tmp_path: Path) -> Path:
    directory = tmp_path / "snapshots"
    directory.mkdir(mode=0o700)
    return directory


def test_receive_writes_an_exclusive_private_temp_file(target: Path, real_snapshot: Path) -> None:
    raw = real_snapshot.read_bytes()
    old = os.umask(0)
    try:
        received = store.receive(chunks_of(raw), target, PREFIX)
    finally:
        os.umask(old)
    assert received.path.parent == target
    assert is_partial(received.path.name, PREFIX)
    assert received.size == len(raw)
    assert received.sha256 == hashlib.sha256(raw).hexdigest()
    assert received.path.read_bytes() == raw
    assert stat.S_IMODE(received.path.stat().st_mode) == 0o600
    assert classify(os.listdir(target), PREFIX).snapshots == ()


@pytest.mark.parametrize("size", [1, 511, 4096, 1 << 20, 3 << 20])
def test_receive_verified_writes_what_it_verified(target: Path, real_snapshot: Path, size: int) -> None:
    """One pass: the temp file holds exactly the bytes streamed, and the info is the file's own verify's."""
    raw = real_snapshot.read_bytes()
    received, info = store.receive_verified(chunks_of(raw, size), target, PREFIX, "the stream")
    assert is_partial(received.path.name, PREFIX)
    assert received.path.read_bytes() == raw
    assert stat.S_IMODE(received.path.stat().st_mode) == 0o600
    assert (received.size, received.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    want = verify(real_snapshot)
    assert dataclasses.replace(info, source=want.source) == want
    assert info.source == "the stream"


def test_receive_verified_leaves_nothing_when_the_stream_breaks(target: Path, real_snapshot: Path) -> None:
    raw = real_snapshot.read_bytes()

    def broken() -> Iterator[bytes]:
        yield raw[:5000]
        raise ConnectionError("connection reset mid-body")

    with pytest.raises(ConnectionError, match="mid-body"):
        store.receive_verified(broken(), target, PREFIX, "the stream")
    assert os.listdir(target) == []


def test_receive_verified_leaves_nothing_when_the_disk_fails(
    target: Path, real_snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writev = os.writev
    calls = []

    def short(fd: int, pieces: list[bytes]) -> int:  # a short write (the disk's last bytes)...
        calls.append(len(pieces))
        return real_writev(fd, [pieces[0][: len(pieces[0]) // 2]])

    def full(fd: int, data: bytes) -> int:  # ...then the rest of it finds the disk full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", short)
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space"):
        store.receive_verified(chunks_of(real_snapshot.read_bytes()), target, PREFIX, "the stream")
    monkeypatch.undo()
    assert calls
    assert os.listdir(target) == []


def test_receive_verified_finishes_short_writes(
    target: Path, real_snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """writev may write less than it was given (a signal, a nearly full disk): the rest follows, in order."""
    real_writev = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, pieces: real_writev(fd, [pieces[0][:7]]))
    raw = real_snapshot.read_bytes()
    received, info = store.receive_verified(chunks_of(raw, 1000), target, PREFIX, "the stream")
    assert received.path.read_bytes() == raw
    assert info.sha256 == hashlib.sha256(raw).hexdigest()


def test_verify_stream_of_nothing() -> None:
    with pytest.raises(SnapshotInvalid, match=r"^snapshot s: empty file$"):
        verify_stream(io.BytesIO(b""), "s")


def test_receive_leaves_nothing_when_the_stream_breaks(target: Path, real_snapshot: Path) -> None:
    raw = real_snapshot.read_bytes()

    def broken() -> Iterator[bytes]:
        yield raw[:5000]
        yield raw[5000:9000]
        raise ConnectionError("connection reset mid-body")

    with pytest.raises(ConnectionError, match="mid-body"):
        store.receive(broken(), target, PREFIX)
    assert os.listdir(target) == []


def test_receive_leaves_nothing_when_the_disk_fails(
    target: Path, real_snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writev = os.writev
    calls = []

    def full(fd: int, pieces: list[bytes]) -> int:  # the first hand-over lands, then the disk is full
        calls.append(len(pieces))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_writev(fd, pieces)

    monkeypatch.setattr(os, "writev", full)
    monkeypatch.setattr(store, "HANDOVER", 4096)
    with pytest.raises(OSError, match="No space"):
        store.receive(chunks_of(real_snapshot.read_bytes()), target, PREFIX)
    monkeypatch.undo()
    assert len(calls) == 2
    assert os.listdir(target) == []


@pytest.mark.parametrize("verified", [True, False], ids=["receive_verified", "receive"])
def test_a_failed_writeback_is_the_run_s_error(
    target: Path, real_snapshot: Path, monkeypatch: pytest.MonkeyPatch, verified: bool
) -> None:
    """The file is fdatasynced behind the writes; Linux reports a lost writeback to one fsync only, so the
    flusher's error is the run's (the final fsync would succeed), and nothing is kept."""
    monkeypatch.setattr(store, "WRITEBACK", 4096)
    monkeypatch.setattr(store, "HANDOVER", 4096)
    failed = threading.Event()

    def lost(fd: int) -> None:
        failed.set()
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", lost)
    raw = real_snapshot.read_bytes()

    def body() -> Iterator[bytes]:
        yield raw[:8192]  # two hand-overs' worth: the flusher is told, and fails
        assert failed.wait(30), "the flusher never ran"
        yield raw[8192:]

    with pytest.raises(OSError, match="Input/output error"):
        if verified:
            store.receive_verified(body(), target, PREFIX, "the stream")
        else:
            store.receive(body(), target, PREFIX)
    monkeypatch.undo()
    assert os.listdir(target) == []


def test_receive_never_reuses_a_name(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = target / ".vault-00000000deadbeef.partial"
    taken.write_bytes(b"someone else's")
    nonces = iter(["00000000deadbeef", "00000000cafef00d"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(nonces))
    received = store.receive([b"abc"], target, PREFIX)
    assert received.path.name == ".vault-00000000cafef00d.partial"
    assert taken.read_bytes() == b"someone else's"


def received_and_kept(target: Path, data: bytes, taken_at: datetime) -> tuple[Path, Manifest]:
    received = store.receive(chunks_of(data), target, PREFIX)
    with store.discard_on_failure(received.path):
        info = verify(received.path)
        name = snapshot_name(PREFIX, taken_at, info.index)
        manifest = Manifest.of(info, name, "2.7.2", taken_at + timedelta(seconds=1))
        return store.keep(received.path, name, manifest), manifest


def test_keep(target: Path, real_snapshot: Path) -> None:
    raw = real_snapshot.read_bytes()
    info = verify(real_snapshot)
    final, manifest = received_and_kept(target, raw, T0)
    name = snapshot_name(PREFIX, T0, info.index)
    assert final == target / name.file_name
    assert sorted(os.listdir(target)) == sorted([name.file_name, name.manifest_name])
    assert final.read_bytes() == raw
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    manifest_path = target / name.manifest_name
    assert stat.S_IMODE(manifest_path.stat().st_mode) == 0o600
    on_disk = json.loads(manifest_path.read_text())
    assert on_disk == {
        "version": 1,
        "file": name.file_name,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "size": len(raw),
        "index": info.index,
        "term": info.term,
        "vault_version": "2.7.2",
        "taken_at": "2026-11-23T19:29:42Z",
        "verified_at": "2026-11-23T19:29:43Z",
        "entries": ["meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed"],
    }
    assert store.read_manifest(manifest_path) == manifest
    assert store.vouches(manifest, final)


def test_keep_never_replaces(target: Path, real_snapshot: Path) -> None:
    raw = real_snapshot.read_bytes()
    first, _ = received_and_kept(target, raw, T0)
    before = sorted(os.listdir(target))
    with pytest.raises(FileExistsError):
        received_and_kept(target, raw, T0)
    assert sorted(os.listdir(target)) == before  # the second temp file is gone, the first snapshot untouched
    assert first.read_bytes() == raw


def test_keep_without_hard_links(target: Path, real_snapshot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    raw = real_snapshot.read_bytes()
    final, _ = received_and_kept(target, raw, T0)
    assert final.read_bytes() == raw
    assert classify(os.listdir(target), PREFIX).partials == ()
    with pytest.raises(FileExistsError):
        received_and_kept(target, raw, T0)
    assert classify(os.listdir(target), PREFIX).partials == ()


def test_a_bad_body_is_discarded(target: Path, real_snapshot: Path) -> None:
    raw = real_snapshot.read_bytes()
    with pytest.raises(SnapshotInvalid, match="truncated"):
        received_and_kept(target, raw[: len(raw) // 2], T0)
    assert os.listdir(target) == []


def test_vouches(target: Path, real_snapshot: Path) -> None:
    final, manifest = received_and_kept(target, real_snapshot.read_bytes(), T0)
    assert store.vouches(manifest, final)
    assert not store.vouches(None, final)
    assert not store.vouches(manifest, target / "other.snap")
    with final.open("r+b") as f:
        f.truncate(100)
    assert not store.vouches(manifest, final)


@pytest.mark.parametrize(
    "data",
    [b"", b"[]", b"{}", b'{"version": 2}', b'{"version": 1, "file": "x"}', b"\xff", b'{"version": 1, "bogus": 1}'],
)
def test_read_manifest_tolerates_junk(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(data)
    assert store.read_manifest(path) is None
    assert store.read_manifest(tmp_path / "missing.json") is None


# ---- receive, verify, keep and retention together -------------------------------------------


def one_run(target: Path, data: bytes, taken_at: datetime, keep: int) -> list[str]:
    """What `snapshot` will do: receive, verify, keep, then retention over what the directory holds."""
    ok = True
    try:
        received_and_kept(target, data, taken_at)
    except SnapshotInvalid:
        ok = False
    _, present = store.survey(target, PREFIX)
    plan = plan_retention(present, Retention(keep=keep), taken_at, ok)
    return store.delete(target, PREFIX, plan.delete)


def test_retention_over_n_plus_2_runs_keeps_n(target: Path, real_snapshot: Path) -> None:
    raw = real_snapshot.read_bytes()
    index = verify(real_snapshot).index
    foreign = [
        "notes.txt",
        "vault-latest.snap",
        f"vault-20200101T000000Z-{index}.snap.bak",
        "other-20200101T000000Z-1.snap",
    ]
    for name in foreign:
        (target / name).write_bytes(b"not ours")
    n = 3
    for run in range(n + 2):
        one_run(target, raw, T0 + timedelta(hours=run), keep=n)
    listing = classify(os.listdir(target), PREFIX)
    assert [s.taken_at for s in listing.snapshots] == [T0 + timedelta(hours=h) for h in (2, 3, 4)]
    assert listing.manifests == set(listing.snapshots)
    assert listing.partials == ()
    assert sorted(listing.foreign) == sorted(foreign)
    for name in foreign:
        assert (target / name).read_bytes() == b"not ours"


def test_a_failed_run_deletes_nothing(target: Path, real_snapshot: Path) -> None:
    raw = real_snapshot.read_bytes()
    for run in range(3):
        one_run(target, raw, T0 + timedelta(hours=run), keep=3)
    before = sorted(os.listdir(target))
    damaged = bytearray(raw)
    damaged[len(raw) // 2] ^= 0x01
    assert one_run(target, bytes(damaged), T0 + timedelta(hours=10), keep=1) == []
    assert sorted(os.listdir(target)) == before


def test_an_unverified_snapshot_is_neither_counted_nor_deleted(target: Path, real_snapshot: Path) -> None:
    raw = real_snapshot.read_bytes()
    index = verify(real_snapshot).index
    orphan = snapshot_name(PREFIX, T0 - timedelta(days=30), index)
    (target / orphan.file_name).write_bytes(raw)  # no manifest: a crash between rename and manifest
    for run in range(3):
        one_run(target, raw, T0 + timedelta(hours=run), keep=1)
    listing, present = store.survey(target, PREFIX)
    assert [(p.name, p.verified) for p in present] == [(orphan, False), (listing.snapshots[-1], True)]


def test_delete_refuses_names_not_ours(target: Path) -> None:
    (target / "notes.txt").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"refusing to delete 'notes\.txt'"):
        store.delete(target, PREFIX, ["notes.txt"])
    with pytest.raises(ValueError, match="refusing"):
        store.delete(target, PREFIX, ["../vault-20261123T192942Z-39.snap"])
    assert (target / "notes.txt").exists()


@pytest.mark.parametrize(
    ("pieces", "handovers"),
    [
        ([], []),
        ([b""], []),
        ([b"a" * 10, b"", b"b" * 5], [[b"a" * 10], [b"b" * 5]]),
        ([b"a" * 3, b"b" * 3, b"c" * 3], [[b"aaa", b"bbb", b"ccc"]]),
        ([b"a" * 4, b"b" * 4, b"c"], [[b"aaaa", b"bbbb"], [b"c"]]),
        ([b"a", b"b", b"c", b"d", b"e"], [[b"a", b"b", b"c"], [b"d", b"e"]]),  # at most 3 pieces
        ([bytearray(b"ab"), memoryview(b"cd")], [[b"ab", b"cd"]]),
    ],
)
def test_small_pieces_are_handed_on_together(pieces: list[bytes], handovers: list[list[bytes]]) -> None:
    """An HTTP body's pieces of a few KiB go on in lists of about HANDOVER bytes (and at most MAX_PIECES, for
    writev): one write and one hand-over each, never joined (a join is a copy)."""
    got = list(store._handovers(pieces, 8, 3))
    assert got == handovers
    assert all(type(piece) in (bytes, bytearray) for handover in got for piece in handover)  # as they came, or bytes
