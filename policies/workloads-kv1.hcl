# The workload policy (`bootstrap-roles --workload-identity --kv-version 1`), for a KV version 1
# mount: a task reads and lists <kv_mount>/<its namespace>/<its job>/... and nothing else. The paths
# are filled per token from the entity alias of the JWT auth mount (its accessor: ${accessor}).
# Nothing of another job: with allow_slashes_in_identity_templates false (the default; OpenBao 2.6+)
# a job ID holding '/' gets no path at all, so no other job's path lies inside <its job>/...; with it
# true, job web also reads job web/db's secrets (docs/security-files.md).
path "${kv_mount}/{{identity.entity.aliases.${accessor}.metadata.nomad_namespace}}/{{identity.entity.aliases.${accessor}.metadata.nomad_job_id}}/*" {
  capabilities = ["read", "list"]
}

path "${kv_mount}/{{identity.entity.aliases.${accessor}.metadata.nomad_namespace}}/{{identity.entity.aliases.${accessor}.metadata.nomad_job_id}}" {
  capabilities = ["read"]
}
