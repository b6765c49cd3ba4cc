"""The only module that imports hvac: `Vault`, a client object with one method per Vault endpoint.

A `Vault` owns its settings and one kept-alive connection (TLS settings, never a token), closed
with `close()` or on leaving `with`: close it before forking, a TLS connection must not be shared by
two processes. Certificate logins use a connection of their own, so the client certificate is read
from disk for each login. Every call maps hvac/requests errors to the project's errors, with fields
(`VaultUnavailable.state`, `NotFound.path`) so nobody parses messages. Tokens travel as `Secret`,
whose repr never shows the value; error messages carry Vault's own words and the path, never a token.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from nomad_vault_token.core.errors import ConfigError, NotFound, TokenInvalid, VaultDenied, VaultUnavailable
from nomad_vault_token.core.secret import Secret

if TYPE_CHECKING:
    import hvac

    from nomad_vault_token.core.config import Settings
    from nomad_vault_token.core.key_files import UnsealKey


@dataclass(frozen=True)
class TokenInfo:
    """The fields of lookup-self that matter here (never the token itself)."""

    accessor: str
    policies: tuple[str, ...]
    ttl: int
    creation_ttl: int
    renewable: bool
    orphan: bool
    period: int
    role: str
    explicit_max_ttl: int
    display_name: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_lookup(cls, data: Mapping[str, Any]) -> TokenInfo:
        clean = {k: v for k, v in data.items() if k != "id"}
        return cls(
            accessor=str(data.get("accessor", "")),
            policies=tuple(data.get("policies") or ()),
            ttl=int(data.get("ttl") or 0),
            creation_ttl=int(data.get("creation_ttl") or 0),
            renewable=bool(data.get("renewable")),
            orphan=bool(data.get("orphan")),
            period=int(data.get("period") or 0),
            role=str(data.get("role") or ""),
            explicit_max_ttl=int(data.get("explicit_max_ttl") or 0),
            display_name=str(data.get("display_name") or ""),
            raw=clean,
        )

    @classmethod
    def unverified(cls, accessor: str) -> TokenInfo:
        """What is known of a saved token Vault could not be asked about: its accessor."""
        return cls.from_lookup({"accessor": accessor})

    @property
    def effective_period(self) -> int:
        """The period: shown for create-orphan tokens; for role tokens it is the creation TTL."""
        return self.period or (self.creation_ttl if self.role and not self.explicit_max_ttl else 0)


@dataclass(frozen=True)
class Health:
    """What sys/health answered, or why it did not."""

    reachable: bool
    initialized: bool = False
    sealed: bool = True
    standby: bool = False
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.reachable and self.initialized and not self.sealed

    @property
    def state(self) -> str:
        """One word or phrase for logs and STATUS."""
        if not self.reachable:
            return f"unreachable ({self.detail})" if self.detail else "unreachable"
        if not self.initialized:
            return "not initialised"
        if self.sealed:
            return "sealed"
        return "standby" if self.standby else "active"


def _server_name_adapter(name: str) -> Any:
    from requests.adapters import HTTPAdapter

    class ServerNameAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["server_hostname"] = name
            kwargs["assert_hostname"] = name
            super().init_poolmanager(*args, **kwargs)

    return ServerNameAdapter()


def _vault_words(exc: Exception) -> str:
    """Vault's own error text on one line ("1 error occurred:\n\t* x" becomes "x")."""
    errors = getattr(exc, "errors", None)
    raw = [str(e) for e in errors] if errors else [str(exc).split(", on ")[0]]
    parts: list[str] = []
    for text in raw:
        for line in text.splitlines():
            line = line.strip().lstrip("*").strip()
            if line and not _MULTI_ERROR.fullmatch(line):
                parts.append(line)
    return "; ".join(dict.fromkeys(parts)) or type(exc).__name__


_MULTI_ERROR = re.compile(r"\d+ errors? occurred:")


