"""The pure parts of the S3 copies: destination URLs and part sizes (no server, no boto3 call)."""

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
