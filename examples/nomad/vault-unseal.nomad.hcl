# nomad-vault-token unseal as a Nomad service job: one watcher per Vault node's host (or fewer, for
# split custody: each allocation holding only some of the keys, e.g. AB, BC, AC).
#
# The unseal keys come from Nomad Variables (or a secrets store Nomad can read) through a template
# rendered into the task's `secrets/` directory, never `local/`: `secrets/` is a private tmpfs that
# is not part of the allocation's shareable directory, and `perms = "0400"` is what the unsealer
# demands (a keys file others can read is refused, exit 78). The task runs as the file's owner.
#
# Unsealing needs no Vault token: this job has no `vault` block.

job "vault-unseal" {
  type = "service"

  group "unseal" {
    count = 1

    restart {
      attempts = 10
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    task "unseal" {
      driver = "exec"
      # The keys file must be owned by the user the unsealer runs as: the same uid in the keys template.
      user = "vault-unseal"

      config {
        command = "/opt/nomad-vault-token/bin/nomad-vault-token"
        args    = ["unseal", "--config", "${NOMAD_TASK_DIR}/unseal.toml", "--keys-file", "${NOMAD_SECRETS_DIR}/unseal-keys"]
      }

      # The cluster's nodes and how to reach them (no secret here: local/ is fine).
      template {
        destination = "local/unseal.toml"
        data        = <<-EOT
          unseal_nodes    = ["https://vault-1.example.com:8200", "https://vault-2.example.com:8200", "https://vault-3.example.com:8200"]
          ca_cert         = "/etc/ssl/vault-ca.pem"
          unseal_interval = "10s"
          state_dir       = "{{ env "NOMAD_ALLOC_DIR" }}/data"
          # unseal_expect_threshold = 2
          # unseal_expect_shares    = 3
          # unseal_hold_file        = "/etc/nomad-vault-token/hold"
        EOT
      }

      # The keys: one per line, hex or base64. Nomad Variable nomad/jobs/vault-unseal, items key_1, key_2.
      template {
        destination = "secrets/unseal-keys"
        perms       = "0400"
        uid         = 990 # the uid of `vault-unseal` on the clients
        gid         = 990
        change_mode = "noop" # the unsealer reads the file again when it changes
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/vault-unseal" }}{{ .key_1 }}
          {{ .key_2 }}{{ end }}
        EOT
      }

      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
