"""The two ends of a cluster's life, on one node: `sys/init` (init) and `sys/storage/raft/snapshot-force`
(restore after total loss), with the unauthenticated reads that decide whether either may run.

`init_status` and `seal_status` are GETs: they are all a refused run ever sends (an initialised cluster
is never sent a request that could change it). The answers of `initialize` hold the keys and the root
token: they are returned to the caller, never logged, never put in an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomad_vault_token.core.errors import VaultDenied, VaultUnavailable
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.client import Vault


@dataclass(frozen=True)
class SealStatus:
    """`sys/seal-status`, the fields init and restore decide on."""

    initialized: bool
    sealed: bool
    seal_type: str  # shamir, static, transit, awskms, ...
    threshold: int
    shares: int

    @property
    def auto_unseal(self) -> bool:
        """A seal that unseals itself: init gives recovery keys, not unseal keys."""
        return self.seal_type not in ("", "shamir")


class Lifecycle(Vault):
    """One node, addressed by `settings.vault_addr`, at the start or the end of its cluster's life."""

    def init_status(self) -> bool:
        """GET sys/init: is this node initialised?"""
        with self._mapped("sys/init"):
            data = self._client().sys.read_init_status()
        return bool(data.get("initialized"))

    def seal_status(self) -> SealStatus:
        """GET sys/seal-status."""
        with self._mapped("sys/seal-status"):
            data = self._client().sys.read_seal_status()
        return SealStatus(
            initialized=bool(data.get("initialized")),
            sealed=bool(data.get("sealed", True)),
            seal_type=str(data.get("type") or "shamir"),
            threshold=int(data.get("t") or 0),
            shares=int(data.get("n") or 0),
        )

    def initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        """PUT sys/init with `params` as given (no defaults added): Vault's whole answer, keys and root token.

        Raw, not hvac's `initialize`: hvac adds `secret_shares` where an auto-unseal node wants only the
        recovery fields."""
        with self._mapped("sys/init"):
            resp = self._client().adapter.put("/v1/sys/init", json=params)
        data = resp if isinstance(resp, dict) else resp.json()
        if not isinstance(data, dict):
            raise VaultUnavailable("sys/init: the answer is not a JSON object", state="error")
        return data

    def unseal_with(self, key_hex: str) -> bool:
        """PUT sys/unseal with one key share (hex); True while still sealed."""
        with self._mapped("sys/unseal"):
            data = self._client().sys.submit_unseal_key(key_hex)
        return bool(data.get("sealed", True))

    def revoke(self, token: Secret) -> None:
        """POST auth/token/revoke-self with `token`."""
        with self._mapped("auth/token/revoke-self", own_token=True):
            self._client(token).auth.token.revoke_self()

    def restore_force(self, token: Secret, snapshot: Path, timeout: int) -> None:
        """POST sys/storage/raft/snapshot-force with the file as the body, streamed from disk."""
        path = "sys/storage/raft/snapshot-force"
        session = self.session()
        with self._mapped(path), open(snapshot, "rb") as body:
            resp = session.post(
                f"{self.settings.vault_addr}/v1/{path}",
                headers={"X-Vault-Token": token.reveal()},
                data=body,
                timeout=(self.settings.request_timeout, timeout),
                verify=session.verify,  # per request: REQUESTS_CA_BUNDLE beats a session's verify
            )
        if resp.status_code in (200, 204):
            return
        try:
            words = "; ".join(str(e) for e in resp.json().get("errors") or []) or f"HTTP {resp.status_code}"
        except ValueError:
            words = f"HTTP {resp.status_code}"
        if resp.status_code in (401, 403):
            raise VaultDenied(f"{path}: permission denied ({words}): the token needs sudo on {path}")
        raise VaultUnavailable(f"{path}: {self.settings.vault_addr} refused the snapshot ({words})", state="error")
