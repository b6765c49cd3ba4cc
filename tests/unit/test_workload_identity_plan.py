"""setup.workload_identity without a server: the wanted JWT objects, their comparison, the advice."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from nomad_vault_token.core import resources
from nomad_vault_token.setup import workload_identity as wi
from nomad_vault_token.setup.bootstrap_plan import PlanError, compare, normalise, show

ROLES: dict[str, Any] = tomllib.loads(resources.read_text("policies", "roles.toml"))
ACC = "auth_jwt_1234abcd"


def policy(kv: int = 2, mount: str = "secret", flags: bool = True, slashes: bool = False) -> dict[str, Any]:
    s = wi.WorkloadSettings(kv_mount=mount, kv_version=kv, allow_slashes=slashes)
    want = wi.workload_policy(s, resources.read_text("policies", wi.policy_file(kv)), ACC, templating_flags=flags)
    return dict(want.fields)


@pytest.mark.parametrize("kv", [1, 2])
def test_the_policy_is_templated_on_the_accessor_and_has_no_cross_namespace_list(kv: int) -> None:
    text = policy(kv, mount="kv/apps")["policy"]
    rules = [line for line in text.splitlines() if line.startswith("path ")]
    assert rules and all(f"identity.entity.aliases.{ACC}.metadata.nomad_namespace" in r for r in rules)
    assert all(f"identity.entity.aliases.{ACC}.metadata.nomad_job_id" in r for r in rules)
    assert all(r.startswith('path "kv/apps/') for r in rules)
    assert "${" not in text  # every placeholder filled
    assert all("metadata/*" not in r for r in rules)  # nomad setup vault's cross-namespace list rule


def test_templating_flags_only_where_the_server_knows_them() -> None:
    assert policy(flags=True)["allow_slashes_in_identity_templates"] is False  # the default: issue 30, finding 7
    assert policy(flags=True, slashes=True)["allow_slashes_in_identity_templates"] is True
    assert "allow_slashes_in_identity_templates" not in policy(flags=False)  # Vault, OpenBao < 2.6: never a diff


@pytest.mark.parametrize(
    ("slashes", "flags", "line"),
    [
        (False, True, wi.NESTED_JOBS_REFUSED),
        (True, True, wi.NESTED_JOBS_ALLOWED),
        (False, False, wi.NESTED_JOBS_UNREFUSED),
        (True, False, wi.NESTED_JOBS_UNREFUSED),
    ],
)
def test_what_nested_job_ids_get_is_said(slashes: bool, flags: bool, line: str) -> None:
    assert wi.slash_advice(wi.WorkloadSettings(allow_slashes=slashes), templating_flags=flags) == line
    assert wi.WorkloadSettings().allow_slashes is False


@pytest.mark.parametrize(
    ("choice", "claim", "pointer"),
    [("unique-id", "/extra_claims/unique_id", True), ("sub", "sub", False), ("job-id", "/nomad_job_id", True)],
)
def test_user_claims(choice: wi.UserClaim, claim: str, pointer: bool) -> None:
    role = wi.workload_role(wi.WorkloadSettings(user_claim=choice), ROLES).fields
    assert (role["user_claim"], role["user_claim_json_pointer"]) == (claim, pointer)
    assert role["role_type"] == "jwt" and role["bound_audiences"] == ["vault.io"]
    assert role["claim_mappings"] == {
        "nomad_namespace": "nomad_namespace",
        "nomad_job_id": "nomad_job_id",
        "nomad_task": "nomad_task",
    }
    assert role["token_policies"] == ["nomad-workloads"] and role["token_type"] == "service"
    assert normalise("token_period", role["token_period"]) == 1800


def test_advice_names_the_server_line_or_the_danger() -> None:
    (line,) = wi.advice(wi.WorkloadSettings())
    assert 'extra_claims { unique_id = "${job.region}:${job.namespace}:${job.id}" }' in line and "1.8.3" in line
    assert "nomad#20104" in wi.advice(wi.WorkloadSettings(user_claim="job-id"))[0]
    with pytest.raises(PlanError):
        wi.user_claim_fields("bare")  # type: ignore[arg-type]
    with pytest.raises(PlanError):
        wi.policy_file(3)


def test_the_snapshot_role_is_bound_to_the_jobs_claims() -> None:
    job = wi.SnapshotJob(namespace="ops", job="vault-snapshot", task="snap")
    role = wi.snapshot_role("jwt-nomad", "nomad-snapshot", "nomad_snapshot", job, ROLES)
    assert role.path == "auth/jwt-nomad/role/nomad-snapshot"
    assert role.fields["bound_claims"] == {
        "nomad_namespace": "ops",
        "nomad_job_id": "vault-snapshot",
        "nomad_task": "snap",
    }
    assert role.fields["token_policies"] == ["nomad_snapshot"]


def test_config_compares_as_vault_answers_it() -> None:
    want = wi.config_object(
        "jwt-nomad", ROLES, jwks_url="https://n:4646/.well-known/jwks.json", jwks_ca_pem="", default_role="r"
    )
    as_read = {"jwks_url": "https://n:4646/.well-known/jwks.json", "jwks_ca_pem": "", "jwt_supported_algs": ["EdDSA", "RS256"],
               "default_role": "r", "bound_issuer": ""}  # fmt: skip
    assert compare(want, as_read).action == "unchanged"
    assert compare(want, {**as_read, "jwt_supported_algs": ["RS256"]}).changed_fields == ("jwt_supported_algs",)


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ({"x": "1", "y": "2"}, {"y": "2", "x": "1"}, True),
        ({"x": ["1", "2"]}, {"x": ["2", "1"]}, True),
        ({"x": "1"}, {"x": ["1"]}, True),
        (None, {}, True),
        ({"x": "1"}, {"x": "2"}, False),
        ({"x": "1"}, {"x": "1", "y": "1"}, False),
    ],
)
def test_maps_compare_by_content(a: Any, b: Any, equal: bool) -> None:
    assert (normalise("bound_claims", a) == normalise("bound_claims", b)) is equal


def test_a_map_shows_on_one_line() -> None:
    assert show("claim_mappings", normalise("claim_mappings", {"b": "2", "a": "1"})) == "{a=1, b=2}"
    with pytest.raises(PlanError):
        normalise("claim_mappings", "not a map")


def test_own_paths_per_kv_version() -> None:
    assert wi.own_paths(wi.WorkloadSettings(), "default", "web") == (
        "secret/data/default/web/probe",
        "secret/data/default/web-neighbour/probe",
    )
    assert wi.own_paths(wi.WorkloadSettings(kv_version=1, kv_mount="kv"), "ns", "a/b")[0] == "kv/ns/a/b/probe"
