# A Nomad server's keyring wrapped by Vault's transit engine (Nomad 1.8.3+; on 1.10+ the only Vault token a
# server still needs). Put this in the server's -config directory (e.g. /etc/nomad.d/keyring.hcl).
#
# nomad-vault-token run --keyring keeps the token in the file named below: minted through the keyring role,
# renewed, and replaced in the file when it dies. Nomad reads the file again at every use, WITHOUT trimming
# (a trailing newline would be sent as part of the token), so the file holds the token and nothing else.
#
# Every value but `active` and `name` must be a quoted string: Nomad refuses tls_skip_verify = false unquoted.
# Give tls_ca_cert here: without it Nomad takes the vault block's ca_path (not ca_file) for the keyring.
#
# Community Edition: one block active. An inactive aead block cannot read keys wrapped by transit, so with
# this Vault down a restarted server cannot read its keyring: see docs/keyring.md, "The cold-start trap".

keyring "transit" {
  active      = true
  address     = "https://vault.example.com:8200"
  tls_ca_cert = "/etc/nomad.d/vault-ca.pem"
  mount_path  = "transit"
  key_name    = "nomad-keyring"
  token       = "file:///run/nomad-vault-token/keyring-token"
}
