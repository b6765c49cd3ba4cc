"""The two Nomad HTTP API reads the migration readiness needs (HTTP lives in this room only).

`GET /v1/operator/upgrade-check/vault-workload-identity` (Nomad 1.7.3+, `operator:read`;
`command/agent/operator_endpoint.go` v1.9.7:531-558, `nomad/operator_endpoint.go`:790-880) and
`GET /v1/nodes` (`node:read`), with the ACL token in `X-Nomad-Token`, trusting `ca_pem` only (the
system CAs when it is empty). stdlib `urllib`, as `jwt_auth.fetch_jwks`: no second HTTP stack.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

from nomad_vault_token.core.errors import EX_CONFIG, EX_NOPERM, EX_UNAVAILABLE, NomadError
from nomad_vault_token.core.secret import Secret

UPGRADE_CHECK = "/v1/operator/upgrade-check/vault-workload-identity"
NODES = "/v1/nodes"
SERVICES = "/v1/services"  # Nomad's native service registry (1.3+), every namespace with ?namespace=*


def get(addr: str, path: str, token: Secret | None, ca_pem: str, timeout: float = 10.0) -> Any:
    """GET `addr``path` as JSON; one-line NomadError naming the endpoint and the fix otherwise."""
    import urllib.error
    import urllib.request

    if not addr.startswith(("https://", "http://")):
        raise NomadError(f"--nomad-addr {addr!r}: give https://HOST:4646", EX_CONFIG)
    url = addr.rstrip("/") + path
    request = urllib.request.Request(url, headers={"X-Nomad-Token": token.reveal()} if token else {})  # noqa: S310
    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    try:  # the scheme is https or http (checked above): no file:// or custom scheme reaches urlopen
        with urllib.request.urlopen(request, timeout=timeout, context=ctx) as resp:  # noqa: S310  # nosec B310
            return json.loads(resp.read(16 << 20))
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise NomadError(
                f"{url}: Nomad answered {exc.code} (permission denied): give --nomad-token-file with a token whose "
                "ACL policy allows operator:read and node:read",
                EX_NOPERM,
            ) from None
        if exc.code == 404:
            raise NomadError(
                f"{url}: not found: Nomad 1.7.3+ has this endpoint: upgrade the servers", EX_CONFIG
            ) from None
        raise NomadError(f"{url}: Nomad answered HTTP {exc.code}", EX_UNAVAILABLE) from None
    except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
        reason = " ".join(str(getattr(exc, "reason", exc)).split())[:120]
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            raise NomadError(f"{url}: Nomad's certificate is not trusted: give --nomad-ca", EX_CONFIG) from None
        raise NomadError(f"{url}: unreachable ({reason}): check --nomad-addr", EX_UNAVAILABLE) from None
    except ValueError:
        raise NomadError(f"{url}: not JSON: is --nomad-addr a Nomad agent?", EX_UNAVAILABLE) from None


def upgrade_check(addr: str, token: Secret | None, ca_pem: str) -> dict[str, Any]:
    doc = get(addr, UPGRADE_CHECK, token, ca_pem)
    return doc if isinstance(doc, dict) else {}


def nodes(addr: str, token: Secret | None, ca_pem: str) -> list[dict[str, Any]]:
    doc = get(addr, NODES, token, ca_pem)
    return [n for n in doc if isinstance(n, dict)] if isinstance(doc, list) else []


def service_at(addr: str, vault_addr: str, token: Secret | None, ca_pem: str) -> str:
    """The `namespace/name` of a service in Nomad's registry registered at Vault's host and port, or "".

    `GET /v1/services?namespace=*` lists the services (`api/services.go`: Namespace, Services[ServiceName]);
    `GET /v1/service/<name>?namespace=<ns>` their registrations (Address, Port). A host name in `vault_addr` is
    compared by the addresses it resolves to. Services Consul holds for Nomad are not seen here."""
    import socket
    import urllib.parse

    parts = urllib.parse.urlsplit(vault_addr)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    try:
        wanted = {host} | {str(a[4][0]) for a in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except OSError:
        wanted = {host}
    listing = get(addr, SERVICES + "?namespace=*", token, ca_pem)
    for group in listing if isinstance(listing, list) else []:
        namespace = str(group.get("Namespace") or "default") if isinstance(group, dict) else "default"
        for service in (group.get("Services") or []) if isinstance(group, dict) else []:
            name = str(service.get("ServiceName") or "")
            if not name:
                continue
            quoted = urllib.parse.quote(name, safe="")
            ns = urllib.parse.quote(namespace, safe="")
            regs = get(addr, f"/v1/service/{quoted}?namespace={ns}", token, ca_pem)
            for reg in regs if isinstance(regs, list) else []:
                if isinstance(reg, dict) and str(reg.get("Address")) in wanted and int(reg.get("Port") or 0) == port:
                    return f"{namespace}/{name}"
    return ""
