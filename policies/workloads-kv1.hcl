# The workload policy (`bootstrap-roles --workload-identity --kv-version 1`), for a KV version 1
# mount: a task reads and lists <kv_mount>/<its namespace>/<its job>/... and nothing else. The paths
# are filled per token from the entity alias of the JWT auth mount (its accessor: ${accessor}).
path "${kv_mount}/{{identity.entity.aliases.${accessor}.metadata.nomad_namespace}}/{{identity.entity.aliases.${accessor}.metadata.nomad_job_id}}/*" {
  capabilities = ["read", "list"]
}

path "${kv_mount}/{{identity.entity.aliases.${accessor}.metadata.nomad_namespace}}/{{identity.entity.aliases.${accessor}.metadata.nomad_job_id}}" {
  capabilities = ["read"]
}
