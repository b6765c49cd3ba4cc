# Mirrors testdata/obj-len-one.hcl / .json and obj-len-one-server.json: one-element objects and lists.
client {
  options {
    "driver.allowlist" = "docker"
  }
}
server {
  server_join {
    start_join = ["one"]
  }
}
vault {
  enabled = true
}