@contextmanager
def _mapped(settings: Settings, path: str, *, login: bool = False, own_token: bool = False) -> Iterator[None]:
    """Turn hvac/requests failures on `path` into one-line project errors."""
    import hvac.exceptions as hx
    import requests

    addr = settings.vault_addr
    try:
        yield
    except requests.exceptions.SSLError as exc:
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            raise ConfigError(
                f"TLS to {addr}: Vault's certificate is not trusted"
                + (f" by ca_cert {settings.ca_cert}" if settings.ca_cert else "")
                + ": set ca_cert to the CA that signed it (and tls_server_name if the name differs)"
            ) from None
        if "PEM" in text or "key values mismatch" in text or "No such file" in text:
            raise ConfigError(
                f"TLS to {addr}: client certificate/key unusable: run `nomad-vault-token check`"
            ) from None
        raise VaultDenied(f"TLS to {addr} failed ({_short(text)}): check the CA and client certificate") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        reason = _reason(exc)
        raise VaultUnavailable(f"Vault at {addr} unreachable ({reason})", detail=reason) from None
    except hx.VaultDown:
        raise VaultUnavailable(f"Vault at {addr} is sealed: unseal it", state="sealed") from None
    except hx.VaultNotInitialized:
        raise VaultUnavailable(
            f"Vault at {addr} is not initialised: run operator init", state="not initialised"
        ) from None
    except hx.InvalidRequest as exc:
        if login:
            raise VaultDenied(
                f"{path}: certificate rejected by Vault ({_vault_words(exc)}): check that cert role "
                f"'{settings.cert_role}' trusts the CA that issued client_cert {settings.client_cert}"
            ) from None
        raise VaultDenied(f"{path}: Vault refused the request ({_vault_words(exc)})") from None
    except (hx.Forbidden, hx.Unauthorized) as exc:
        if own_token:
            raise TokenInvalid(f"{path}: the token is no longer valid ({_vault_words(exc)})") from None
        raise VaultDenied(
            f"{path}: permission denied ({_vault_words(exc)}): grant this identity's policy access to {path}"
        ) from None
    except hx.InvalidPath as exc:
        raise NotFound(f"{path}: not found ({_vault_words(exc)}): check the mount and role names", path) from None
    except (hx.InternalServerError, hx.BadGateway, hx.UnexpectedError, hx.RateLimitExceeded) as exc:
        words = _vault_words(exc)
        if login and "alias" in words:
            raise VaultDenied(f"{path}: certificate rejected ({words}): the certificate needs a Common Name") from None
        raise VaultUnavailable(f"{path}: Vault error ({words})", state="error", detail=words) from None
    except hx.VaultError as exc:
        raise VaultDenied(f"{path}: Vault refused the request ({_vault_words(exc)})") from None


def _reason(exc: Exception) -> str:
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


def _short(text: str) -> str:
    return text if len(text) < 160 else text[:157] + "..."


@dataclass(frozen=True)
class Minted:
    token: Secret
    accessor: str


