"""`snapshot`: a raft snapshot from the active node, verified before it is kept, then retention; `verify`;
`restore-test`.

The run, in order: log in (cert, token or JWT) at the active node (`sys/leader`), stream
`sys/storage/raft/snapshot` into an exclusive 0600 temp file in the target directory (fsynced),
verifying it completely as it streams in (`store.receive_verified`: gzip, tar, SHA256SUMS and the file's
SHA-256 in one read of the bytes), give it its final name and manifest (`store.keep`), and only then apply
retention (`retention.plan_retention`: verified snapshots only, our names only, never the newest).
Whatever fails before `keep`, the temp file is removed and nothing is deleted. The metrics file (when
`metrics_dir` is set) says how the run ended either way.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import DISK_ERRNOS, ConfigError, DiskError, NvtError, Partial
from nomad_vault_token.core.results import Result
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.client import Vault

if TYPE_CHECKING:  # loaded only by the paths that need them (boto3 behind remote)
    from nomad_vault_token.snapshot.archive import Manifest, SnapshotInfo
    from nomad_vault_token.snapshot.remote import Destination
    from nomad_vault_token.snapshot.retention import Retention, SnapshotName

log = logging.getLogger(__name__)



def verify_file(file: str | None) -> Result:
    """`snapshot verify FILE|s3://...`: check a snapshot offline, or in a bucket (65 when it fails)."""
    from nomad_vault_token.snapshot import store

    if file is None:
        raise ConfigError("snapshot verify: give the snapshot file: snapshot verify FILE")
    info = _verify_remote(file) if file.startswith("s3://") else store.verify_file(Path(file))
    data = {
        "ok": True,
        "action": "verify",
        "file": str(file),
        "size": info.size,
        "sha256": info.sha256,
        "index": info.index,
        "term": info.term,
        "entries": list(info.entries),
        "checked": list(info.checked),
    }
    text = f"{file}: OK, raft index {info.index}, term {info.term}, {info.size} bytes, sha256 {info.sha256}"
    return Result(data, text)


def _verify_remote(url: str) -> SnapshotInfo:
    """Read an object back and verify it; its manifest, when there, must describe the same bytes."""
    from nomad_vault_token.snapshot import remote
    from nomad_vault_token.snapshot.archive import SnapshotInvalid

    try:
        dest, name = remote.parse_object(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    s3 = remote.client()
    info = remote.verify_object(s3, dest, name)
    if name.endswith(".snap"):
        manifest = remote.read_manifest(s3, dest, name.removesuffix(".snap") + ".json")
        if manifest is not None and (manifest.size, manifest.sha256) != (info.size, info.sha256):
            raise SnapshotInvalid(
                f"snapshot {url}: {info.size} bytes, sha256 {info.sha256}, but its manifest says "
                f"{manifest.size} bytes, {manifest.sha256}"
            )
    return info


def main(
    settings: Settings,
    *,
    action: str | None,
    file: str | None,
    token_file: Path | None,
    canary: str | None,
) -> Result:
    if action == "verify":  # offline: the table gives it default settings, never loads the config
        return verify_file(file)
    if action in (None, "take"):
        if file is not None:
            raise ConfigError(f"snapshot: unexpected argument {str(file)!r}: did you mean snapshot verify FILE?")
        return take(settings, token_file=token_file)
    if action == "restore-test":
        from nomad_vault_token.snapshot import drill

        if file is None:
            raise ConfigError("snapshot restore-test: give the snapshot file: snapshot restore-test FILE --keys-file F")
        if not file.startswith("s3://"):
            return drill.run(
                settings, Path(file), keys_file=settings.unseal_keys_file, token_file=token_file, canary=canary
            )
        import tempfile

        from nomad_vault_token.snapshot import remote

        try:
            dest, name = remote.parse_object(file)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        with tempfile.TemporaryDirectory(prefix="nvt-restore-test-") as scratch:  # 0700, removed whatever happens
            local, _ = remote.download_verified(remote.client(), dest, name, Path(scratch))
            done = drill.run(
                settings, local, keys_file=settings.unseal_keys_file, token_file=token_file, canary=canary
            )
        done.data["file"] = file
        return done
    raise ConfigError(f"snapshot {action!r}: use snapshot, snapshot verify FILE or snapshot restore-test FILE")


# ---- taking one ----------------------------------------------------------------------------------


def take(settings: Settings, *, token_file: Path | None) -> Result:
    from nomad_vault_token.snapshot import store
    from nomad_vault_token.snapshot.archive import Manifest, SnapshotInvalid
    from nomad_vault_token.snapshot.retention import Retention, check_prefix, plan_retention, snapshot_name

    started = time.monotonic()
    try:
        prefix = check_prefix(settings.snapshot_prefix)
        retention = Retention(
            keep=settings.snapshot_keep or None,
            max_age=timedelta(seconds=settings.snapshot_max_age) if settings.snapshot_max_age else None,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    destinations = _destinations(settings)
    directory = _target_dir(settings)
    signal.signal(signal.SIGTERM, _terminated)  # systemctl stop, Nomad's kill: clean up like on Ctrl-C
    _remove_stale_partials(directory, prefix, settings.snapshot_timeout)
    from nomad_vault_token.snapshot.report import SnapshotMetrics

    metrics = SnapshotMetrics(settings, directory, prefix, started, [d.url for d in destinations])
    verified: bool | None = None
    try:
        auth = _auth(settings, token_file)
        given = _given_secret(settings, auth, token_file)  # before any request: a missing file is a config error
        vault, leader = _active(settings)
        token, own_login = _credentials(vault, settings, auth, given)
        try:
            version = _quiet_version(vault)
            with vault.snapshot_stream(token, settings.snapshot_timeout) as chunks:
                try:  # verified as it streams in: one read of the bytes
                    received, info = store.receive_verified(chunks, directory, prefix, f"from {leader}")
                except SnapshotInvalid:
                    verified = False
                    raise
            verified = True
        finally:
            if own_login:
                _revoke(vault, token)
            vault.close()
        with store.discard_on_failure(received.path):
            now = datetime.now(UTC).replace(microsecond=0)
            name = snapshot_name(prefix, now, info.index)
            manifest = Manifest.of(info, name, version, now)
            try:
                final = store.keep(received.path, name, manifest)
            except FileExistsError:
                raise ConfigError(
                    f"snapshot {directory / name.file_name}: already exists (two runs in one second?): "
                    "run them apart (prohibit_overlap, a timer)"
                ) from None
            except OSError as exc:
                raise _write_error(directory, "cannot keep the snapshot", exc) from None
    except NvtError as exc:
        metrics.failed(verified)
        log.debug("snapshot failed, nothing deleted: %s", exc.message)
        raise
    except OSError as exc:  # the disk: receive's own writes
        metrics.failed(verified)
        raise _write_error(directory, "cannot write", exc) from None

    _, present = store.survey(directory, prefix)
    plan = plan_retention(present, retention, now, run_succeeded=True)
    deleted = store.delete(directory, prefix, plan.delete)
    for gone in deleted:
        log.info("retention: deleted %s", gone)
    if plan.unverified:
        log.warning(
            "left alone, no manifest vouches for them: %s (check with snapshot verify)",
            ", ".join(n.file_name for n in plan.unverified),
        )
    copies = [_copy_one(dest, final, name, manifest, retention, now) for dest in destinations]
    metrics.succeeded(info, len(plan.kept), len(plan.unverified), {c["destination"]: c["ok"] for c in copies})
    failed = [c for c in copies if not c["ok"]]
    data: dict[str, object] = {
        "ok": not failed,
        "action": "take",
        "auth": auth,
        "file": str(final),
        "manifest": str(directory / name.manifest_name),
        "size": info.size,
        "sha256": info.sha256,
        "index": info.index,
        "term": info.term,
        "vault_version": version,
        "active_node": leader,
        "deleted": deleted,
        "kept": [n.file_name for n in plan.kept],
        "unverified": [n.file_name for n in plan.unverified],
        "copies": copies,
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    text = (
        f"{final}: verified, raft index {info.index}, term {info.term}, {info.size} bytes from {leader}; "
        f"kept {len(plan.kept)}, deleted {len(deleted) // 2}"
        + "".join(
            f"; copied to {c['url']} (kept {len(c['kept'])}, deleted {len(c['deleted']) // 2})"
            for c in copies
            if c["ok"]
        )
    )
    if failed:  # 75: the snapshot is kept and verified here; the JSON says which copy failed
        error = f"snapshot {final}: kept and verified here, but the copy to " + "; to ".join(
            f"{c['destination']} failed: {c['error']}" for c in failed
        )
        data["error"] = {"message": error, "exit_code": Partial.exit_code}
        return Result(data, text, exit_code=Partial.exit_code, error=error)
    return Result(data, text)


def _destinations(settings: Settings) -> list[Destination]:
    """snapshot_copy_to as destinations, checked before anything is taken (78 for a bad URL or no boto3)."""
    if not settings.snapshot_copy_to:
        return []
    from nomad_vault_token.snapshot import remote

    try:
        found = [remote.parse_destination(url) for url in settings.snapshot_copy_to]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not remote.available():
        raise ConfigError("--copy-to: boto3 is not installed: pip install 'nomad-vault-token[s3]'")
    return found


def _copy_one(
    dest: Destination, final: Path, name: SnapshotName, manifest: Manifest, retention: Retention, now: datetime
) -> dict[str, Any]:
    """Copy the kept snapshot to one destination, verify it there, then retention there; never raises for the
    store's failures (they are the run's partial result)."""
    from nomad_vault_token.snapshot import remote
    from nomad_vault_token.snapshot.retention import plan_retention

    url = dest.url_of(name.file_name)
    outcome: dict[str, Any] = {"destination": dest.url, "url": url, "ok": False, "kept": [], "deleted": []}
    try:
        s3 = remote.client()
        started = time.monotonic()
        remote.copy(s3, dest, final, name, manifest)
        log.info("copied to %s and verified there (%.1f s)", url, time.monotonic() - started)
        outcome["ok"] = True
        _, present = remote.survey(s3, dest, name.prefix)
        plan = plan_retention(present, retention, now, run_succeeded=True)
        gone = remote.delete(s3, dest, name.prefix, plan.delete)
        for removed in gone.removed:
            log.info("retention: deleted %s", dest.url_of(removed))
        for refused, why in gone.refused:
            log.warning(
                "retention: %s not deleted (%s: object lock or a bucket policy keeps it)", dest.url_of(refused), why
            )
        outcome.update(
            kept=[n.file_name for n in plan.kept],
            deleted=list(gone.removed),
            refused=[n for n, _ in gone.refused],
        )
    except NvtError as exc:
        if outcome["ok"]:  # the copy is there and verified: a failed listing or delete is retention's, not fatal
            log.warning("retention at %s: %s", dest.url, exc.message)
        else:
            outcome["error"] = exc.message.removeprefix(f"snapshot {url}: ").removeprefix(f"{url}: ")
            log.debug("copy to %s failed: %s", dest.url, exc.message)
    return outcome


def _write_error(directory: Path, doing: str, exc: OSError) -> NvtError:
    """A full or failing disk is 74 (the same run works once there is room); anything else (permissions,
    a read-only mount) is the configuration's, 78. Nothing was kept either way, older snapshots stay."""
    if exc.errno in DISK_ERRNOS:
        return DiskError(
            f"snapshot dir {directory}: {doing}: {exc.strerror}: free space there (nothing was kept, "
            "the older snapshots are untouched)"
        )
    return ConfigError(f"snapshot dir {directory}: {doing}: {exc.strerror or exc}")


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through receive/discard_on_failure: the temp file goes


