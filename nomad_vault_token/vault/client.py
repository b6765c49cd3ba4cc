"""The only module that imports hvac: `Vault`, a client object with one method per Vault endpoint.

A `Vault` owns its settings and one kept-alive connection (TLS settings, never a token), closed
with `close()` or on leaving `with`: close it before forking, a TLS connection must not be shared by
two processes. Certificate logins use a connection of their own, so the client certificate is read
from disk for each login. Every call maps hvac/requests errors to the project's errors, with fields
(`VaultUnavailable.state`, `NotFound.path`) so nobody parses messages. Tokens travel as `Secret`,
whose repr never shows the value; error messages carry Vault's own words and the path, never a token.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from nomad_vault_token.core.errors import ConfigError, NotFound, TokenInvalid, VaultDenied, VaultUnavailable
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.errors import Context, mapped

if TYPE_CHECKING:
    import hvac
    import requests
    from requests.adapters import HTTPAdapter

    from nomad_vault_token.core.config import Settings


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


def _server_name_adapter(name: str) -> HTTPAdapter:
    from requests.adapters import HTTPAdapter

    class ServerNameAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["server_hostname"] = name
            kwargs["assert_hostname"] = name
            super().init_poolmanager(*args, **kwargs)

    return ServerNameAdapter()


@dataclass(frozen=True)
class Minted:
    token: Secret
    accessor: str


class Vault:
    """One Vault as this tool talks to it: its settings, one kept-alive connection, its endpoints."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._session: requests.Session | None = None

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

    def session(self) -> requests.Session:
        """The kept-alive connection (requests' Session, TLS settings only): made on first use."""
        if self._session is None:
            self._session = self._new_session(None)
        return self._session

    def _new_session(self, cert: tuple[str, str] | None) -> requests.Session:
        from nomad_vault_token.vault.http import policy_session

        s = self.settings
        session = policy_session()  # no proxy, no redirect, the CA and certificate set here on every request
        if s.tls_server_name:
            session.mount("https://", _server_name_adapter(s.tls_server_name))
        session.verify = str(s.ca_cert) if s.ca_cert else True
        session.cert = cert
        return session

    def _client(self, token: Secret | None = None, *, client_cert: bool = False) -> hvac.Client:
        import hvac

        from nomad_vault_token.vault.http import hvac_token

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
            token=hvac_token(token.reveal() if token else None),  # never VAULT_TOKEN or ~/.vault-token
            cert=cert,
            verify=session.verify,
            timeout=self.settings.request_timeout,
            namespace=self.settings.namespace,
            session=session,
            allow_redirects=False,
        )

    @contextmanager
    def _mapped(self, path: str, *, login: bool = False, own_token: bool = False, needs: str = "") -> Iterator[None]:
        s = self.settings
        login_fix = f"check that cert role '{s.cert_role}' trusts the CA that issued client_cert {s.client_cert}"
        ctx = Context(path, s.vault_addr, login=login, login_fix=login_fix, own_token=own_token, needs=needs)
        with mapped(s, ctx):
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

    def mint_keyring(self, startup: Secret) -> Minted:
        """Mint the keyring token through the keyring role: its policy alone, orphan, periodic."""
        s = self.settings
        meta = {"host": socket.gethostname(), "minted_by": "nomad-vault-token", "purpose": "nomad-keyring"}
        with self._mapped(f"auth/token/create/{s.keyring_role}"):
            resp = self._client(startup).auth.token.create(
                role_name=s.keyring_role,
                policies=[s.keyring_policy],
                meta=meta,
                display_name=f"nomad-keyring-{socket.gethostname()}",
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
        with self._mapped(path, needs=needs):
            yield

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

    def admin_secrets_mounts(self, token: Secret) -> dict[str, str]:
        """GET sys/mounts: secrets mount path (without the trailing slash) -> engine type."""
        with self._admin("sys/mounts", '"read"'):
            resp = self._client(token).sys.list_mounted_secrets_engines()
        data = resp.get("data", resp) if isinstance(resp, dict) else {}
        return {
            str(mount).rstrip("/"): str(info.get("type", ""))
            for mount, info in data.items()
            if isinstance(info, dict) and str(mount).endswith("/")
        }

    def admin_enable_secrets(self, token: Secret, mount: str, engine: str) -> None:
        """POST sys/mounts/<mount>: mount a secrets engine there."""
        with self._admin(f"sys/mounts/{mount}", '"update" and "sudo"'):
            self._client(token).sys.enable_secrets_engine(engine, path=mount)

    # ---- transit (the keyring token's use, as Nomad's wrapper makes it) ----

    def transit_encrypt(self, token: Secret, mount: str, key: str, plaintext: bytes) -> str:
        """POST <mount>/encrypt/<key>: the ciphertext (`vault:vN:...`)."""
        import base64

        path = f"{mount}/encrypt/{key}"
        with self._mapped(path):
            resp = self._client(token).write_data(path, data={"plaintext": base64.b64encode(plaintext).decode()})
        return str(resp["data"]["ciphertext"])

    def transit_decrypt(self, token: Secret, mount: str, key: str, ciphertext: str) -> bytes:
        """POST <mount>/decrypt/<key>: the plaintext."""
        import base64

        path = f"{mount}/decrypt/{key}"
        with self._mapped(path):
            resp = self._client(token).write_data(path, data={"ciphertext": ciphertext})
        return base64.b64decode(resp["data"]["plaintext"])

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

    def snapshot_stream(self, token: Secret, timeout: int) -> AbstractContextManager[Iterator[bytes | bytearray]]:
        """GET sys/storage/raft/snapshot from this address, streamed (`raft.snapshot_stream`)."""
        from nomad_vault_token.vault.raft import snapshot_stream

        return snapshot_stream(self.settings, self.session(), token, timeout)

@dataclass(frozen=True)
class Leader:
    """What sys/leader answered."""

    ha_enabled: bool
    is_self: bool
    leader_address: str


