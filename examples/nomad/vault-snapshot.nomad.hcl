# A Vault/OpenBao raft snapshot every hour, as a Nomad periodic batch job.
#
# Auth: the task's workload identity (a JWT Nomad signs) logs in to Vault's JWT auth method, through a
# role bound to this job's claims (namespace "default", job "vault-snapshot", task "snapshot") that gives
# the snapshot policy alone (read on sys/storage/raft/snapshot, nothing else). Vault side, once, by an
# admin (Nomad 1.7+ serves its JWKS at /.well-known/jwks.json; idempotent, --check and --diff to preview):
#
#   nomad-vault-token bootstrap-roles --snapshot --workload-identity \
#       --nomad-jwks-url https://nomad.example:4646/.well-known/jwks.json --nomad-jwks-ca nomad-ca.pem
#
# It writes the JWT auth mount jwt-nomad and its config, the policy nomad_snapshot and the JWT role
# nomad-snapshot. Running this job elsewhere: --snapshot-job, --snapshot-job-namespace, --snapshot-task.
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
          "--auth", "jwt", "--jwt-file", "${NOMAD_SECRETS_DIR}/nomad_vault.jwt",
          "--jwt-mount", "jwt-nomad", "--jwt-role", "nomad-snapshot",
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