class Vault:
    """One Vault as this tool talks to it: its settings, one kept-alive connection, its endpoints."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: Any = None

    def __enter__(self) -> Vault:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop the kept-alive connection (before a fork); the next call opens a new one."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _new_session(self, cert: tuple[str, str] | None) -> Any:
        import requests

        s = self.settings
        session = requests.Session()
        if s.tls_server_name:
            session.mount("https://", _server_name_adapter(s.tls_server_name))
        # hvac prefers a given session's verify/cert over its own arguments, and requests
        # lets REQUESTS_CA_BUNDLE beat a session-level verify=True: set both explicitly.
        session.verify = str(s.ca_cert) if s.ca_cert else True
        session.cert = cert
        return session

    def _client(self, token: Secret | None = None, *, client_cert: bool = False) -> hvac.Client:
        import hvac

        cert = None
        if client_cert:
            cert_path, key_path = self.settings.client_tls()
            cert = (str(cert_path), str(key_path))
            session = self._new_session(cert)  # a login's own connection: the key is read from disk now
        else:
            if self._session is None:
                self._session = self._new_session(None)
            session = self._session
        return hvac.Client(
            url=self.settings.vault_addr,
            token=token.reveal() if token else None,
            cert=cert,
            verify=session.verify,
            timeout=self.settings.request_timeout,
            namespace=self.settings.namespace,
            session=session,
        )

    @contextmanager
    def _mapped(self, path: str, *, login: bool = False, own_token: bool = False) -> Iterator[None]:
        with _mapped(self.settings, path, login=login, own_token=own_token):
            yield

    # ---- endpoints -------------------------------------------------------------

    def health(self) -> Health:
        """GET sys/health: never raises for Vault's state, only reports it."""
        import requests

        try:
            with self._mapped("sys/health"):
                resp = self._client().sys.read_health_status(method="GET", standby_ok=True)
        except VaultUnavailable as exc:
            return Health(reachable=False, detail=exc.detail)
        data: Mapping[str, Any]
        if isinstance(resp, requests.Response):
            try:
                data = resp.json()
            except ValueError:
                return Health(reachable=False, detail=f"HTTP {resp.status_code}, not Vault")
        else:
            data = resp
        return Health(
            reachable=True,
            initialized=bool(data.get("initialized")),
            sealed=bool(data.get("sealed", True)),
            standby=bool(data.get("standby")),
        )

    def login(self) -> Secret:
        """POST auth/<mount>/login with the client certificate (read from disk now)."""
        s = self.settings
        with self._mapped(f"auth/{s.auth_mount}/login", login=True):
            resp = self._client(client_cert=True).auth.cert.login(name=s.cert_role, mount_point=s.auth_mount)
        return Secret(resp["auth"]["client_token"])

    def mint(self, startup: Secret) -> Minted:
        """Mint the server token: through the mint role, or create-orphan with policies and period."""
        s = self.settings
        client = self._client(startup)
        meta = {"host": socket.gethostname(), "minted_by": "nomad-vault-token"}
        display = f"nomad-server-{socket.gethostname()}"
        if s.mint_mode == "role":
            with self._mapped(f"auth/token/create/{s.mint_role}"):
                resp = client.auth.token.create(
                    role_name=s.mint_role, policies=list(s.policies), meta=meta, display_name=display
                )
        else:
            with self._mapped("auth/token/create-orphan"):
                resp = client.auth.token.create_orphan(
                    policies=list(s.policies), period=f"{s.period}s", renewable=True, meta=meta, display_name=display
                )
        auth = resp["auth"]
        return Minted(token=Secret(auth["client_token"]), accessor=auth["accessor"])

    def revoke_self(self, token: Secret) -> None:
        """POST auth/token/revoke-self (the short-lived login token, a replaced server token)."""
        with self._mapped("auth/token/revoke-self", own_token=True):
            self._client(token).auth.token.revoke_self()

    def lookup_self(self, token: Secret, *, admin: bool = False) -> TokenInfo:
        """GET auth/token/lookup-self. A 403 means the token is gone: TokenInvalid; for an admin token,
        VaultDenied saying what to give instead."""
        path = "auth/token/lookup-self"
        try:
            with self._mapped(path, own_token=True):
                resp = self._client(token).auth.token.lookup_self()
        except TokenInvalid:
            if not admin:
                raise
            raise VaultDenied(
                f"{path}: Vault refused the admin token (permission denied): it is expired, revoked or not "
                "a token of this Vault (or lacks the default policy): give a valid admin token"
            ) from None
        return TokenInfo.from_lookup(resp["data"])

    def renew_self(self, token: Secret, increment: int | None = None) -> int:
        """POST auth/token/renew-self; returns the new TTL in seconds."""
        with self._mapped("auth/token/renew-self", own_token=True):
            resp = self._client(token).auth.token.renew_self(increment=increment)
        return int(resp["auth"]["lease_duration"])

    def capabilities_self(self, token: Secret, paths: Sequence[str]) -> dict[str, list[str]]:
        """POST sys/capabilities-self: path -> capabilities of this token."""
        with self._mapped("sys/capabilities-self"):
            resp = self._client(token).write_data("sys/capabilities-self", data={"paths": list(paths)})
        data = resp.get("data", resp) if isinstance(resp, dict) else {}
        return {p: list(data.get(p, [])) for p in paths}

    def read_role(self, token: Secret, role: str) -> dict[str, Any] | None:
        """GET auth/token/roles/<role>; None when it does not exist."""
        try:
            return self._read(token, f"auth/token/roles/{role}")
        except NotFound:
            return None

    def _read(self, token: Secret, path: str, *, needs: str | None = None) -> dict[str, Any] | None:
        with self._admin(path, needs) if needs else self._mapped(path):
            resp = self._client(token).read(path)
        return None if resp is None else dict(resp.get("data") or {})

    # ---- admin endpoints (bootstrap-roles) ----
    # With an admin token, not the certificate. A 403 names the path and the capabilities the admin
    # token lacks there (as measured on OpenBao), never the token.

    @contextmanager
    def _admin(self, path: str, needs: str) -> Iterator[None]:
        """`_mapped`, but a 403 says which capability the admin token needs on `path`."""
        import hvac.exceptions as hx

        with self._mapped(path):
            try:
                yield
            except hx.Forbidden:
                raise VaultDenied(f"{path}: permission denied: the admin token needs {needs} on it") from None

    def admin_read(self, token: Secret, path: str) -> dict[str, Any] | None:
        """GET <path> (a policy, a token role, a cert role); None when it does not exist."""
        return self._read(token, path, needs='"read"')

    def admin_write(self, token: Secret, path: str, data: Mapping[str, Any], needs: str) -> None:
        """POST <path> with `data`; `needs` is the capability a 403 names (e.g. '"update" (and "read")')."""
        with self._admin(path, needs):
            self._client(token).write_data(path, data=dict(data))

    def admin_auth_mounts(self, token: Secret) -> dict[str, str]:
        """GET sys/auth: mount path (without the trailing slash) -> auth method type."""
        with self._admin("sys/auth", '"read"'):
            resp = self._client(token).sys.list_auth_methods()
        data = resp.get("data", resp) if isinstance(resp, dict) else {}
        return {
            str(mount).rstrip("/"): str(info.get("type", ""))
            for mount, info in data.items()
            if isinstance(info, dict) and str(mount).endswith("/")
        }

    def admin_enable_auth(self, token: Secret, mount: str, method_type: str) -> None:
        """POST sys/auth/<mount>: enable an auth method there."""
        with self._admin(f"sys/auth/{mount}", '"update" and "sudo"'):
            self._client(token).sys.enable_auth_method(method_type, path=mount)

    # ---- snapshot (raft) ----

    def login_cert(self, role: str) -> Secret:
        """POST auth/<mount>/login with the client certificate, as cert role `role` (the snapshot identity)."""
        s = self.settings
        with self._mapped(f"auth/{s.auth_mount}/login", login=True):
            resp = self._client(client_cert=True).auth.cert.login(name=role, mount_point=s.auth_mount)
        return Secret(resp["auth"]["client_token"])

    def login_jwt(self, mount: str, role: str, jwt: Secret) -> Secret:
        """POST auth/<mount>/login with a JWT (e.g. a Nomad workload identity) against JWT role `role`."""
        path = f"auth/{mount}/login"
        try:
            with self._mapped(path):
                resp = self._client().write_data(path, data={"role": role, "jwt": jwt.reveal()})
        except NotFound:
            raise ConfigError(f"{path}: no JWT auth mount there: check --jwt-mount") from None
        except VaultDenied as exc:
            raise VaultDenied(f"{path}: JWT rejected for role {role!r}: {exc.message.split(': ', 1)[-1]}") from None
        return Secret(resp["auth"]["client_token"])

    def leader(self) -> Leader:
        """GET sys/leader (unauthenticated): whether this node is the active one, and the active node's address."""
        with self._mapped("sys/leader"):
            data = self._client().sys.read_leader_status()
        return Leader(
            ha_enabled=bool(data.get("ha_enabled")),
            is_self=bool(data.get("is_self")),
            leader_address=str(data.get("leader_address") or ""),
        )

    def version(self) -> str:
        """The server's version, from sys/seal-status ("" when it does not say)."""
        with self._mapped("sys/seal-status"):
            data = self._client().sys.read_seal_status()
        return str(data.get("version") or "")

    @contextmanager
    def snapshot_stream(self, token: Secret, timeout: int) -> Iterator[Iterator[bytes]]:
        """GET sys/storage/raft/snapshot from this address, streamed: yields the body's chunks.

        A standby configured with `disable_standby_reads` answers 307 to the active node: followed once,
        only to https (http only to loopback when allowed) and through this client's TLS settings (same
        CA); the token goes there explicitly, never through requests' own redirect handling. Errors while
        the body streams (a cut connection, a timeout) raise VaultUnavailable; a body that ends early but
        cleanly is for `snapshot_verify.verify` to catch."""
        import requests

        from nomad_vault_token.core.config import check_address

        path = "sys/storage/raft/snapshot"
        s = self.settings
        if self._session is None:
            self._session = self._new_session(None)
        session = self._session
        headers = {"X-Vault-Token": token.reveal()}
        if s.namespace:
            headers["X-Vault-Namespace"] = s.namespace
        url = f"{s.vault_addr.rstrip('/')}/v1/{path}"
        deadline = _Deadline(timeout)
        resp = None
        try:
            with _mapped(s, path):
                for _hop in range(2):
                    resp = session.get(
                        url,
                        headers=headers,
                        stream=True,
                        allow_redirects=False,
                        timeout=(s.request_timeout, timeout),
                        verify=session.verify,  # per request: REQUESTS_CA_BUNDLE beats a session's verify
                    )
                    if resp.status_code != 307:
                        break
                    location = resp.headers.get("Location", "")
                    resp.close()
                    if _hop:
                        raise VaultUnavailable(f"{path}: redirected twice: no active node answers", state="error")
                    scheme = location.split("://", 1)[0].lower()
                    try:
                        check_address(location, s.allow_insecure_http)
                        if scheme != "https" and not s.vault_addr.startswith("http://"):
                            raise ConfigError("a downgrade from https")
                    except ConfigError:
                        raise VaultDenied(f"{path}: refusing a redirect to {location!r}: not https") from None
                    url = location
                _raise_for_snapshot(resp, path, s.vault_addr)
        except BaseException:
            if resp is not None:
                resp.close()
            raise

        body: Any = resp

        def chunks() -> Iterator[bytes]:
            try:
                for chunk in body.iter_content(chunk_size=1 << 20):
                    deadline.check(path)
                    yield chunk
            except (requests.exceptions.RequestException, OSError) as exc:
                raise VaultUnavailable(
                    f"{path}: the snapshot stream broke off ({_reason(exc)}): nothing was kept",
                    state="error",
                    detail=_reason(exc),
                ) from None

        try:
            yield chunks()
        finally:
            body.close()


