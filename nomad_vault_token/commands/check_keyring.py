"""`check` with `keyring = true`: the keyring token, live (a round trip through the key, as Nomad's wrapper makes
one at each build), the key's configuration, the agent's `keyring` blocks, and the cold-start trap.

The trap: Nomad Community Edition reads its keyring only through its one active block; when that block's Vault
runs as a job of this same Nomad cluster, a full restart cannot come back (Nomad waits to unwrap its keyring
before it schedules anything, and Vault waits for Nomad to schedule it). Said in one line, with the ways out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomad_vault_token.core.errors import NvtError, TokenInvalid, VaultUnavailable
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.token import store

if TYPE_CHECKING:
    from nomad_vault_token.commands.check_report import Report
    from nomad_vault_token.commands.check_workload import NomadAccess
    from nomad_vault_token.core.config import Settings
    from nomad_vault_token.vault.client import Vault

PROBE = b"nomad-vault-token check"
DOCS = "docs/keyring.md"


def trap_line(where: str) -> str:
    """The cold-start trap, in one line: why, and the ways out."""
    return (
        f"the keyring is wrapped by a Vault that this Nomad cluster runs ({where}): after a full restart Nomad "
        "waits to unwrap its keyring before it schedules anything, and that Vault waits for Nomad to schedule it, "
        "so the cluster cannot come back (Community Edition reads keys only through its one active block): use a "
        "Vault outside this cluster for the keyring, or Enterprise's several active keyring blocks, or keep the "
        f"break-glass procedure of {DOCS} at hand"
    )


# ---- the agent's config files ----------------------------------------------------------------------------


def agent_side(report: Report, settings: Settings, agent: Sequence[str]) -> None:
    """The agent's keyring blocks as Nomad merges them, judged for the keyring token; the token file it reads."""
    from nomad_vault_token.core.errors import ConfigError
    from nomad_vault_token.nomad import agent_config, agent_findings, keyring_config
    from nomad_vault_token.nomad import argv as agent_argv

    try:
        parsed = agent_argv.parse(agent)
        blocks = keyring_config.load_keyring_blocks(parsed.configs)
        vault_block = agent_config.load_vault_block(parsed.configs, parsed)
    except ConfigError as exc:
        report.add("agent", "keyring blocks", "fail", exc.message, "fix it: Nomad will not start with it either")
        return
    found = agent_findings.keyring_findings(
        blocks,
        vault_block,
        keyring=settings.keyring,
        token_path=str(settings.keyring_token_path),
        vault_addr=settings.vault_addr,
    )
    for f in found:
        report.add("agent", f.key, f.severity, f.message, f.fix)
    for block in blocks:
        if block.provider == "transit" and block.token is not None and block.token.kind == "file":
            token_file(report, Path(block.token.target))


def token_file(report: Report, path: Path) -> None:
    """The file Nomad reads the keyring token from, as Nomad reads it: every byte is the token (no trimming)."""
    try:
        st = os.stat(path)
        raw = path.read_bytes()
    except FileNotFoundError:
        report.add("agent", "keyring token file", "warn", f"{path}: missing: Nomad cannot build its keyring wrapper",
                   "start the service (run --keyring writes it)")  # fmt: skip
        return
    except OSError as exc:
        report.add("agent", "keyring token file", "warn", f"{path}: cannot read ({exc.strerror})")
        return
    if st.st_mode & 0o077:
        report.add("agent", "keyring token file", "fail", f"{path}: others may read it (mode {st.st_mode & 0o777:o})",
                   f"chmod 600 {path}")  # fmt: skip
    if raw != raw.strip() or any(c in raw for c in b" \t\r\n"):
        what = "ends with a newline" if raw.endswith(b"\n") else "holds whitespace"
        report.add(
            "agent",
            "keyring token file",
            "fail",
            f"{path}: {what}: Nomad reads file:// tokens without trimming and sends it as part of the token, "
            "which Vault refuses",
            f"write the token with no newline (printf '%s' ...), or let run --keyring write {path}",
        )
        return
    report.add("agent", "keyring token file", "pass", f"{path}: one token, no newline, mode {st.st_mode & 0o777:o}")


# ---- live ------------------------------------------------------------------------------------------------


def vault_side(report: Report, vault: Vault, admin: Secret | None) -> None:
    """The saved keyring token: alive, its policy, a round trip through the key; the key's configuration."""
    settings = vault.settings
    key = f"{settings.keyring_mount}/keys/{settings.keyring_key}"
    saved = store.read(settings.keyring_state_file)
    if saved is None:
        report.add("vault", "keyring token", "warn", f"no saved keyring token in {settings.keyring_state_file}",
                   "start the service with keyring = true")  # fmt: skip
    else:
        _token(report, vault, saved.token, saved.accessor)
    if admin is None:
        report.add("vault", "keyring key", "skip", f"{key}: the keyring token may not read the key's configuration",
                   "give --token-file (or $VAULT_TOKEN) with read on it to check deletion_allowed and versions")  # fmt: skip
        return
    try:
        data = vault.admin_read(admin, key)
    except VaultUnavailable:
        raise
    except NvtError as exc:
        report.add("vault", "keyring key", "fail", exc.message)
        return
    key_findings(report, key, data)


