"""The test bed's port picker: bind(0) then close is what it does, and the kernel may hand the same port out
again; a cluster picks all of its nodes' ports before any node starts, so a repeat is two nodes on one port."""

from __future__ import annotations

from testbed.procs import free_port


def test_free_port_never_gives_a_port_twice() -> None:
    # bind(0) alone repeats within ~200 picks (birthday bound over ~28,000 ephemeral ports): 2,000 picks
    # made the old picker repeat 124 times here.
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < 65536 for p in ports)
