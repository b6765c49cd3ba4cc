"""Nomad's HTTP API (HTTP lives in this room only): the reads the migration readiness and the keyring's
cold-start check need, and the one write `init` makes (a Nomad Variable, created with check-and-set).

`GET /v1/operator/upgrade-check/vault-workload-identity` (Nomad 1.7.3+, `operator:read`;
`command/agent/operator_endpoint.go` v1.9.7:531-558, `nomad/operator_endpoint.go`:790-880) and
`GET /v1/nodes` (`node:read`), with the ACL token in `X-Nomad-Token`, trusting `ca_pem` only (the
system CAs when it is empty). stdlib `urllib` under the one HTTP policy (`http.opener`), as
`jwt_auth.fetch_jwks`: no second HTTP stack.

`PUT /v1/var/<path>?cas=0` (`command/agent/variable_endpoint.go` v1.9.7:56-77, 166-219): `cas=0` is
set-if-not-exists (`nomad/state/state_store_variables.go` v1.9.7:168-171): a variable already there is
answered 409 with the existing one's metadata and is not changed. The body is `{"Items": {...}}`
(`structs.VariableDecrypted`); an empty `Items` is a 400 (175-177). An ACL token without write on the path
gets 403 `Permission denied` (`nomad/variables_endpoint.go` v1.9.7:99-101, 181-185). The items are secret:
they are never in a message.
"""

from __future__ import annotations

import json
from typing import Any

from nomad_vault_token.core.errors import EX_CONFIG, EX_NOPERM, EX_UNAVAILABLE, NomadError
from nomad_vault_token.core.secret import Secret

UPGRADE_CHECK = "/v1/operator/upgrade-check/vault-workload-identity"
NODES = "/v1/nodes"
SERVICES = "/v1/services"  # Nomad's native service registry (1.3+), every namespace with ?namespace=*


def get(addr: str, path: str, token: Secret | None, ca_pem: str, allow_insecure_http: bool = False,
        timeout: float = 10.0, denied: str = "a token whose ACL policy allows operator:read and node:read") -> Any:  # fmt: skip
    """GET `addr``path` as JSON; one-line NomadError naming the endpoint and the fix otherwise."""
    return _call(
        "GET",
        addr,
        path,
        token,
        ca_pem,
        allow_insecure_http,
        timeout,
        denied=denied,
        not_found="not found: Nomad 1.7.3+ has this endpoint: upgrade the servers",
    )


def _call(
    method: str,
    addr: str,
    path: str,
    token: Secret | None,
    ca_pem: str,
    allow_insecure_http: bool,
    timeout: float,
    *,
    body: bytes | None = None,
    where: str = "",
    denied: str,
    not_found: str = "",
    conflict: str = "",
) -> Any:
    """`method` `addr``path`, its JSON answer; one-line NomadError naming `where` (the URL) and the fix.

    `addr` is read by the one URL reader (http only to loopback unless `allow_insecure_http`: the ACL
    token would go in clear); the request goes through `http.opener`: no proxy, no redirect followed
    (urllib's own handler would re-send `X-Nomad-Token` to wherever a 3xx points)."""
    import urllib.error
    import urllib.request

    from nomad_vault_token.core.address import read_address
    from nomad_vault_token.core.errors import ConfigError
    from nomad_vault_token.vault.http import opener

    try:
        origin = read_address(addr, "--nomad-addr", allow_insecure_http).origin
    except ConfigError as exc:
        raise NomadError(exc.message, EX_CONFIG) from None
    url = origin + path
    where = where or url
    headers = {"X-Nomad-Token": token.reveal()} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310
    try:  # the scheme is https or http (read above), and the opener has no handler for any other
        with opener(ca_pem).open(request, timeout=timeout) as resp:  # nosec B310
            return json.loads(resp.read(16 << 20) or b"{}")
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise NomadError(
                f"{where}: Nomad answered HTTP {exc.code}, a redirect to {exc.headers.get('Location', '')!r}: not "
                "followed (the ACL token goes only to the address you gave): give --nomad-addr of the agent itself",
                EX_NOPERM,  # refused, as Vault's redirects are (vault/errors.py)
            ) from None
        if exc.code in (401, 403):
            raise NomadError(
                f"{where}: Nomad answered {exc.code} (permission denied): give --nomad-token-file with {denied}",
                EX_NOPERM,
            ) from None
        if exc.code == 404 and not_found:
            raise NomadError(f"{where}: {not_found}", EX_CONFIG) from None
        if exc.code == 409 and conflict:
            raise NomadError(conflict, EX_CONFIG) from None
        raise NomadError(f"{where}: Nomad answered HTTP {exc.code}", EX_UNAVAILABLE) from None
    except OSError as exc:  # URLError and ssl.SSLError are OSErrors
        reason = " ".join(str(getattr(exc, "reason", exc)).split())[:120]
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            raise NomadError(f"{where}: Nomad's certificate is not trusted: give --nomad-ca", EX_CONFIG) from None
        raise NomadError(f"{where}: unreachable ({reason}): check --nomad-addr", EX_UNAVAILABLE) from None
    except ValueError:
        raise NomadError(f"{where}: not JSON: is --nomad-addr a Nomad agent?", EX_UNAVAILABLE) from None


