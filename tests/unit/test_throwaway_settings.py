"""The restore drill's throwaway server is the tool's own child on a private socket: its requests are not
held to remote Vault's `request_timeout` (fresh-clone run 6 failed a restore-test under load when one of
them, sys/init or the first unseal of a restored snapshot, took longer than 10 s), and they go nowhere else."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomad_vault_token.core.config import Settings
from nomad_vault_token.vault.throwaway import SOCKET_URL, START_TIMEOUT, Throwaway


@pytest.mark.parametrize(("given", "used"), [(1, int(START_TIMEOUT)), (10, int(START_TIMEOUT)), (300, 300)])
def test_the_throwaways_requests_wait_as_long_as_its_start(given: int, used: int, tmp_path: Path) -> None:
    api = Throwaway(Settings(request_timeout=given, vault_addr="https://vault.example:8200"), tmp_path / "api.sock")
    assert api.settings.request_timeout == used
    assert api.settings.vault_addr == SOCKET_URL and api.settings.ca_cert is None