@dataclass(frozen=True)
class Leader:
    """What sys/leader answered."""

    ha_enabled: bool
    is_self: bool
    leader_address: str


class _Deadline:
    def __init__(self, seconds: int) -> None:
        import time

        self._time = time
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def check(self, path: str) -> None:
        if self._time.monotonic() > self.at:
            raise VaultUnavailable(
                f"{path}: the snapshot took longer than snapshot_timeout ({self.seconds}s): raise --snapshot-timeout",
                state="error",
                detail="timed out",
            )


def _raise_for_snapshot(resp: Any, path: str, addr: str) -> None:
    """Map a snapshot answer's status to the project's errors (the body is JSON only for errors)."""
    code = resp.status_code
    if code == 200:
        return
    try:
        words = "; ".join(str(e) for e in resp.json().get("errors") or []) or f"HTTP {code}"
    except ValueError:
        words = f"HTTP {code}"
    resp.close()
    if code in (401, 403):
        raise VaultDenied(
            f"{path}: permission denied ({words}): the snapshot identity's policy needs read on {path}"
        )
    if code == 503:
        raise VaultUnavailable(f"{path}: Vault at {addr} is sealed or unavailable ({words})", state="sealed")
    if code == 429:
        raise VaultUnavailable(f"{path}: {addr} is a standby and did not redirect: point --vault-addr at the "
                               "active node", state="standby")
    if code == 404:
        raise VaultDenied(f"{path}: not found ({words}): the storage backend must be raft")
    raise VaultUnavailable(f"{path}: Vault error ({words})", state="error", detail=words)


