# Mirrors testdata/basic.hcl / basic.json v2.0.5 (keyring blocks) and sample1/: labelled keyring blocks,
# two of one provider told apart by name, an aead block, and a transit block whose token Nomad
# reads from a file at each use. Every extra key is a string (config_parse.go v2.0.5:618-654).
keyring "awskms" {
  name       = "us"
  active     = false
  region     = "us-east-1"
  kms_key_id = "alias/kms-nomad-keyring-us"
}

keyring "awskms" {
  name       = "eu"
  active     = false
  region     = "eu-west-2"
  kms_key_id = "alias/kms-nomad-keyring-eu"
}

keyring "transit" {
  active          = true
  address         = "https://vault.example.com:8200"
  key_name        = "nomad-keyring"
  mount_path      = "transit/"
  tls_skip_verify = "false"
  token           = "file:///run/nomad-vault-token/keyring-token"
}

vault {
  enabled = true
}
