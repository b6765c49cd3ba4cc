vault {
  create_from_role = "nomad-cluster"
}
