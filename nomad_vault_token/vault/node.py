"""The per-node prober of the unsealer: one numbered, kept-alive connection to one node, no token.

Unseal keys travel in request bodies only; a failure raises `NodeUnreachable` with no request attached
(requests' exceptions hold the prepared request, an unseal key in its body). Statuses are data here
(a node answering 503 is a state the unsealer reads, not an error).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nomad_vault_token.vault.errors import connection_reason

if TYPE_CHECKING:
    import socket

    import requests

    from nomad_vault_token.core.config import Settings


class NodeUnreachable(Exception):
    """A node did not answer (refused, timeout, TLS, not Vault). `problem` is a few words for STATUS;
    it never holds a request body (and so never an unseal key)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class NodeAnswer:
    """One HTTP answer from a node: its status code and JSON body ({} when there is none)."""

    status: int
    body: Mapping[str, Any]


class NodeClient:
    """One Vault node as the unsealer talks to it: no token, ONE kept-alive HTTPS connection, numbered.

    `connection` is how many connections this client has had to open so far: it changes exactly when
    urllib3 had to connect again (the first request, a connection the server closed, a request that
    timed out and left its connection unusable). `unseal.plan` tells "sealed on purpose" from
    "restarted" by it. The pool holds one connection (`pool_maxsize=1`, blocking), so the probes and
    the keys all travel over the same one; use a client from one thread at a time.

    Every request has `timeout` seconds to connect and as long for each read. Unseal keys go in the
    request body only; errors never carry a body or a URL with a query.
    """

    def __init__(self, addr: str, settings: Settings, timeout: float) -> None:
        self.addr = addr.rstrip("/")
        self.settings = settings
        self.timeout = timeout
        self._connects = 0
        self._session: requests.Session | None = None
        self._sock: socket.socket | None = None  # the socket of the (one) kept-alive connection

    @property
    def connection(self) -> int:
        return self._connects

    def idle_socket(self) -> socket.socket | None:
        """The kept-alive connection's socket, for a caller to select() on while no request is under
        way (the caller's to ensure): it turns readable when the server closes it, which a restarting
        server does at once. None when there is no open connection."""
        sock = self._sock
        try:
            return sock if sock is not None and sock.fileno() >= 0 else None
        except OSError:
            return None

    def close(self) -> None:
        self._sock = None
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _new_session(self) -> requests.Session:
        from requests.adapters import HTTPAdapter
        from urllib3.connection import HTTPConnection, HTTPSConnection
        from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

        from nomad_vault_token.vault.http import policy_session

        client = self
        server_name = self.settings.tls_server_name

        class CountingHTTPS(HTTPSConnection):
            def connect(self) -> None:
                client._connects += 1
                super().connect()
                client._sock = self.sock

        class CountingHTTP(HTTPConnection):
            def connect(self) -> None:
                client._connects += 1
                super().connect()
                client._sock = self.sock

        class PoolHTTPS(HTTPSConnectionPool):
            ConnectionCls = CountingHTTPS

        class PoolHTTP(HTTPConnectionPool):
            ConnectionCls = CountingHTTP

        class Adapter(HTTPAdapter):
            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                if server_name:
                    kwargs["server_hostname"] = server_name
                    kwargs["assert_hostname"] = server_name
                super().init_poolmanager(*args, **kwargs)
                self.poolmanager.pool_classes_by_scheme = {"http": PoolHTTP, "https": PoolHTTPS}

        session = policy_session()  # no proxy, no redirect, this CA and certificate on every request
        adapter = Adapter(pool_connections=1, pool_maxsize=1, pool_block=True, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.verify = str(self.settings.ca_cert) if self.settings.ca_cert else True
        cert, key = self.settings.client_cert, self.settings.client_key
        session.cert = (str(cert), str(key)) if cert is not None and key is not None else None
        return session

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> NodeAnswer:
        import requests

        from nomad_vault_token.vault.http import Redirected

        if self._session is None:
            self._session = self._new_session()
        problem = ""
        wait = timeout or self.timeout
        try:
            r = self._session.request(
                method,
                f"{self.addr}/v1/{path}",
                json=dict(body) if body is not None else None,
                timeout=(wait, wait),
            )
        except Redirected as exc:
            problem = f"redirected ({exc}): not followed"
        except requests.exceptions.SSLError as exc:
            problem = "certificate not trusted" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else "TLS failed"
        except requests.exceptions.Timeout:
            problem = f"timeout after {wait:g}s"
        except requests.exceptions.RequestException as exc:
            problem = connection_reason(exc)
        if problem:
            # Raised here, outside the except block: requests' exception holds the prepared request
            # (an unseal key in its body), and `from None` would still keep it as __context__.
            raise NodeUnreachable(problem)
        try:
            data = r.json() if r.content else {}
        except ValueError:
            raise NodeUnreachable(f"HTTP {r.status_code}, not Vault") from None
        return NodeAnswer(r.status_code, data if isinstance(data, dict) else {})

    def seal_status(self) -> Mapping[str, Any]:
        """GET sys/seal-status (unauthenticated)."""
        answer = self._request("GET", "sys/seal-status")
        if answer.status != 200:
            raise NodeUnreachable(f"sys/seal-status answered HTTP {answer.status}")
        return answer.body

    def seal_status_answer(self, timeout: float | None = None) -> NodeAnswer:
        """GET sys/seal-status, whatever its status: a node migrated to a new seal answers 500 (with
        `errors`) until the active node steps down, and the unsealer tells that from a broken node.
        `timeout` instead of the client's, for a quick probe."""
        return self._request("GET", "sys/seal-status", timeout=timeout)

    def health_code(self, timeout: float | None = None) -> int:
        """GET sys/health's status code: 200 active, 429 standby, 501 not initialised, 503 sealed, ..."""
        return self._request("GET", "sys/health", timeout=timeout).status

    def unseal(self, key: str, migrate: bool = False) -> NodeAnswer:
        """POST sys/unseal {"key": ...}: the key in the body only; the answer has seal-status's shape
        (400 with `errors` for a key Vault refuses). With `migrate`, `"migrate": true`: a key for a node
        waiting for a seal migration (which refuses a key without it)."""
        body: dict[str, Any] = {"key": key}
        if migrate:
            body["migrate"] = True
        return self._request("POST", "sys/unseal", body)

    def reset(self) -> NodeAnswer:
        """POST sys/unseal {"reset": true}: discard the keys given so far."""
        return self._request("POST", "sys/unseal", {"reset": True})
