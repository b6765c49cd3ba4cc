"""The stand-in Nomad: Validation (talks to Vault)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from testbed.nomad_standin.common import UNRECOVERABLE
from testbed.nomad_standin.rules import (
    CAPABILITIES_SELF,
    as_int,
    capabilities_from_response,
    capability_error,
    choose_role,
    is_root,
    required_capabilities,
    role_errors,
    token_errors,
)
from testbed.nomad_standin.vault_api import Response, VaultHTTP, VaultUnreachable, api_error


@dataclass
class Outcome:
    ok: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    accessor: str | None = None
    role: str | None = None
    policies: list[str] | None = None
    ttl: int = 0
    creation_ttl: int = 0
    renew: bool = False  # whether Nomad starts its renewal loop (vault.go:529-534)

    def report(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "accessor": self.accessor,
            "role": self.role,
            "policies": self.policies,
            "ttl": self.ttl,
            "renewing": self.ok and self.renew,
        }


def _error(resp: Response) -> str | None:
    """vault/api Response.Error: an error for any status >= 400."""
    return api_error(resp) if resp.status >= 400 else None


def lookup_self(client: VaultHTTP) -> dict[str, Any]:
    """lookupSelf (vault.go:799-819): lookup-self, falling back to auth/token/lookup. Raises ValueError."""
    try:
        resp = client.call("GET", "auth/token/lookup-self")
        data = resp.body.get("data") if isinstance(resp.body, dict) else None
        if _error(resp) is None and isinstance(data, dict):
            return data
    except VaultUnreachable:
        pass
    try:
        resp = client.call("POST", "auth/token/lookup", {"token": client.token})
    except VaultUnreachable as exc:
        raise ValueError(f"failed to lookup Vault periodic token: {exc}") from None
    err = _error(resp)
    if err:
        raise ValueError(f"failed to lookup Vault periodic token: {err}")
    data = resp.body.get("data") if isinstance(resp.body, dict) else None
    if not isinstance(data, dict):
        raise ValueError("failed to lookup Vault periodic token: got empty response")
    return data


def capabilities_self(client: VaultHTTP, path: str) -> list[str]:
    """vault/api Sys.CapabilitiesSelf(path), as hasCapability calls it (vault.go:891-905). Raises ValueError."""
    try:
        resp = client.call("POST", CAPABILITIES_SELF, {"token": client.token, "path": path})
    except VaultUnreachable as exc:
        raise ValueError(str(exc)) from None
    err = _error(resp)
    if err:
        raise ValueError(err)
    caps = capabilities_from_response(resp.body, path)
    if caps is None:
        raise ValueError("data from server response is empty")
    return caps


def parse_self_token(client: VaultHTTP, cfg: Mapping[str, Any]) -> Outcome:
    """parseSelfToken (vault.go:720-796), once: the token, its capabilities, its role."""
    try:
        data = lookup_self(client)
    except ValueError as exc:
        return Outcome(False, [str(exc)])
    policies = data.get("policies")
    out = Outcome(
        ok=False,
        accessor=data.get("accessor") if isinstance(data.get("accessor"), str) else None,
        policies=[str(p) for p in policies] if isinstance(policies, list) else None,
        ttl=as_int(data.get("ttl")),
        creation_ttl=as_int(data.get("creation_ttl")),
    )
    role = choose_role(cfg, data)
    out.role = role or None
    out.renew = not (is_root(data) and out.creation_ttl == 0)
    out.errors.extend(token_errors(data, role))

    # validateCapabilities (vault.go:832-889): first whether the token may look up its capabilities at all
    try:
        capabilities_self(client, CAPABILITIES_SELF)  # only an error counts here, not the answer
        refused = None
    except ValueError as exc:
        refused = str(exc)
    if refused is not None and UNRECOVERABLE.search(refused):
        out.warnings.append(  # vault.go:838-847: 400/403/404 → a warning, and no capability is checked
            "can not lookup token capabilities. As such certain operations may fail in the future. "
            'Please give Nomad a Vault token with one of the following capabilities ["update" "root"] on '
            f'"{CAPABILITIES_SELF}" so that the required capabilities can be verified ({refused})'
        )
    else:
        if refused is not None:
            out.errors.append(refused)
        for path, wanted in required_capabilities(role, cfg.get("allow_unauthenticated") is True):
            try:
                problem = capability_error(path, wanted, capabilities_self(client, path))
            except ValueError as exc:
                problem = str(exc)
            if problem:
                out.errors.append(problem)

    if role:  # validateRole (vault.go:908-944)
        quoted = json.dumps(role)
        try:
            rresp = client.call("GET", f"auth/token/roles/{urllib.parse.quote(role, safe='')}")
        except VaultUnreachable as exc:
            out.errors.append(f"failed to lookup role {quoted}: {exc}")
        else:
            rdata = rresp.body.get("data") if isinstance(rresp.body, dict) else None
            if rresp.status == 404 or (rresp.status < 400 and not isinstance(rdata, dict)):
                out.errors.append(f"Role {quoted} does not exist")  # Logical().Read: 404 is no secret
            elif rresp.status >= 400:
                out.errors.append(f"failed to lookup role {quoted}: {api_error(rresp)}")
            elif isinstance(rdata, dict):
                out.errors.extend(role_errors(rdata))

    out.ok = not out.errors
    return out
