"""A `Vault` keeps one connection for its calls; certificate logins have their own; close() drops it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomad_vault_token.core import config
from nomad_vault_token.core.errors import VaultUnavailable
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.client import Vault
from testbed.bao import Bao, Certs, free_port
from testbed.cli import assert_one_line_error, run_cli
from testbed.config import write_config
from testbed.env import clean_env
from testbed.proxy import DelayProxy


def test_a_vaults_calls_share_one_connection_until_closed(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    proxy = DelayProxy(bao.port)  # counts the TCP connections made to Vault
    try:
        s = config.load(write_config(tmp_path / "c.toml", bao, certs, vault_addr=proxy.addr), environ={})
        with Vault(s) as v:
            assert v.health().usable
            startup = v.login()  # the certificate's own connection, read from disk now
            minted = v.mint(startup)
            v.revoke_self(startup)
            info = v.lookup_self(minted.token)
            v.renew_self(minted.token)
            v.capabilities_self(minted.token, ["auth/token/renew-self"])
            assert v.read_role(minted.token, s.task_role) is not None
            assert v.health().usable
        assert proxy.connections == 2, "all but the login on one connection"
        assert v._session is None, "closed on the way out: nothing for a forked tracker to inherit"
        Vault(s).lookup_self(minted.token)
        Vault(s).lookup_self(minted.token)
        assert proxy.connections == 4, "another Vault, another connection"
        assert info.accessor == minted.accessor
        Vault(s).revoke_self(minted.token)
    finally:
        proxy.close()


def test_a_connection_dropped_by_vault_is_replaced(durable: Bao, certs: Certs, tmp_path: Path) -> None:
    s = config.load(write_config(tmp_path / "c.toml", durable, certs), environ={})
    with Vault(s) as v:
        assert v.health().usable
        durable.restart()  # the kept connection dies with the old process
        assert v.health().usable
        assert v.login()


def test_a_balancer_with_no_node_behind_it_is_vault_unreachable(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    """A TCP load balancer in front of Vault with no node up accepts the connection and closes it: the
    TLS handshake ends in EOF. That is Vault unreachable (69; the tracker's outage state, which holds
    escalation back), not a certificate refused (77, "check the CA and client certificate"). The fault
    soak met it through its balancer while the cluster restarted (issue 29)."""
    balancer = DelayProxy(free_port())  # nothing listens there: each connection accepted, then closed
    try:
        s = config.load(write_config(tmp_path / "c.toml", bao, certs, vault_addr=balancer.addr), environ={})
        with pytest.raises(VaultUnavailable, match="unreachable"):
            Vault(s).lookup_self(Secret("not-a-token-at-all"))
        snapped = run_cli(
            "snapshot", "--auth", "token", "--dir", str(tmp_path / "snaps"), "--vault-addr", balancer.addr,
            "--ca-cert", str(certs.ca_path), env=clean_env(VAULT_TOKEN="not-a-token-at-all"),
        )  # fmt: skip
        assert_one_line_error(snapped, 69, "unreachable")
        assert balancer.refused >= 2, "the balancer did not take the connections: the test proves nothing"
    finally:
        balancer.close()
