"""The stand-in Nomad: Nomad's rules (pure)."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

from testbed.nomad_standin.common import UNRECOVERABLE, UsageError
from testbed.nomad_standin.config import _str


def as_int(value: Any) -> int:
    """Weakly decode a number as Nomad's mapstructure.WeakDecode would."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return 0
    return 0


def go_quote_list(items: Sequence[str]) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(i) for i in items) + "]"


def go_list(items: Sequence[str]) -> str:
    """Go's %v of a []string: [a b]."""
    return "[" + " ".join(items) + "]"


def is_root(token_data: Mapping[str, Any]) -> bool:
    policies = token_data.get("policies") or []
    return isinstance(policies, list) and "root" in policies


def choose_role(cfg: Mapping[str, Any], token_data: Mapping[str, Any]) -> str:
    """create_from_role if set, else the token's own role (getRole, vault.go:822-828)."""
    role = _str(cfg, "create_from_role")
    if role:
        return role
    own = token_data.get("role")
    return own if isinstance(own, str) else ""


def token_errors(token_data: Mapping[str, Any], role: str) -> list[str]:
    """The token checks of parseSelfToken (vault.go:749-785), in its words."""
    errors: list[str] = []
    renewable = bool(token_data.get("renewable"))
    creation_ttl = as_int(token_data.get("creation_ttl"))
    ttl = as_int(token_data.get("ttl"))
    if not is_root(token_data):
        if not renewable:
            errors.append("Vault token is not renewable or root")
        if creation_ttl == 0:
            errors.append("invalid lease duration of zero")
        if ttl == 0:
            errors.append("token TTL is zero")
        if not role:
            errors.append("token role name must be set when not using a root token")
    elif creation_ttl != 0:
        if not renewable:
            errors.append("Vault token has a TTL but is not renewable")
        elif ttl == 0:
            errors.append("token TTL is zero")
    return errors


CAPABILITIES_SELF = "sys/capabilities-self"


def required_capabilities(role: str, allow_unauthenticated: bool) -> list[tuple[str, tuple[str, ...]]]:
    """Paths and the capabilities of which the token needs one (validateCapabilities, vault.go:850-887).

    auth/token/lookup only with ``allow_unauthenticated = false`` (Nomad's default is true).
    """
    req: list[tuple[str, tuple[str, ...]]] = []
    if not allow_unauthenticated:
        req.append(("auth/token/lookup", ("update", "root")))
    req.append(("auth/token/renew-self", ("update", "root")))
    req.append(("auth/token/revoke-accessor", ("update", "root")))
    if role:
        req.append((f"auth/token/roles/{role}", ("read", "root")))
        req.append((f"auth/token/create/{role}", ("update", "root")))
    return req


def capabilities_from_response(body: Any, path: str) -> list[str] | None:
    """vault/api Sys.CapabilitiesSelf's answer: data[path], else data["capabilities"]; None: no data."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return None
    caps = data.get(path)
    if not caps:
        caps = data.get("capabilities")
    return [str(c) for c in caps] if isinstance(caps, list) else []


def capability_error(path: str, wanted: Sequence[str], has: Sequence[str]) -> str | None:
    """Nomad's message for a path lacking every wanted capability (vault.go:842-848); exact match, no sudo."""
    if any(c in wanted for c in has):
        return None
    return (
        f"token must have one of the following capabilities {go_quote_list(wanted)} on {json.dumps(path)}; "
        f"has {go_list(has)}"
    )


def role_errors(role_data: Mapping[str, Any]) -> list[str]:
    """validateRole's checks on auth/token/roles/<role> (vault.go:928-942)."""
    errors: list[str] = []
    if not role_data.get("renewable"):
        errors.append("Role must allow tokens to be renewed")
    if as_int(role_data.get("explicit_max_ttl")) != 0 or as_int(role_data.get("token_explicit_max_ttl")) != 0:
        errors.append("Role can not use an explicit max ttl. Token must be periodic.")
    if as_int(role_data.get("period")) == 0 and as_int(role_data.get("token_period")) == 0:
        errors.append("Role must have a non-zero period to make tokens periodic.")
    return errors


def renew_is_fatal(error: str) -> bool:
    """Whether a renewal error ends renewal for good (vault.go:676-679, 592-594)."""
    return UNRECOVERABLE.search(error) is not None


def next_backoff(backoff: float, time_left: float) -> float:
    """nextBackoff (vault.go:635-662): seconds until the next renewal attempt after a recoverable error."""
    if time_left / 2 < 0:
        return 60 * (1.0 + random.random())
    backoff = 30 if backoff >= 24 else backoff * 1.25
    backoff *= 1.0 + random.random()
    backoff = min(backoff, time_left / 2)
    return max(backoff, 5.0)


def scrub(line: str, secrets: Sequence[str]) -> str:
    """Remove every secret from a line about to be written."""
    for s in secrets:
        if s:
            line = line.replace(s, "[REDACTED]")
    return line


def env_seconds(env: Mapping[str, str], name: str, default: float | None = None) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise UsageError(f"{name}={raw!r} is negative")
    return value
