"""run's start-up shares one kept-alive connection to Vault; certificate logins and the tracker do not."""

from __future__ import annotations

from pathlib import Path

from proxy import DelayProxy

from nomad_vault_token import config, vault
from testbed.bao import Bao, Certs
from testbed.config import write_config


def test_calls_inside_reusing_connections_share_one_connection(bao: Bao, certs: Certs, tmp_path: Path) -> None:
    proxy = DelayProxy(bao.port)  # counts the TCP connections made to Vault
    try:
        s = config.load(write_config(tmp_path / "c.toml", bao, certs, vault_addr=proxy.addr), environ={})
        with vault.reusing_connections(s):
            assert vault.health(s).usable
            startup = vault.login(s)  # the certificate's own connection, read from disk now
            minted = vault.mint(s, startup)
            vault.revoke_self(s, startup)
            info = vault.lookup_self(s, minted.token)
            vault.renew_self(s, minted.token)
            vault.capabilities_self(s, minted.token, ["auth/token/renew-self"])
            assert vault.read_role(s, minted.token, s.task_role) is not None
            assert vault.health(s).usable
        assert proxy.connections == 2, "all but the login on one connection"
        assert vault._shared_session is None, "closed on the way out: nothing for a forked tracker to inherit"
        vault.lookup_self(s, minted.token)
        vault.lookup_self(s, minted.token)
        assert proxy.connections == 4, "outside, each call has its own connection"
        assert info.accessor == minted.accessor
        vault.revoke_self(s, minted.token)
    finally:
        proxy.close()


def test_a_connection_dropped_by_vault_is_replaced(durable: Bao, certs: Certs, tmp_path: Path) -> None:
    s = config.load(write_config(tmp_path / "c.toml", durable, certs), environ={})
    with vault.reusing_connections(s):
        assert vault.health(s).usable
        durable.restart()  # the kept connection dies with the old process
        assert vault.health(s).usable
        assert vault.login(s)
