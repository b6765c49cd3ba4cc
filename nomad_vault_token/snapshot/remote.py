"""Copies of kept snapshots in S3-compatible object storage (`snapshot --copy-to s3://BUCKET/PREFIX`).

boto3 is imported here only, on first use (the `s3` extra): nothing else in the tool loads it. Credentials,
region and endpoint come from boto3's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3, the shared config and credentials
files, instance and web-identity roles), never from argv and never logged. Checksums are computed and
validated only when an operation requires them (`when_required`): boto3 1.36+ otherwise sends CRC
trailers that many S3-compatible servers refuse.

A copy, in order: a multipart upload of the local file straight to its final key, one part in memory at a
time (an object appears under that name only when the upload completes; whatever interrupts it, the
upload is aborted, so no partial object and no dangling parts are left); then the object is read back
and verified completely (`archive.verify_stream`: size and SHA-256 against the manifest, gzip, tar,
SHA256SUMS); then, and only then, the manifest is written beside it. A manifest in the bucket therefore
means the same as on disk: this copy was verified. Retention then runs over the prefix with the local
rules (`retention.plan_retention`): only names this tool writes, only after this copy succeeded, never
the newest verified copy; a delete refused (object lock, a policy) is reported, never fatal.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomad_vault_token.core.errors import EX_CONFIG, EX_NOPERM, EX_UNAVAILABLE, NvtError
from nomad_vault_token.snapshot.archive import Manifest, SnapshotInfo, SnapshotInvalid, verify_stream
from nomad_vault_token.snapshot.retention import (
    Listing,
    Present,
    SnapshotName,
    classify,
    only_ours,
)

log = logging.getLogger(__name__)

SCHEME = "s3://"
PART_SIZE = 8 << 20  # one part in memory at a time; S3's minimum is 5 MiB
MAX_PARTS = 10_000
READ_CHUNK = 1 << 20
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()=+,;@ -]+")  # S3's "safe" characters, no '/'
_LOCKED = {"AccessDenied", "ObjectLocked", "InvalidRequest", "MethodNotAllowed"}


class RemoteUnavailable(NvtError):
    """The object store did not answer, or answered with an error (69)."""

    exit_code = EX_UNAVAILABLE


class RemoteDenied(NvtError):
    """The object store refused the credentials or the request (77)."""

    exit_code = EX_NOPERM


class RemoteConfig(NvtError):
    """No credentials, no such bucket, no boto3: fix the setup (78)."""

    exit_code = EX_CONFIG


@dataclass(frozen=True)
class Destination:
    """`s3://BUCKET/PREFIX`: the bucket and the key prefix ("" or ending with "/") the copies go under."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        return self.prefix + name

    def url_of(self, name: str) -> str:
        return self.url + name


def parse_destination(url: str, what: str = "--copy-to") -> Destination:
    """A destination URL, or ValueError saying what a good one looks like (no credentials, no query)."""
    hint = f"{what} {url!r}: use s3://BUCKET/PREFIX (bucket: 3-63 lowercase letters, digits, '.', '-')"
    if not url.startswith(SCHEME):
        raise ValueError(hint)
    rest = url[len(SCHEME) :]
    if any(c in rest for c in "?#\\") or "@" in rest.partition("/")[0]:
        raise ValueError(f"{hint}; credentials come from the AWS variables or files, never the URL")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(hint)
    segments = [s for s in prefix.split("/")]
    if prefix.endswith("/"):
        segments = segments[:-1]
    if prefix and not all(_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments):
        raise ValueError(f"{hint}: the prefix has an empty, '.' or '..' segment or an unsafe character")
    return Destination(bucket, prefix + "/" if prefix and not prefix.endswith("/") else prefix)


