# Mirrors testdata/sample1/sample0.json and obj-len-one-server.json: JSON with trailing commas,
# which HCL v1's JSON parser reads (json/parser/parser.go objectList, listType).
datacenter = "dc1"
server {
  enabled          = true
  bootstrap_expect = 3
  retry_join       = ["10.0.0.101", "10.0.0.102"]
}
tls {
  http    = true
  ca_file = "/etc/nomad.d/ca.pem"
}
vault {
  enabled = true
  address = "https://vault.example.com:8200"
}
