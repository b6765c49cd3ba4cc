# Mirrors testdata/plugin.hcl / plugin.json and template.hcl / template.json: plugin and client
# template blocks beside the vault block.
client {
  template {
    function_denylist = ["plugin"]
    max_stale         = "7600h"
    wait {
      min = "10s"
      max = "10m"
    }
    vault_retry {
      attempts = 6
      backoff  = "550ms"
    }
  }
}
plugin "docker" {
  config {
    allow_privileged = true
  }
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
vault {
  enabled = true
  address = "https://vault.example.com:8200"
}