class Throwaway(Vault):
    """A local, throwaway server (`snapshot restore-test`): init, unseal, forced restore, one read."""

    def init_one_key(self) -> tuple[Secret, UnsealKey]:
        """PUT sys/init with one key share: (root token, unseal key)."""
        from nomad_vault_token.core.key_files import UnsealKey

        with self._mapped("sys/init"):
            data = self._client().sys.initialize(secret_shares=1, secret_threshold=1)
        return Secret(data["root_token"]), UnsealKey(bytes.fromhex(data["keys"][0]))

    def seal_config(self) -> tuple[int, int]:
        """GET sys/seal-status: (threshold, shares) as the server holds them now."""
        with self._mapped("sys/seal-status"):
            data = self._client().sys.read_seal_status()
        return int(data.get("t") or 0), int(data.get("n") or 0)

    def unseal_with(self, key: UnsealKey) -> bool:
        """PUT sys/unseal with one key; True while still sealed. A key Vault refuses raises VaultDenied."""
        with self._mapped("sys/unseal"):
            data = self._client().sys.submit_unseal_key(key.reveal())
        return bool(data.get("sealed", True))

    def restore_force(self, token: Secret, snapshot: Path) -> None:
        """POST sys/storage/raft/snapshot-force with the file as the body (streamed from disk)."""
        path = "sys/storage/raft/snapshot-force"
        if self._session is None:
            self._session = self._new_session(None)
        with self._mapped(path), open(snapshot, "rb") as body:
            resp = self._session.post(
                f"{self.settings.vault_addr}/v1/{path}",
                headers={"X-Vault-Token": token.reveal()},
                data=body,
                timeout=self.settings.snapshot_timeout,
                verify=self._session.verify,
            )
        if resp.status_code not in (200, 204):
            try:
                words = "; ".join(str(e) for e in resp.json().get("errors") or []) or f"HTTP {resp.status_code}"
            except ValueError:
                words = f"HTTP {resp.status_code}"
            raise VaultUnavailable(f"{path}: the throwaway server refused the snapshot ({words})", state="error")

    def read_path(self, token: Secret, path: str) -> dict[str, Any] | None:
        """GET <path>: its data, None when nothing is there."""
        try:
            return self._read(token, path)
        except NotFound:
            return None

