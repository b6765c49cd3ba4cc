"""Private writes in a shared sticky directory, against another user who got there first (issue 30, finding 5).

Real processes: the writer is a forked child of its own PID (the PID the old `.NAME.PID.tmp` name was made of),
the other user a forked child that dropped to `nobody` with setgid/setuid. The other user pre-creates the names
the old code would use (a file of theirs, or a symlink to a file of theirs), then the writer writes a token there:
the result must be the writer's own file, 0600, with the other user's files untouched and not followed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.files import write_private

NOBODY = 65534
SECRET = b"s.the-token-nobody-may-read\n"
BAIT = b"nobody's own file\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user (nobody)")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A world-writable sticky directory (like /tmp) that `nobody` can reach."""
    d = Path(tempfile.mkdtemp(prefix="nvt-sticky-"))
    os.chmod(d, 0o1777)  # noqa: S103 - the shared directory under test
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _as_nobody(action: Callable[[], None]) -> None:
    """Run `action` in a child process that is user and group nobody; fail if it fails."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the other user's set-up failed"


def _writer(target: Path) -> tuple[int, int]:
    """Fork the writer; it waits on a pipe until the other user is ready. Returns (pid, write end of the pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            os.close(w)
            os.read(r, 1)
            write_private(target, SECRET, "--output")
            code = 0
        except ConfigError:
            code = 2
        finally:
            os._exit(code)
    os.close(r)
    return pid, w


def _go(pid: int, w: int) -> int:
    os.write(w, b"x")
    os.close(w)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("trap", ["their-file", "their-links"])
def test_a_pre_created_name_gets_neither_the_token_nor_our_write(shared: Path, trap: str) -> None:
    target = shared / "token"
    pid, w = _writer(target)
    old_tmp = shared / f".token.{pid}.tmp"  # the name the old write_atomic used, predictable from the PID
    bait = shared / "bait"

    def set_trap() -> None:
        bait.write_bytes(BAIT)
        os.chmod(bait, 0o666)  # noqa: S103 - the other user's file
        if trap == "their-file":
            old_tmp.write_bytes(BAIT)
            os.chmod(old_tmp, 0o666)  # noqa: S103 - the other user's file
        else:
            old_tmp.symlink_to(bait)
            target.symlink_to(bait)

    _as_nobody(set_trap)
    assert _go(pid, w) == 0, "the write failed: a pre-created name stopped it"

    st = os.lstat(target)
    assert stat.S_ISREG(st.st_mode), "the token file is not a regular file of its own"
    assert st.st_uid == os.geteuid(), f"the token file is owned by uid {st.st_uid}: they can chmod it and read it"
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert target.read_bytes() == SECRET
    # Their files: untouched, not followed, still theirs.
    assert bait.read_bytes() == BAIT and os.lstat(bait).st_uid == NOBODY
    old = os.lstat(old_tmp)
    assert old.st_uid == NOBODY
    if trap == "their-file":
        assert old_tmp.read_bytes() == BAIT
    # Nothing of ours left behind but the token.
    assert sorted(p.name for p in shared.iterdir()) == sorted(["token", "bait", old_tmp.name])
