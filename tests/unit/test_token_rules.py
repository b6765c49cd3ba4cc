"""Nomad's start-up token/role/capability rules, with Nomad's wording (nomad/vault.go, 1.6 - 1.9). No server."""

from __future__ import annotations

from typing import Any

import pytest

from nomad_vault_token.nomad import token_rules
from nomad_vault_token.nomad.token_rules import RuleResult

ROLE = "nomad-cluster"
MINT = "nomad-server-mint"


def good_lookup(**changes: Any) -> dict[str, Any]:
    """lookup-self data of a token minted through a role with token_period: no "period" field."""
    data: dict[str, Any] = {
        "accessor": "abc",
        "creation_ttl": 259200,
        "ttl": 259100,
        "renewable": True,
        "policies": ["default", "nomad_cluster"],
        "role": MINT,
        "orphan": True,
    }
    data.update(changes)
    return data


def good_role(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": ROLE,
        "orphan": True,
        "renewable": True,
        "token_period": 259200,
        "token_explicit_max_ttl": 0,
        "explicit_max_ttl": 0,
        "period": 0,
        "allowed_policies": [],
    }
    data.update(changes)
    return data


def good_caps(role: str = ROLE) -> dict[str, list[str]]:
    return {
        "auth/token/lookup": ["update"],
        "auth/token/renew-self": ["update"],
        "auth/token/revoke-accessor": ["update"],
        f"auth/token/roles/{role}": ["read"],
        f"auth/token/create/{role}": ["update"],
    }


def only_failure(results: list[RuleResult]) -> RuleResult:
    broken = token_rules.failures(results)
    assert len(broken) == 1, broken
    assert broken[0].fix, "a failure must say what to do"
    return broken[0]


def cap_message(path: str, wanted: str, has: str) -> str:
    return f'token must have one of the following capabilities ["{wanted}" "root"] on "{path}"; has {has}'


# --- the good case ------------------------------------------------------------------------------


def test_good_token_role_and_caps_have_no_failures() -> None:
    results = token_rules.check_all(good_lookup(), ROLE, good_role(), good_caps(), allow_unauthenticated=False)
    assert token_rules.failures(results) == []
    assert all(r.fix == "" for r in results)
    assert [r.rule for r in results] == [
        "token.renewable",
        "token.creation_ttl",
        "token.ttl",
        "role.name",
        "cap.auth/token/lookup",
        "cap.auth/token/renew-self",
        "cap.auth/token/revoke-accessor",
        f"cap.auth/token/roles/{ROLE}",
        f"cap.auth/token/create/{ROLE}",
        "role.exists",
        "role.renewable",
        "role.explicit_max_ttl",
        "role.period",
    ]


def test_periodic_token_without_period_field_is_fine() -> None:
    lookup = good_lookup()
    assert "period" not in lookup
    assert token_rules.failures(token_rules.check_token(lookup)) == []


# --- the token (parseSelfToken) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "rule", "message"),
    [
        ({"renewable": False}, "token.renewable", "Vault token is not renewable or root"),
        ({"renewable": "false"}, "token.renewable", "Vault token is not renewable or root"),
        ({"ttl": 0}, "token.ttl", "token TTL is zero"),
        ({"creation_ttl": 0}, "token.creation_ttl", "invalid lease duration of zero"),
        ({"creation_ttl": None}, "token.creation_ttl", "invalid lease duration of zero"),
    ],
)
def test_each_broken_token_rule_is_one_failure(change: dict[str, Any], rule: str, message: str) -> None:
    broken = only_failure(token_rules.check_all(good_lookup(**change), ROLE, good_role(), good_caps()))
    assert (broken.rule, broken.message) == (rule, message)


def test_token_checks_in_nomads_order() -> None:
    lookup = good_lookup(renewable=False, ttl=0, creation_ttl=0)
    broken = token_rules.failures(token_rules.check_token(lookup))
    assert [(r.rule, r.message) for r in broken] == [
        ("token.renewable", "Vault token is not renewable or root"),
        ("token.creation_ttl", "invalid lease duration of zero"),
        ("token.ttl", "token TTL is zero"),
    ]


