"""Servers that must receive nothing from the tool, and record what they do receive: the HTTP policy's
tests (issue 30) run the tool as a real process against them.

`Recorder` is a plain TCP listener that keeps every byte sent to it and answers each request with one
fixed HTTP answer: as an HTTP proxy named in `HTTP_PROXY`/`HTTPS_PROXY` (it answers 502, so a tool
that used it fails), as the plain-HTTP sink a redirect points to, or as the "evil" host a backslash
address would really dial. `Redirector` is an HTTPS server (the test CA's certificate) answering
every request with a redirect to `target` + the path, and keeping each request's line and headers.
`PlainBridge` is plain HTTP in, TLS to a real OpenBao out (an `http://` loopback Vault, the case
where a proxy would read every key and token in clear).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from testbed.proxy import LoopbackListener

if TYPE_CHECKING:
    from testbed.bao import Certs

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
NO_PROXY_VARS = ("NO_PROXY", "no_proxy")


def proxied_env(env: dict[str, str], proxy: str) -> dict[str, str]:
    """`env` with every proxy variable naming `proxy` and no exception for any host."""
    out = {k: v for k, v in env.items() if k not in NO_PROXY_VARS}
    out.update(dict.fromkeys(PROXY_VARS, proxy))
    return out


class Recorder(LoopbackListener):
    """Keeps what each connection sent (headers, and a body up to its Content-Length), answers `answer`."""

    def __init__(self, host: str = "127.0.0.1", answer: bytes = b"") -> None:
        self.host = host
        self.answer = answer or (
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\n{}"
        )
        self.received: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def everything(self) -> bytes:
        with self._lock:
            return b"".join(self.received)

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        data = b""
        try:
            client.settimeout(5)
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and value.strip().isdigit():
                    length = int(value.strip())
            while len(body) < length:
                chunk = client.recv(65536)
                if not chunk:
                    break
                body += chunk
                data += chunk
            client.sendall(self.answer)
        except OSError:
            pass
        finally:
            with self._lock:
                self.received.append(data)
            with contextlib.suppress(OSError):
                client.close()


class Redirector:
    """HTTPS on 127.0.0.1 with the test CA's server certificate: every request answered `status` with
    `Location: target + path`; `seen` keeps each request's method, path and headers (names lower-case)."""

    def __init__(self, certs: Certs, target: str, status: int = 307) -> None:
        self.target = target
        self.status = status
        self.seen: list[dict[str, str]] = []
        trap = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _redirect(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                trap.seen.append(
                    {"method": self.command, "path": self.path, "body": body.decode(errors="replace"),
                     **{k.lower(): v for k, v in self.headers.items()}}
                )
                self.send_response(trap.status)
                self.send_header("Location", trap.target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_DELETE = do_LIST = _redirect

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(certs.server_pem))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.addr = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class PlainBridge(LoopbackListener):
    """Plain HTTP on 127.0.0.1 in, TLS (trusting `ca`) to 127.0.0.1:`port` out: an `http://` loopback Vault."""

    def __init__(self, port: int, ca: str) -> None:
        self.upstream_port = port
        self.ctx = ssl.create_default_context(cafile=ca)
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = self.ctx.wrap_socket(
                socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10), server_hostname="127.0.0.1"
            )
        except OSError:
            client.close()
            return
        # One thread per direction over a TLS socket could hang OpenSSL (testbed/proxy.py): poll both in one.
        client.setblocking(False)
        upstream.setblocking(False)
        try:
            while not self.closed.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                if upstream.pending() and upstream not in ready:
                    ready.append(upstream)
                for src in ready:
                    dst = upstream if src is client else client
                    while True:
                        try:
                            data = src.recv(65536)
                        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                            break
                        if not data:
                            return
                        dst.settimeout(10)
                        try:
                            dst.sendall(data)
                        finally:
                            dst.setblocking(False)
                        if src is client or not upstream.pending():
                            break
        except OSError:
            return
        finally:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.close()
