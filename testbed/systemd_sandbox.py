"""A real systemd (the machine's own) as PID 1 of a private PID and mount namespace, for tests.

The technique of ../shared/systemd-sandbox, carried by the project so that its tests run wherever
it is checked out. `sandbox/sandbox-pid1` is the namespace's first process: it mounts private tmpfs
over /run, /tmp and /var/tmp and masks the boot services that would touch the machine (the shields:
without them, systemd's boot empties the machine's /tmp), copies the test's units in, and execs
systemd. Network, users and the rest of the file system are the machine's own.

    with Sandbox(unit_dir, "nvt-test.target", boot_log, binds=hidden([venv])) as sb:
        sb.ctl("start", "--no-block", "nomad.service")
        sb.wait("nomad.service", lambda p: p["ActiveState"] == "active", 30, "active")
        sb.show("nomad.service", "StatusText", "MainPID")
        sb.exec("cat", "/proc/1/cmdline")

Credentials work as on a booted machine (the namespace's mounts are shared, see sandbox-pid1):
`LoadCredentialEncrypted=` of a file made by `encrypt_credential`, with the sandbox started with
`env={CREDENTIAL_SECRET_ENV: host_key}` so that the machine's own host key is never read nor created.

`down()` (also on leaving the `with`, whatever happened) powers systemd off by its PID and waits;
if it does not go, SIGKILL to that PID ends the namespace and every process in it. Should the test
process itself be killed, the kernel kills the sandbox too (parent-death signal and
`unshare --kill-child`). Only one sandbox runs at a time per machine (a lock file): every
sandbox's systemd uses the same cgroup paths.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from testbed import procs

SYSTEMD = Path("/lib/systemd/systemd")
PID1 = Path(__file__).resolve().parent / "sandbox" / "sandbox-pid1"
# Private inside the sandbox: a unit cannot see the machine's files there.
SHIELDED = (Path("/run"), Path("/tmp"), Path("/var/tmp"))
LOCK = Path("/run/lock/nomad-vault-token-systemd-sandbox.lock")
Props = dict[str, str]


def unavailable() -> str | None:
    """Why a sandbox cannot run here, or None when it can."""
    if not Path("/proc/self/ns/pid").exists():
        return "systemd sandbox: needs Linux namespaces"
    if os.geteuid() != 0:
        return "systemd sandbox: needs root (it mounts and unshares namespaces)"
    for tool in ("unshare", "nsenter", "setpriv"):
        if shutil.which(tool) is None:
            return f"systemd sandbox: needs {tool} (util-linux)"
    if not os.access(SYSTEMD, os.X_OK):
        return f"systemd sandbox: needs systemd at {SYSTEMD}"
    return None


def hidden(paths: Iterable[Path]) -> list[Path]:
    """The directories among `paths` that the sandbox's private /tmp and /var/tmp would hide, nested
    ones folded into their ancestors: what to pass as `binds` (read-only, same path, inside)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(os.path.realpath(raw))
        if path.is_relative_to("/run"):
            raise ValueError(f"{path} is under /run, which the sandbox cannot show its units: move it")
        if any(path.is_relative_to(shield) and path != shield for shield in SHIELDED):
            found.append(path if path.is_dir() else path.parent)
    found.sort(key=lambda p: len(p.parts))
    outer: list[Path] = []
    for path in found:
        if not any(path.is_relative_to(o) for o in outer):
            outer.append(path)
    return outer


def write_target(unit_dir: Path, target: str) -> None:
    """The sandbox's boot target: nothing but itself (tests start their units with `ctl`)."""
    unit_dir.mkdir(parents=True, exist_ok=True)
    (unit_dir / target).write_text("[Unit]\nDescription=test sandbox\nDefaultDependencies=no\n")


def mask(unit_dir: Path, *units: str) -> None:
    """Mask units in the sandbox only (a /dev/null symlink, as `systemctl mask --runtime` does)."""
    for unit in units:
        link = unit_dir / unit
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(os.devnull)