def test_root_token_without_ttl_or_role_passes() -> None:
    lookup = {"policies": ["root"], "ttl": 0, "creation_ttl": 0, "renewable": False}
    caps = {path: ["root"] for path in ("auth/token/lookup", "auth/token/renew-self", "auth/token/revoke-accessor")}
    assert token_rules.failures(token_rules.check_all(lookup, None, None, caps)) == []


def test_root_token_with_ttl_must_be_renewable() -> None:
    lookup = {"policies": ["root"], "ttl": 60, "creation_ttl": 3600, "renewable": False}
    broken = only_failure(token_rules.check_token(lookup))
    assert (broken.rule, broken.message) == ("token.renewable", "Vault token has a TTL but is not renewable")


def test_root_token_with_ttl_must_not_be_expired() -> None:
    lookup = {"policies": ["root"], "ttl": 0, "creation_ttl": 3600, "renewable": True}
    broken = only_failure(token_rules.check_token(lookup))
    assert (broken.rule, broken.message) == ("token.ttl", "token TTL is zero")


# --- which role (getRole) -----------------------------------------------------------------------


def test_role_to_check_prefers_create_from_role() -> None:
    assert token_rules.role_to_check(good_lookup(role=MINT), ROLE) == ROLE
    assert token_rules.role_to_check(good_lookup(role=MINT), None) == MINT
    assert token_rules.role_to_check(good_lookup(role=MINT), "") == MINT
    assert token_rules.role_to_check(good_lookup(role=""), None) is None
    assert token_rules.role_to_check({}, None) is None


def test_create_from_role_overrides_the_tokens_role() -> None:
    lookup = good_lookup(role=MINT)
    # caps for the task role only: fine, the mint role is not what Nomad checks
    assert token_rules.failures(token_rules.check_all(lookup, ROLE, good_role(), good_caps(ROLE))) == []
    # caps for the mint role only: Nomad would check the task role's paths and fail
    broken = token_rules.failures(token_rules.check_all(lookup, ROLE, good_role(), good_caps(MINT)))
    assert [r.rule for r in broken] == [f"cap.auth/token/roles/{ROLE}", f"cap.auth/token/create/{ROLE}"]


def test_without_create_from_role_the_tokens_own_role_is_checked() -> None:
    results = token_rules.check_all(good_lookup(role=MINT), None, good_role(name=MINT), good_caps(MINT))
    assert token_rules.failures(results) == []
    assert f"cap.auth/token/create/{MINT}" in [r.rule for r in results]


def test_no_role_at_all_is_one_failure() -> None:
    lookup = good_lookup()
    del lookup["role"]
    broken = only_failure(token_rules.check_all(lookup, None, None, good_caps()))
    assert (broken.rule, broken.message) == ("role.name", "token role name must be set when not using a root token")
    assert "create_from_role" in broken.fix


def test_check_role_without_name_is_one_failure() -> None:
    results = token_rules.check_role(None, None)
    assert [(r.rule, r.ok, r.message) for r in results] == [
        ("role.name", False, "token role name must be set when not using a root token")
    ]


# --- the role (validateRole) --------------------------------------------------------------------


def test_role_missing_is_one_failure() -> None:
    broken = only_failure(token_rules.check_all(good_lookup(), ROLE, None, good_caps()))
    assert (broken.rule, broken.message) == ("role.exists", f'Role "{ROLE}" does not exist')
    assert f"auth/token/roles/{ROLE}" in broken.fix


@pytest.mark.parametrize("renewable", [False, None, "false", 0])
def test_role_not_renewable(renewable: Any) -> None:
    broken = only_failure(token_rules.check_all(good_lookup(), ROLE, good_role(renewable=renewable), good_caps()))
    assert (broken.rule, broken.message) == ("role.renewable", "Role must allow tokens to be renewed")
    assert "renewable=true" in broken.fix


