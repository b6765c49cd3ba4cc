"""The agent as the tracker sees it: a process it did not start and must never disturb by accident.

`fork_beside` double-forks a detached process just before `run` execs the agent (the agent never has
to reap it), and hands it an `AgentProcess`: the agent's PID and pidfd (the tracker exits when the agent
does), waiting until the exec has happened, and the only ways the tracker touches the agent: a reload
(SIGHUP) and a stop (the unit's stop signal). Like consul-template's `child/`: a process handle, no policy.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)


class AgentProcess:
    def __init__(self, pid: int, pidfd: int, stop_signal: signal.Signals) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.stop_signal = stop_signal

    def wait_for_exec(self, ready_fd: int) -> bool:
        """True once the agent has been exec'd (our end of the pipe reads EOF and the PID lives)."""
        poller = select.poll()
        poller.register(ready_fd, select.POLLIN | select.POLLHUP)
        poller.register(self.pidfd, select.POLLIN)
        while True:
            events = dict(poller.poll())
            if self.pidfd in events:
                return False
            if ready_fd in events and not os.read(ready_fd, 1):
                os.close(ready_fd)
                return not self.gone(0.2)

    def gone(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True when the agent has exited."""
        readable, _, _ = select.select([self.pidfd], [], [], max(timeout, 0))
        return bool(readable)

    def reload(self, why: str) -> None:
        """SIGHUP: Nomad re-reads its config files (callers check first that its handler is up)."""
        self.signal(signal.SIGHUP, why)

    def stop(self, why: str) -> None:
        """The unit's stop signal: the agent exits and systemd (Restart=always) starts it again."""
        self.signal(self.stop_signal, why)

    def signal(self, sig: signal.Signals, why: str) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return
        log.info("%s; agent pid %d sent %s", why, self.pid, sig.name)


def fork_beside(stop_signal: signal.Signals, body: Callable[[AgentProcess, int], int]) -> None:
    """Start `body(agent, ready_fd)` detached; it should begin once this process has exec'd the agent.

    This process is about to become the agent (exec keeps its PID); `ready_fd` reads EOF once it has."""
    agent_pid = os.getpid()
    pidfd = os.pidfd_open(agent_pid)
    ready_r, ready_w = os.pipe()  # both close-on-exec: exec closes ready_w, the child sees EOF
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked process, observed by the tests
        code = 0
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            os.close(ready_w)
            _quiet_stdin()
            code = body(AgentProcess(agent_pid, pidfd, stop_signal), ready_r)
        except BaseException:  # the agent must never notice the tracker failing
            log.exception("tracker failed")
            code = 1
        finally:
            os._exit(code)
    os.waitpid(child, 0)
    os.close(ready_r)
    os.close(pidfd)


def _quiet_stdin() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