def _remove_stale_partials(directory: Path, prefix: str, timeout: int) -> None:
    """Temp files of runs killed without a chance to clean up (SIGKILL, a power cut): older than any run
    may last (snapshot_timeout, plus a minute), so never a run still in progress."""
    from nomad_vault_token.snapshot.retention import classify

    now = time.time()
    for name in classify(os.listdir(directory), prefix).partials:
        path = directory / name
        try:
            if now - path.lstat().st_mtime > timeout + 60:
                path.unlink()
                log.warning("removed %s, left by a run that was killed", path)
        except OSError:
            continue


def _target_dir(settings: Settings) -> Path:
    directory = settings.snapshot_dir
    if directory is None:
        raise ConfigError("snapshot_dir is not set: pass --dir DIR or set snapshot_dir in the config file")
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.stat()
    except FileExistsError:
        raise ConfigError(f"snapshot dir {directory}: exists and is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"snapshot dir {directory}: cannot create: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"snapshot dir {directory}: exists and is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"snapshot dir {directory}: not writable by this user: fix its owner or mode")
    if st.st_mode & 0o007:
        log.warning("snapshot dir %s: others can enter it: chmod o-rwx %s", directory, directory)
    return directory


def _active(settings: Settings) -> tuple[Vault, str]:
    """A client of the active node: sys/leader on the configured address says where it is."""
    vault = Vault(settings)
    leader = vault.leader()
    if not leader.ha_enabled or leader.is_self or not leader.leader_address:
        return vault, settings.vault_addr
    from nomad_vault_token.core.config import check_address

    try:
        address = check_address(leader.leader_address, settings.allow_insecure_http, what="sys/leader's leader_address")
    except ConfigError as exc:
        vault.close()
        raise ConfigError(
            f"sys/leader names the active node {leader.leader_address!r}, which cannot be used: {exc.message}"
        ) from None
    if address.startswith("http://") and settings.vault_addr.startswith("https://"):
        vault.close()
        raise ConfigError(f"sys/leader names the active node {address!r}: plain http, from https: refused")
    vault.close()
    log.info("active node: %s (asked %s)", address, settings.vault_addr)
    return Vault(dataclasses.replace(settings, vault_addr=address)), address


def _auth(settings: Settings, token_file: Path | None) -> str:
    """--auth, or what the user gave: a client certificate, a token, a JWT (snapshot.auth.choose)."""
    from nomad_vault_token.snapshot.auth import Given, choose

    given = Given(
        client_cert=settings.client_cert is not None,
        token=token_file is not None or bool(os.environ.get("VAULT_TOKEN", "").strip()),
        jwt_file=settings.jwt_file is not None,
    )
    auth = choose(settings.snapshot_auth, given)
    log.debug("auth: %s%s", auth, "" if settings.snapshot_auth else " (from the credentials given)")
    return auth


def _given_secret(settings: Settings, auth: str, token_file: Path | None) -> Secret | None:
    """auth token: the token; jwt: the JWT; cert: None (the certificate is read at login)."""
    from nomad_vault_token.core import secret_files

    if auth == "token":
        return secret_files.token(token_file)
    if auth == "jwt":
        if settings.jwt_file is None:
            raise ConfigError("--auth jwt: give --jwt-file FILE (or jwt_file in the config)")
        return secret_files.read(settings.jwt_file, "--jwt-file", "JWT")
    for key, path in zip(("client_cert", "client_key"), settings.client_tls(), strict=True):
        try:  # now, with its name: requests would say only "invalid path", mid-run
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{key} {path}: cannot read: {exc.strerror}") from None
    return None


def _credentials(vault: Vault, settings: Settings, auth: str, given: Secret | None) -> tuple[Secret, bool]:
    """The token to snapshot with, and whether this run logged in for it (then it is revoked afterwards)."""
    if auth == "token" and given is not None:
        return given, False
    if auth == "jwt" and given is not None:
        return vault.login_jwt(settings.jwt_mount, settings.jwt_role, given), True
    return vault.login_cert(settings.snapshot_role), True


def _revoke(vault: Vault, token: Secret) -> None:
    try:
        vault.revoke_self(token)
    except NvtError as exc:
        log.debug("could not revoke the login token: %s", exc.message)


def _quiet_version(vault: Vault) -> str:
    try:
        return vault.version()
    except NvtError:
        return ""
