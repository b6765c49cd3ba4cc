"""The test bed's NOTIFY_SOCKET reads all the time, as systemd does (testbed/agent.py NotifySocket).

test_adoption's reload test failed under load (issue 29): the tracker's WATCHDOG=1 every 200 ms filled a
queue nobody read while the test waited for the agent's reload event, and the agent's own blocking
sd_notify (RELOADING=1, as Nomad's conn.Write blocks) then held its signal loop: "Caught signal: SIGHUP"
and nothing after. Reproduced in a network namespace, where net.unix.max_dgram_qlen is the kernel's 10.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from testbed.agent import NotifySocket
from testbed.procs import wait_for


def test_senders_never_block_while_the_test_reads_nothing(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    sent = 0
    try:
        queue_limit = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
        count = 4 * queue_limit + 100  # far more than any queue holds unread

        def send_all() -> None:
            nonlocal sent
            for n in range(count):
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:  # a fresh sender: no buffer of its own limits it
                    s.settimeout(10)  # blocking, as Nomad's sd_notify is: it waits while the queue is full
                    s.connect(str(notify.path))
                    s.send(f"WATCHDOG=1 {n}".encode())
                sent += 1

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        sender.join(timeout=60)
        assert sent == count, f"a sender blocked after {sent} of {count}: nobody read the notify socket"
        wait_for(lambda: len(notify.drain()) == count, 10, "every message read")
        assert notify.drain() == [f"WATCHDOG=1 {n}" for n in range(count)]  # in the order sent
    finally:
        notify.close()
