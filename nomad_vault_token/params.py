"""The command-line parameters several commands share, as the config keys they set.

Stdlib only: `cli` (typer) and `fastrun` (no typer) both map their parameters through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def conn_flags(
    vault_addr: str | None,
    ca_cert: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    tls_server_name: str | None,
    namespace: str | None,
    allow_insecure_http: bool | None,
    auth_mount: str | None,
    cert_role: str | None,
) -> dict[str, Any]:
    return {
        "vault_addr": vault_addr,
        "ca_cert": ca_cert,
        "client_cert": client_cert,
        "client_key": client_key,
        "tls_server_name": tls_server_name,
        "namespace": namespace,
        "allow_insecure_http": allow_insecure_http,
        "auth_mount": auth_mount,
        "cert_role": cert_role,
    }


def mint_flags(
    mint_mode: str | None, mint_role: str | None, policy: list[str] | None, period: str | None, task_role: str | None
) -> dict[str, Any]:
    return {
        "mint_mode": mint_mode,
        "mint_role": mint_role,
        "policies": policy or None,
        "period": period,
        "task_role": task_role,
    }
