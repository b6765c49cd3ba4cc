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
        args = [
          "unseal", "--config", "${NOMAD_TASK_DIR}/unseal.toml",
          "--nodes-file", "${NOMAD_TASK_DIR}/unseal-nodes",
          "--keys-file", "${NOMAD_SECRETS_DIR}/unseal-keys",
          # "--migrate", # only while carrying the cluster through a seal migration (README)
        ]
      }

      # The nodes, from Nomad's service registry: every registration of the Vault job's service "vault"
      # (provider = "nomad"). Give that service no check that fails while a node is sealed (or check
      # sys/health?sealedcode=200&uninitcode=200&standbycode=200): a sealed node is the one that needs
      # the unsealer. change_mode "noop": the unsealer reads the file again itself when it changes and
      # keeps what it knows about the nodes that stay (a restart would forget which node was sealed
      # on purpose, and unseal it); a render naming no node keeps the list it has.
      template {
        destination = "local/unseal-nodes"
        change_mode = "noop"
        data        = <<-EOT
          # rendered by Nomad from nomadService "vault"
          {{- range nomadService "vault" }}
          https://{{ .Address }}:{{ .Port }}
          {{- end }}
        EOT
      }

      # How to reach the nodes (no secret here: local/ is fine).
      template {
        destination = "local/unseal.toml"
        data        = <<-EOT
          ca_cert         = "/etc/ssl/vault-ca.pem"
          # the nodes are addressed by IP: the name their certificate holds
          # tls_server_name = "vault.service.example.com"
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