@pytest.mark.parametrize(
    "change",
    [
        {"token_explicit_max_ttl": 3600},
        {"token_explicit_max_ttl": "1h"},
        {"token_explicit_max_ttl": "3600"},
        {"explicit_max_ttl": 7776000},  # older servers' field
    ],
)
def test_role_explicit_max_ttl(change: dict[str, Any]) -> None:
    broken = only_failure(token_rules.check_all(good_lookup(), ROLE, good_role(**change), good_caps()))
    assert (broken.rule, broken.message) == (
        "role.explicit_max_ttl",
        "Role can not use an explicit max ttl. Token must be periodic.",
    )
    assert "token_explicit_max_ttl" in broken.fix


@pytest.mark.parametrize(
    "change",
    [
        {"token_period": 0},
        {"token_period": "0"},
        {"token_period": ""},
        {"token_period": None},
        {"token_period": "0s"},
    ],
)
def test_role_period_zero(change: dict[str, Any]) -> None:
    role = good_role(**change)
    broken = only_failure(token_rules.check_all(good_lookup(), ROLE, role, good_caps()))
    assert (broken.rule, broken.message) == ("role.period", "Role must have a non-zero period to make tokens periodic.")
    assert "token_period" in broken.fix


def test_role_period_missing() -> None:
    role = good_role()
    del role["token_period"], role["period"]
    broken = only_failure(token_rules.check_role(ROLE, role))
    assert (broken.rule, broken.message) == ("role.period", "Role must have a non-zero period to make tokens periodic.")


@pytest.mark.parametrize(
    "change",
    [
        {"token_period": "72h"},
        {"token_period": "259200"},
        {"token_period": "1h30m"},
        {"token_period": 0, "period": 259200},  # older servers' field
        {"token_explicit_max_ttl": "0", "explicit_max_ttl": ""},
        {"renewable": "true"},
    ],
)
def test_role_value_forms_that_pass(change: dict[str, Any]) -> None:
    assert token_rules.failures(token_rules.check_role(ROLE, good_role(**change))) == []


def test_role_unreadable_duration() -> None:
    broken = only_failure(token_rules.check_role(ROLE, good_role(token_period="three days")))
    assert broken.rule == "role.parse"
    assert broken.message.startswith("failed to parse Vault role's data block: token_period")


def test_role_failures_in_nomads_order() -> None:
    role = good_role(renewable=False, token_explicit_max_ttl=60, token_period=0)
    broken = token_rules.failures(token_rules.check_role(ROLE, role))
    assert [r.rule for r in broken] == ["role.renewable", "role.explicit_max_ttl", "role.period"]


# --- capabilities (validateCapabilities / hasCapability) ----------------------------------------


def test_required_capabilities_table() -> None:
    assert token_rules.required_capabilities(ROLE, allow_unauthenticated=False) == {
        "auth/token/lookup": "update",
        "auth/token/renew-self": "update",
        "auth/token/revoke-accessor": "update",
        f"auth/token/roles/{ROLE}": "read",
        f"auth/token/create/{ROLE}": "update",
    }


def test_required_capabilities_like_nomad_without_role_or_with_allow_unauthenticated() -> None:
    assert list(token_rules.required_capabilities(None, allow_unauthenticated=False)) == [
        "auth/token/lookup",
        "auth/token/renew-self",
        "auth/token/revoke-accessor",
    ]
    assert list(token_rules.required_capabilities("")) == list(token_rules.required_capabilities(None))
    assert "auth/token/lookup" not in token_rules.required_capabilities(ROLE, allow_unauthenticated=True)
    # Nomad's default is allow_unauthenticated = true: lookup is not checked (vault.go:866)
    assert token_rules.required_capabilities(ROLE) == token_rules.required_capabilities(
        ROLE, allow_unauthenticated=True
    )


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("auth/token/lookup", "update"),
        ("auth/token/renew-self", "update"),
        ("auth/token/revoke-accessor", "update"),
        (f"auth/token/roles/{ROLE}", "read"),
        (f"auth/token/create/{ROLE}", "update"),
    ],
)
def test_each_missing_capability_is_one_failure(path: str, wanted: str) -> None:
    caps = good_caps()
    del caps[path]
    broken = only_failure(token_rules.check_all(good_lookup(), ROLE, good_role(), caps, allow_unauthenticated=False))
    assert (broken.rule, broken.message) == (f"cap.{path}", cap_message(path, wanted, "[]"))
    assert f'"{wanted}"' in broken.fix
    assert path in broken.fix


