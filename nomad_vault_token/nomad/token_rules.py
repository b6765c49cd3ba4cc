"""Nomad's start-up validation of its Vault token and role, as data plus small checks. Pure.

A Nomad server (1.6 - 1.9, legacy token-based Vault integration) validates its
token in ``nomad/vault.go``: ``parseSelfToken`` (the token), ``getRole`` (which
role), ``validateCapabilities`` / ``hasCapability`` (``sys/capabilities-self``)
and ``validateRole`` (``auth/token/roles/<role>``). Every failure message here
is Nomad's own wording, copied from that file; the comment beside each says
which function it comes from. Nomad joins them with go-multierror and retries
every ``connection_retry_intv`` (30 s).

Inputs are the ``data`` of Vault answers, as hvac returns them:
``auth/token/lookup-self``, ``GET auth/token/roles/<name>`` (``None`` on 404)
and ``POST sys/capabilities-self`` (path -> capabilities).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True)
class RuleResult:
    """One rule, checked: Nomad's words on failure, and what to do about it."""

    rule: str  # stable id: "token.renewable", "role.period", "cap.auth/token/create/<role>", ...
    ok: bool
    message: str  # Nomad's wording on failure; a short description on pass
    fix: str  # on failure: one sentence naming the Vault path / field to change; "" on pass
    warning: bool = False  # not ok, but Nomad only warns (and runs): a failure only under --strict


# --- Nomad's wording (nomad/vault.go, Nomad 1.6 - 1.9) -----------------------------------------

# parseSelfToken, non-root token
MSG_NOT_RENEWABLE: Final = "Vault token is not renewable or root"
MSG_CREATION_TTL_ZERO: Final = "invalid lease duration of zero"
MSG_TTL_ZERO: Final = "token TTL is zero"
MSG_NO_ROLE: Final = "token role name must be set when not using a root token"
# parseSelfToken, token with the "root" policy and a creation_ttl
MSG_ROOT_TTL_NOT_RENEWABLE: Final = "Vault token has a TTL but is not renewable"
# validateRole
MSG_ROLE_MISSING: Final = "Role {role} does not exist"  # Go: fmt.Errorf("Role %q does not exist", role)
MSG_ROLE_NOT_RENEWABLE: Final = "Role must allow tokens to be renewed"
MSG_ROLE_EXPLICIT_MAX_TTL: Final = "Role can not use an explicit max ttl. Token must be periodic."
MSG_ROLE_NO_PERIOD: Final = "Role must have a non-zero period to make tokens periodic."
MSG_ROLE_PARSE: Final = "failed to parse Vault role's data block: {detail}"  # Go: "...: %v", err
# validateCapabilities: fmt.Errorf("token must have one of the following capabilities %q on %q; has %v", ...)
MSG_CAPABILITY: Final = "token must have one of the following capabilities {wanted} on {path}; has {has}"
# validateCapabilities: what Nomad logs (a warning, not an error) when sys/capabilities-self answers
# 400/403/404; it then skips every capability check.
MSG_CAPABILITIES_UNCHECKABLE: Final = (
    "can not lookup token capabilities. As such certain operations may fail in the future. "
    "Please give Nomad a Vault token with one of the following capabilities {wanted} on {path} "
    "so that the required capabilities can be verified"
)

# --- the capability table (nomad/vault.go: vault*Path and vault*Capability) --------------------

CAPABILITIES_SELF_PATH: Final = "sys/capabilities-self"
LOOKUP_PATH: Final = "auth/token/lookup"
# Every path also accepts "root" (Nomad's lists are e.g. {"update", "root"}); "sudo" does not count.
ALTERNATIVE_CAPABILITY: Final = "root"
# (path template, capability) in the order validateCapabilities checks them. auth/token/lookup is
# only checked when the vault block sets allow_unauthenticated = false.
_CAPABILITY_TABLE: Final[tuple[tuple[str, str], ...]] = (
    (LOOKUP_PATH, "update"),
    ("auth/token/renew-self", "update"),
    ("auth/token/revoke-accessor", "update"),
    ("auth/token/roles/{role}", "read"),
    ("auth/token/create/{role}", "update"),
)

# --- pass descriptions and fixes ---------------------------------------------------------------

