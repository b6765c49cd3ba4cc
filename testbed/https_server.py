"""A small HTTPS server on 127.0.0.1 for the test bed's stand-ins of Nomad's HTTP API (`nomad_identity.py`,
`nomad_standin/variables.py`): started on a thread, stopped by `stop()`, and the two replies Nomad's API gives
(JSON with its headers, or plain text, which is how Nomad writes its errors: `command/agent/http.go`)."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Replies(BaseHTTPRequestHandler):
    """A quiet handler with Nomad's two kinds of answer."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, code: int, body: Any, **headers: str) -> None:
        self._send(code, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})

    def _text(self, code: int, body: str) -> None:
        self._send(code, body.encode(), {})

    def _send(self, code: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class HTTPSServer:
    """`start(handler, ctx)` serves on 127.0.0.1:`port` (0: any free one); `stop()` shuts it and its thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "not started"
        return int(self._httpd.server_address[1])

    def start(self, handler: type[BaseHTTPRequestHandler], ctx: ssl.SSLContext, port: int = 0) -> None:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        httpd.daemon_threads = True
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = None
        self._thread = None
