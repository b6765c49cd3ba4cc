"""What in the agent's merged ``vault`` block (``agent_config.VaultBlock``) will stop Nomad from using the
Vault and the token this tool hands over: one ``Finding`` a key, pass / warn / fail as Nomad itself
would treat it, each citing the Nomad source it follows. Pure: no files, no Vault.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from nomad_vault_token.nomad.agent_config import (
    DEFAULT_ADDRESS,
    DEFAULT_TASK_TOKEN_TTL,
    MIN_TASK_TOKEN_TTL_NS,
    TOKEN_KEY,
    VaultBlock,
)
from nomad_vault_token.nomad.go_duration import go_duration_ns
from nomad_vault_token.nomad.keyring_config import KeyringBlock

Severity = Literal["pass", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    """One thing about the vault block: what Nomad will do with it, and what to change."""

    key: str  # the vault block key: "enabled", "address", ..., or "env.VAULT_CACERT"
    severity: Severity
    message: str  # names the file (or flag) and the key
    fix: str  # "" on pass
    origin: str  # the file or flag that set the key last; "" when nobody did


# Variables this tool consumes and does not pass on, and the vault block keys that replace them in
# Nomad's Vault client (hashicorp/vault/api DefaultConfig reads them; ApiConfig, structs/config/
# vault.go v1.9.7:219-239, only overrides them when the block sets the key).
_ENV_KEYS: Final[tuple[tuple[str, tuple[str, ...], str], ...]] = (
    ("VAULT_CACERT", ("ca_file", "ca_path"), "ca_file"),
    ("VAULT_CAPATH", ("ca_path", "ca_file"), "ca_path"),
    ("VAULT_TLS_SERVER_NAME", ("tls_server_name",), "tls_server_name"),
)


def findings(
    block: VaultBlock,
    *,
    vault_addr: str,
    namespace: str | None,
    task_role: str,
    handoff: str,
    consumed_env: Mapping[str, str],
) -> list[Finding]:
    """Everything in ``block`` that decides whether Nomad uses the Vault and token this tool hands over.

    ``vault_addr``/``namespace``/``task_role`` are this tool's settings; ``handoff`` is "file" or
    "env"; ``consumed_env`` the variables this tool read and removed from the agent's environment.
    """
    return [
        _enabled(block),
        _address(block, vault_addr),
        _namespace(block, namespace, handoff),
        _create_from_role(block, task_role, handoff),
        _token(block, handoff),
        _allow_unauthenticated(block),
        _task_token_ttl(block),
        *_consumed_env(block, consumed_env),
        *_read_past(block),
    ]


def _read_past(block: VaultBlock) -> list[Finding]:
    """What Nomad reads otherwise than the file seems to say (``agent_config.Note``): a JSON file its
    reader stops reading part way (hcl v1 ``json/parser/parser.go`` objectList: an item not followed by a
    comma ends the object, the rest of the file is never read), or one older Nomads refuse."""
    return [Finding("config", "warn", note.message, note.fix, "") for note in block.notes]


def _at(block: VaultBlock, key: str) -> str:
    where = block.where(key)
    return f"{where}: " if where else ""


def _fix_in(block: VaultBlock, key: str, change: str) -> str:
    where = block.where(key)
    if where.startswith("flag "):
        return f"fix {where.removeprefix('flag ')} after -- (a flag beats every file; it must give: {change})"
    if where:
        return f"{change} in the vault block of {where}"
    return f"{change} in the vault block of a -config file"


def _finding(block: VaultBlock, key: str, severity: Severity, message: str, fix: str = "") -> Finding:
    return Finding(key, severity, _at(block, key) + message, fix if severity != "pass" else "", block.where(key))


def _enabled(block: VaultBlock) -> Finding:
    if block.enabled is True:
        return _finding(block, "enabled", "pass", "vault.enabled = true")
    if block.enabled is False:
        return _finding(
            block,
            "enabled",
            "fail",
            "vault.enabled = false: Nomad will not use Vault at all (nomad/vault.go:292)",
            _fix_in(block, "enabled", "set enabled = true"),
        )
    return _finding(
        block,
        "enabled",
        "fail",
        "vault.enabled is not set in any -config file: Nomad treats that as false and will not use Vault at all "
        "(structs/config/vault.go v1.9.7:139-144, nomad/vault.go:292)",
        _fix_in(block, "enabled", "set enabled = true"),
    )


def same_vault(a: str, b: str) -> bool:
    """Same scheme, host (any case), port (the scheme's default when absent) and path (no trailing /)."""
    key = _vault_key(a)
    return key is not None and key == _vault_key(b)


def _vault_key(addr: str) -> tuple[str, str, int, str] | None:
    try:
        parts = urlsplit(addr.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    default = 443 if scheme == "https" else 80
    return scheme, parts.hostname.lower(), port if port is not None else default, parts.path.rstrip("/")


def _address(block: VaultBlock, vault_addr: str) -> Finding:
    theirs = block.effective_address
    change = f'set address = "{vault_addr}"'
    if _vault_key(theirs) is None:
        return _finding(
            block,
            "address",
            "fail",
            f"vault.address = {theirs}: not an http(s) URL with a host: Nomad's Vault client cannot use it",
            _fix_in(block, "address", change),
        )
    if block.address is None:
        message = f"vault.address is not set: Nomad uses {DEFAULT_ADDRESS} (structs/config/vault.go v1.9.7:131)"
    else:
        message = f"vault.address = {theirs}"
    if same_vault(theirs, vault_addr):
        return _finding(block, "address", "pass", f"{message}: the same Vault as this tool's {vault_addr}")
    return _finding(
        block,
        "address",
        "fail",
        f"{message}: not the Vault this tool mints from ({vault_addr}): Nomad would check the token against another",
        _fix_in(block, "address", change) + ", or point this tool's vault_addr at Nomad's Vault",
    )


def _ns(value: str | None) -> str:
    return (value or "").strip("/")


def _namespace(block: VaultBlock, ours: str | None, handoff: str) -> Finding:
    theirs = block.namespace
    if theirs is None:
        if not _ns(ours):
            return _finding(block, "namespace", "pass", "vault.namespace is not set: both use the root namespace")
        return _finding(
            block,
            "namespace",
            "pass",
            f"vault.namespace is not set in any -config file: Nomad uses namespace {ours} only if the {handoff} "
            "hand-off gives it (otherwise it reads VAULT_NAMESPACE, command/agent/command.go v1.9.7:309-311)",
        )
    if _ns(theirs) == _ns(ours):
        return _finding(block, "namespace", "pass", f"vault.namespace = {theirs}: the same as this tool's")
    mine = f"namespace {ours}" if _ns(ours) else "the root namespace"
    return _finding(
        block,
        "namespace",
        "fail",
        f"vault.namespace = {theirs}: this tool mints the token in {mine}: Nomad would not find it",
        _fix_in(block, "namespace", f'set namespace = "{_ns(ours)}"' if _ns(ours) else "remove namespace")
        + ", or set this tool's namespace to match",
    )


def _create_from_role(block: VaultBlock, task_role: str, handoff: str) -> Finding:
    theirs = block.create_from_role
    if theirs is None:
        return _finding(
            block, "create_from_role", "pass", f"vault.create_from_role is not set: the hand-off sets {task_role}"
        )
    if theirs == task_role:
        return _finding(
            block, "create_from_role", "pass", f"vault.create_from_role = {theirs}: the same as this tool's"
        )
    if block.where("create_from_role").startswith("flag ") and handoff == "file":
        return _finding(
            block,
            "create_from_role",
            "fail",
            f"vault.create_from_role = {theirs}: the flag beats the hand-off file, so Nomad derives task tokens "
            f"from {theirs}, not {task_role} (command/agent/command.go v1.9.7:288)",
            f"remove -vault-create-from-role after --, or set this tool's task_role to {theirs}",
        )
    how = "the hand-off file is read last" if handoff == "file" else "this tool's -vault-create-from-role comes later"
    return _finding(
        block,
        "create_from_role",
        "warn",
        f"vault.create_from_role = {theirs}: overridden by this tool's {task_role} ({how})",
        _fix_in(block, "create_from_role", f'set create_from_role = "{task_role}" or remove it')
        + f", or set this tool's task_role to {theirs}",
    )


def _token(block: VaultBlock, handoff: str) -> Finding:
    if not block.token_set:
        return _finding(block, "token", "pass", "vault.token is not set: the hand-off gives Nomad its token")
    where = block.where(TOKEN_KEY)
    if where == "flag -vault-token":
        return _finding(
            block,
            "token",
            "fail",
            "vault.token is set: the flag beats every config file and VAULT_TOKEN, so Nomad would never use the "
            "handed-over token "
            "(command/agent/command.go v1.9.7:188, 288)",
            "remove -vault-token from the command after --",
        )
    if handoff == "env":
        return _finding(
            block,
            "token",
            "fail",
            "vault.token is set: a token in a config file beats VAULT_TOKEN, so Nomad would never use the handed-over "
            "token (command/agent/command.go v1.9.7:304-306)",
            _fix_in(block, "token", "remove token") + ", or use the file hand-off",
        )
    return _finding(
        block,
        "token",
        "warn",
        "vault.token is set: the hand-off file is read later and wins, but this stale token stays on disk",
        _fix_in(block, "token", "remove token"),
    )


def _allow_unauthenticated(block: VaultBlock) -> Finding:
    value = "true" if block.allow_unauthenticated else "false"
    if block.allow_unauthenticated_setting is None:
        message = "vault.allow_unauthenticated is not set: Nomad's default is true (structs/config/vault.go v1.9.7:134)"
    else:
        message = f"vault.allow_unauthenticated = {value}"
    if block.allow_unauthenticated:
        message += ": Nomad does not require auth/token/lookup"
    else:
        message += ': Nomad requires "update" on auth/token/lookup (nomad/vault.go:865-867)'
    return _finding(block, "allow_unauthenticated", "pass", message)


def _task_token_ttl(block: VaultBlock) -> Finding:
    ttl = block.task_token_ttl
    if ttl is None:
        return _finding(
            block, "task_token_ttl", "pass", f"vault.task_token_ttl is not set: Nomad uses {DEFAULT_TASK_TOKEN_TTL}"
        )
    fix = _fix_in(block, "task_token_ttl", 'set task_token_ttl to a Go duration of at least 5m, e.g. "72h"')
    try:
        nanos = go_duration_ns(ttl)
    except ValueError:
        return _finding(
            block,
            "task_token_ttl",
            "fail",
            f"vault.task_token_ttl = {ttl!r}: Nomad cannot parse it (failed to parse TaskTokenTTL, nomad/vault.go:431-435) "
            "and its Vault client will not start",
            fix,
        )
    if nanos < MIN_TASK_TOKEN_TTL_NS:
        return _finding(
            block,
            "task_token_ttl",
            "fail",
            f"vault.task_token_ttl = {ttl!r}: under Nomad's minimum (ChildTokenTTL is less than minimum allowed of 5m0s, "
            "nomad/vault.go:437-439): its Vault client will not start",
            fix,
        )
    return _finding(block, "task_token_ttl", "pass", f"vault.task_token_ttl = {ttl}")


def _consumed_env(block: VaultBlock, consumed: Mapping[str, str]) -> list[Finding]:
    out: list[Finding] = []
    for var, keys, suggest in _ENV_KEYS:
        if var not in consumed:
            continue
        key = f"env.{var}"
        setters = [k for k in keys if getattr(block, k) is not None]
        if setters:
            where = block.where(setters[0])
            out.append(
                Finding(key, "pass", f"{where}: vault.{setters[0]} is set, so Nomad does not need {var}", "", where)
            )
            continue
        out.append(
            Finding(
                key,
                "warn",
                f"Nomad's vault block sets no {' or '.join(keys)} and {var} is not passed on to it: "
                "Nomad's Vault client would go without it",
                f'set vault.{suggest} = "{consumed[var]}" in a -config file of the agent',
                "",
            )
        )
    return out


# --- Go's time.ParseDuration -------------------------------------------------------------------


# ---- the keyring blocks (Nomad 1.8.3+), for the keyring token ----------------------------------------


def keyring_findings(
    blocks: Sequence[KeyringBlock],
    vault: VaultBlock | None,
    *,
    keyring: bool,
    token_path: str,
    vault_addr: str,
) -> list[Finding]:
    """What the agent's merged ``keyring`` blocks (``keyring_config.load_keyring_blocks``) mean for the keyring
    token this tool writes to ``token_path``. ``keyring``: the tool keeps that token (``keyring = true``)."""
    if not blocks:
        if not keyring:
            return []
        return [Finding("keyring", "warn", "no keyring block in the agent's config: Nomad wraps its keyring with "
                        "its own aead key on disk and never reads the keyring token this tool keeps",
                        f'add keyring "transit" {{ active = true, ..., token = "file://{token_path}" }}', "")]  # fmt: skip
    out: list[Finding] = []
    active = [b for b in blocks if b.active]
    if len(active) > 1:  # encrypter_ce.go v2.0.5:28-31
        out.append(Finding("keyring", "fail", f"{len(active)} keyring blocks are active ({', '.join(b.id for b in active)}): "
                           "Nomad Community Edition refuses to start (\"only one server.keyring can be active in Nomad "
                           "Community Edition\", nomad/encrypter_ce.go v2.0.5:28-31); Enterprise accepts several",
                           "keep active = true on one block (Enterprise: several active blocks are its way out of the "
                           "cold-start trap)", active[-1].active_where))  # fmt: skip
    if len(blocks) > 2:  # GH-27579
        out.append(Finding("keyring", "warn", f"{len(blocks)} keyring blocks: Nomad before 1.11.3 fails to parse more "
                           "than two (hashicorp/nomad#27579)", "upgrade Nomad to 1.11.3+, or keep two blocks",
                           blocks[-1].where))  # fmt: skip
    transit = [b for b in blocks if b.provider == "transit"]
    if keyring and not any(b.active for b in transit):
        out.append(Finding("keyring", "warn", "no active keyring \"transit\" block: new root keys are wrapped by the "
                           "active provider only (nomad/encrypter.go v2.0.5:810-813), so the keyring token is not used "
                           "for them", "set active = true on the transit block", transit[0].where if transit else ""))  # fmt: skip
    for block in transit:
        out.extend(_transit(block, vault, keyring=keyring, token_path=token_path, vault_addr=vault_addr))
    return out


def _transit(
    block: KeyringBlock, vault: VaultBlock | None, *, keyring: bool, token_path: str, vault_addr: str
) -> list[Finding]:
    at = f'{block.where}: keyring "{block.id}"'
    key = f"keyring.{block.id}"
    line = f'token = "file://{token_path}"'
    out: list[Finding] = []
    ref = block.token
    if ref is None:  # fallbackVaultConfig, nomad/encrypter.go v2.0.5:117-147
        via_vault = vault is not None and vault.token_set
        out.append(Finding(key + ".token", "fail", f"{at} has no token: Nomad falls back to the vault block's token "
                           f"up to 1.9{' (set here: the legacy server token, which must never get transit rights)' if via_vault else ''}"
                           ", which 1.10+ no longer passes on (VaultConfig.Merge, #25155), then to VAULT_TOKEN as "
                           "it was at start, which run never passes to the agent", f"add {line} to the block", block.where))  # fmt: skip
    elif ref.kind == "literal":
        out.append(Finding(key + ".token", "warn", f"{ref.where}: the keyring token is written in the config file as "
                           "plain text: nobody renews or replaces it, and every reader of the file has it",
                           f"write {line} instead (nomad-vault-token run --keyring keeps that file)", ref.where))  # fmt: skip
    elif ref.kind == "env":
        out.append(Finding(key + ".token", "warn", f"{ref.where}: the keyring token comes from ${ref.target}, read "
                           "at every wrapper build from the agent's environment", f"write {line} instead", ref.where))  # fmt: skip
    elif keyring and os.path.normpath(ref.target) != os.path.normpath(token_path):
        out.append(Finding(key + ".token", "fail", f"{ref.where}: Nomad reads the keyring token from {ref.target}, but "
                           f"run writes it to {token_path}: the token Nomad uses is not the one kept alive",
                           f"write {line}, or set keyring_token_file = \"{ref.target}\"", ref.where))  # fmt: skip
    else:
        out.append(Finding(key + ".token", "pass", f"{ref.where}: token read from file://{ref.target} at every use", "",
                           ref.where))  # fmt: skip
    cfg = block.config
    if "tls_ca_cert" not in cfg and "tls_ca_path" not in cfg and vault is not None and vault.ca_file:
        # encrypter.go v2.0.5:136: the fallback takes the vault block's ca_path, not its ca_file
        got = f"its ca_path {vault.ca_path} (a directory)" if vault.ca_path else "no CA at all (VAULT_CACERT if set)"
        out.append(Finding(key + ".tls_ca_cert", "warn", f"{at} has no tls_ca_cert: Nomad fills it from the vault "
                           f"block's ca_path, not its ca_file {vault.ca_file}, so the keyring gets {got} "
                           "(nomad/encrypter.go v2.0.5:136)", f'add tls_ca_cert = "{vault.ca_file}" to the block',
                           block.where))  # fmt: skip
    if cfg.get("tls_skip_verify", "").lower() in ("true", "1", "t"):
        out.append(Finding(key + ".tls_skip_verify", "warn", f"{at}: tls_skip_verify = \"{cfg['tls_skip_verify']}\": "
                           "the keyring token is sent to whoever answers at the address",
                           'give tls_ca_cert and tls_skip_verify = "false"', block.where))  # fmt: skip
    address = cfg.get("address") or (vault.address if vault is not None and vault.address else "")
    if keyring and address and not same_vault(address, vault_addr):
        out.append(Finding(key + ".address", "fail", f"{at}: address {address} is not vault_addr {vault_addr}: the "
                           "keyring token is minted by one Vault and sent to another",
                           f'set address = "{vault_addr}" in the block', block.where))  # fmt: skip
    for name in ("mount_path", "key_name"):
        if not cfg.get(name):
            out.append(Finding(f"{key}.{name}", "fail", f"{at} has no {name}: the transit wrapper refuses to start "
                               f"(\"{name} is required\", go-kms-wrapping transit_client.go)",
                               f'add {name} = "..." to the block', block.where))  # fmt: skip
    return out
