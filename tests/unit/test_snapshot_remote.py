"""The pure parts of the S3 copies: destination URLs, part sizes, what a store said as one line, aborts (no
server, no boto3 call)."""

from __future__ import annotations

import pytest

from nomad_vault_token.snapshot.remote import (
    MAX_PARTS,
    PART_SIZE,
    Destination,
    parse_destination,
    parse_object,
    part_size,
)


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://backups", "backups", ""),
        ("s3://backups/", "backups", ""),
        ("s3://backups/vault", "backups", "vault/"),
        ("s3://backups/vault/prod/", "backups", "vault/prod/"),
        ("s3://my.bucket-1/a b/c=d", "my.bucket-1", "a b/c=d/"),
    ],
)
def test_destinations(url: str, bucket: str, prefix: str) -> None:
    dest = parse_destination(url)
    assert dest == Destination(bucket, prefix)
    assert dest.url == f"s3://{bucket}/{prefix}"
    assert dest.key("vault-20261123T190000Z-4.snap") == prefix + "vault-20261123T190000Z-4.snap"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("backups/vault", "use s3://BUCKET/PREFIX"),
        ("https://s3.amazonaws.com/backups", "use s3://BUCKET/PREFIX"),
        ("s3://", "use s3://BUCKET/PREFIX"),
        ("s3://ab", "use s3://BUCKET/PREFIX"),
        ("s3://Backups/x", "use s3://BUCKET/PREFIX"),
        ("s3://a..b/x", "use s3://BUCKET/PREFIX"),
        ("s3://KEY:SECRET@backups/x", "never the URL"),
        ("s3://backups/x?versionId=1", "never the URL"),
        ("s3://backups//x", "empty"),
        ("s3://backups/x/../y", "'..'"),
        ("s3://backups/./y", "'.'"),
        ("s3://backups/x\\y", "never the URL"),
    ],
)
def test_bad_destinations_say_what_is_wanted(url: str, needle: str) -> None:
    with pytest.raises(ValueError, match="--copy-to") as caught:
        parse_destination(url)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def test_objects() -> None:
    assert parse_object("s3://backups/vault/x.snap") == (Destination("backups", "vault/"), "x.snap")
    assert parse_object("s3://backups/x.snap") == (Destination("backups", ""), "x.snap")
    for bad in ("s3://backups/vault/", "s3://backups", "s3://"):
        with pytest.raises(ValueError, match="name the object"):
            parse_object(bad)


@pytest.mark.parametrize(
    ("size", "want"),
    [(0, PART_SIZE), (1, PART_SIZE), (PART_SIZE * MAX_PARTS, PART_SIZE), (PART_SIZE * MAX_PARTS + 1, 9 << 20)],
)
def test_part_size_stays_within_the_part_limit(size: int, want: int) -> None:
    got = part_size(size)
    assert got == want
    assert -(-size // got) <= MAX_PARTS
    assert got % (1 << 20) == 0


# ---- what the store said, as one line -------------------------------------------------------------------


def client_error(code: str, status: int, operation: str = "PutObject") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       operation)  # fmt: skip


@pytest.mark.parametrize(
    ("code", "status", "exit_code", "needle"),
    [
        ("AccessDenied", 403, 77, "refused (AccessDenied): check the credentials and the bucket policy"),
        ("SignatureDoesNotMatch", 403, 77, "refused (SignatureDoesNotMatch)"),
        ("NoSuchBucket", 404, 78, "no such bucket: create it or fix the URL"),
        ("XMinioStorageFull", 507, 69, "the store is out of space (XMinioStorageFull): free space"),
        ("", 507, 69, "the store is out of space (507)"),
        ("QuotaExceeded", 403, 77, "refused (QuotaExceeded)"),  # a 403 is a refusal, whatever it says
        ("NoSuchUpload", 404, 69, "dropped the upload before it completed (NoSuchUpload): check the store's log"),
        ("InternalError", 500, 69, "InternalError: "),
    ],
)
def test_what_the_store_said_is_one_line_with_its_exit_code(code: str, status: int, exit_code: int, needle: str) -> None:
    from nomad_vault_token.snapshot import remote

    error = remote._failure(client_error(code, status), "s3://b/p/x.snap")
    assert error.exit_code == exit_code
    assert error.message.startswith("s3://b/p/x.snap: ") and needle in error.message
    assert "\n" not in error.message


class AbortsWith:
    """An S3 client whose abort_multipart_upload raises `error` (or succeeds), recording the call."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.aborted: list[str] = []

    def abort_multipart_upload(self, **kwargs: str) -> None:
        self.aborted.append(kwargs["UploadId"])
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize(
    ("error", "warned"),
    [
        (None, False),
        (client_error("NoSuchUpload", 404, "AbortMultipartUpload"), False),  # already gone: nothing is left behind
        (client_error("InternalError", 500, "AbortMultipartUpload"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
    ],
    ids=["aborted", "already-gone", "refused", "store-down"],
)
def test_an_abort_that_cannot_leave_parts_behind_is_not_a_warning(
    error: Exception | None, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    from nomad_vault_token.snapshot import remote

    s3 = AbortsWith(error)
    with caplog.at_level("DEBUG", logger=remote.log.name):
        remote._abort(s3, parse_destination("s3://bkt/p"), "p/x.snap", "upload-1")
    assert s3.aborted == ["upload-1"]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert bool(warnings) == warned
    if warned:
        assert "s3://bkt/p/x.snap: could not abort the interrupted upload upload-1" in warnings[0].getMessage()


def test_remote_delete_refuses_a_name_not_ours_before_deleting_anything() -> None:
    from nomad_vault_token.snapshot import remote

    class Untouched:
        def __getattr__(self, operation: str) -> None:
            raise AssertionError(f"the store was asked to {operation}")

    with pytest.raises(ValueError, match=r"refusing to delete 'notes\.txt': not a vault snapshot or manifest name"):
        remote.delete(Untouched(), parse_destination("s3://bkt/p"), "vault",
                      ["vault-20261123T192942Z-39.snap", "notes.txt"])  # fmt: skip
