# Mirrors testdata/sample1/ (two JSON files with trailing commas and one HCL file, read as one
# directory, merged in name order: command/agent/config.go v1.9.7:2703-2770). The hcl/ folder holds
# the same configuration in HCL only.
vault {
  enabled = true
  address = "https://first.example.com:8200"
}
keyring "aead" {}
