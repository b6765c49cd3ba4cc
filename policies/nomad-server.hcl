# The Nomad server token's policy (default name: nomad_cluster), as Nomad's docs
# recommend for the token-based Vault integration. ${task_role} is the token role
# Nomad derives task tokens from (its `create_from_role`).

# Create task tokens through the task role.
path "auth/token/create/${task_role}" {
  capabilities = ["update"]
}

# Read the task role, which Nomad validates at start.
path "auth/token/roles/${task_role}" {
  capabilities = ["read"]
}

# Look up our own token (also in Vault's "default" policy).
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# Look up the tokens jobs present, to check they may use the policies they ask for.
path "auth/token/lookup" {
  capabilities = ["update"]
}

# Revoke the tokens of tasks that no longer exist.
path "auth/token/revoke-accessor" {
  capabilities = ["update"]
}

# Check our own capabilities at start (a POST, hence update).
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# Renew our own token.
path "auth/token/renew-self" {
  capabilities = ["update"]
}
