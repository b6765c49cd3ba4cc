"""Snapshot files on disk: receive one (verified as it streams in), keep it atomically, survey, delete.

`receive_verified` writes the HTTP body into an exclusive 0600 temp file beside the final name *while*
`archive.verify_stream` reads it: each chunk goes to disk as the verifier consumes it, so the bytes are
read once (gzip, tar, SHA256SUMS and the file's own SHA-256 in the same pass) and memory stays flat. A
body that fails verification, a broken stream, a full disk or an interrupt: the temp file is removed,
nothing is kept. `keep` gives a verified temp file its final name without replacing anything, fsyncs the
directory and writes the manifest; `discard_on_failure` removes the temp file whatever goes wrong in
between. `survey` and `delete` are retention's hands (`retention` decides). Stdlib only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import secrets
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nomad_vault_token.core.files import write_atomic
from nomad_vault_token.snapshot.archive import (
    Manifest,
    SnapshotInfo,
    SnapshotInvalid,
    verify_stream,
)
from nomad_vault_token.snapshot.retention import (
    Listing,
    Present,
    SnapshotName,
    classify,
    only_ours,
    partial_name,
)

MANIFEST_MODE = 0o600
SNAPSHOT_MODE = 0o600


def verify_file(path: Path) -> SnapshotInfo:
    """Check a snapshot file completely, offline, in constant memory; SnapshotInvalid (65) names what is wrong.

    An unreadable file (missing, permission denied) raises SnapshotInvalid too: there is no good snapshot there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SnapshotInvalid(f"snapshot {path}: cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SnapshotInvalid(f"snapshot {path}: not a regular file")
        with os.fdopen(fd, "rb", buffering=0) as f:
            return verify_stream(f, str(path), st.st_size)
    except OSError as exc:
        raise SnapshotInvalid(f"snapshot {path}: cannot read: {exc.strerror}") from None


@dataclass(frozen=True)
class Received:
    """A snapshot body on disk under its temp name: bytes and SHA-256 as written (fsynced)."""

    path: Path
    size: int
    sha256: str


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_exclusive(directory: Path, prefix: str) -> tuple[Path, int]:
    for _ in range(8):
        path = directory / partial_name(prefix, secrets.token_hex(8))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, SNAPSHOT_MODE)
        except FileExistsError:
            continue
        return path, fd
    raise FileExistsError(errno.EEXIST, "no free temp name", str(directory))


def receive(chunks: Iterable[bytes | bytearray], directory: Path, prefix: str) -> Received:
    """Stream `chunks` (an HTTP body) into a new hidden temp file in `directory`, unverified: created exclusively,
    mode 0600 whatever the umask, SHA-256 computed on the way, written as `receive_verified` writes (one writev a
    hand-over, fdatasynced behind the writes), fsynced before returning. What `receive_verified` costs beyond
    this is the verification itself (the bench runs both).

    Whatever fails (the iterator, the disk, an interrupt), the temp file is removed and the error re-raised."""
    path, fd = _create_exclusive(directory, prefix)
    flusher: _Flusher | None = None
    try:
        os.fchmod(fd, SNAPSHOT_MODE)
        flusher = _Flusher(fd)
        digest = hashlib.sha256()
        size = 0
        for pieces in _handovers(chunks):
            for piece in pieces:
                digest.update(piece)
            size += _write_all(fd, pieces)
            flusher.wrote(size)
        flusher.stop()
        os.fsync(fd)
    except BaseException:
        _stop_quietly(flusher)
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)
    return Received(path, size, digest.hexdigest())


class _Aborted(BaseException):
    """The receiving side stopped (a broken stream, the disk, an interrupt): the verifier stops too."""


_END: list[bytes | bytearray] = []
_ABORT = None
QUEUE_DEPTH = 8  # hand-overs between the receiver and the verifier: bounded memory (8 x HANDOVER)
HANDOVER = 1 << 20  # bytes of body per hand-over (and per write)
MAX_PIECES = 512  # pieces per hand-over: one writev each, well under IOV_MAX (1024)
WRITEBACK = 8 << 20  # fdatasync behind the writes after every this many bytes


