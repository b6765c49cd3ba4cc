# A Vault/OpenBao raft snapshot every hour, as a Nomad periodic batch job.
#
# Auth: the task's workload identity (a JWT Nomad signs) logs in to Vault's JWT auth method; the role
# gives the policy `bootstrap-roles --snapshot` writes (read on sys/storage/raft/snapshot, nothing else).
# Vault side, once (Nomad 1.7+ serves its JWKS at /.well-known/jwks.json):
#
#   vault auth enable jwt
#   vault write auth/jwt/config jwks_url=https://nomad.example:4646/.well-known/jwks.json \
#       jwks_ca_pem=@nomad-ca.pem default_role=nomad-snapshot
#   vault write auth/jwt/role/nomad-snapshot role_type=jwt bound_audiences=vault.io user_claim=/nomad_job_id \
#       bound_claims='{"nomad_job_id":"vault-snapshot","nomad_namespace":"default"}' \
#       token_policies=nomad_snapshot token_ttl=15m token_max_ttl=30m
#
# (Or a token: see the commented template below, and --auth token --token-file.)
job "vault-snapshot" {
  type = "batch"

  periodic {
    crons            = ["17 * * * *"]
    prohibit_overlap = true # never two downloads into one directory at once
    time_zone        = "UTC"
  }

  group "snapshot" {
    count = 1

    # Keep the snapshots on one host's disk (or mount shared storage): a host volume.
    volume "snapshots" {
      type      = "host"
      source    = "vault-snapshots"
      read_only = false
    }

    restart {
      attempts = 0 # a failed run is reported (exit code, metrics); the next period tries again
      mode     = "fail"
    }

    task "snapshot" {
      driver = "exec"

      # A JWT for Vault, written by Nomad to secrets/nomad_vault.jwt (0600, the task's own directory).
      identity {
        name        = "vault"
        aud         = ["vault.io"]
        file        = true
        ttl         = "30m"
      }

      volume_mount {
        volume      = "snapshots"
        destination = "/srv/vault-snapshots"
      }

      config {
        command = "/usr/local/bin/nomad-vault-token"
        args = [
          "snapshot", "--format", "json",
          "--vault-addr", "https://vault.service.consul:8200",
          "--ca-cert", "/etc/nomad-vault-token/vault-ca.pem",
          "--auth", "jwt", "--jwt-file", "${NOMAD_SECRETS_DIR}/nomad_vault.jwt", "--jwt-role", "nomad-snapshot",
          "--dir", "/srv/vault-snapshots", "--keep", "48", "--max-age", "14d",
          "--snapshot-timeout", "15m",
          # "--metrics-dir", "/var/lib/node_exporter/textfile_collector",  (mount it as a host volume too)
        ]
      }

      # With a token instead of a JWT: Nomad's Vault integration writes the task's token to
      # secrets/vault_token (0600, the task's own directory; never put a token in args or the job file):
      #
      # vault {
      #   policies = ["nomad_snapshot"]
      # }
      #
      # and use "--auth", "token", "--token-file", "${NOMAD_SECRETS_DIR}/vault_token" above.

      resources {
        cpu    = 200
        memory = 256
      }

      kill_timeout = "30s"
    }
  }
}