_PASS: Final[Mapping[str, str]] = {
    "token.renewable": "token is renewable",
    "token.creation_ttl": "token has a non-zero creation TTL",
    "token.ttl": "token TTL is not zero",
    "role.name": "role {role} will be used",
    "role.exists": "role {role} exists",
    "role.renewable": "role {role} allows renewal",
    "role.explicit_max_ttl": "role {role} has no explicit max TTL",
    "role.period": "role {role} has a non-zero period",
    "cap": "token has {cap} on {path}",
}
_ROOT_EXEMPT: Final = "root token without a TTL: Nomad does not renew it"
_ROOT_NO_ROLE: Final = "root token: no role needed"

_FIX: Final[Mapping[str, str]] = {
    "token.renewable": (
        "Mint the server token renewable: set renewable=true on its token role "
        "(auth/token/roles/<mint role>) or drop renewable=false from auth/token/create-orphan."
    ),
    "token.creation_ttl": (
        "Mint a periodic server token: set token_period on its token role "
        "(auth/token/roles/<mint role>) or pass period to auth/token/create-orphan."
    ),
    "token.ttl": "The server token has expired: mint a new one and hand it to Nomad.",
    "role.name": (
        "Set create_from_role in Nomad's vault block to the task token role (auth/token/roles/<name>), "
        "or mint the server token through a token role."
    ),
    "role.exists": "Create the token role at auth/token/roles/{name} (bootstrap-roles does), or fix create_from_role.",
    "role.renewable": "Set renewable=true on auth/token/roles/{name}.",
    "role.explicit_max_ttl": "Set token_explicit_max_ttl=0 (and explicit_max_ttl=0) on auth/token/roles/{name}.",
    "role.period": "Set a non-zero token_period (e.g. 72h) on auth/token/roles/{name}.",
    "role.parse": "Rewrite {field} on auth/token/roles/{name} as a number of seconds.",
    "cap": 'Grant "{cap}" on path "{path}" in a policy of the server token (e.g. nomad_cluster){deny}.',
    "cap.uncheckable": (
        'Grant "update" on path "sys/capabilities-self" to the server token '
        "(Vault's default policy does), so its capabilities can be verified."
    ),
}


# --- helpers -----------------------------------------------------------------------------------


def _go_q(text: str) -> str:
    """Go's %q of a string (same as JSON for the names found in Vault paths)."""
    return json.dumps(text, ensure_ascii=False)


def _go_q_list(items: Sequence[str]) -> str:
    """Go's %q of a []string: ["update" "root"]."""
    return "[" + " ".join(_go_q(i) for i in items) + "]"


def _go_v_list(items: Sequence[str]) -> str:
    """Go's %v of a []string: [read list]."""
    return "[" + " ".join(items) + "]"


_GO_BOOL_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_UNIT_SECONDS: Final[Mapping[str, float]] = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|ms|s|m|h|d)")


def _seconds(value: Any) -> float:
    """Seconds in a role/token field: 259200, "259200", "72h", "1h30m", "3600s", "0", "" or None (0).

    Raises ValueError for anything else.
    """
    if value is None or isinstance(value, bool):
        return float(bool(value))
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration")
    text = value.strip()
    if text in ("", "0"):
        return 0.0
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"{value!r} is not a duration")
    return total


def _truthy(value: Any) -> bool:
    """A boolean field as mapstructure's WeakDecode reads it."""
    if isinstance(value, str):
        return value in _GO_BOOL_TRUE
    if isinstance(value, int | float):  # bool included
        return value != 0
    return False


def _is_root(lookup: Mapping[str, Any]) -> bool:
    """VaultTokenData.Root(): the token has the "root" policy."""
    policies = lookup.get("policies")
    return isinstance(policies, list | tuple) and "root" in policies


def _lenient_seconds(value: Any) -> float:
    """Like _seconds, but an unreadable token field counts as zero."""
    try:
        return _seconds(value)
    except ValueError:
        return 0.0


def _passed(rule: str, key: str | None = None, **fmt: str) -> RuleResult:
    return RuleResult(rule, True, _PASS[key or rule].format(**fmt), "")