def test_deny_is_no_capability() -> None:
    caps = good_caps()
    caps["auth/token/renew-self"] = ["deny"]
    broken = only_failure(token_rules.check_all(good_lookup(), ROLE, good_role(), caps))
    assert (broken.rule, broken.message) == (
        "cap.auth/token/renew-self",
        cap_message("auth/token/renew-self", "update", "[deny]"),
    )
    assert "deny" in broken.fix


def test_sudo_alone_is_not_enough() -> None:
    caps = good_caps()
    caps["auth/token/revoke-accessor"] = ["sudo"]
    broken = only_failure(token_rules.check_capabilities(ROLE, caps))
    assert broken.message == cap_message("auth/token/revoke-accessor", "update", "[sudo]")


def test_wrong_capability_is_listed_like_go() -> None:
    caps = good_caps()
    caps[f"auth/token/roles/{ROLE}"] = ["create", "update"]
    broken = only_failure(token_rules.check_capabilities(ROLE, caps))
    assert broken.message == cap_message(f"auth/token/roles/{ROLE}", "read", "[create update]")


def test_root_grants_everything() -> None:
    caps = {path: ["root"] for path in good_caps()}
    assert token_rules.failures(token_rules.check_all(good_lookup(), ROLE, good_role(), caps)) == []


def test_allow_unauthenticated_skips_lookup() -> None:
    caps = good_caps()
    del caps["auth/token/lookup"]
    results = token_rules.check_capabilities(ROLE, caps, allow_unauthenticated=True)
    assert token_rules.failures(results) == []


def test_capabilities_self_refused_is_a_warning_and_skips_every_capability() -> None:
    results = token_rules.check_all(good_lookup(), ROLE, good_role(), None, allow_unauthenticated=False)
    assert token_rules.failures(results) == []  # Nomad warns and runs (vault.go:835-847)
    assert not any(r.rule.startswith("cap.auth/") for r in results)
    (broken,) = token_rules.warnings(results)
    assert token_rules.failures(results, strict=True) == [broken]
    assert broken.rule == "cap.sys/capabilities-self"
    assert broken.message == (
        "can not lookup token capabilities. As such certain operations may fail in the future. "
        'Please give Nomad a Vault token with one of the following capabilities ["update" "root"] on '
        '"sys/capabilities-self" so that the required capabilities can be verified'
    )


# --- all together -------------------------------------------------------------------------------


def test_check_all_reports_in_nomads_order() -> None:
    lookup = good_lookup(renewable=False)
    caps = good_caps()
    del caps["auth/token/renew-self"]
    broken = token_rules.failures(token_rules.check_all(lookup, ROLE, good_role(token_period=0), caps))
    assert [r.rule for r in broken] == ["token.renewable", "cap.auth/token/renew-self", "role.period"]


def test_failures_keeps_only_broken() -> None:
    ok = RuleResult("a", True, "fine", "")
    bad = RuleResult("b", False, "broken", "fix it")
    assert token_rules.failures(iter([ok, bad, ok])) == [bad]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, 0),
        ("", 0),
        ("0", 0),
        (0, 0),
        (259200, 259200),
        ("259200", 259200),
        ("72h", 259200),
        ("1h30m", 5400),
        ("3600s", 3600),
        ("1.5h", 5400),
        ("500ms", 0.5),
        ("3d", 259200),
    ],
)
def test_duration_values(value: Any, seconds: float) -> None:
    assert token_rules._seconds(value) == seconds


@pytest.mark.parametrize("value", ["h", "72x", "1h 30m", "abc", "-", [1]])
def test_duration_values_rejected(value: Any) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        token_rules._seconds(value)
