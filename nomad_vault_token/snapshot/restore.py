"""`snapshot restore SOURCE`: a cluster back from a snapshot after a total loss.

In order:

1. The snapshot, verified before anything is sent to Vault (a bad one never reaches it, exit 65): a file
   (copied into a private scratch directory while it is verified, so the bytes sent are the bytes checked),
   `s3://BUCKET/PREFIX/NAME.snap`, or `latest`: the newest copy at the configured destination (`--copy-to`)
   whose manifest vouches for it and that verifies when read back (an older one when the newest does not).
2. The node at `vault_addr`: an initialised one may hold data: refused (78, one line, nothing sent but GETs)
   unless `--force`, which restores into it with the token given (`--token-file` / `$VAULT_TOKEN`, sudo on
   `sys/storage/raft/snapshot-force`). An uninitialised one is initialised with one throwaway key held in
   memory only (1 share, threshold 1), unsealed, and its root token used for the restore.
3. `sys/storage/raft/snapshot-force`. The node then seals itself (OpenBao 2.7.2: 0.6 s after the answer in
   the total-loss test here, ~5 s in NOMAD-FACTS.md; waited for as a condition either way) and keeps
   its own seal configuration in memory until it restarts; restarted, it reads the snapshot's and unseals
   with the snapshot's keys, which the unsealer holds. The throwaway key is dropped: it opens nothing any more.
4. The steps left to the operator, each one line with the exact command (`steps`, also in the JSON).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError, VaultUnavailable
from nomad_vault_token.core.results import Result
from nomad_vault_token.snapshot.archive import SnapshotInfo, SnapshotInvalid

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20
ACTIVE_TIMEOUT = 120.0  # a fresh raft node becomes active within seconds; bounded for a loaded host
SEAL_TIMEOUT = 60.0  # the restored node seals itself within seconds of the restore (measured 0.6-5 s); bounded


@dataclass(frozen=True)
class Step:
    what: str
    command: str

    def line(self, number: int) -> str:
        return f"{number}. {self.what}: {self.command}"


def steps(addr: str, others: list[str], keys_hint: str, force: bool) -> list[Step]:
    """What the operator does after the restore, in order, each with its exact command (pure)."""
    out = [
        Step(
            f"restart the OpenBao server at {addr}: it reads the snapshot's seal configuration only when it starts",
            "systemctl restart openbao (as a Nomad job: nomad alloc restart <alloc id>)",
        ),
        Step(
            f"unseal {addr} with the snapshot's keys (the unsealer holds them; a running unsealer does it by itself)",
            f"nomad-vault-token unseal --once --node {addr} {keys_hint}",
        ),
    ]
    for other in others:
        out.append(
            Step(
                f"{other}: stop OpenBao, empty its raft directory, start it: it joins {addr} (retry_join), or join it",
                f"bao operator raft join -address={other} -leader-ca-cert=@/path/to/ca.pem {addr}",
            )
        )
    if others:
        out.append(
            Step(
                "unseal the nodes that joined with the same keys",
                "nomad-vault-token unseal --once " + " ".join(f"--node {n}" for n in [addr, *others]) + f" {keys_hint}",
            )
        )
    if force:
        out.append(Step("tokens issued since the snapshot are gone: log in again", "nomad-vault-token check --mint"))
    return out


def run(settings: Settings, source: str, *, force: bool, token_file: Path | None) -> Result:
    from dataclasses import replace

    from nomad_vault_token.vault.lifecycle import Lifecycle

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nvt-restore-") as scratch:  # 0700, removed whatever happens
        local, info, origin = _fetch(settings, source, Path(scratch))
        fetched = time.monotonic() - started
        addr = settings.vault_addr
        node = Lifecycle(replace(settings, request_timeout=max(settings.request_timeout, 120)))
        status = node.seal_status()
        throwaway = not status.initialized
        if status.initialized:
            if not force:
                raise ConfigError(
                    f"snapshot restore: {addr} is initialised and may hold data: nothing was sent; to replace its "
                    "data with the snapshot give --force (and a token with sudo on sys/storage/raft/snapshot-force)"
                )
            if status.sealed:
                raise VaultUnavailable(
                    f"snapshot restore --force: {addr} is sealed: unseal it first (the unsealer), then restore",
                    state="sealed",
                )
            from nomad_vault_token.core import secret_files

            token = secret_files.token(token_file)
        else:
            if status.auto_unseal:
                raise ConfigError(
                    f"snapshot restore: {addr} has an auto-unseal seal ({status.seal_type}): restore into a Shamir "
                    "node, or initialise it and restore with --force"
                )
            answer = node.initialize({"secret_shares": 1, "secret_threshold": 1})  # held here only, then dropped
            from nomad_vault_token.core.secret import Secret

            token = Secret(str(answer["root_token"]))
            node.unseal_with(str(answer["keys"][0]))
            del answer
            _wait(lambda: _active(node), ACTIVE_TIMEOUT, f"{addr} to become active with its throwaway key")
        ready = time.monotonic() - started
        node.restore_force(token, local, settings.snapshot_timeout)
        restored = time.monotonic() - started
        del token
        sealed = False
        done = restored
        if throwaway:  # measured: the node seals itself once it finds the snapshot's keyring; then say so
            _wait(lambda: _sealed(node), SEAL_TIMEOUT, f"{addr} to seal itself after the restore")
            sealed = True
        done = time.monotonic() - started
    others = [n for n in settings.unseal_addresses if n.rstrip("/") != addr.rstrip("/")]
    keys_hint = (
        f"--keys-file {settings.unseal_keys_file}" if settings.unseal_keys_file else "--keys-file <the snapshot's keys>"
    )
    todo = steps(addr, others, keys_hint, force and not throwaway)
    data: dict[str, Any] = {
        "ok": True,
        "action": "restore",
        "source": source,
        "file": origin,
        "index": info.index,
        "term": info.term,
        "size": info.size,
        "sha256": info.sha256,
        "node": addr,
        "initialised_here": throwaway,
        "sealed_after_restore": sealed,
        "steps": [{"step": i, "what": s.what, "command": s.command} for i, s in enumerate(todo, start=1)],
        "seconds": {
            "verified": round(fetched, 3),
            "ready": round(ready, 3),
            "restored": round(restored, 3),
            "done": round(done, 3),
        },
    }
    text = "\n".join(
        [f"{origin}: verified (raft index {info.index}, {info.size} bytes) and restored into {addr}; now:"]
        + [s.line(i) for i, s in enumerate(todo, start=1)]
    )
    return Result(data, text)


def _active(node: Any) -> bool:
    health = node.health()
    return bool(health.usable and not health.standby)


def _sealed(node: Any) -> bool:
    health = node.health()
    return bool(health.reachable and health.sealed)


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise VaultUnavailable(f"snapshot restore: timed out after {timeout:.0f}s waiting for {what}", state="error")
        time.sleep(0.2)


# ---- the snapshot --------------------------------------------------------------------------------


def _fetch(settings: Settings, source: str, scratch: Path) -> tuple[Path, SnapshotInfo, str]:
    """The snapshot as a verified private file in `scratch`: (path, what it is, where it came from)."""
    from nomad_vault_token.snapshot import store

    if source == "latest":
        return _latest(settings, scratch)
    if source.startswith("s3://"):
        from nomad_vault_token.snapshot import remote

        try:
            dest, name = remote.parse_object(source)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        path, info = remote.download_verified(remote.client(), dest, name, scratch)
        return path, info, source
    file = Path(source)
    try:
        f = open(file, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise SnapshotInvalid(f"snapshot {file}: cannot open: {exc.strerror}") from None
    with f:
        received, info = store.receive_verified(_chunks(f), scratch, "restore", str(file))
    return received.path, info, str(file)


def _chunks(f: Any) -> Iterator[bytes]:
    while data := f.read(READ_CHUNK):
        yield data


def _latest(settings: Settings, scratch: Path) -> tuple[Path, SnapshotInfo, str]:
    """The newest copy at the first --copy-to destination that its manifest vouches for and that verifies."""
    from nomad_vault_token.snapshot import remote
    from nomad_vault_token.snapshot.retention import check_prefix

    if not settings.snapshot_copy_to:
        raise ConfigError("snapshot restore latest: no destination: give --copy-to s3://BUCKET/PREFIX (or snapshot_copy_to)")
    try:
        dest = remote.parse_destination(settings.snapshot_copy_to[0])
        prefix = check_prefix(settings.snapshot_prefix)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    s3 = remote.client()
    _, present = remote.survey(s3, dest, prefix)
    candidates = [p.name for p in sorted(present, key=lambda p: p.name.sort_key(), reverse=True) if p.verified]
    refused: list[str] = []
    for name in candidates:
        with contextlib.suppress(SnapshotInvalid):
            path, info = remote.download_verified(s3, dest, name.file_name, scratch)
            return path, info, dest.url_of(name.file_name)
        refused.append(name.file_name)
        log.warning("snapshot restore latest: %s does not verify, trying an older copy", dest.url_of(name.file_name))
    if refused:
        raise SnapshotInvalid(f"snapshot restore latest: no copy at {dest.url} verifies ({', '.join(refused)})")
    raise SnapshotInvalid(f"snapshot restore latest: no snapshot with a manifest at {dest.url}")