class Sandbox:
    """One systemd as PID 1 of its own PID and mount namespace, with the units of `unit_dir`.

    `pid` is its PID as the machine sees it; PIDs that `show` reports (MainPID) are the
    namespace's own: read them with `exec`, which runs inside.
    """

    def __init__(
        self, unit_dir: Path, target: str, log: Path, binds: Sequence[Path] = (), env: Mapping[str, str] | None = None
    ) -> None:
        self.unit_dir = unit_dir
        self.target = target
        self.log = log
        self.binds = list(binds)
        self.env = dict(env or {})  # added to the sandbox systemd's environment (CREDENTIAL_SECRET_ENV)
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[bytes] | None = None

    # ---- life --------------------------------------------------------------------------------

    def up(self, timeout: float = 30) -> Sandbox:
        """Boot it and wait until its systemctl answers; on any failure, bring it down and raise."""
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        if not (self.unit_dir / self.target).is_file():
            raise FileNotFoundError(f"{self.unit_dir / self.target}: the sandbox needs its target (write_target)")
        self._take_lock(timeout=120)
        try:
            self._boot(timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _take_lock(self, timeout: float) -> None:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        lock = open(LOCK, "ab")  # noqa: SIM115 - held until down()
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock = lock
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise TimeoutError(f"another systemd sandbox held {LOCK} for {timeout}s") from None
                time.sleep(0.1)

    def _boot(self, timeout: float) -> None:
        argv = [
            # If this process dies, the kernel kills unshare, and unshare's death kills the namespace's PID 1.
            "setpriv",
            "--pdeathsig",
            "KILL",
            "unshare",
            "--pid",
            "--fork",
            "--kill-child=SIGKILL",
            "--mount",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            str(PID1),
            str(self.unit_dir.resolve()),
            self.target,
            *(str(b) for b in self.binds),
        ]
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"systemd sandbox exited with {self._proc.returncode} at boot: {self._log_tail()}")
            if not self.pid:
                self.pid = self._systemd_pid()
            if self.pid:
                answer = self._run(["systemctl", "is-system-running"], check=False, timeout=5).stdout.strip()
                if answer in {"running", "degraded", "starting"}:  # the bus is up; our target may still be starting
                    return
            time.sleep(0.05)
        raise TimeoutError(f"systemd sandbox did not come up in {timeout}s: {self._log_tail()}")

    def _systemd_pid(self) -> int:
        """unshare's child once it has become systemd (PID 1 inside), or 0."""
        assert self._proc is not None
        for child in procs.scan():
            if child.ppid != self._proc.pid:
                continue
            try:
                exe = os.readlink(f"/proc/{child.pid}/exe")
            except OSError:
                continue
            if Path(exe).name == "systemd":
                return child.pid
        return 0

    def down(self, timeout: float = 20) -> None:
        """Power it off by PID and wait; SIGKILL if it lingers. Safe to call twice."""
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                if self.pid and proc.poll() is None:
                    # systemd's "poweroff"; if it lingers, SIGKILL to the namespace's PID 1 ends every
                    # process in it, and unshare exits with it.
                    procs.stop(self.pid, signal.SIGRTMIN + 4, timeout)
                procs.stop(proc, None, 10 if self.pid else timeout)
        finally:
            self.pid = 0
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def __enter__(self) -> Sandbox:
        return self.up()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.down()

    # ---- inside ------------------------------------------------------------------------------

    def _run(self, cmd: Sequence[str], *, check: bool, timeout: float) -> subprocess.CompletedProcess[str]:
        if not self.pid:
            raise RuntimeError("the systemd sandbox is not up")
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-m", "-p", *cmd],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"in the sandbox, {' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def exec(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command inside (its /proc, /run and PIDs)."""
        return self._run(cmd, check=check, timeout=timeout)

    def ctl(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        """`systemctl ARGS...` inside; its stdout."""
        return self._run(["systemctl", "--no-pager", *args], check=check, timeout=timeout).stdout

    def show(self, unit: str, *props: str) -> Props:
        """`systemctl show UNIT -p P...` as a dict."""
        out = self.ctl("show", unit, *(f"--property={p}" for p in props))
        values: Props = dict.fromkeys(props, "")
        for line in out.splitlines():
            key, _, value = line.partition("=")
            values[key] = value
        return values

    def wait(
        self, unit: str, predicate: Callable[[Props], bool], timeout: float, what: str, props: Sequence[str] = ()
    ) -> Props:
        """Poll `show` until `predicate` holds; fail naming `what`, the last properties and the log."""
        wanted = tuple(dict.fromkeys(("ActiveState", "SubState", "Result", "NRestarts", "StatusText", *props)))
        deadline = time.monotonic() + timeout
        while True:
            last = self.show(unit, *wanted)
            if predicate(last):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"{unit}: not {what} after {timeout}s; last {last}; boot log: {self._log_tail()}")
            time.sleep(0.05)

    def holds(
        self, unit: str, predicate: Callable[[Props], bool], seconds: float, what: str, props: Sequence[str] = ()
    ) -> Props:
        """Check `predicate` on `show` for `seconds`: fail the first time it does not hold."""
        wanted = tuple(dict.fromkeys(("ActiveState", "SubState", "Result", "NRestarts", "StatusText", *props)))
        end = time.monotonic() + seconds
        while True:
            last = self.show(unit, *wanted)
            if not predicate(last):
                raise AssertionError(f"{unit}: no longer {what}: {last}; boot log: {self._log_tail()}")
            if time.monotonic() > end:
                return last
            time.sleep(0.1)

    def cmdline(self, pid: int | str) -> list[str]:
        """The argv of a process, by its PID inside the sandbox."""
        raw = self.exec("cat", f"/proc/{pid}/cmdline").stdout
        return [arg for arg in raw.split("\0") if arg]

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no boot log)"