def key_findings(report: Report, key: str, data: dict[str, Any] | None) -> None:
    if data is None:
        report.add("vault", "keyring key", "fail", f"{key}: no such key", "run bootstrap-roles --keyring")
        return
    if data.get("deletion_allowed"):
        report.add("vault", "keyring key", "fail", f"{key}: deletion_allowed = true: deleting the key loses Nomad's "
                   "keyring for good", f"vault write {key}/config deletion_allowed=false")  # fmt: skip
    else:
        report.add("vault", "keyring key", "pass", f"{key}: {data.get('type')}, deletion_allowed = false, "
                   f"exportable = {str(bool(data.get('exportable'))).lower()}")  # fmt: skip
    lowest = int(data.get("min_decryption_version") or 1)
    if lowest > 1:
        report.add("vault", "keyring key versions", "fail", f"{key}: min_decryption_version = {lowest}: root keys "
                   f"wrapped by versions below {lowest} can no longer be unwrapped: a restarted Nomad holding such a "
                   "key cannot read its keyring", f"vault write {key}/config min_decryption_version=1")  # fmt: skip
    else:
        report.add("vault", "keyring key versions", "pass",
                   f"{key}: every version decrypts (latest {data.get('latest_version')})")  # fmt: skip


def _token(report: Report, vault: Vault, token: Secret, accessor: str) -> None:
    settings = vault.settings
    try:
        info = vault.lookup_self(token)
    except TokenInvalid as exc:
        report.add("vault", "keyring token", "fail", f"saved keyring token accessor {accessor}: {exc.message}",
                   "the tracker replaces it within a minute; if not, restart the service")  # fmt: skip
        return
    if settings.keyring_policy not in info.policies:
        report.add("vault", "keyring token", "fail", f"keyring token accessor {info.accessor} lacks policy "
                   f"{settings.keyring_policy}", "run bootstrap-roles --keyring")  # fmt: skip
        return
    report.add("vault", "keyring token", "pass", f"saved keyring token accessor {info.accessor}, ttl {info.ttl}s")
    mount, key = settings.keyring_mount, settings.keyring_key
    try:  # as Nomad's wrapper at each build: a test encrypt (transit.go:53), then what it unwraps with
        ciphertext = vault.transit_encrypt(token, mount, key, PROBE)
        back = vault.transit_decrypt(token, mount, key, ciphertext)
    except VaultUnavailable:
        raise
    except NvtError as exc:
        report.add("vault", "keyring round trip", "fail", exc.message,
                   "run bootstrap-roles --keyring: the keyring policy needs update on encrypt and decrypt")  # fmt: skip
        return
    if back != PROBE:
        report.add("vault", "keyring round trip", "fail", f"{mount}/decrypt/{key} did not give back what was encrypted")
        return
    version = ciphertext.split(":")[1] if ciphertext.count(":") >= 2 else "?"
    report.add("vault", "keyring round trip", "pass", f"encrypt then decrypt through {mount}/{key} ({version})")


# ---- the cold-start trap -----------------------------------------------------------------------------------


def cold_start(report: Report, settings: Settings, nomad: NomadAccess | None) -> None:
    """Fail when the keyring's Vault runs in this Nomad cluster: declared, or found in Nomad's service registry."""
    if settings.keyring_vault_in_cluster:
        report.add("vault", "keyring cold start", "fail", trap_line("keyring_vault_in_cluster = true"))
        return
    if nomad is None:
        report.add("vault", "keyring cold start", "skip", "Nomad's service registry not asked",
                   "give --nomad-addr to ask whether this Vault runs as a Nomad job, or set keyring_vault_in_cluster")  # fmt: skip
        return
    from nomad_vault_token.core import secret_files
    from nomad_vault_token.vault import nomad_api

    try:
        token = secret_files.read(nomad.token_file, "--nomad-token-file", "Nomad token") if nomad.token_file else None
        ca = nomad.ca.read_text() if nomad.ca else ""
        found = nomad_api.service_at(nomad.addr, settings.vault_addr, token, ca)
    except OSError as exc:
        report.add("local", "--nomad-ca", "fail", f"{nomad.ca}: {exc.strerror}: give a readable PEM file")
        return
    except NvtError as exc:
        report.add("vault", "keyring cold start", "warn", f"could not ask Nomad's service registry: {exc.message}")
        return
    if found:
        report.add("vault", "keyring cold start", "fail", trap_line(f"Nomad service {found}"))
    else:
        report.add(
            "vault", "keyring cold start", "pass", f"{settings.vault_addr} is not a service of this Nomad cluster"
        )
