
# With `keyring = true`: the same login mints the keyring token through the keyring role, whose
# allowed_policies is the keyring policy alone.
path "auth/token/create/${keyring_role}" {
  capabilities = ["update"]
}