class _Queued:
    """What the verifier thread reads: the pieces the receiver wrote, in order; `read(n)` at most `n` bytes.

    The pieces go on as they came (the body's blocks, or requests' chunks of a few KiB), in lists, never
    joined: joining them into blocks cost a copy of every byte, and the process spent more than twice as long
    in the kernel (page faults, by perf) as it does now."""

    def __init__(self, handed: queue.Queue[list[bytes | bytearray] | None]) -> None:
        self._q = handed
        self._pieces: Iterator[bytes | bytearray] = iter(())
        self._left: bytes | bytearray = b""
        self._ended = False

    def read(self, n: int, /) -> bytes | bytearray:
        while not self._left:
            piece = next(self._pieces, None)
            if piece is not None:
                self._left = piece
                continue
            if self._ended:
                return b""
            got = self._q.get()
            if got is _ABORT:
                raise _Aborted
            if got is _END:
                self._ended = True
                return b""
            self._pieces = iter(got)
        if len(self._left) <= n:
            head, self._left = self._left, b""
        else:
            head, self._left = self._left[:n], self._left[n:]
        return head


def _handovers(
    chunks: Iterable[bytes | bytearray], size: int | None = None, most: int = MAX_PIECES
) -> Iterator[list[bytes | bytearray]]:
    """The chunks in lists of about `size` (HANDOVER) bytes and at most `most` pieces (one write and one hand-over
    per list, not per piece, and no copy); never an empty piece or list."""
    size = HANDOVER if size is None else size
    pending: list[bytes | bytearray] = []
    held = 0
    for chunk in chunks:
        if not chunk:
            continue
        pending.append(chunk if isinstance(chunk, (bytes, bytearray)) else bytes(chunk))
        held += len(chunk)
        if held >= size or len(pending) >= most:
            yield pending
            pending, held = [], 0
    if pending:
        yield pending


def _write_all(fd: int, pieces: list[bytes | bytearray]) -> int:
    """Write `pieces` in order (one writev; a short write finished piece by piece); the bytes written."""
    done = os.writev(fd, pieces)
    total = 0
    for piece in pieces:
        total += len(piece)
        if done >= len(piece):
            done -= len(piece)
            continue
        view = memoryview(piece)[done:]
        done = 0
        while view:
            view = view[os.write(fd, view) :]
    return total


