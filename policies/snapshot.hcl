# The snapshot identity's policy (`bootstrap-roles --snapshot`, default name: nomad_snapshot).
# Reading a raft snapshot and nothing else: no sudo, no restore (snapshot-force is update on
# sys/storage/raft/snapshot-force, not granted), no secrets, no policies, no tokens.
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
