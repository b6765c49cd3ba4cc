# Mirrors testdata/basic.hcl / basic.json's vault block (v1.9.7:398-423 in JSON): every field, with
# default_identity. JSON gives it as a list, "vault": [ {...} ], which every Nomad reads; the object
# form makes Nomad before 1.11.3 refuse the file (hashicorp/nomad#27595), and check warns of it.
vault {
  enabled               = true
  address               = "https://vault.example.com:8200"
  allow_unauthenticated = false
  ca_file               = "/etc/nomad.d/vault-ca.pem"
  ca_path               = "/etc/nomad.d/vault-ca"
  cert_file             = "/etc/nomad.d/vault.pem"
  key_file              = "/etc/nomad.d/vault-key.pem"
  create_from_role      = "nomad-cluster"
  namespace             = "ns1"
  task_token_ttl        = "1h"
  tls_server_name       = "vault.example.com"
  tls_skip_verify       = false
  jwt_auth_backend_path = "jwt-nomad"

  default_identity {
    aud  = ["vault.io"]
    ttl  = "1h"
    file = true
  }
}
