# The workload policy (`bootstrap-roles --workload-identity`, default name nomad-workloads), for a
# KV version 2 mount (default secret/). Every task that logs in through the JWT role gets it; the
# paths are filled per token from the entity alias of the JWT auth mount (its accessor: ${accessor}),
# whose metadata the role's claim_mappings copy from the task's identity. A task reads its own job's
# secrets, <kv_mount>/data/<its namespace>/<its job>/..., and lists its own job's keys; nothing of
# another job or namespace: with allow_slashes_in_identity_templates false (the default; OpenBao 2.6+)
# a job ID holding '/' gets no path at all, so no other job's path lies inside <its job>/...; with it
# true, job web also reads job web/db's secrets (docs/security-files.md). Unlike `nomad setup vault`'s
# policy there is no list on <kv_mount>/metadata/* (every job's name in every namespace) nor on
# <kv_mount>/metadata/<namespace>/*.
path "${kv_mount}/data/{{identity.entity.aliases.${accessor}.metadata.nomad_namespace}}/{{identity.entity.aliases.${accessor}.metadata.nomad_job_id}}/*" {
  capabilities = ["read"]
}

path "${kv_mount}/data/{{identity.entity.aliases.${accessor}.metadata.nomad_namespace}}/{{identity.entity.aliases.${accessor}.metadata.nomad_job_id}}" {
  capabilities = ["read"]
}

path "${kv_mount}/metadata/{{identity.entity.aliases.${accessor}.metadata.nomad_namespace}}/{{identity.entity.aliases.${accessor}.metadata.nomad_job_id}}/*" {
  capabilities = ["list"]
}
