"""A local, throwaway server for `snapshot restore-test`: init with one key, unseal, forced restore, one read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomad_vault_token.core.errors import NotFound, VaultUnavailable
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault.client import Vault

if TYPE_CHECKING:
    from nomad_vault_token.core.key_files import UnsealKey


class Throwaway(Vault):
    """A local, throwaway server (`snapshot restore-test`): init, unseal, forced restore, one read."""

    def init_one_key(self) -> tuple[Secret, UnsealKey]:
        """PUT sys/init with one key share: (root token, unseal key)."""
        from nomad_vault_token.core.key_files import UnsealKey

        with self._mapped("sys/init"):
            data = self._client().sys.initialize(secret_shares=1, secret_threshold=1)
        return Secret(data["root_token"]), UnsealKey(bytes.fromhex(data["keys"][0]))

    def seal_config(self) -> tuple[int, int]:
        """GET sys/seal-status: (threshold, shares) as the server holds them now."""
        with self._mapped("sys/seal-status"):
            data = self._client().sys.read_seal_status()
        return int(data.get("t") or 0), int(data.get("n") or 0)

    def unseal_with(self, key: UnsealKey) -> bool:
        """PUT sys/unseal with one key; True while still sealed. A key Vault refuses raises VaultDenied."""
        with self._mapped("sys/unseal"):
            data = self._client().sys.submit_unseal_key(key.reveal())
        return bool(data.get("sealed", True))

    def restore_force(self, token: Secret, snapshot: Path) -> None:
        """POST sys/storage/raft/snapshot-force with the file as the body (streamed from disk)."""
        path = "sys/storage/raft/snapshot-force"
        if self._session is None:
            self._session = self._new_session(None)
        with self._mapped(path), open(snapshot, "rb") as body:
            resp = self._session.post(
                f"{self.settings.vault_addr}/v1/{path}",
                headers={"X-Vault-Token": token.reveal()},
                data=body,
                timeout=self.settings.snapshot_timeout,
                verify=self._session.verify,
            )
        if resp.status_code not in (200, 204):
            try:
                words = "; ".join(str(e) for e in resp.json().get("errors") or []) or f"HTTP {resp.status_code}"
            except ValueError:
                words = f"HTTP {resp.status_code}"
            raise VaultUnavailable(f"{path}: the throwaway server refused the snapshot ({words})", state="error")

    def read_path(self, token: Secret, path: str) -> dict[str, Any] | None:
        """GET <path>: its data, None when nothing is there."""
        try:
            return self._read(token, path)
        except NotFound:
            return None

# ---- the unsealer's prober: one node, no token ------------------------------------------------