def parse_object(url: str, what: str = "snapshot") -> tuple[Destination, str]:
    """`s3://BUCKET/PREFIX/NAME.snap` as (the destination it lies under, NAME.snap)."""
    head, _, name = url.rpartition("/")
    if not name or len(head) <= len(SCHEME):
        raise ValueError(f"{what} {url!r}: name the object, s3://BUCKET/PREFIX/NAME.snap")
    return parse_destination(head + "/", what), name


# ---- the client ------------------------------------------------------------------------------------


def client() -> Any:
    """An S3 client from boto3's default chain; RemoteConfig (78) when boto3 is not installed."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise RemoteConfig(
            "snapshot --copy-to / s3://: boto3 is not installed: pip install 'nomad-vault-token[s3]'"
        ) from None
    for noisy in ("boto3", "botocore", "s3transfer"):  # their INFO/DEBUG: where credentials were found, signed
        logging.getLogger(noisy).setLevel(logging.WARNING)  # headers; this module says what matters itself
    from nomad_vault_token.vault.http import BOTO_PROXIES

    config = Config(
        proxies=dict(BOTO_PROXIES),  # the one HTTP policy (vault/http.py): botocore reads HTTP(S)_PROXY when this is None
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=10,
        read_timeout=60,
    )
    return boto3.session.Session().client("s3", config=config)


def available() -> bool:
    """Whether boto3 can be imported (checked before a snapshot is taken, without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("boto3") is not None
    except (ImportError, ValueError):
        return False


def _code(exc: BaseException) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")), int(
        response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    )


def _missing(exc: BaseException) -> bool:
    """Whether the store said there is no such object (S3: NoSuchKey; a HEAD or some servers: a bare 404)."""
    code, status = _code(exc)
    return code in ("NoSuchKey", "404") or status == 404


_OUT_OF_SPACE = ("XMinioStorageFull", "XMinioAdminBucketQuotaExceeded", "InsufficientStorage", "QuotaExceeded")


