"""The stand-in Nomad: The Vault API client (hashicorp/vault/api, as Nomad builds it)."""

from __future__ import annotations

import http.client
import json
import os
import random
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from testbed.nomad_standin.common import (
    MAX_RETRIES,
    MAX_RETRY_WAIT,
    MIN_RETRY_WAIT,
    MINIMUM_TOKEN_TTL,
    REQUEST_TIMEOUT,
    ClientError,
    go_bool,
    go_duration,
)
from testbed.nomad_standin.config import _str


class VaultUnreachable(Exception):
    """No HTTP response (connection, TLS or timeout error)."""


class Response(NamedTuple):
    status: int
    body: Any


def api_error(resp: Response) -> str:
    """A Vault API error in the shape Nomad's messages carry (``Code: 403``)."""
    errs: list[str] = []
    if isinstance(resp.body, dict) and isinstance(resp.body.get("errors"), list):
        errs = [" ".join(str(e).split()) for e in resp.body["errors"]]
    return f"Code: {resp.status}. Errors: {'; '.join(errs) if errs else '(none)'}"


@dataclass(frozen=True)
class TLSSettings:
    """vault/api TLSConfig: CA file/path, client pair, server name, skip verify."""

    ca_file: str = ""
    ca_path: str = ""
    cert: str = ""
    key: str = ""
    server_name: str = ""
    insecure: bool = False


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """The TLS client config vault/api's configureTLS builds; ValueError with its message.

    A client cert needs its key and vice versa; a CA file wins over a CA
    directory, whose every file must hold PEM (go-rootcerts); no CA: the
    system's roots. TLS 1.2 at least (DefaultConfig).
    """
    if bool(tls.cert) != bool(tls.key):
        raise ValueError("both client cert and client key must be provided")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if tls.ca_file:
            ctx.load_verify_locations(cafile=tls.ca_file)
        elif tls.ca_path:  # filepath.Walk: the path itself when it is a file; a missing one is an error
            os.stat(tls.ca_path)
            files = [tls.ca_path] if not os.path.isdir(tls.ca_path) else []
            files += sorted(os.path.join(root, n) for root, _dirs, names in os.walk(tls.ca_path) for n in names)
            for name in files:
                try:
                    ctx.load_verify_locations(cadata=Path(name).read_bytes().decode("ascii", "ignore"))
                except ssl.SSLError:
                    raise ValueError(f"Error loading file from CAPath: Couldn't parse PEM in: {name}") from None
        else:
            ctx.load_default_certs()
        if tls.cert:
            ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{exc.__class__.__name__}: {exc}") from None
    if tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _env_settings(env: Mapping[str, str]) -> tuple[TLSSettings, str, int]:
    """vault/api Config.ReadEnvironment: (TLS settings, VAULT_AGENT_ADDR, max retries); ValueError on a bad one."""
    retries = MAX_RETRIES
    if env.get("VAULT_MAX_RETRIES"):
        raw = env["VAULT_MAX_RETRIES"]
        if not raw.isascii() or not raw.isdigit() or int(raw) >= 2**32:
            raise ValueError(f"strconv.ParseUint: parsing {json.dumps(raw)}: invalid syntax")
        retries = int(raw)
    insecure = False
    if env.get("VAULT_SKIP_VERIFY"):
        parsed = go_bool(env["VAULT_SKIP_VERIFY"])
        if parsed is None:
            raise ValueError("could not parse VAULT_SKIP_VERIFY")
        insecure = parsed
    tls = TLSSettings(
        ca_file=env.get("VAULT_CACERT", ""),
        ca_path=env.get("VAULT_CAPATH", ""),
        cert=env.get("VAULT_CLIENT_CERT", ""),
        key=env.get("VAULT_CLIENT_KEY", ""),
        server_name=env.get("VAULT_TLS_SERVER_NAME", ""),
        insecure=insecure,
    )
    ssl_context(tls)  # configureTLS runs inside ReadEnvironment: its errors are ReadEnvironment's
    return tls, env.get("VAULT_AGENT_ADDR", ""), retries