def put_variable_new(
    addr: str,
    path: str,
    items: dict[str, str],
    token: Secret | None,
    ca_pem: str,
    allow_insecure_http: bool = False,
    timeout: float = 10.0,
) -> int:
    """Create the Nomad Variable `path` holding `items`, only if it does not exist (`?cas=0`): its ModifyIndex.

    NomadError: 409 (it exists: nothing written, nothing overwritten), 403, unreachable; never the items."""
    import urllib.parse

    where = f"Nomad Variable {path}"
    doc = _call(
        "PUT",
        addr,
        "/v1/var/" + urllib.parse.quote(path.strip("/"), safe="/") + "?cas=0",
        token,
        ca_pem,
        allow_insecure_http,
        timeout,
        body=json.dumps({"Items": items}).encode(),
        where=where,
        denied=f"a token whose ACL policy allows variables write on {path}",
        conflict=f"{where}: already exists (check-and-set refused it, nothing overwritten): choose another "
        "--nomad-variable or remove the old one with care",
    )
    return int(doc.get("ModifyIndex") or 0) if isinstance(doc, dict) else 0


def upgrade_check(addr: str, token: Secret | None, ca_pem: str, allow_insecure_http: bool = False) -> dict[str, Any]:
    doc = get(addr, UPGRADE_CHECK, token, ca_pem, allow_insecure_http)
    return doc if isinstance(doc, dict) else {}


def nodes(addr: str, token: Secret | None, ca_pem: str, allow_insecure_http: bool = False) -> list[dict[str, Any]]:
    doc = get(addr, NODES, token, ca_pem, allow_insecure_http)
    return [n for n in doc if isinstance(n, dict)] if isinstance(doc, list) else []


def service_at(addr: str, vault_addr: str, token: Secret | None, ca_pem: str, allow_insecure_http: bool = False) -> str:
    """The `namespace/name` of a service in Nomad's registry registered at Vault's host and port, or "".

    `GET /v1/services?namespace=*` lists the services (`api/services.go`: Namespace, Services[ServiceName]);
    `GET /v1/service/<name>?namespace=<ns>` their registrations (Address, Port). A host name in `vault_addr` is
    compared by the addresses it resolves to. Services Consul holds for Nomad are not seen here."""
    import socket
    import urllib.parse

    from nomad_vault_token.core.address import read_address

    vault = read_address(vault_addr, "vault_addr", allow_insecure_http=True)  # already checked by config
    port, host = vault.port, vault.host.strip("[]")
    try:
        wanted = {host} | {str(a[4][0]) for a in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except OSError:
        wanted = {host}
    denied = "a token whose ACL policy allows read-job in every namespace (to list services)"
    listing = get(addr, SERVICES + "?namespace=*", token, ca_pem, allow_insecure_http, denied=denied)
    for group in listing if isinstance(listing, list) else []:
        namespace = str(group.get("Namespace") or "default") if isinstance(group, dict) else "default"
        for service in (group.get("Services") or []) if isinstance(group, dict) else []:
            name = str(service.get("ServiceName") or "")
            if not name:
                continue
            quoted = urllib.parse.quote(name, safe="")
            ns = urllib.parse.quote(namespace, safe="")
            regs = get(addr, f"/v1/service/{quoted}?namespace={ns}", token, ca_pem, allow_insecure_http, denied=denied)
            for reg in regs if isinstance(regs, list) else []:
                if isinstance(reg, dict) and str(reg.get("Address")) in wanted and int(reg.get("Port") or 0) == port:
                    return f"{namespace}/{name}"
    return ""