def _failed(rule: str, message: str, key: str | None = None, **fmt: str) -> RuleResult:
    return RuleResult(rule, False, message, _FIX[key or rule].format(**fmt))


def _check(ok: bool, rule: str, message: str, **fmt: str) -> RuleResult:
    return _passed(rule, **fmt) if ok else _failed(rule, message, **fmt)


# --- the rules ---------------------------------------------------------------------------------


def role_to_check(lookup: Mapping[str, Any], create_from_role: str | None) -> str | None:
    """Nomad's getRole: create_from_role if set, else the token's own "role", else None."""
    if create_from_role:
        return create_from_role
    own = lookup.get("role")
    return own if isinstance(own, str) and own else None


def check_token(lookup: Mapping[str, Any]) -> list[RuleResult]:
    """parseSelfToken's token checks on the data of auth/token/lookup-self, in Nomad's order.

    A periodic token minted through a role shows no "period" in lookup-self; none is required.
    A token with the "root" policy is exempt unless it has a creation_ttl (as in Nomad).
    The role-name rule lives in check_role (it needs create_from_role).
    """
    renewable = _truthy(lookup.get("renewable"))
    creation_ttl = _lenient_seconds(lookup.get("creation_ttl"))
    ttl = _lenient_seconds(lookup.get("ttl"))
    if not _is_root(lookup):
        return [
            _check(renewable, "token.renewable", MSG_NOT_RENEWABLE),
            _check(creation_ttl != 0, "token.creation_ttl", MSG_CREATION_TTL_ZERO),
            _check(ttl != 0, "token.ttl", MSG_TTL_ZERO),
        ]
    if creation_ttl == 0:
        return [
            RuleResult(rule, True, _ROOT_EXEMPT, "") for rule in ("token.renewable", "token.creation_ttl", "token.ttl")
        ]
    # Nomad: if !Renewable {...} else if TTL == 0 {...}
    return [
        _check(renewable, "token.renewable", MSG_ROOT_TTL_NOT_RENEWABLE),
        _passed("token.creation_ttl"),
        _check(not renewable or ttl != 0, "token.ttl", MSG_TTL_ZERO),
    ]


def _check_role_name(role_name: str | None) -> RuleResult:
    if not role_name:
        return _failed("role.name", MSG_NO_ROLE)
    return _passed("role.name", role=_go_q(role_name))


def _check_role_settings(role_name: str, role: Mapping[str, Any] | None) -> list[RuleResult]:
    """validateRole on the data of GET auth/token/roles/<role_name> (None: 404)."""
    names = {"role": _go_q(role_name), "name": role_name}  # passes quote like Nomad; fixes name the path
    if role is None:
        return [_failed("role.exists", MSG_ROLE_MISSING.format(**names), **names)]
    results = [_passed("role.exists", **names)]
    durations: dict[str, float] = {}
    for field in ("explicit_max_ttl", "token_explicit_max_ttl", "period", "token_period"):
        try:
            durations[field] = _seconds(role.get(field))
        except ValueError as exc:  # Nomad: WeakDecode fails, validateRole returns early
            results.append(_failed("role.parse", MSG_ROLE_PARSE.format(detail=f"{field}: {exc}"), field=field, **names))
            return results
    explicit_ok = durations["explicit_max_ttl"] == 0 and durations["token_explicit_max_ttl"] == 0
    period_ok = durations["period"] != 0 or durations["token_period"] != 0
    return [
        *results,
        _check(_truthy(role.get("renewable")), "role.renewable", MSG_ROLE_NOT_RENEWABLE, **names),
        _check(explicit_ok, "role.explicit_max_ttl", MSG_ROLE_EXPLICIT_MAX_TTL, **names),
        _check(period_ok, "role.period", MSG_ROLE_NO_PERIOD, **names),
    ]


def check_role(role_name: str | None, role: Mapping[str, Any] | None) -> list[RuleResult]:
    """The role name must be known, the role must exist, be renewable, periodic, with no explicit max TTL.

    ``role`` is the data of GET auth/token/roles/<role_name>, None when it does not exist.
    Fields may be seconds or duration strings ("72h"); "0", 0, "" and missing are zero. Both the
    current (token_period, token_explicit_max_ttl) and legacy (period, explicit_max_ttl) fields
    count, as in Nomad.
    """
    name = _check_role_name(role_name)
    if not role_name:
        return [name]
    return [name, *_check_role_settings(role_name, role)]