class VaultHTTP:
    """Just enough of a vault/api Client: one address, TLS, token, namespace, retries."""

    def __init__(
        self,
        address: str,
        token: str,
        *,
        tls: TLSSettings,
        namespace: str = "",
        max_retries: int = MAX_RETRIES,
        backoff_scale: float = 1.0,
    ) -> None:
        parts = urllib.parse.urlsplit(address)
        self.address = address
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port
        self.base = parts.path.rstrip("/")
        self.token = token
        self.namespace = namespace
        self.max_retries = max_retries
        self.backoff_scale = backoff_scale
        self.server_name = tls.server_name
        self.context = ssl_context(tls) if self.scheme == "https" else None

    def _connection(self) -> http.client.HTTPConnection:
        if self.context is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        ctx, name = self.context, self.server_name or self.host

        class Conn(http.client.HTTPSConnection):
            def connect(self) -> None:  # SNI and verification against tls_server_name
                http.client.HTTPConnection.connect(self)
                self.sock = ctx.wrap_socket(self.sock, server_hostname=name)

        return Conn(self.host, self.port, timeout=REQUEST_TIMEOUT, context=ctx)

    def _once(self, method: str, path: str, body: Any) -> tuple[Response, float | None]:
        """One HTTP request: (response, Retry-After seconds or None)."""
        if self.scheme not in ("http", "https"):  # not retried (go-retryablehttp's schemeErrorRe)
            raise VaultUnreachable(f"{method} {path}: unsupported protocol scheme {json.dumps(self.scheme)}")
        headers = {"X-Vault-Token": self.token, "X-Vault-Request": "true"}
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            conn.request(method, f"{self.base}/v1/{path}", body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            retry_after = resp.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as exc:
            raise VaultUnreachable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw) if raw.strip() else None
        except ValueError:
            parsed = None
        wait = float(retry_after) if retry_after and retry_after.isdigit() else None
        return Response(resp.status, parsed), wait

    def call(self, method: str, path: str, body: Any = None) -> Response:
        """One API call with the client's retries.

        go-retryablehttp's baseRetryPolicy (connection errors but not a
        certificate's, 429, 5xx but 501) plus 412 (vault/api
        DefaultRetryPolicy), at most VAULT_MAX_RETRIES (2) times, waiting
        RateLimitLinearJitterBackoff: Retry-After on 429/503, else 1-1.5 s
        times the attempt number. Raises VaultUnreachable.
        """
        attempt = 0
        while True:
            try:
                resp, retry_after = self._once(method, path, body)
            except VaultUnreachable as exc:
                cert_error = isinstance(exc.__cause__, ssl.SSLCertVerificationError)
                if cert_error or exc.__cause__ is None or attempt >= self.max_retries:
                    raise
                retry_after = None
            else:
                retryable = resp.status in (0, 412, 429) or (resp.status >= 500 and resp.status != 501)
                if not retryable or attempt >= self.max_retries:
                    return resp
                if resp.status not in (429, 503):
                    retry_after = None
            attempt += 1
            wait = retry_after if retry_after is not None else random.uniform(MIN_RETRY_WAIT, MAX_RETRY_WAIT) * attempt
            time.sleep(wait * self.backoff_scale)


def build_client(cfg: Mapping[str, Any], env: Mapping[str, str], backoff_scale: float = 1.0) -> VaultHTTP:
    """buildClient (vault.go:422-485): ApiConfig (structs/config/vault.go v1.9.7:219-240), then vault/api NewClient.

    ApiConfig starts from vault/api DefaultConfig, which reads the
    environment, and lays the block's TLS settings over it with
    ConfigureTLS: a block's CA (file or path) replaces the environment's, its
    cert+key pair replaces the environment's pair, its server name wins when
    set, and skip-verify is on when either turns it on. NewClient reads the
    environment again: if that fails (e.g. VAULT_CLIENT_KEY without
    VAULT_CLIENT_CERT) no client is built. VAULT_AGENT_ADDR replaces the
    address; VAULT_ADDR is never used (ApiConfig sets Address). Raises
    ClientError.
    """
    token, address = _str(cfg, "token"), _str(cfg, "address")
    if not token:
        raise ClientError("Vault token must be set")  # vault.go:424-425
    if not address:
        raise ClientError("Vault address must be set")  # vault.go:426-427
    ttl = _str(cfg, "task_token_ttl")
    if ttl:  # vault.go:431-442
        try:
            seconds = go_duration(ttl)
        except ValueError as exc:
            raise ClientError(f"failed to parse TaskTokenTTL {json.dumps(ttl)}: {exc}") from None
        if seconds < MINIMUM_TOKEN_TTL:
            raise ClientError("ChildTokenTTL is less than minimum allowed of 5m0s")
    try:
        env_tls, agent_addr, retries = _env_settings(env)
        env_error = None
    except ValueError as exc:
        env_tls, agent_addr, retries, env_error = TLSSettings(), "", MAX_RETRIES, str(exc)
    block_ca = _str(cfg, "ca_file") or _str(cfg, "ca_path")
    block_pair = _str(cfg, "cert_file") or _str(cfg, "key_file")
    tls = TLSSettings(
        ca_file=_str(cfg, "ca_file") if block_ca else env_tls.ca_file,
        ca_path=_str(cfg, "ca_path") if block_ca else env_tls.ca_path,
        cert=_str(cfg, "cert_file") if block_pair else env_tls.cert,
        key=_str(cfg, "key_file") if block_pair else env_tls.key,
        server_name=_str(cfg, "tls_server_name") or env_tls.server_name,
        insecure=cfg.get("tls_skip_verify") is True or env_tls.insecure,
    )
    try:  # ApiConfig's ConfigureTLS with the block's settings
        ssl_context(
            TLSSettings(
                _str(cfg, "ca_file"),
                _str(cfg, "ca_path"),
                _str(cfg, "cert_file"),
                _str(cfg, "key_file"),
            )
        )
    except ValueError as exc:
        raise ClientError(f"Failed to create Vault API config: {exc}") from None  # vault.go:448-451
    if env_error is not None:  # NewClient: DefaultConfig().Error
        raise ClientError(f"error encountered setting up default configuration: {env_error}")
    return VaultHTTP(
        agent_addr or address,
        token,
        tls=tls,
        namespace=_str(cfg, "namespace"),
        max_retries=retries,
        backoff_scale=backoff_scale,
    )
