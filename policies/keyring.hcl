# The keyring token's policy (`bootstrap-roles --keyring`, default name: nomad-keyring): Nomad's
# `keyring "transit"` block wraps and unwraps its root keys with one transit key, and that is all
# this token may do (Nomad's transit.mdx v1.10.0:106-129). Renewing itself comes with Vault's
# "default" policy (auth/token/renew-self). No read of the key's configuration, no rotate, no
# config, no delete, no other key, no other mount.
path "${keyring_mount}/encrypt/${keyring_key}" {
  capabilities = ["update"]
}

path "${keyring_mount}/decrypt/${keyring_key}" {
  capabilities = ["update"]
}