def _failure(exc: BaseException, where: str) -> NvtError:
    """One line for what boto3 raised at `where` (an s3:// URL); boto3's messages carry no secret."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return RemoteConfig(
            f"{where}: no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile "
            "(AWS_PROFILE, ~/.aws/credentials) or a role"
        )
    if isinstance(exc, ClientError):
        code, status = _code(exc)
        if code == "NoSuchBucket":
            return RemoteConfig(f"{where}: no such bucket: create it or fix the URL")
        if status in (401, 403) or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return RemoteDenied(f"{where}: refused ({code or status}): check the credentials and the bucket policy")
        if status == 507 or code in _OUT_OF_SPACE:
            return RemoteUnavailable(f"{where}: the store is out of space ({code or status}): free space or raise "
                                     "the bucket's quota there")  # fmt: skip
        if code == "NoSuchUpload":  # rclone (gofakes3) drops an upload it could not store, and says only this
            return RemoteUnavailable(f"{where}: the store dropped the upload before it completed (NoSuchUpload): "
                                     "check the store's log and its free space")  # fmt: skip
        return RemoteUnavailable(f"{where}: {code or status}: {_short(exc)}")
    if isinstance(exc, BotoCoreError):
        return RemoteUnavailable(f"{where}: {_short(exc)}")
    return RemoteUnavailable(f"{where}: {type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


@contextlib.contextmanager
def _mapped(where: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise _failure(exc, where) from None
    except OSError as exc:  # a connection reset while reading a body
        raise RemoteUnavailable(f"{where}: {exc.strerror or exc}") from None


# ---- copy ------------------------------------------------------------------------------------------


def part_size(size: int) -> int:
    """The part size for a file of `size` bytes: PART_SIZE, or more to stay within S3's 10,000 parts."""
    need = -(-size // MAX_PARTS)
    return max(PART_SIZE, -(-need // (1 << 20)) * (1 << 20))


def upload(s3: Any, dest: Destination, local: Path, manifest: Manifest) -> None:
    """Multipart-upload `local` to `dest.key(manifest.file)`, one part in memory at a time; aborted (no object,
    no parts left) whatever stops it, an interrupt included."""
    key = dest.key(manifest.file)
    where = dest.url_of(manifest.file)
    with _mapped(where):
        upload_id = s3.create_multipart_upload(Bucket=dest.bucket, Key=key, ContentType="application/gzip")["UploadId"]
    try:
        parts = []
        size = part_size(manifest.size)
        with _mapped(where), local.open("rb") as f:
            number = 1
            while True:
                body = f.read(size)
                if not body and number > 1:
                    break
                done = s3.upload_part(Bucket=dest.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
                parts.append({"PartNumber": number, "ETag": done["ETag"]})
                number += 1
                if len(body) < size:
                    break
            s3.complete_multipart_upload(
                Bucket=dest.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
    except BaseException:
        _abort(s3, dest, key, upload_id)
        raise


def _abort(s3: Any, dest: Destination, key: str, upload_id: str) -> None:
    try:
        s3.abort_multipart_upload(Bucket=dest.bucket, Key=key, UploadId=upload_id)
    except Exception as exc:  # the store may be what failed: say so, the original error is the one raised
        if _code(exc)[0] == "NoSuchUpload":  # already gone (the store dropped it): no parts are left behind
            log.debug("%s: upload %s was already gone", dest.url_of(key.removeprefix(dest.prefix)), upload_id)
            return
        log.warning(
            "%s: could not abort the interrupted upload %s (%s): a lifecycle rule "
            "(AbortIncompleteMultipartUpload) removes its parts",
            dest.url_of(key.removeprefix(dest.prefix)),
            upload_id,
            type(exc).__name__,
        )


class _Body:
    """A botocore streaming body as `verify_stream` reads it."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, n: int, /) -> bytes:
        data: bytes = self._body.read(n)
        return data


def verify_object(s3: Any, dest: Destination, name: str) -> SnapshotInfo:
    """Read `name` back from the bucket and verify it completely, in constant memory (SnapshotInvalid: 65)."""
    where = dest.url_of(name)
    got = _get(s3, dest, name)
    body = got["Body"]
    try:
        with _mapped(where):
            return verify_stream(_Body(body), where, int(got.get("ContentLength", -1)))
    finally:
        body.close()


def _get(s3: Any, dest: Destination, name: str) -> Any:
    """GET `name`; a missing object is SnapshotInvalid (65), like a missing file."""
    from botocore.exceptions import ClientError

    where = dest.url_of(name)
    with _mapped(where):
        try:
            return s3.get_object(Bucket=dest.bucket, Key=dest.key(name))
        except ClientError as exc:
            if _missing(exc):
                raise SnapshotInvalid(f"snapshot {where}: no such object") from None
            raise


def download_verified(s3: Any, dest: Destination, name: str, directory: Path) -> tuple[Path, SnapshotInfo]:
    """`name` from the bucket into a private temp file in `directory`, verified as it streams in."""
    from nomad_vault_token.snapshot import store

    got = _get(s3, dest, name)
    body = got["Body"]

    def chunks() -> Iterator[bytes]:
        while data := body.read(READ_CHUNK):
            yield data

    try:
        with _mapped(dest.url_of(name)):
            received, info = store.receive_verified(chunks(), directory, "download", dest.url_of(name))
    finally:
        body.close()
    return received.path, info


def read_manifest(s3: Any, dest: Destination, manifest_name: str) -> Manifest | None:
    """The manifest object `manifest_name`, or None when it is missing or not a manifest."""
    from botocore.exceptions import ClientError

    try:
        got = s3.get_object(Bucket=dest.bucket, Key=dest.key(manifest_name))
        data = got["Body"].read(64 * 1024 + 1)
    except ClientError as exc:
        if _missing(exc):
            return None
        raise _failure(exc, dest.url_of(manifest_name)) from None
    try:
        return Manifest.from_json(data)
    except ValueError:
        return None


def copy(s3: Any, dest: Destination, local: Path, name: SnapshotName, manifest: Manifest) -> SnapshotInfo:
    """Upload, read back and verify against `manifest`, then write the manifest beside the object.

    SnapshotInvalid when the copy in the bucket is not the bytes the manifest describes (it is deleted)."""
    if manifest.file != name.file_name:
        raise ValueError(f"manifest names {manifest.file}, not {name.file_name}")
    upload(s3, dest, local, manifest)
    try:
        info = verify_object(s3, dest, manifest.file)
        if (info.size, info.sha256) != (manifest.size, manifest.sha256):
            raise SnapshotInvalid(
                f"snapshot {dest.url_of(manifest.file)}: the copy is {info.size} bytes, sha256 {info.sha256}; "
                f"the manifest says {manifest.size}, {manifest.sha256}"
            )
    except SnapshotInvalid:
        _remove(s3, dest, manifest.file, "it is not the snapshot's bytes")
        raise
    try:
        with _mapped(dest.url_of(name.manifest_name)):
            s3.put_object(
                Bucket=dest.bucket,
                Key=dest.key(name.manifest_name),
                Body=manifest.to_json(),
                ContentType="application/json",
            )
    except BaseException:
        # A full volume has room for the snapshot, not its manifest: a copy no manifest vouches for is one
        # remote retention never deletes (as `store.keep` keeps neither, locally).
        _remove(s3, dest, manifest.file, "its manifest could not be written")
        raise
    return info


def _remove(s3: Any, dest: Destination, name: str, why: str) -> None:
    """Delete the copy just made, `why`; the error being raised is the run's, so a failure here is a warning."""
    try:
        s3.delete_object(Bucket=dest.bucket, Key=dest.key(name))
    except Exception as exc:
        log.warning("%s: could not delete it (%s), and %s: delete it by hand", dest.url_of(name), type(exc).__name__, why)


# ---- retention -------------------------------------------------------------------------------------


def survey(s3: Any, dest: Destination, prefix: str) -> tuple[Listing, list[Present]]:
    """The objects directly under `dest` sorted into ours and not ours, each snapshot with whether a manifest
    vouches for it (same name, same size)."""
    sizes: dict[str, int] = {}
    with _mapped(dest.url):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=dest.bucket, Prefix=dest.prefix, Delimiter="/")
        for page in pages:
            for obj in page.get("Contents", ()):
                sizes[obj["Key"][len(dest.prefix) :]] = int(obj["Size"])
    listing = classify(sizes, prefix)
    present = []
    for name in listing.snapshots:
        verified = False
        if name in listing.manifests:
            manifest = read_manifest(s3, dest, name.manifest_name)
            verified = (
                manifest is not None and manifest.file == name.file_name and manifest.size == sizes[name.file_name]
            )
        present.append(Present(name, verified))
    return listing, present


@dataclass(frozen=True)
class Deleted:
    removed: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]  # (name, why): object lock, a policy


def delete(s3: Any, dest: Destination, prefix: str, names: Iterable[str]) -> Deleted:
    """Remove `names` (from `plan_retention`), each object's current version. Refuses (ValueError, before
    removing anything) a name that is not exactly one of ours; a delete the store refuses is reported."""
    from botocore.exceptions import ClientError

    wanted = only_ours(names, prefix)
    removed: list[str] = []
    refused: list[tuple[str, str]] = []
    for name in wanted:
        key = dest.key(name)
        try:
            head = s3.head_object(Bucket=dest.bucket, Key=key)
            version = head.get("VersionId")
            if version and version != "null":  # a versioned bucket (object lock): delete the data, not hide it
                s3.delete_object(Bucket=dest.bucket, Key=key, VersionId=version)
            else:
                s3.delete_object(Bucket=dest.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                continue
            code, status = _code(exc)
            refused.append((name, code or str(status)))
            continue
        removed.append(name)
    return Deleted(tuple(removed), tuple(refused))
