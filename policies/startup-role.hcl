# The startup identity's policy in `role` mode (default name: nomad_startup).
# The certificate may only mint through the mint role, whose allowed_policies is
# the server policy alone: no sudo, and no other policy can be asked for.
path "auth/token/create/${mint_role}" {
  capabilities = ["update"]
}
