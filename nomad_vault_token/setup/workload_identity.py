"""What `bootstrap-roles --workload-identity` wants in Vault for Nomad's JWT integration. Pure.

The objects (JWT auth mount, its config, the workload role and policy, the snapshot job's role) are
`bootstrap_plan.Wanted`, compared and written like every other object bootstrap-roles manages.
Nomad's own helper, `nomad setup vault` (`command/setup_vault.go` v1.9.7 and its `command/asset/`
files), is the starting point; where this differs, the reason is beside the difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nomad_vault_token.setup.bootstrap_plan import PlanError, Wanted, fill_fields, fill_text

UserClaim = Literal["unique-id", "sub", "job-id"]
USER_CLAIMS: tuple[UserClaim, ...] = ("unique-id", "sub", "job-id")

AUTH_TYPE = "jwt"
AUDIENCE = "vault.io"  # setup_vault.go v1.9.7:37 (vaultAud), the role's bound_audiences
EXTRA_CLAIM = (
    "unique_id"  # Nomad's documented name (website/content/docs/configuration/vault.mdx v1.9.7:42-44, 199-204)
)
EXTRA_VALUE = "${job.region}:${job.namespace}:${job.id}"
ACCESSOR_UNKNOWN = "<accessor of the new mount>"

# What each choice of user claim puts in the role: (user_claim, user_claim_json_pointer).
_USER_CLAIM_FIELDS: dict[UserClaim, tuple[str, bool]] = {
    # extra_claims from the server's vault.default_identity (Nomad 1.8.3+): one alias per job,
    # unique across regions and namespaces.
    "unique-id": (f"/extra_claims/{EXTRA_CLAIM}", True),
    # Nomad 1.7+: region:namespace:job:group:task:identity (workload_id.go v1.9.7:259-269): unique,
    # one alias per task rather than per job.
    "sub": ("sub", False),
    # `nomad setup vault`'s choice (asset/vault-wi-default-role.json:4-5): the bare job ID collides.
    "job-id": ("/nomad_job_id", True),
}

SERVER_CONFIG_LINE = (
    'vault { default_identity { aud = ["'
    + AUDIENCE
    + '"]  ttl = "1h"  extra_claims { '
    + EXTRA_CLAIM
    + ' = "'
    + EXTRA_VALUE
    + '" } } }'
)

JOB_ID_COLLISION_WARNING = (
    "workload_user_claim job-id: jobs with the same ID in two namespaces share one Vault entity alias; each "
    "login rewrites the alias metadata the policy's paths are made of, so a running task of `web` in `default` "
    "can be handed the paths of `web` in `prod` (or lose its own: 403) after `web` in `prod` logs in "
    "(hashicorp/nomad#20104, hashicorp/vault#27586). Use unique-id (Nomad 1.8.3+) or sub (Nomad 1.7+)"
)


@dataclass(frozen=True)
class WorkloadSettings:
    """The names and choices of the workload side (config keys of the same names)."""

    mount: str = "jwt-nomad"
    role: str = "nomad-workloads"
    policy: str = "nomad-workloads"
    kv_mount: str = "secret"
    kv_version: int = 2
    user_claim: UserClaim = "unique-id"
    allow_slashes: bool = False


def user_claim_fields(choice: UserClaim) -> tuple[str, bool]:
    try:
        return _USER_CLAIM_FIELDS[choice]
    except KeyError:
        raise PlanError(f"workload_user_claim {choice!r}: use one of {', '.join(USER_CLAIMS)}") from None


def advice(s: WorkloadSettings) -> list[str]:
    """What the admin must know about these choices: the server line to add, or what goes wrong."""
    if s.user_claim == "unique-id":
        return [
            "every Nomad server's agent config needs (Nomad 1.8.3+; jobs registered afterwards get it): "
            + SERVER_CONFIG_LINE
        ]
    if s.user_claim == "job-id":
        return [JOB_ID_COLLISION_WARNING]
    return [
        "workload_user_claim sub: one Vault entity per task (region:namespace:job:group:task:identity); no "
        "server setting needed (Nomad 1.7+). With Nomad 1.8.3+ prefer unique-id (one entity per job)"
    ]


NESTED_JOBS_REFUSED = (
    "allow_slashes_in_job_ids = false (the default): a job whose ID holds '/' (e.g. web/db) gets no secrets "
    "(OpenBao refuses its token everything: 400 Forbidden), so no job's tree <namespace>/<job>/... holds another "
    "job's path; rename such jobs (web-db), or set allow_slashes_in_job_ids = true, and job web then reads "
    "job web/db's secrets"
)
NESTED_JOBS_ALLOWED = (
    "allow_slashes_in_job_ids = true: job IDs holding '/' reach their paths, and a job reads the secrets of every "
    "job nested under its ID (job web reads <kv>/<namespace>/web/db/... of job web/db): give such jobs IDs "
    "without '/' to keep them apart"
)
NESTED_JOBS_UNREFUSED = (
    "this server does not refuse '/' in templated policy paths (Vault, OpenBao before 2.6): a job ID holding "
    "'/' (web/db) reaches its paths, and job web reads job web/db's secrets: give jobs IDs without '/', or use "
    "OpenBao 2.6+"
)


def slash_advice(s: WorkloadSettings, *, templating_flags: bool) -> str:
    """What nested job IDs (`web/db`) get under these choices on this server: one line for the admin."""
    if not templating_flags:
        return NESTED_JOBS_UNREFUSED
    return NESTED_JOBS_ALLOWED if s.allow_slashes else NESTED_JOBS_REFUSED


def mount_object(mount: str) -> Wanted:
    return Wanted("auth_mount", f"sys/auth/{mount}", f"sys/auth/{mount}", {"type": AUTH_TYPE})


def config_object(
    mount: str, roles: Mapping[str, Any], *, jwks_url: str, jwks_ca_pem: str, default_role: str
) -> Wanted:
    values = {"jwks_url": jwks_url, "jwks_ca_pem": jwks_ca_pem, "workload_role": default_role}
    path = f"auth/{mount}/config"
    return Wanted("jwt_config", path, path, fill_fields(roles["jwt_config"], values))


def workload_policy(s: WorkloadSettings, template: str, accessor: str, *, templating_flags: bool) -> Wanted:
    """The workload policy, templated on the mount's accessor.

    `templating_flags`: the server knows OpenBao 2.6's `allow_slashes_in_identity_templates` (its
    policies report it). There a job ID holding `/` (Nomad allows it) is refused in a templated path
    unless the policy allows slashes: the templated policy fails for that entity and its token is
    refused everything (400 Forbidden, measured on OpenBao 2.7.2). That is the default
    (`allow_slashes_in_job_ids = false`), and what makes the policy's promise true: a job's tree
    `<ns>/<job>/...` holds no other job's path, because no other job can have one there. Allowing
    slashes lets job `a/b` read `<ns>/a/b/...`, which is inside job `a`'s tree: job `a` reads job
    `a/b`'s secrets (issue 30, finding 7). No namespace is crossed either way (Nomad namespace names
    cannot hold `/`: `nomad/structs/structs.go` v1.9.7:217). Wildcards (`*`, `+`) stay refused: a
    job ID `+` would otherwise read every job of its namespace.
    """
    text = fill_text(template, {"kv_mount": s.kv_mount, "accessor": accessor})
    fields: dict[str, Any] = {"policy": text}
    if templating_flags:
        fields["allow_slashes_in_identity_templates"] = s.allow_slashes
    return Wanted("policy", f"sys/policies/acl/{s.policy}", s.policy, fields)


def workload_role(s: WorkloadSettings, roles: Mapping[str, Any]) -> Wanted:
    claim, pointer = user_claim_fields(s.user_claim)
    values = {"user_claim": claim, "user_claim_json_pointer": pointer, "workload_policy": s.policy}
    path = f"auth/{s.mount}/role/{s.role}"
    return Wanted("jwt_role", path, path, fill_fields(roles["workload_jwt_role"], values))


@dataclass(frozen=True)
class SnapshotJob:
    """The snapshot job's claims (defaults: examples/nomad/vault-snapshot.nomad.hcl)."""

    namespace: str = "default"
    job: str = "vault-snapshot"
    task: str = "snapshot"


def snapshot_role(mount: str, role: str, policy: str, job: SnapshotJob, roles: Mapping[str, Any]) -> Wanted:
    values = {
        "snapshot_job_namespace": job.namespace,
        "snapshot_job": job.job,
        "snapshot_task": job.task,
        "snapshot_policy": policy,
    }
    path = f"auth/{mount}/role/{role}"
    return Wanted("jwt_role", path, path, fill_fields(roles["snapshot_jwt_role"], values))


def policy_file(kv_version: int) -> str:
    if kv_version not in (1, 2):
        raise PlanError(f"kv_version {kv_version}: use 1 or 2")
    return f"workloads-kv{kv_version}.hcl"


def own_paths(s: WorkloadSettings, namespace: str, job: str) -> tuple[str, str]:
    """A secret path of job `job` in `namespace`, and the matching path of a neighbour no task of it may read."""
    data = "data/" if s.kv_version == 2 else ""
    return (f"{s.kv_mount}/{data}{namespace}/{job}/probe", f"{s.kv_mount}/{data}{namespace}/{job}-neighbour/probe")
