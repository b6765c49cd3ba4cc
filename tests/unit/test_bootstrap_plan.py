"""bootstrap_plan without a server: filling the shipped templates, normalising, comparing, reporting."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from hypothesis import given
from hypothesis import strategies as st

from nomad_vault_token.core.results import envelope
from nomad_vault_token.setup.bootstrap_plan import (
    FIELD_TYPES,
    Change,
    PlanError,
    Wanted,
    compare,
    fill_fields,
    fill_text,
    normalise,
    pem_fingerprints,
    plan,
    result,
)

POLICIES = Path(__file__).resolve().parents[2] / "policies"
TASK_ROLE = "auth/token/roles/nomad-cluster"


def task_role(**fields: object) -> Wanted:
    base: dict[str, object] = {
        "token_period": 259200,
        "renewable": True,
        "token_explicit_max_ttl": 0,
        "orphan": True,
        "disallowed_policies": ["nomad_cluster"],
        "allowed_policies": [],
    }
    base.update(fields)
    return Wanted("token_role", TASK_ROLE, TASK_ROLE, base)


# What OpenBao answers for that role (read back after writing it).
VAULT_TASK_ROLE = {
    "allowed_entity_aliases": None,
    "allowed_policies": [],
    "allowed_policies_glob": [],
    "disallowed_policies": ["nomad_cluster"],
    "explicit_max_ttl": 0,
    "name": "nomad-cluster",
    "orphan": True,
    "period": 0,
    "renewable": True,
    "token_explicit_max_ttl": 0,
    "token_period": 259200,
    "token_type": "default-service",
}


# ---- comparing -----------------------------------------------------------------------------------


def test_missing_object_is_created_with_every_field() -> None:
    step = compare(task_role(), None)
    assert step.action == "create" and step.changed
    assert step.changed_fields == tuple(task_role().fields)
    assert all(c.old is None for c in step.changes)
    assert step.line(check=False) == f"created role {TASK_ROLE}"
    assert step.line(check=True) == f"would create role {TASK_ROLE}"


def test_what_vault_answers_is_unchanged() -> None:
    step = compare(task_role(), VAULT_TASK_ROLE)
    assert step.action == "unchanged" and not step.changed and step.changes == ()
    assert step.line(check=False) == step.line(check=True) == f"unchanged role {TASK_ROLE}"


def test_one_changed_field_is_reported_alone_with_old_and_new() -> None:
    step = compare(task_role(), {**VAULT_TASK_ROLE, "token_period": 3600})
    assert step.action == "update"
    assert step.changes == (Change("token_period", 3600, 259200, 3600, 259200),)
    assert step.line(check=False) == f"updated role {TASK_ROLE} (token_period)"
    assert step.line(check=True) == f"would update role {TASK_ROLE} (token_period)"
    assert step.diff_lines() == ["    token_period: 3600s -> 259200s"]


def test_several_changed_fields_are_listed_in_order() -> None:
    current = {**VAULT_TASK_ROLE, "orphan": False, "allowed_policies": ["web"], "renewable": False}
    step = compare(task_role(), current)
    assert step.changed_fields == ("renewable", "orphan", "allowed_policies")
    assert "    allowed_policies: [web] -> []" in step.diff_lines()


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("token_period", "72h", 259200),
        ("token_period", "259200s", 259200),
        ("token_explicit_max_ttl", None, 0),
        ("token_ttl", "5m", 300),
        ("allowed_policies", None, []),
        ("allowed_policies", "", ()),
        ("allowed_policies", ["b", "a", "a"], ["a", "b"]),
        ("allowed_common_names", ["nomad-startup"], "nomad-startup"),
        ("renewable", 1, True),
        ("policy", 'path "a" {\n  capabilities = ["read"]\n}\n', 'path "a" {\n\tcapabilities = ["read"]\n}'),
    ],
)
def test_equal_in_vault_terms(name: str, a: object, b: object) -> None:
    assert normalise(name, a) == normalise(name, b)


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("token_period", "72h", 3600),
        ("allowed_policies", ["a"], ["a", "b"]),
        ("allowed_policies", None, ["a"]),
        ("orphan", False, True),
        ("policy", 'path "a" { capabilities = ["read"] }', 'path "a" { capabilities = ["update"] }'),
    ],
)
def test_different_in_vault_terms(name: str, a: object, b: object) -> None:
    assert normalise(name, a) != normalise(name, b)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(PlanError, match="token_num_uses"):
        Wanted("token_role", TASK_ROLE, TASK_ROLE, {"token_num_uses": 1})
    with pytest.raises(PlanError, match="token_period"):
        normalise("token_period", "soon")


def test_the_same_path_twice_is_refused() -> None:
    with pytest.raises(PlanError, match=TASK_ROLE):
        plan([task_role(), task_role(orphan=False)], {})


def test_plan_keeps_the_wanted_order_and_looks_up_by_path() -> None:
    policy = Wanted("policy", "sys/policies/acl/p", "p", {"policy": 'path "x" { capabilities = ["read"] }'})
    steps = plan([policy, task_role()], {TASK_ROLE: VAULT_TASK_ROLE})
    assert [s.action for s in steps] == ["create", "unchanged"]
    assert steps[0].line(check=False) == "created policy p"


# ---- certificates --------------------------------------------------------------------------------


def test_pem_fingerprint_is_the_certificates_sha256_and_ignores_wrapping() -> None:
    ca = trustme.CA()
    pem = ca.cert_pem.bytes().decode()
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert pem_fingerprints(pem) == (cert.fingerprint(hashes.SHA256()).hex(),)
    body = "".join(pem.split("-----")[2].split())
    rewrapped = "-----BEGIN CERTIFICATE-----\n" + "\n".join(body[i : i + 76] for i in range(0, len(body), 76))
    rewrapped += "\n-----END CERTIFICATE-----"
    assert normalise("certificate", rewrapped) == normalise("certificate", pem)
    other = trustme.CA().cert_pem.bytes().decode()
    assert normalise("certificate", other) != normalise("certificate", pem)
    assert len(pem_fingerprints(pem + other)) == 2


def test_certificate_is_summarised_by_fingerprint_never_shown() -> None:
    pem = trustme.CA().cert_pem.bytes().decode()
    want = Wanted("cert_role", "auth/cert/certs/s", "auth/cert/certs/s", {"certificate": pem})
    step = compare(want, {"certificate": trustme.CA().cert_pem.bytes().decode()})
    body_line = pem.splitlines()[1]
    text = "\n".join(step.diff_lines())
    doc = json.dumps(step.as_json(check=False))
    assert body_line not in text and body_line not in doc
    fingerprint = pem_fingerprints(pem)[0]
    assert f"sha256:{fingerprint}" in text and f"sha256:{fingerprint}" in doc


# ---- filling templates ---------------------------------------------------------------------------


def test_fill_text_and_an_unknown_placeholder() -> None:
    assert fill_text('path "auth/token/create/${mint_role}" {}', {"mint_role": "m"}) == 'path "auth/token/create/m" {}'
    with pytest.raises(PlanError, match="mint_rol"):
        fill_text("${mint_rol}", {"mint_role": "m"})


def test_fill_fields_keeps_types_and_splices_lists() -> None:
    template = {
        "token_period": "${period}",
        "disallowed_policies": "${server}",
        "token_policies": ["${one}", "fixed", "${server}"],
        "certificate": "prefix ${one}",
    }
    filled = fill_fields(template, {"period": 60, "server": ("a", "b"), "one": "x"})
    assert filled == {
        "token_period": 60,
        "disallowed_policies": ["a", "b"],
        "token_policies": ["x", "fixed", "a", "b"],
        "certificate": "prefix x",
    }
    with pytest.raises(PlanError, match="nope"):
        fill_fields({"token_period": "${nope}"}, {})
    with pytest.raises(PlanError, match="bound_cidrs"):
        fill_fields({"bound_cidrs": []}, {})


def defaults() -> dict[str, object]:
    return {
        "task_role": "nomad-cluster",
        "mint_role": "nomad-server-mint",
        "period": 259200,
        "server_policies": ["nomad_cluster"],
        "task_allowed_policies": [],
        "startup_policy": "nomad_startup",
        "client_ca": "PEM",
        "allowed_common_names": ["nomad-startup"],
        "login_ttl": 300,
    }


def test_shipped_roles_fill_with_the_documented_values() -> None:
    roles = tomllib.loads((POLICIES / "roles.toml").read_text())
    assert set(roles) == {"task_role", "mint_role", "cert_role", "snapshot_cert_role", "jwt_config", "workload_jwt_role",
                          "snapshot_jwt_role", "keyring_role", "keyring_key"}  # fmt: skip
    task = fill_fields(roles["task_role"], defaults())
    # Nomad's docs, and Nomad's own checks: renewable, no explicit max TTL, a period; orphan
    assert task == {
        "token_period": 259200,
        "renewable": True,
        "token_explicit_max_ttl": 0,
        "orphan": True,
        "disallowed_policies": ["nomad_cluster"],
        "allowed_policies": [],
    }
    mint = fill_fields(roles["mint_role"], defaults())
    assert mint == {
        "orphan": True,
        "allowed_policies": ["nomad_cluster"],
        "token_period": 259200,
        "renewable": True,
        "token_explicit_max_ttl": 0,
    }
    cert = fill_fields(roles["cert_role"], defaults())
    assert cert == {
        "certificate": "PEM",
        "token_policies": ["nomad_startup"],
        "allowed_common_names": ["nomad-startup"],
        "token_ttl": 300,
        "token_max_ttl": 300,
    }
    snap = fill_fields(roles["snapshot_cert_role"], {**defaults(), "snapshot_policy": "nomad_snapshot"})
    assert snap == {**cert, "token_policies": ["nomad_snapshot"]}
    for fields in (task, mint, cert, snap):
        assert set(fields) <= set(FIELD_TYPES)


def test_snapshot_policy_reads_the_snapshot_and_nothing_else() -> None:
    text = (POLICIES / "snapshot.hcl").read_text()
    rules = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert rules == ['path "sys/storage/raft/snapshot" {', 'capabilities = ["read"]', "}"]


def test_role_mode_policies_have_no_sudo_and_fill_completely() -> None:
    for name in ("nomad-server.hcl", "startup-role.hcl"):
        text = fill_text((POLICIES / name).read_text(), defaults())
        assert "${" not in text
        assert all("sudo" not in line for line in text.splitlines() if not line.lstrip().startswith("#"))
    startup = fill_text((POLICIES / "startup-role.hcl").read_text(), defaults())
    assert 'path "auth/token/create/nomad-server-mint"' in startup


# ---- the JSON envelope ---------------------------------------------------------------------------


def test_result_envelope() -> None:
    steps = [compare(task_role(), VAULT_TASK_ROLE), compare(task_role(), {**VAULT_TASK_ROLE, "token_period": 60})]
    doc = result(steps, check=True)
    assert "version" not in doc and envelope(doc)["version"] == 1 and doc["changed"] is True
    assert doc["objects"] == [
        {"kind": "token_role", "path": TASK_ROLE, "action": "unchanged", "fields": {}},
        {
            "kind": "token_role",
            "path": TASK_ROLE,
            "action": "would update",
            "fields": {"token_period": {"old": 60, "new": 259200}},
        },
    ]
    assert result(steps[:1], check=False)["changed"] is False
    json.dumps(result(steps, check=False))


def test_policy_change_shows_the_texts_and_a_diff() -> None:
    old = 'path "a" {\n  capabilities = ["read"]\n}\n'
    new = 'path "a" {\n  capabilities = ["update"]\n}\n'
    step = compare(Wanted("policy", "sys/policies/acl/p", "p", {"policy": new}), {"policy": old})
    assert step.line(check=False) == "updated policy p (policy)"
    assert step.as_json(check=False)["fields"] == {"policy": {"old": old, "new": new}}
    lines = step.diff_lines()
    assert '      -  capabilities = ["read"]' in lines and '      +  capabilities = ["update"]' in lines


# ---- property: whatever form Vault answers in, equal settings compare equal ----------------------


@given(
    period=st.integers(min_value=1, max_value=10**7),
    allowed=st.lists(st.sampled_from(["a", "b", "c", "web"]), max_size=6),
    as_string=st.booleans(),
)
def test_vault_forms_of_the_same_role_are_unchanged(period: int, allowed: list[str], as_string: bool) -> None:
    want = task_role(token_period=f"{period}s" if as_string else period, allowed_policies=allowed)
    answered = {**VAULT_TASK_ROLE, "token_period": period, "allowed_policies": sorted(set(allowed)) or None}
    assert compare(want, answered).action == "unchanged"
    changed = {**answered, "token_period": period + 1}
    assert compare(want, changed).changed_fields == ("token_period",)


def test_a_transit_keys_type_and_exportable_are_fixed_but_deletion_allowed_is_not() -> None:
    from nomad_vault_token.setup.bootstrap_plan import fixed_changes

    want = Wanted("transit_key", "transit/keys/k", "transit/keys/k",
                  {"type": "aes256-gcm96", "exportable": False, "deletion_allowed": False})  # fmt: skip
    held = {"type": "aes256-gcm96", "exportable": True, "deletion_allowed": True}
    steps = plan([want], {"transit/keys/k": held})
    assert steps[0].changed_fields == ("exportable", "deletion_allowed")
    assert [f for _, f in fixed_changes(steps)] == ["exportable"]
    assert fixed_changes(plan([want], {"transit/keys/k": {**held, "exportable": False}})) == []
