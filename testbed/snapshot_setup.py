"""A server prepared for snapshots as an admin would have it: a canary secret, and the snapshot
identity written by `bootstrap-roles --snapshot`. Shared by the snapshot tests of every kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from testbed.bao import Bao, Certs
from testbed.cli import Result, run_cli
from testbed.env import clean_env

SNAP_ROLE = "nomad_snapshot"
CANARY = "kv/canary"


def bootstrap_snapshot(server: Bao, certs: Certs) -> Result:
    env = clean_env(VAULT_TOKEN=server.root_token)
    return run_cli(
        "bootstrap-roles", "--snapshot", "--vault-addr", server.addr, "--ca-cert", str(certs.ca_path),
        "--client-ca", str(certs.ca_path), "--allowed-common-name", "nomad-startup", env=env,
    )  # fmt: skip


def prepare(server: Bao, certs: Certs) -> None:
    """A KV v1 canary, and the snapshot identity as bootstrap-roles --snapshot writes it."""
    c = server.client()
    c.sys.enable_secrets_engine("kv", path="kv")
    c.write(CANARY, value="sing")
    done = bootstrap_snapshot(server, certs)
    assert done.code == 0, done.err


def prepared_raft(certs_dir: Path, server_dir: Path) -> Iterator[tuple[Bao, Certs]]:
    """One raft OpenBao, prepared for snapshots as an admin would (`prepare`), stopped by PID afterwards:
    the body of a module's `raft` fixture (`yield from prepared_raft(...)`)."""
    certs = Certs(certs_dir)
    server = Bao(server_dir, certs, durable=True)
    try:
        server.start()
        server.configure()
        prepare(server, certs)
        yield server, certs
    finally:
        server.stop()
