"""A `Vault` keeps one connection for its calls; certificate logins have their own; close() drops it."""

from __future__ import annotations

from pathlib import Path

from nomad_vault_token.core import config
from nomad_vault_token.vault.client import Vault
from testbed.bao import Bao, Certs
from testbed.config import write_config
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