def required_capabilities(role_name: str | None, *, allow_unauthenticated: bool = True) -> dict[str, str]:
    """path -> the capability Nomad needs there ("root" also does), in Nomad's order.

    Without a role (None or ""), Nomad checks no role paths. Nomad checks auth/token/lookup only
    when its vault block sets allow_unauthenticated = false (vault.go:866); its default is true.
    """
    needed: dict[str, str] = {}
    for template, capability in _CAPABILITY_TABLE:
        per_role = "{role}" in template
        if (per_role and not role_name) or (template == LOOKUP_PATH and allow_unauthenticated):
            continue
        needed[template.format(role=role_name) if per_role else template] = capability
    return needed


def check_capabilities(
    role_name: str | None,
    caps: Mapping[str, Sequence[str]],
    *,
    allow_unauthenticated: bool = True,
) -> list[RuleResult]:
    """validateCapabilities on the answer of POST sys/capabilities-self {"paths": [...]}.

    Like Nomad's hasCapability, a path passes when it lists the needed capability or "root";
    "sudo" alone does not pass, and "deny" (Vault's answer for no access) fails.
    """
    results: list[RuleResult] = []
    for path, capability in required_capabilities(role_name, allow_unauthenticated=allow_unauthenticated).items():
        wanted = (capability, ALTERNATIVE_CAPABILITY)
        has = [str(c) for c in caps.get(path, ())]
        rule = f"cap.{path}"
        if any(c in wanted for c in has):
            results.append(_passed(rule, "cap", cap=capability, path=path))
        else:
            message = MSG_CAPABILITY.format(wanted=_go_q_list(wanted), path=_go_q(path), has=_go_v_list(has))
            deny = ' and remove the "deny" on it' if "deny" in has else ""
            results.append(_failed(rule, message, "cap", cap=capability, path=path, deny=deny))
    return results


def capabilities_uncheckable() -> RuleResult:
    """For when sys/capabilities-self answers 400/403/404: Nomad's warning (vault.go:835-847).

    Nomad logs it, skips every capability check and runs: a warning here too (a failure only
    with --strict).
    """
    message = MSG_CAPABILITIES_UNCHECKABLE.format(
        wanted=_go_q_list(("update", ALTERNATIVE_CAPABILITY)), path=_go_q(CAPABILITIES_SELF_PATH)
    )
    return RuleResult(f"cap.{CAPABILITIES_SELF_PATH}", False, message, _FIX["cap.uncheckable"], warning=True)


def check_all(
    lookup: Mapping[str, Any],
    create_from_role: str | None,
    role: Mapping[str, Any] | None,
    caps: Mapping[str, Sequence[str]] | None,
    *,
    allow_unauthenticated: bool = True,
) -> list[RuleResult]:
    """Everything parseSelfToken checks, in its order: token, role name, capabilities, role.

    ``role`` is the data of the role ``role_to_check`` names (None: 404 or no name); ``caps`` the
    capabilities-self answer, or None when that endpoint refused (see capabilities_uncheckable).
    """
    role_name = role_to_check(lookup, create_from_role)
    results = check_token(lookup)
    if role_name:
        results.append(_check_role_name(role_name))
    elif _is_root(lookup):
        results.append(RuleResult("role.name", True, _ROOT_NO_ROLE, ""))
    else:
        results.append(_check_role_name(None))
    if caps is None:
        results.append(capabilities_uncheckable())
    else:
        results += check_capabilities(role_name, caps, allow_unauthenticated=allow_unauthenticated)
    if role_name:
        results += _check_role_settings(role_name, role)
    return results


def failures(results: Iterable[RuleResult], *, strict: bool = False) -> list[RuleResult]:
    """The rules Nomad refuses on (and, when strict, those it only warns about)."""
    return [r for r in results if not r.ok and (strict or not r.warning)]


def warnings(results: Iterable[RuleResult]) -> list[RuleResult]:
    """The rules Nomad only warns about."""
    return [r for r in results if not r.ok and r.warning]