# ---- the unsealer's prober: one node, no token ------------------------------------------------


class NodeUnreachable(Exception):
    """A node did not answer (refused, timeout, TLS, not Vault). `problem` is a few words for STATUS;
    it never holds a request body (and so never an unseal key)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class NodeAnswer:
    """One HTTP answer from a node: its status code and JSON body ({} when there is none)."""

    status: int
    body: Mapping[str, Any]


class NodeClient:
    """One Vault node as the unsealer talks to it: no token, ONE kept-alive HTTPS connection, numbered.

    `connection` is how many connections this client has had to open so far: it changes exactly when
    urllib3 had to connect again (the first request, a connection the server closed, a request that
    timed out and left its connection unusable). `unseal_plan` tells "sealed on purpose" from
    "restarted" by it. The pool holds one connection (`pool_maxsize=1`, blocking), so the probes and
    the keys all travel over the same one; use a client from one thread at a time.

    Every request has `timeout` seconds to connect and as long for each read. Unseal keys go in the
    request body only; errors never carry a body or a URL with a query.
    """

    def __init__(self, addr: str, settings: Settings, timeout: float) -> None:
        self.addr = addr.rstrip("/")
        self.settings = settings
        self.timeout = timeout
        self._connects = 0
        self._session: Any = None

    @property
    def connection(self) -> int:
        return self._connects

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _new_session(self) -> Any:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.connection import HTTPConnection, HTTPSConnection
        from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

        client = self
        server_name = self.settings.tls_server_name

        class CountingHTTPS(HTTPSConnection):
            def connect(self) -> None:
                client._connects += 1
                super().connect()

        class CountingHTTP(HTTPConnection):
            def connect(self) -> None:
                client._connects += 1
                super().connect()

        class PoolHTTPS(HTTPSConnectionPool):
            ConnectionCls = CountingHTTPS

        class PoolHTTP(HTTPConnectionPool):
            ConnectionCls = CountingHTTP

        class Adapter(HTTPAdapter):
            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                if server_name:
                    kwargs["server_hostname"] = server_name
                    kwargs["assert_hostname"] = server_name
                super().init_poolmanager(*args, **kwargs)
                self.poolmanager.pool_classes_by_scheme = {"http": PoolHTTP, "https": PoolHTTPS}

        session = requests.Session()
        session.trust_env = False  # no proxy or CA bundle from the environment: the config says
        adapter = Adapter(pool_connections=1, pool_maxsize=1, pool_block=True, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.verify = str(self.settings.ca_cert) if self.settings.ca_cert else True
        cert, key = self.settings.client_cert, self.settings.client_key
        session.cert = (str(cert), str(key)) if cert is not None and key is not None else None
        return session

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> NodeAnswer:
        import requests

        if self._session is None:
            self._session = self._new_session()
        problem = ""
        try:
            r = self._session.request(
                method,
                f"{self.addr}/v1/{path}",
                json=dict(body) if body is not None else None,
                timeout=(self.timeout, self.timeout),
                verify=self._session.verify,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            problem = "certificate not trusted" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else "TLS failed"
        except requests.exceptions.Timeout:
            problem = f"timeout after {self.timeout:g}s"
        except requests.exceptions.RequestException as exc:
            problem = _reason(exc)
        if problem:
            # Raised here, outside the except block: requests' exception holds the prepared request
            # (an unseal key in its body), and `from None` would still keep it as __context__.
            raise NodeUnreachable(problem)
        try:
            data = r.json() if r.content else {}
        except ValueError:
            raise NodeUnreachable(f"HTTP {r.status_code}, not Vault") from None
        return NodeAnswer(r.status_code, data if isinstance(data, dict) else {})

    def seal_status(self) -> Mapping[str, Any]:
        """GET sys/seal-status (unauthenticated)."""
        answer = self._request("GET", "sys/seal-status")
        if answer.status != 200:
            raise NodeUnreachable(f"sys/seal-status answered HTTP {answer.status}")
        return answer.body

    def health_code(self) -> int:
        """GET sys/health's status code: 200 active, 429 standby, 501 not initialised, 503 sealed, ..."""
        return self._request("GET", "sys/health").status

    def unseal(self, key: str) -> NodeAnswer:
        """POST sys/unseal {"key": ...}: the key in the body only; the answer has seal-status's shape
        (400 with `errors` for a key Vault refuses)."""
        return self._request("POST", "sys/unseal", {"key": key})

    def reset(self) -> NodeAnswer:
        """POST sys/unseal {"reset": true}: discard the keys given so far."""
        return self._request("POST", "sys/unseal", {"reset": True})
