"""The raft snapshot stream: GET sys/storage/raft/snapshot, streamed in chunks, with its one redirect
rule and its deadline; a refusal goes through the one status table (`errors.error_for`)."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from nomad_vault_token.core.errors import VaultDenied, VaultUnavailable
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.errors import Context, body_words, connection_reason, error_for, mapped

if TYPE_CHECKING:
    import requests

    from nomad_vault_token.core.config import Settings


BLOCK = 1 << 20  # bytes of body per block handed on


@contextmanager
def snapshot_stream(
    s: Settings, session: requests.Session, token: Secret, timeout: int
) -> Iterator[Iterator[bytes | bytearray]]:
    """GET sys/storage/raft/snapshot from this address, streamed: yields the body in blocks of up to BLOCK bytes.

    Takes the client's settings and its session (`Vault.snapshot_stream` passes them), not the client:
    this module stays below `client`.

    A standby configured with `disable_standby_reads` answers 307 to the active node: followed once,
    only to https (http only to loopback when allowed) and through this client's TLS settings (same
    CA); the token goes there explicitly, never through requests' own redirect handling. Errors while
    the body streams (a cut connection, a timeout) raise VaultUnavailable; a body that ends early but
    cleanly is for `archive.verify_stream` to catch."""
    import requests

    from nomad_vault_token.vault.http import request_own_redirects

    path = "sys/storage/raft/snapshot"
    headers = {"X-Vault-Token": token.reveal()}
    if s.namespace:
        headers["X-Vault-Namespace"] = s.namespace
    url = f"{s.vault_addr.rstrip('/')}/v1/{path}"
    deadline = _Deadline(timeout)
    resp = None
    try:
        with mapped(s, Context(path, s.vault_addr)):
            for _hop in range(2):
                resp = request_own_redirects(  # a 307 comes back here, never followed by requests
                    session, "GET", url, headers=headers, stream=True, timeout=(s.request_timeout, timeout)
                )
                if resp.status_code != 307:
                    break
                location = resp.headers.get("Location", "")
                resp.close()
                if _hop:
                    raise VaultUnavailable(f"{path}: redirected twice: no active node answers", state="error")
                url = _active_url(location, path, s.vault_addr, s.allow_insecure_http)
            _raise_for_snapshot(resp, path, s.vault_addr)
    except BaseException:
        if resp is not None:
            resp.close()
        raise

    body: Any = resp

    def chunks() -> Iterator[bytes | bytearray]:
        try:
            for chunk in _blocks(body):
                deadline.check(path)
                yield chunk
        except (requests.exceptions.RequestException, OSError, http.client.HTTPException) as exc:
            raise VaultUnavailable(
                f"{path}: the snapshot stream broke off ({connection_reason(exc)}): nothing was kept",
                state="error",
                detail=connection_reason(exc),
            ) from None

    try:
        yield chunks()
    finally:
        body.close()


def _active_url(location: str, path: str, vault_addr: str, allow_insecure_http: bool) -> str:
    """Where a standby's 307 points (`standby_target`, the rule `Redirected.active_node` uses too); VaultDenied
    for any other redirect."""
    from nomad_vault_token.vault.http import standby_target

    target = standby_target(f"{vault_addr.rstrip('/')}/v1/{path}", location, allow_insecure_http)
    if isinstance(target, str):
        raise VaultDenied(f"{path}: refusing a redirect to {location!r}: {target}")
    return target.url


def _blocks(resp: Any) -> Iterator[bytes | bytearray]:
    """The body in blocks of BLOCK bytes, each a new buffer (the receiver hands them on to another thread).

    When urllib3 left the body to http.client undecoded (a snapshot has no Content-Encoding), http.client reads
    it straight into each block, the chunked framing undone in a loop per block; through requests the same body
    comes as the server's chunks (2 KiB and 62 KiB from OpenBao), each through urllib3's and requests' generators,
    in a process whose verifier wants the GIL too (at 256 MiB the body took ~0.1 s longer that way, of ~1 s).
    `_fp` is urllib3's own attribute, so it is checked, not trusted: anything else goes through requests."""
    raw = getattr(resp.raw, "_fp", None)
    if not isinstance(raw, http.client.HTTPResponse) or resp.headers.get("Content-Encoding", "identity") != "identity":
        yield from resp.iter_content(chunk_size=BLOCK)
        return
    while True:
        block = bytearray(BLOCK)
        got = raw.readinto(block)
        if not got:
            return
        if got < BLOCK:
            del block[got:]
        yield block


class _Deadline:
    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def check(self, path: str) -> None:
        if time.monotonic() > self.at:
            raise VaultUnavailable(
                f"{path}: the snapshot took longer than snapshot_timeout ({self.seconds}s): raise --snapshot-timeout",
                state="error",
                detail="timed out",
            )


def _raise_for_snapshot(resp: Any, path: str, addr: str) -> None:
    """A snapshot answer's status as the project's error (the body is JSON only for errors)."""
    code = resp.status_code
    if code == 200:
        return
    try:
        errors = resp.json().get("errors")
    except ValueError:
        errors = None
    resp.close()
    fix = f"the snapshot identity's policy needs read on {path}"
    raise error_for(code, body_words(errors, code), Context(path, addr, denied_fix=fix, snapshot=True))
