"""TCP proxies on 127.0.0.1 for faults a real Vault cannot show on cue. Threads, bounded; stopped by `close()`.

`LoopbackListener` is the listener and accept loop they share; `DelayProxy` delays each connection
`delay` seconds before forwarding, and with `cut_after` closes it once that many bytes of the server's
answers went through (for the client, a server that died mid-stream); while `blackhole` is set it
accepts and forwards nothing, either way, on new connections and on those already open (a route that
drops packets: the bytes flow again once it is cleared), and a subclass may pick the upstream port per
connection (`upstream_port`, e.g. a load balancer's active node). `CountingProxy` terminates TLS in
front of one OpenBao node and counts the requests (the unseal tests, the unseal bench); with `record`, it
keeps what the clients sent (the HTTP policy's tests read the headers).
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testbed.bao import Certs
    from testbed.raft_cluster import Node


class LoopbackListener:
    """Listens on 127.0.0.1 and hands each accepted connection to `_serve` in a thread of its own.

    Subclasses set their own attributes before calling `__init__`: accepting starts at once."""

    def __init__(self, backlog: int = 16) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(backlog)
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def addr(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        self.thread.join(5)


class DelayProxy(LoopbackListener):
    def __init__(self, target_port: int, delay: float = 0.0, cut_after: int | None = None) -> None:
        self.target_port = target_port
        self.delay = delay
        self.cut_after = cut_after
        self.connections = 0
        self.refused = 0  # connections whose upstream could not be reached
        self.cuts = 0  # connections closed after `cut_after` bytes of answers
        self.blackhole = threading.Event()  # set: nothing goes through, either way, until cleared
        super().__init__(backlog=64)

    def upstream_port(self) -> int:
        """Where this connection goes: `target_port`, unless a subclass knows better."""
        return self.target_port

    def _serve(self, client: socket.socket) -> None:
        self.connections += 1
        deadline = time.monotonic() + self.delay
        while (time.monotonic() < deadline or self.blackhole.is_set()) and not self.closed.is_set():
            time.sleep(0.05)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port()), timeout=5)
        except OSError:
            self.refused += 1
            client.close()
            return
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        answered = 0
        try:
            while not self.closed.is_set():
                if self.blackhole.is_set():
                    time.sleep(0.05)
                    continue
                for key, _ in sel.select(0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    if key.fileobj is upstream and self.cut_after is not None:
                        if answered + len(data) >= self.cut_after:
                            key.data.sendall(data[: self.cut_after - answered])
                            self.cuts += 1
                            return
                        answered += len(data)
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()


class CountingProxy(LoopbackListener):
    """TLS in (the cluster's server certificate), TLS out to one node: one upstream connection per
    client connection, and a count of the `POST /v1/sys/unseal` requests that went through."""

    def __init__(self, node: Node, certs: Certs, record: bool = False) -> None:
        self.node = node
        self.record = record
        self.heads = bytearray()  # with `record`: every byte the clients sent, decrypted
        self.unseals = 0
        self.requests = 0
        self.lines: list[str] = []  # "METHOD /v1/path" of every request seen, in order
        self._lock = threading.Lock()
        self.server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_ctx.load_cert_chain(str(certs.server_pem))
        self.client_ctx = ssl.create_default_context(cafile=str(certs.ca_path))
        self.sockets: list[socket.socket] = []
        super().__init__()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(10)
            client = self.server_ctx.wrap_socket(raw, server_side=True)
            upstream = self.client_ctx.wrap_socket(
                socket.create_connection(("127.0.0.1", self.node.port), timeout=10), server_hostname="127.0.0.1"
            )
        except OSError:
            raw.close()
            return
        for s in (client, upstream):
            self.sockets.append(s)
        self._pipe(client, upstream)

    def _pipe(self, client: ssl.SSLSocket, upstream: ssl.SSLSocket) -> None:
        """Both directions in ONE thread: an SSL socket read in one thread and written in another (what
        two pipe threads did) can hang OpenSSL, which showed as a proxied request timing out now and
        then. Non-blocking reads: a TLS 1.3 session ticket makes a socket readable with no data."""
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, (client, upstream, True))
        sel.register(upstream, selectors.EVENT_READ, (upstream, client, False))
        for s in (client, upstream):
            s.setblocking(False)
        try:
            while not self.closed.is_set():
                for key, _ in sel.select(0.2):
                    src, dst, count = key.data
                    while True:
                        try:
                            data = src.recv(65536)
                        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                            break
                        if not data:
                            return
                        if count:
                            with self._lock:
                                self.requests += sum(data.count(m) for m in (b"GET /v1/", b"POST /v1/"))
                                self.unseals += data.count(b"POST /v1/sys/unseal ")
                                if self.record:
                                    self.heads += data
                                self.lines += [
                                    f"{m.decode()} {p.decode()}"
                                    for m, p in re.findall(rb"(GET|PUT|POST|DELETE|PATCH|LIST) (/v1/\S+) HTTP/", data)
                                ]
                        dst.settimeout(10)
                        try:
                            dst.sendall(data)
                        finally:
                            dst.setblocking(False)
                        if not src.pending():
                            break
        except OSError:
            pass
        finally:
            sel.close()
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        super().close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()
