"""Vault's JWT auth method as Nomad's workload identity uses it: one function per endpoint, and Nomad's JWKS.

Admin endpoints take the admin token (bootstrap-roles); `login` takes a task's JWT (check). The JWKS
is fetched from this host with the CA Vault is given (stdlib `urllib` with an `ssl` context built
from that PEM, never the machine's bundle), to say why Vault refused it: OpenBao only answers
"error checking jwks URL" when the config is written (measured on OpenBao 2.7.2).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nomad_vault_token.core.errors import EX_CONFIG, EX_UNAVAILABLE, JwksError, VaultDenied
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.client import Vault


@dataclass(frozen=True)
class Mount:
    type: str
    accessor: str


def auth_mounts(vault: Vault, token: Secret) -> dict[str, Mount]:
    """GET sys/auth: mount path (no trailing slash) -> its type and accessor."""
    with vault._admin("sys/auth", '"read"'):
        resp = vault._client(token).sys.list_auth_methods()
    data = resp.get("data", resp) if isinstance(resp, dict) else {}
    return {
        str(path).rstrip("/"): Mount(str(info.get("type", "")), str(info.get("accessor", "")))
        for path, info in data.items()
        if isinstance(info, dict) and str(path).endswith("/")
    }


def policy_templating_flags(vault: Vault, token: Secret) -> bool:
    """Whether this server's policies carry `allow_slashes_in_identity_templates` (OpenBao 2.6+): read on
    the built-in `default` policy, which every server has."""
    found = vault.admin_read(token, "sys/policies/acl/default") or {}
    return "allow_slashes_in_identity_templates" in found


def write_config(vault: Vault, token: Secret, mount: str, data: Mapping[str, Any]) -> None:
    """POST auth/<mount>/config. Vault fetches and checks the JWKS now; its refusal is explained by fetching
    the JWKS from here with the same CA (`jwks_problem`)."""
    path = f"auth/{mount}/config"
    try:
        with vault._admin(path, '"update"'):
            vault._client(token).write_data(path, data=dict(data))
    except VaultDenied as exc:
        if "jwks" not in exc.message.lower():
            raise
        problem = jwks_problem(str(data.get("jwks_url", "")), str(data.get("jwks_ca_pem") or ""))
        raise JwksError(f"{path}: Vault could not use the JWKS ({problem.text})", problem.code) from None


@dataclass(frozen=True)
class JwksProblem:
    text: str  # what is wrong, and the fix, one line
    code: int


@dataclass(frozen=True)
class Jwks:
    keys: tuple[Mapping[str, Any], ...]

    @property
    def algorithms(self) -> set[str]:
        """What each key signs with: its `alg`, else what its type implies (RSA: RS256, OKP Ed25519: EdDSA)."""
        out = set()
        for k in self.keys:
            alg = str(k.get("alg") or "")
            if not alg:
                alg = {"RSA": "RS256", "OKP": "EdDSA"}.get(str(k.get("kty")), str(k.get("kty")))
            out.add(alg)
        return out


def fetch_jwks(url: str, ca_pem: str, timeout: float = 10.0) -> Jwks:
    """GET Nomad's JWKS from this host, trusting `ca_pem` only (the system CAs when it is empty, as Vault does)."""
    from nomad_vault_token.core.address import read_url
    from nomad_vault_token.core.errors import ConfigError
    from nomad_vault_token.vault.http import opener

    try:  # the one URL reader: a JWKS is public, so http is not refused here (Vault decides), but only http(s)
        url = read_url(url, "jwks_url", allow_insecure_http=True).url
    except ConfigError as exc:
        raise JwksError(f"{exc.message} (Nomad's https://HOST:4646/.well-known/jwks.json)", EX_CONFIG) from None
    try:  # no proxy, no redirect followed, `ca_pem` only: the same policy as every client (`vault.http`)
        with opener(ca_pem).open(url, timeout=timeout) as resp:  # nosec B310
            body = resp.read(1 << 20)
    except OSError as exc:  # URLError and ssl.SSLError are OSErrors
        problem = _classify(url, exc)
        raise JwksError(problem.text, problem.code) from None
    try:
        doc = json.loads(body)
        keys = tuple(k for k in doc["keys"] if isinstance(k, dict))
    except (ValueError, KeyError, TypeError):
        raise JwksError(
            f'{url}: not a JWKS (no "keys" list): is this Nomad\'s /.well-known/jwks.json?', EX_CONFIG
        ) from None
    return Jwks(keys)


def jwks_problem(url: str, ca_pem: str) -> JwksProblem:
    """Why Vault refused the JWKS, as seen from this host."""
    try:
        jwks = fetch_jwks(url, ca_pem)
    except JwksError as exc:
        return JwksProblem(exc.message, exc.exit_code)
    if not jwks.keys:
        return JwksProblem(f"{url} holds no key: is Nomad's keyring initialised?", EX_CONFIG)
    return JwksProblem(
        f"{url} answers here with {len(jwks.keys)} key(s), so Vault's own host cannot reach or verify it: check "
        "DNS, firewalls and the CA from Vault's side",
        EX_UNAVAILABLE,
    )


def _classify(url: str, exc: BaseException) -> JwksProblem:
    reason = getattr(exc, "reason", exc)
    text = str(reason)
    if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(reason, ssl.SSLCertVerificationError):
        return JwksProblem(
            f"{url}: Nomad's certificate is not signed by the CA given (--nomad-jwks-ca): give the CA that signed "
            "Nomad's HTTPS certificate",
            EX_CONFIG,
        )
    lowered = text.lower()
    if any(m in lowered for m in ("certificate_required", "certificate required", "handshake failure", "bad certificate",
                                  "eof occurred in violation of protocol")):  # fmt: skip
        # Go's TLS 1.3 server answers a missing client certificate with alert 116 (certificate required);
        # a server that drops the handshake instead shows as an EOF in it
        return JwksProblem(
            f"{url}: Nomad demands a client certificate (tls {{ verify_https_client = true }}), which Vault's JWKS "
            "fetch does not present (hashicorp/vault#29435): set verify_https_client = false on the Nomad agent Vault "
            "fetches from, or serve the JWKS through a proxy",
            EX_CONFIG,
        )
    if isinstance(exc, ssl.SSLError) or "SSL" in type(reason).__name__ or "ssl" in text.lower():
        return JwksProblem(
            f"{url}: TLS failed ({' '.join(text.split())[:120]}): check Nomad's HTTPS settings", EX_CONFIG
        )
    if hasattr(exc, "code"):
        return JwksProblem(f"{url}: Nomad answered HTTP {exc.code}: check the URL (…/.well-known/jwks.json)", EX_CONFIG)
    return JwksProblem(
        f"{url}: unreachable ({' '.join(text.split())[:120]}): is Nomad up and is the address right?", EX_UNAVAILABLE
    )


def login(vault: Vault, mount: str, role: str, jwt: Secret) -> Secret:
    """POST auth/<mount>/login with a task's JWT."""
    return vault.login_jwt(mount, role, jwt)
