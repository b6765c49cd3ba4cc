"""Vault's HTTP answers as the project's errors: ONE table from status to exception, as hvac's own
`exceptions.py` keeps one from status to hvac exception.

Every client here (the hvac-based `Vault`, the raw raft snapshot stream) turns a refusal into
`error_for(status, words, context)`; the per-node prober reports statuses as data instead (a node
answering 503 is a state, not an error). `Context` says what the request was (a certificate login, the
token's own endpoint, an admin write needing a capability, a snapshot), so each status gets the line
that names the path and what to do. No message ever holds a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nomad_vault_token.core.errors import (
    ConfigError,
    NotFound,
    NvtError,
    TokenInvalid,
    VaultDenied,
    VaultUnavailable,
)

if TYPE_CHECKING:
    from nomad_vault_token.core.config import Settings

# hvac raises one exception class per status (hvac/utils.py raise_for_error): back to the status.
HVAC_STATUS = {
    "InvalidRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "InvalidPath": 404,
    "UnsupportedOperation": 405,
    "PreconditionFailed": 412,
    "RateLimitExceeded": 429,
    "InternalServerError": 500,
    "VaultNotInitialized": 501,
    "BadGateway": 502,
    "VaultDown": 503,
    "UnexpectedError": 500,  # any other status hvac does not name: a server-side error
}


@dataclass(frozen=True)
class Context:
    """What a request was, for the words of its error."""

    path: str
    addr: str
    login: bool = False  # a certificate login: a 400 means the certificate was rejected
    login_fix: str = ""  # what to check then (the cert role and the CA)
    own_token: bool = False  # the token's own endpoint: a 401/403 means the token is gone
    needs: str = ""  # an admin call: a 403 names the capability the admin token needs on `path`
    denied_fix: str = ""  # what a 403 asks for, when not the default
    not_found_fix: str = "check the mount and role names"
    snapshot: bool = False  # the raft snapshot stream: 404 means no raft storage; 429 a standby not redirecting


def error_for(status: int, words: str, ctx: Context) -> NvtError:
    """The one table: `status` (Vault's answer) and Vault's own `words` on `ctx.path`, as one project error."""
    path, addr = ctx.path, ctx.addr
    if status == 400:
        if ctx.login:
            return VaultDenied(f"{path}: certificate rejected by Vault ({words}): {ctx.login_fix}")
        return VaultDenied(f"{path}: Vault refused the request ({words})")
    if status in (401, 403):
        if ctx.own_token:
            return TokenInvalid(f"{path}: the token is no longer valid ({words})")
        if ctx.needs:
            return VaultDenied(f"{path}: permission denied: the admin token needs {ctx.needs} on it")
        fix = ctx.denied_fix or f"grant this identity's policy access to {path}"
        return VaultDenied(f"{path}: permission denied ({words}): {fix}")
    if status == 404:
        if ctx.snapshot:
            return VaultDenied(f"{path}: not found ({words}): the storage backend must be raft")
        return NotFound(f"{path}: not found ({words}): {ctx.not_found_fix}", path)
    if status == 429 and ctx.snapshot:
        return VaultUnavailable(
            f"{path}: {addr} is a standby and did not redirect: point --vault-addr at the active node", state="standby"
        )
    if status == 501:
        return VaultUnavailable(f"Vault at {addr} is not initialised: run operator init", state="not initialised")
    if status == 503:
        if ctx.snapshot:
            return VaultUnavailable(f"{path}: Vault at {addr} is sealed or unavailable ({words})", state="sealed")
        return VaultUnavailable(f"Vault at {addr} is sealed: unseal it", state="sealed")
    if status == 429 or status >= 500:
        if ctx.login and "alias" in words:
            return VaultDenied(f"{path}: certificate rejected ({words}): the certificate needs a Common Name")
        return VaultUnavailable(f"{path}: Vault error ({words})", state="error", detail=words)
    return VaultDenied(f"{path}: Vault refused the request ({words})")


def vault_words(exc: Exception) -> str:
    """Vault's own error text on one line ("1 error occurred:\\n\\t* x" becomes "x")."""
    errors = getattr(exc, "errors", None)
    raw = [str(e) for e in errors] if errors else [str(exc).split(", on ")[0]]
    return _one_line_words(raw) or type(exc).__name__


def body_words(errors: object, status: int) -> str:
    """The `errors` list of a JSON error body, on one line; `HTTP <status>` when there is none."""
    raw = [str(e) for e in errors] if isinstance(errors, list) else []
    return _one_line_words(raw) or f"HTTP {status}"


_MULTI_ERROR = re.compile(r"\d+ errors? occurred:")


def _one_line_words(raw: list[str]) -> str:
    parts: list[str] = []
    for text in raw:
        for line in text.splitlines():
            line = line.strip().lstrip("*").strip()
            if line and not _MULTI_ERROR.fullmatch(line):
                parts.append(line)
    return "; ".join(dict.fromkeys(parts))


@contextmanager
def mapped(settings: Settings, ctx: Context) -> Iterator[None]:
    """Turn hvac/requests failures of the request on `ctx.path` into one-line project errors."""
    import hvac.exceptions as hx
    import requests

    from nomad_vault_token.vault.http import Redirected

    addr = settings.vault_addr
    try:
        yield
    except Redirected as exc:
        active = exc.active_node(f"{addr}/v1/{ctx.path}", settings.allow_insecure_http)
        if active is not None:  # a standby mid-election, or a balancer sending us to one: wait, as for a 503
            raise VaultUnavailable(
                f"{ctx.path} at {addr}: a standby node answered, sending us to its active node {active}: not followed "
                "(no token goes to an address you did not give); point vault_addr at the active node (a load "
                "balancer with a health check) if this lasts",
                state="standby",
                detail=f"redirect to {active}",
            ) from None
        raise VaultDenied(exc.line(f"{ctx.path} at {addr}")) from None
    except requests.exceptions.SSLError as exc:
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            raise ConfigError(
                f"TLS to {addr}: Vault's certificate is not trusted"
                + (f" by ca_cert {settings.ca_cert}" if settings.ca_cert else "")
                + ": set ca_cert to the CA that signed it (and tls_server_name if the name differs)"
            ) from None
        if "PEM" in text or "key values mismatch" in text or "No such file" in text:
            raise ConfigError(f"TLS to {addr}: client certificate/key unusable: run `nomad-vault-token check`") from None
        if any(m in text for m in _CLOSED_IN_HANDSHAKE):  # nobody behind the address: an outage, not a refusal
            reason = "connection closed during the TLS handshake"
            raise VaultUnavailable(f"Vault at {addr} unreachable ({reason})", detail=reason) from None
        raise VaultDenied(f"TLS to {addr} failed ({short(text)}): check the CA and client certificate") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        reason = connection_reason(exc)
        raise VaultUnavailable(f"Vault at {addr} unreachable ({reason})", detail=reason) from None
    except hx.VaultError as exc:
        status = HVAC_STATUS.get(type(exc).__name__, 0)
        raise error_for(status, vault_words(exc), ctx) from None


# The peer closed the connection before the TLS handshake was done: a load balancer with no node behind
# it, a server going down. Not a certificate problem (that one fails with an alert, not an EOF).
_CLOSED_IN_HANDSHAKE = ("UNEXPECTED_EOF_WHILE_READING", "EOF occurred in violation of protocol", "SSLZeroReturnError")


def connection_reason(exc: Exception) -> str:
    text = str(exc)
    for marker in (
        "Connection refused",
        "timed out",
        "Name or service not known",
        "No route to host",
        "Connection reset",
        "Remote end closed",
    ):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


def short(text: str) -> str:
    return text if len(text) < 160 else text[:157] + "..."
