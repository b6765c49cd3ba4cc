"""`init`'s pure plan, table-tested: share groups, counts, coverage, the sys/init body, PGP key files."""

from __future__ import annotations

import base64

import pytest

from nomad_vault_token.setup import init_plan
from nomad_vault_token.setup.init_plan import Holder, PlanError


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("/etc/credstore.encrypted/unseal", ("/etc/credstore.encrypted/unseal", (1, 2, 3))),
        ("a.cred:1,2", ("a.cred", (1, 2))),
        ("nomad/jobs/vault-unseal:3", ("nomad/jobs/vault-unseal", (3,))),
        ("C:/odd:name", ("C:/odd:name", (1, 2, 3))),  # a colon not followed by numbers is part of the path
    ],
)
def test_split_group(spec: str, want: tuple[str, tuple[int, ...]]) -> None:
    assert init_plan.split_group(spec, 3, "--credential-file") == want


@pytest.mark.parametrize(("spec", "words"), [("a:4", "share 4 does not exist"), ("a:1,1", "named twice"),
                                             (":1", "PATH:I,J"), ("", "give PATH")])  # fmt: skip
def test_split_group_refuses(spec: str, words: str) -> None:
    with pytest.raises(PlanError, match=words):
        init_plan.split_group(spec, 3, "--credential-file")


@pytest.mark.parametrize(("shares", "threshold", "ok"), [(5, 3, True), (1, 1, True), (3, 1, False), (3, 4, False),
                                                         (0, 0, False), (256, 2, False)])  # fmt: skip
def test_counts(shares: int, threshold: int, ok: bool) -> None:
    if ok:
        init_plan.check_counts(shares, threshold)
    else:
        with pytest.raises(PlanError):
            init_plan.check_counts(shares, threshold)


def test_split_custody_covers_every_share_and_warns_of_a_lost_one() -> None:
    ab, bc, ac = Holder("c", "a", (1, 2)), Holder("c", "b", (2, 3)), Holder("c", "c", (1, 3))
    assert init_plan.check_coverage([ab, bc, ac], 3, 2) == []
    assert "shares 3 go to no destination" in init_plan.check_coverage([ab], 3, 2)[0]
    with pytest.raises(PlanError, match="below the threshold"):
        init_plan.check_coverage([Holder("c", "x", (1,))], 3, 2)


def test_init_request_shamir_recovery_and_pgp() -> None:
    assert init_plan.init_request(auto_unseal=False, shares=3, threshold=2, pgp_keys=[], root_token_pgp_key=None) == {
        "secret_shares": 3, "secret_threshold": 2}  # fmt: skip
    body = init_plan.init_request(auto_unseal=True, shares=2, threshold=2, pgp_keys=["a", "b"], root_token_pgp_key="r")
    assert body == {"recovery_shares": 2, "recovery_threshold": 2, "recovery_pgp_keys": ["a", "b"],
                    "root_token_pgp_key": "r"}  # fmt: skip
    with pytest.raises(PlanError, match="one key per share"):
        init_plan.init_request(auto_unseal=False, shares=3, threshold=2, pgp_keys=["a"], root_token_pgp_key=None)


def test_items_and_keys_text() -> None:
    keys = ["aa" * 33, "bb" * 33, "cc" * 33]
    assert init_plan.nomad_items(keys, (1, 3)) == {"key_1": keys[0], "key_3": keys[2]}
    assert init_plan.keys_text(keys, (2,)) == f"# shares 2\n{keys[1]}\n"
    assert init_plan.credential_name("/etc/credstore.encrypted/unseal-keys.cred") == "unseal-keys"
    assert init_plan.pgp_share_name("/home/alice/alice.asc", 2) == "alice.share-2.gpg"


def test_pgp_key_files_binary_or_armored() -> None:
    packet = bytes([0x99, 0x01, 0x0D]) + b"key material"
    b64 = base64.b64encode(packet).decode()
    assert init_plan.pgp_key_base64(packet, "k") == b64
    armored = f"-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: x\n\n{b64}\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
    assert init_plan.pgp_key_base64(armored.encode(), "k") == b64
    for bad in (b"hello", b"-----BEGIN CERTIFICATE-----\nxx\n", b""):
        with pytest.raises(PlanError):
            init_plan.pgp_key_base64(bad, "k")
