"""`init`'s pure part: which shares go where, what `sys/init` is asked, and the one-line words.

Destinations take share numbers (1-based, in the order Vault returns them): `PATH:1,2` gives that holder
shares 1 and 2, `PATH` every share. Split custody is several holders with overlapping groups: for 3 shares,
threshold 2, `a:1,2`, `b:2,3`, `c:1,3` (AB, BC, AC): each holder alone reaches the threshold, and losing
any one holder loses no share. No I/O here: `commands/init.py` does it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

MAX_SHARES = 255  # Shamir over GF(256)

NOMAD_ITEM = "key_{}"  # the items the shipped unsealer job's template reads: key_1, key_2, ...


class PlanError(ValueError):
    """A flag that cannot make an init: one line, what to fix."""


@dataclass(frozen=True)
class Holder:
    """One destination: where it is and which shares (1-based) it holds."""

    kind: str  # nomad-variable | credential-file | pgp
    where: str
    shares: tuple[int, ...]


_GROUP = re.compile(r"[0-9]+(,[0-9]+)*")


def split_group(spec: str, shares: int, flag: str) -> tuple[str, tuple[int, ...]]:
    """`PATH[:I,J,...]` as (PATH, shares); no group: every share."""
    where, sep, group = spec.rpartition(":")
    if not sep or not _GROUP.fullmatch(group):
        if not spec.strip():
            raise PlanError(f"{flag}: give PATH or PATH:I,J (the share numbers this holder keeps)")
        return spec, tuple(range(1, shares + 1))
    numbers = tuple(int(n) for n in group.split(","))
    if not where:
        raise PlanError(f"{flag} {spec!r}: give PATH:I,J")
    for n in numbers:
        if not 1 <= n <= shares:
            raise PlanError(f"{flag} {spec!r}: share {n} does not exist: shares are numbered 1 to {shares}")
    if len(set(numbers)) != len(numbers):
        raise PlanError(f"{flag} {spec!r}: a share is named twice")
    return where, numbers


def check_counts(shares: int, threshold: int) -> None:
    if not 1 <= shares <= MAX_SHARES:
        raise PlanError(f"--shares {shares}: give 1 to {MAX_SHARES}")
    if not 1 <= threshold <= shares:
        raise PlanError(f"--threshold {threshold}: give 1 to --shares ({shares})")
    if shares > 1 and threshold == 1:
        raise PlanError(f"--threshold 1 with --shares {shares}: Vault refuses it; give --shares 1 or a threshold of 2+")


def check_coverage(holders: list[Holder], shares: int, threshold: int) -> list[str]:
    """Warnings (not errors) about custody: a share nobody holds is lost at once; a holder below the
    threshold cannot unseal alone (split custody wants that; say it)."""
    held = {n for h in holders for n in h.shares}
    warnings = []
    lost = [n for n in range(1, shares + 1) if n not in held]
    if lost:
        warnings.append(f"shares {', '.join(map(str, lost))} go to no destination: they are lost when init ends")
    if len(held) < threshold:
        raise PlanError(
            f"the destinations hold {len(held)} distinct shares, below the threshold {threshold}: "
            "the cluster could never be unsealed"
        )
    return warnings


def pgp_key_base64(data: bytes, where: str) -> str:
    """A public key file as `pgp_keys` wants it: base64 of the binary key (`gpg --export`). ASCII armor
    (`gpg --export --armor`) is unwrapped (its base64 body, without the checksum line); nothing is parsed."""
    text = data.decode("ascii", errors="replace")
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" in text:
        body = text.split("-----BEGIN PGP PUBLIC KEY BLOCK-----", 1)[1].split("-----END PGP PUBLIC KEY BLOCK-----", 1)[0]
        lines = [ln.strip() for ln in body.strip().splitlines()]
        if "" in lines:  # armor headers end at the first blank line
            lines = lines[lines.index("") + 1 :]
        lines = [ln for ln in lines if ln and not ln.startswith("=")]
        try:
            raw = base64.b64decode("".join(lines), validate=True)
        except (binascii.Error, ValueError):
            raise PlanError(f"{where}: armored, but its body is not base64: give `gpg --export KEYID > FILE`") from None
    elif text.lstrip().startswith("-----BEGIN"):
        raise PlanError(f"{where}: not a PGP public key block: give `gpg --export KEYID > FILE`")
    else:
        raw = data
    if not raw or not raw[0] & 0x80:  # an OpenPGP packet's first octet has its top bit set (RFC 4880 4.2)
        raise PlanError(f"{where}: not an OpenPGP public key: give `gpg --export KEYID > FILE`")
    return base64.b64encode(raw).decode()


def init_request(
    *,
    auto_unseal: bool,
    shares: int,
    threshold: int,
    pgp_keys: list[str],
    root_token_pgp_key: str | None,
) -> dict[str, object]:
    """The body of `PUT sys/init`: Shamir shares, or recovery shares on an auto-unseal node."""
    if pgp_keys and len(pgp_keys) != shares:
        raise PlanError(f"--pgp-key given {len(pgp_keys)} times for {shares} shares: one key per share")
    prefix = "recovery_" if auto_unseal else "secret_"
    body: dict[str, object] = {f"{prefix}shares": shares, f"{prefix}threshold": threshold}
    if pgp_keys:
        body["recovery_pgp_keys" if auto_unseal else "pgp_keys"] = list(pgp_keys)
    if root_token_pgp_key:
        body["root_token_pgp_key"] = root_token_pgp_key
    return body


def nomad_items(keys: list[str], numbers: tuple[int, ...]) -> dict[str, str]:
    """The Variable's items: `key_<n>` for share n, as the unsealer job's template reads them."""
    return {NOMAD_ITEM.format(n): keys[n - 1] for n in numbers}


def keys_text(keys: list[str], numbers: tuple[int, ...]) -> str:
    """A keys file (`core.key_files`): one hex share a line, with a comment naming the shares."""
    return f"# shares {','.join(map(str, numbers))}\n" + "".join(keys[n - 1] + "\n" for n in numbers)


def credential_name(path: str) -> str:
    """The credential's embedded name: the file name without `.cred` (LoadCredentialEncrypted=NAME:PATH)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name.removesuffix(".cred") or "unseal-keys"


def pgp_share_name(key_file: str, number: int) -> str:
    """The file a holder's encrypted share goes to: named after the key file it was encrypted to."""
    stem = key_file.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".asc", ".gpg", ".pub", ".key"):
        stem = stem.removesuffix(suffix)
    return f"{stem}.share-{number}.gpg"
