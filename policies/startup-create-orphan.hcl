# The startup identity's policy in `create-orphan` mode: the old bash script's setup.
# WARNING: with sudo on create-orphan, whoever holds the startup certificate can
# mint orphan tokens with ANY policy except root. Prefer `role` mode.
path "auth/token/create-orphan" {
  capabilities = ["update", "sudo"]
}
