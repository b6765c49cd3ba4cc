vault {
  address = "https://second.example.com:8200"
}
keyring "transit" {
  active   = true
  key_name = "nomad-keyring"
}
