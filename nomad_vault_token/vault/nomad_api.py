"""Nomad's HTTP API (HTTP lives in this room only): the two reads the migration readiness needs, and the
one write `init` makes (a Nomad Variable, created with check-and-set).

`GET /v1/operator/upgrade-check/vault-workload-identity` (Nomad 1.7.3+, `operator:read`;
`command/agent/operator_endpoint.go` v1.9.7:531-558, `nomad/operator_endpoint.go`:790-880) and
`GET /v1/nodes` (`node:read`), with the ACL token in `X-Nomad-Token`, trusting `ca_pem` only (the
system CAs when it is empty). stdlib `urllib`, as `jwt_auth.fetch_jwks`: no second HTTP stack.

`PUT /v1/var/<path>?cas=0` (`command/agent/variable_endpoint.go` v1.9.7:56-77, 166-219): `cas=0` is
set-if-not-exists (`nomad/state/state_store_variables.go` v1.9.7:168-171): a variable already there is
answered 409 with the existing one's metadata and is not changed. The body is `{"Items": {...}}`
(`structs.VariableDecrypted`); an empty `Items` is a 400 (175-177). An ACL token without write on the path
gets 403 `Permission denied` (`nomad/variables_endpoint.go` v1.9.7:99-101, 181-185). The items are secret:
they are never in a message.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

from nomad_vault_token.core.errors import EX_CONFIG, EX_NOPERM, EX_UNAVAILABLE, NomadError
from nomad_vault_token.core.secret import Secret

UPGRADE_CHECK = "/v1/operator/upgrade-check/vault-workload-identity"
NODES = "/v1/nodes"


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


def put_variable_new(
    addr: str, path: str, items: dict[str, str], token: Secret | None, ca_pem: str, timeout: float = 10.0
) -> int:
    """Create the Nomad Variable `path` holding `items`, only if it does not exist (`?cas=0`): its ModifyIndex.

    NomadError: 409 (it exists: nothing written, nothing overwritten), 403, unreachable; never the items."""
    import urllib.error
    import urllib.parse
    import urllib.request

    if not addr.startswith(("https://", "http://")):
        raise NomadError(f"--nomad-addr {addr!r}: give https://HOST:4646", EX_CONFIG)
    url = addr.rstrip("/") + "/v1/var/" + urllib.parse.quote(path.strip("/"), safe="/") + "?cas=0"
    where = f"Nomad Variable {path}"
    body = json.dumps({"Items": items}).encode()
    headers = {"Content-Type": "application/json", **({"X-Nomad-Token": token.reveal()} if token else {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="PUT")  # noqa: S310
    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    try:  # the scheme is https or http (checked above)
        with urllib.request.urlopen(request, timeout=timeout, context=ctx) as resp:  # noqa: S310  # nosec B310
            doc = json.loads(resp.read(1 << 20) or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code == 409:
            raise NomadError(
                f"{where}: already exists (check-and-set refused it, nothing overwritten): choose another "
                "--nomad-variable or remove the old one with care",
                EX_CONFIG,
            ) from None
        if exc.code in (401, 403):
            raise NomadError(
                f"{where}: Nomad answered {exc.code} (permission denied): give --nomad-token-file with a token "
                f"whose ACL policy allows variables write on {path}",
                EX_NOPERM,
            ) from None
        raise NomadError(f"{where}: Nomad answered HTTP {exc.code}", EX_UNAVAILABLE) from None
    except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
        reason = " ".join(str(getattr(exc, "reason", exc)).split())[:120]
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            raise NomadError(f"{where}: Nomad's certificate is not trusted: give --nomad-ca", EX_CONFIG) from None
        raise NomadError(f"{where}: {addr} unreachable ({reason}): check --nomad-addr", EX_UNAVAILABLE) from None
    except ValueError:
        raise NomadError(f"{where}: the answer is not JSON: is --nomad-addr a Nomad agent?", EX_UNAVAILABLE) from None
    return int(doc.get("ModifyIndex") or 0) if isinstance(doc, dict) else 0


def upgrade_check(addr: str, token: Secret | None, ca_pem: str) -> dict[str, Any]:
    doc = get(addr, UPGRADE_CHECK, token, ca_pem)
    return doc if isinstance(doc, dict) else {}


def nodes(addr: str, token: Secret | None, ca_pem: str) -> list[dict[str, Any]]:
    doc = get(addr, NODES, token, ca_pem)
    return [n for n in doc if isinstance(n, dict)] if isinstance(doc, list) else []