class _Flusher:
    """The file made durable behind the writes: a thread fdatasyncs it whenever WRITEBACK more bytes were written,
    so the final fsync waits for the last few MiB, not for the whole snapshot (on a disk that takes about as long
    to make 256 MiB durable as the stream takes to arrive, that wait was a fifth of the run).

    A failed fdatasync is raised in the receiving thread (`wrote`, `stop`): Linux reports a lost writeback to one
    fsync of the file only, so the final fsync would not see it again."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._written = 0
        self._synced = 0
        self._stopping = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="snapshot-fdatasync", daemon=True)
        self._thread.start()

    def wrote(self, size: int) -> None:
        """`size` bytes are written so far; raises the flusher's error, if it had one."""
        with self._cond:
            if self._error is not None:
                raise self._error
            self._written = size
            if size - self._synced >= WRITEBACK:
                self._cond.notify()

    def stop(self) -> None:
        """Stop and join the thread (an fdatasync under way ends first); raises its error, if it had one."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and self._written - self._synced < WRITEBACK:
                    self._cond.wait()
                if self._stopping:
                    return
                target = self._written
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                with self._cond:
                    self._error = exc
                return
            with self._cond:
                self._synced = target


def _stop_quietly(flusher: _Flusher | None) -> None:
    """Stop the flusher on the way out of a failure: the error being raised says what went wrong first."""
    if flusher is not None:
        with contextlib.suppress(OSError):
            flusher.stop()


def _hand_over(
    q: queue.Queue[list[bytes | bytearray] | None], item: list[bytes | bytearray] | None, verifier: threading.Thread
) -> bool:
    """Queue `item` for the verifier; False when the verifier has already stopped (it failed)."""
    while verifier.is_alive():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def receive_verified(
    chunks: Iterable[bytes | bytearray], directory: Path, prefix: str, source: str
) -> tuple[Received, SnapshotInfo]:
    """Stream `chunks` into a new hidden temp file in `directory` (as `receive`) while `verify_stream` checks them,
    in one pass; fsynced before returning. SnapshotInvalid names `source`.

    The bytes are read once: this thread receives and writes each hand-over, a verifier thread checks the same
    pieces from a bounded queue (hashing and inflating release the GIL, so the two overlap on two cores); the
    disk is made durable behind them (`_Flusher`). Whatever fails (verification, the iterator, the disk, an
    interrupt), the verifier is stopped and joined, the temp file is removed and the error re-raised."""
    path, fd = _create_exclusive(directory, prefix)
    handed: queue.Queue[list[bytes | bytearray] | None] = queue.Queue(maxsize=QUEUE_DEPTH)
    outcome: list[SnapshotInfo | BaseException] = []

    def verify() -> None:
        try:
            outcome.append(verify_stream(_Queued(handed), source))
        except BaseException as exc:  # handed to the receiving thread, which raises it
            outcome.append(exc)

    verifier = threading.Thread(target=verify, name="snapshot-verify", daemon=True)
    flusher: _Flusher | None = None
    try:
        os.fchmod(fd, SNAPSHOT_MODE)
        verifier.start()
        flusher = _Flusher(fd)
        size = 0
        for pieces in _handovers(chunks):
            size += _write_all(fd, pieces)
            flusher.wrote(size)
            if not _hand_over(handed, pieces, verifier):
                break  # the verifier failed: its error is raised below
        else:
            _hand_over(handed, _END, verifier)
        verifier.join()
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        if result.size != size:  # pragma: no cover - the verifier read every byte written
            raise SnapshotInvalid(f"snapshot {source}: {size} bytes received, {result.size} verified")
        flusher.stop()
        os.fsync(fd)
    except BaseException:
        _stop_quietly(flusher)
        if verifier.is_alive():
            with contextlib.suppress(queue.Full):
                while True:  # make room, then tell the verifier to stop
                    try:
                        handed.get_nowait()
                    except queue.Empty:
                        break
                handed.put_nowait(_ABORT)
            verifier.join()
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    os.close(fd)
    return Received(path, result.size, result.sha256), result


@contextlib.contextmanager
def discard_on_failure(path: Path) -> Iterator[Path]:
    """Remove `path` (a temp file) if the block raises; once `keep` renamed it there is nothing to remove."""
    try:
        yield path
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


def keep(received: Path, name: SnapshotName, manifest: Manifest) -> Path:
    """Give a verified temp file its final name (`name.file_name`, same directory) without replacing anything
    there, fsync the directory, then write the manifest beside it (atomically, 0600). Returns the snapshot's path.

    FileExistsError when that name exists (the temp file stays, for `discard_on_failure`)."""
    if manifest.file != name.file_name:
        raise ValueError(f"manifest names {manifest.file}, not {name.file_name}")
    final = received.parent / name.file_name
    try:
        os.link(received, final)  # atomic and never replaces: two runs in one second keep the first
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
            raise
        # No hard links here (some network filesystems): rename, having looked first.
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "already exists", str(final)) from None
        os.rename(received, final)
    else:
        os.unlink(received)
    try:
        fsync_dir(final.parent)
        write_atomic(final.parent / name.manifest_name, manifest.to_json(), MANIFEST_MODE)
    except OSError:  # a full disk has room for the snapshot, not its manifest: keep neither
        with contextlib.suppress(OSError):
            final.unlink()
        raise
    return final


def read_manifest(path: Path) -> Manifest | None:
    """The manifest at `path`, or None when it is missing or not a manifest."""
    try:
        return Manifest.from_json(path.read_bytes())
    except (OSError, ValueError):
        return None


def vouches(manifest: Manifest | None, snapshot: Path) -> bool:
    """Whether `manifest` speaks for `snapshot` as it is now: same name, same size (a cheap check; `verify` is
    the thorough one)."""
    if manifest is None or manifest.file != snapshot.name:
        return False
    try:
        st = os.stat(snapshot, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == manifest.size


def survey(directory: Path, prefix: str) -> tuple[Listing, list[Present]]:
    """The directory's names sorted into ours and not ours, and each snapshot with whether its manifest vouches for it."""
    listing = classify(os.listdir(directory), prefix)
    present = [
        Present(
            name,
            name in listing.manifests
            and vouches(read_manifest(directory / name.manifest_name), directory / name.file_name),
        )
        for name in listing.snapshots
    ]
    return listing, present


def delete(directory: Path, prefix: str, names: Iterable[str]) -> list[str]:
    """Remove `names` (from `plan_retention`) in order, then fsync the directory; returns what was removed.

    Refuses (ValueError, before removing anything) a name that is not exactly a snapshot or manifest name of `prefix`."""
    wanted = only_ours(names, prefix)
    removed = []
    for name in wanted:
        try:
            (directory / name).unlink()
        except FileNotFoundError:
            continue
        removed.append(name)
    if removed:
        fsync_dir(directory)
    return removed