# Which host key systemd-creds and the service manager use (systemd's docs/ENVIRONMENT.md): by default
# /var/lib/systemd/credential.secret, which the sandbox does not shield (/var/lib is the machine's own),
# so a sandboxed systemd would read, and `systemd-creds encrypt` create, the machine's host key. The
# tests point both at a key of their own in their work directory instead.
CREDENTIAL_SECRET_ENV = "SYSTEMD_CREDENTIAL_SECRET"


def encrypt_credential(name: str, data: bytes, out: Path, host_key: Path) -> Path:
    """`systemd-creds encrypt --with-key=host --name=NAME - OUT`, the plain text on standard input only
    (never in a file), with `host_key` as the host key (created on first use, 0400)."""
    if shutil.which("systemd-creds") is None:
        raise RuntimeError("systemd-creds is not installed")
    done = subprocess.run(
        ["systemd-creds", "encrypt", "--with-key=host", f"--name={name}", "-", str(out)],
        input=data,
        capture_output=True,
        env={**os.environ, CREDENTIAL_SECRET_ENV: str(host_key)},
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"systemd-creds encrypt exited {done.returncode}: {done.stderr.decode(errors='replace')}")
    return out


def code_reachable(*code: Path) -> str:
    """Test-only drop-in lines that let a hardened unit reach this checkout's Python and code.

    The shipped units say ProtectHome=yes and PrivateTmp=yes; a real install keeps its code in /usr or
    /opt. Here Python may live under /root (pyenv) and a CI clone's virtualenv under /tmp."""
    paths = [Path(sys.base_prefix), Path(sys.prefix), *code]
    lines = []
    if any(p.is_relative_to(Path.home()) or p.is_relative_to("/home") for p in paths):
        lines.append("ProtectHome=read-only")
    if any(p.is_relative_to("/tmp") or p.is_relative_to("/var/tmp") for p in paths):
        lines.append("PrivateTmp=no")
    return "".join(line + "\n" for line in lines)
