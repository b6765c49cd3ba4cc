# Mirrors testdata/config-slices.hcl, config-slices.json and config-slices-alt.json: the same blocks
# given as objects and as lists of objects. config.json uses objects, config-alt.json lists.
client "meta" {
  "m0" = "foo"
}
server {
  enabled_schedulers = ["foo", "bar"]
}
vault {
  enabled          = true
  address          = "https://vault.example.com:8200"
  create_from_role = "nomad-cluster"
}
