"""`bootstrap-roles`: with an admin token, write the policies, token roles, cert auth mount and cert role.

Idempotent: everything is read first, compared (`bootstrap_plan`), and only the objects that differ
are written. Reads come before any write, so a token that cannot read stops before changing anything.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nomad_vault_token.core import resources
from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.durations import DurationError, parse_duration
from nomad_vault_token.core.errors import EX_TEMPFAIL, ConfigError, NvtError, UsageError
from nomad_vault_token.core.results import Result
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.setup.bootstrap_plan import (
    KIND_WORDS,
    PlanError,
    Step,
    Wanted,
    fill_fields,
    fill_text,
    plan,
    result,
)
from nomad_vault_token.vault.client import Vault

logger = logging.getLogger(__name__)

AUTH_TYPE = "cert"
SERVER_POLICY_FILE = "nomad-server.hcl"
STARTUP_POLICY_FILES = {"role": "startup-role.hcl", "create-orphan": "startup-create-orphan.hcl"}
ROLES_FILE = "roles.toml"
SNAPSHOT_POLICY_FILE = "snapshot.hcl"
KEYRING_POLICY_FILE = "keyring.hcl"
STARTUP_KEYRING_FILE = "startup-keyring.hcl"
TRANSIT = "transit"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*")

CREATE_ORPHAN_WARNING = (
    "create-orphan mode: the startup policy grants sudo on auth/token/create-orphan, so whoever holds "
    "the startup certificate can mint orphan tokens with ANY policy except root. Role mode (the default) "
    "lets it mint only through the mint role, whose allowed_policies is the server policy alone, with no "
    "sudo anywhere: use it unless existing clusters still need the old script's setup."
)


def main(
    settings: Settings,
    *,
    token_file: Path | None,
    client_ca: Path | None,
    allowed_common_name: list[str] | None,
    task_allowed_policy: list[str] | None,
    login_ttl: str,
    dry_run: bool,
    diff: bool,
    snapshot: bool = False,
    workload_identity: bool = False,
    nomad_jwks_url: str | None = None,
    nomad_jwks_ca: Path | None = None,
    snapshot_job: str | None = "vault-snapshot",
    snapshot_job_namespace: str | None = "default",
    snapshot_task: str | None = "snapshot",
    remove_legacy: bool = False,
    admin: Secret | None = None,  # `init --bootstrap`: the new cluster's root token, instead of token_file
) -> Result:
    check = dry_run
    if remove_legacy and (snapshot or workload_identity):
        raise UsageError("--remove-legacy removes the legacy server side only: give it without --snapshot and "
                         "--workload-identity")  # fmt: skip
    if workload_identity:
        from nomad_vault_token.commands import bootstrap_workload

        return bootstrap_workload.main(
            settings,
            token=_admin_token(token_file),
            jwks_url=nomad_jwks_url,
            jwks_ca=nomad_jwks_ca,
            check=dry_run,
            diff=diff,
            snapshot=snapshot,
            snapshot_claims=(
                snapshot_job or "vault-snapshot",
                snapshot_job_namespace or "default",
                snapshot_task or "snapshot",
            ),
        )
    if client_ca is None:
        raise UsageError("missing option --client-ca FILE: the CA (or certificate) the cert role trusts")
    _check_names(settings)
    if snapshot:
        _check_name(settings.snapshot_role, "snapshot_role")
        if settings.snapshot_role in (settings.cert_role, *settings.policies):
            raise ConfigError(
                f"snapshot_role {settings.snapshot_role!r}: is the startup or server policy's name too, which "
                "--snapshot would overwrite: choose another --snapshot-role"
            )
    ttl = _login_ttl(login_ttl)
    ca_pem = _client_ca(client_ca)
    task_allowed = _task_allowed(task_allowed_policy or [], settings)
    common_names = _common_names(allowed_common_name or [])
    admin = admin or _admin_token(token_file)

    if settings.mint_mode == "create-orphan" and not snapshot:
        logger.warning("%s", CREATE_ORPHAN_WARNING)
    if not common_names:
        logger.warning(
            "no --allowed-common-name: any certificate issued by --client-ca %s can log in as %s",
            client_ca,
            settings.snapshot_role if snapshot else settings.cert_role,
        )

    if snapshot:
        wanted = snapshot_objects(settings, ca_pem=ca_pem, common_names=common_names, ttl=ttl)
    else:
        import dataclasses

        # --remove-legacy judges the legacy objects even once legacy_token = false leaves them out
        of = dataclasses.replace(settings, legacy_token=True) if remove_legacy else settings
        wanted = wanted_objects(of, ca_pem=ca_pem, common_names=common_names, task_allowed=task_allowed, ttl=ttl)

    vault = Vault(settings)
    vault.lookup_self(admin, admin=True)
    current = _read_current(vault, admin, wanted)
    try:
        steps = plan(wanted, current)
    except PlanError as exc:
        raise ConfigError(f"bootstrap-roles: {exc}") from None

    from nomad_vault_token.setup.bootstrap_plan import fixed_changes

    for step, name in fixed_changes(steps):  # before any write: Vault cannot change these
        raise ConfigError(
            f"{step.want.path}: its {name} is not what bootstrap-roles writes and Vault cannot change it once "
            f"set: point keyring_key/keyring_mount at a new one (the old key must stay: it unwraps Nomad's keyring)"
        )
    if remove_legacy:
        return _remove_legacy(vault, admin, steps, check)
    done: list[Step] = []
    try:
        for step in steps:
            if not check and step.changed:
                _apply(vault, admin, step)
            done.append(step)
    except NvtError as exc:  # report what was written before the failure, then the failure
        return _result(done, check, diff, exc.exit_code, exc.message)
    return _result(done, check, diff)


def _remove_legacy(vault: Vault, admin: Secret, steps: list[Step], check: bool) -> Result:
    """`--remove-legacy`: delete the legacy objects this tool wrote, after the cut-over to workload identity.

    Only an object whose content is what bootstrap-roles writes with these inputs is deleted (one that
    differs was changed by someone else, or written by another tool: left alone, named); the cert auth
    mount stays (other roles, the snapshot identity's, may live there). Refused while any live token
    still holds the server policy or comes from the mint or task role: a server not cut over yet, or
    legacy task tokens still in use."""
    from nomad_vault_token.vault import legacy_admin

    s = vault.settings
    in_use: list[str] = []
    for accessor in legacy_admin.list_accessors(vault, admin):
        data = legacy_admin.lookup_accessor(vault, admin, accessor)
        if data is None:
            continue
        policies = set(data.get("policies") or [])
        if policies & set(s.policies) or data.get("role") in (s.task_role, s.mint_role):
            in_use.append(accessor)
    lines: list[str] = []
    objects: list[dict[str, object]] = []
    if in_use:
        message = (
            f"--remove-legacy refused: {len(in_use)} live token(s) still hold the server policy or come from the "
            f"mint or task role (accessors {', '.join(a[:8] for a in in_use[:5])}{' ...' if len(in_use) > 5 else ''}): "
            "run `nomad-vault-token cutover` on every server first, and let legacy task tokens expire"
        )
        return Result({"changed": False, "objects": [], "in_use": in_use}, "", EX_TEMPFAIL, message)
    word = "would delete" if check else "deleted"
    kept = _keyring_paths(s)
    for step in reversed(steps):
        want = step.want
        if want.kind == "auth_mount" or want.path in kept:
            continue
        label = f"{KIND_WORDS[want.kind]} {want.name}"
        if step.action == "create":
            lines.append(f"absent {label}")
            objects.append({"kind": want.kind, "path": want.path, "action": "absent"})
        elif step.action == "update":
            lines.append(
                f"left alone {label}: differs from what bootstrap-roles writes ({', '.join(step.changed_fields)})"
            )
            objects.append({"kind": want.kind, "path": want.path, "action": "left alone"})
        else:
            try:
                if not check:
                    legacy_admin.delete(vault, admin, want.path)
            except NvtError as exc:
                return Result({"changed": bool(objects), "objects": objects}, "".join(x + "\n" for x in lines),
                              exc.exit_code, exc.message)  # fmt: skip
            lines.append(f"{word} {label}")
            objects.append({"kind": want.kind, "path": want.path, "action": word})
    changed = any(o["action"] in ("deleted", "would delete") for o in objects)
    return Result({"changed": changed, "objects": objects}, "".join(x + "\n" for x in lines))


def _keyring_paths(s: Settings) -> frozenset[str]:
    """What --remove-legacy never deletes with `keyring = true`: the keyring's objects, and the startup
    identity (policy and cert role) that mints the keyring token."""
    if not s.keyring:
        return frozenset()
    return frozenset({
        f"sys/mounts/{s.keyring_mount}",
        f"{s.keyring_mount}/keys/{s.keyring_key}",
        f"sys/policies/acl/{s.keyring_policy}",
        f"auth/token/roles/{s.keyring_role}",
        f"sys/policies/acl/{s.cert_role}",
        f"auth/{s.auth_mount}/certs/{s.cert_role}",
    })


def _result(steps: list[Step], check: bool, diff: bool, code: int = 0, error: str | None = None) -> Result:
    lines = [line for step in steps for line in [step.line(check), *(step.diff_lines() if diff else [])]]
    return Result(result(steps, check), "".join(line + "\n" for line in lines), code, error)


# ---- the wanted objects --------------------------------------------------------------------------


def wanted_objects(
    settings: Settings,
    *,
    ca_pem: str,
    common_names: list[str],
    task_allowed: list[str],
    ttl: int,
) -> list[Wanted]:
    """Every object bootstrap-roles manages, filled from the shipped templates, in writing order.

    With `keyring = true`: also the transit mount and key, the keyring policy and role, and the startup
    policy lets the same login mint through that role. With `keyring = true` and `legacy_token = false`
    (Nomad 1.10+, after the cut-over): the keyring's objects and the startup identity only."""
    import tomllib

    legacy = settings.legacy_token or not settings.keyring

    server_policy = settings.policies[0]
    startup_policy = settings.cert_role
    values: dict[str, object] = {
        "task_role": settings.task_role,
        "mint_role": settings.mint_role,
        "period": settings.period,
        "server_policies": list(settings.policies),
        "task_allowed_policies": task_allowed,
        "startup_policy": startup_policy,
        "client_ca": ca_pem,
        "allowed_common_names": common_names,
        "login_ttl": ttl,
        "keyring_mount": settings.keyring_mount,
        "keyring_key": settings.keyring_key,
        "keyring_role": settings.keyring_role,
        "keyring_policies": [settings.keyring_policy],
    }
    try:
        roles = tomllib.loads(resources.read_text("policies", ROLES_FILE))
        startup_text = ""
        if legacy:
            startup_text = fill_text(resources.read_text("policies", STARTUP_POLICY_FILES[settings.mint_mode]), values)
        if settings.keyring:
            startup_text += fill_text(resources.read_text("policies", STARTUP_KEYRING_FILE), values)
        objects: list[Wanted] = []
        if legacy:
            server_text = fill_text(resources.read_text("policies", SERVER_POLICY_FILE), values)
            objects.append(
                Wanted("policy", f"sys/policies/acl/{server_policy}", server_policy, {"policy": server_text})
            )
        objects.append(Wanted("policy", f"sys/policies/acl/{startup_policy}", startup_policy, {"policy": startup_text}))
        if legacy:
            objects.append(_token_role(settings.task_role, fill_fields(roles["task_role"], values)))
        if legacy and settings.mint_mode == "role":
            objects.append(_token_role(settings.mint_role, fill_fields(roles["mint_role"], values)))
        if settings.keyring:
            objects.extend(keyring_objects(settings, roles, values))
        mount = settings.auth_mount
        objects.append(Wanted("auth_mount", f"sys/auth/{mount}", f"sys/auth/{mount}", {"type": AUTH_TYPE}))
        cert_path = f"auth/{mount}/certs/{settings.cert_role}"
        objects.append(Wanted("cert_role", cert_path, cert_path, fill_fields(roles["cert_role"], values)))
    except (FileNotFoundError, KeyError, PlanError, tomllib.TOMLDecodeError) as exc:
        # the shipped files, not the user's: a broken installation
        raise ConfigError(f"policies/ shipped with nomad-vault-token: {exc}: reinstall nomad-vault-token") from None
    return objects


def keyring_objects(settings: Settings, roles: Mapping[str, Any], values: Mapping[str, object]) -> list[Wanted]:
    """The transit mount, the key, the keyring policy (encrypt/decrypt on that key only) and the keyring role."""
    mount, key, policy = settings.keyring_mount, settings.keyring_key, settings.keyring_policy
    policy_text = fill_text(resources.read_text("policies", KEYRING_POLICY_FILE), values)
    return [
        Wanted("secrets_mount", f"sys/mounts/{mount}", f"sys/mounts/{mount}", {"type": TRANSIT}),
        Wanted("transit_key", f"{mount}/keys/{key}", f"{mount}/keys/{key}", fill_fields(roles["keyring_key"], values)),
        Wanted("policy", f"sys/policies/acl/{policy}", policy, {"policy": policy_text}),
        _token_role(settings.keyring_role, fill_fields(roles["keyring_role"], values)),
    ]


def snapshot_objects(settings: Settings, *, ca_pem: str, common_names: list[str], ttl: int) -> list[Wanted]:
    """`--snapshot`: the snapshot identity's policy (read on sys/storage/raft/snapshot, nothing else), the cert
    auth mount and the cert role holding that policy."""
    import tomllib

    name = settings.snapshot_role
    values: dict[str, object] = {
        "snapshot_policy": name,
        "client_ca": ca_pem,
        "allowed_common_names": common_names,
        "login_ttl": ttl,
    }
    try:
        roles = tomllib.loads(resources.read_text("policies", ROLES_FILE))
        policy_text = fill_text(resources.read_text("policies", SNAPSHOT_POLICY_FILE), values)
        mount = settings.auth_mount
        cert_path = f"auth/{mount}/certs/{name}"
        return [
            Wanted("policy", f"sys/policies/acl/{name}", name, {"policy": policy_text}),
            Wanted("auth_mount", f"sys/auth/{mount}", f"sys/auth/{mount}", {"type": AUTH_TYPE}),
            Wanted("cert_role", cert_path, cert_path, fill_fields(roles["snapshot_cert_role"], values)),
        ]
    except (FileNotFoundError, KeyError, PlanError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"policies/ shipped with nomad-vault-token: {exc}: reinstall nomad-vault-token") from None


def _token_role(name: str, fields: dict[str, object]) -> Wanted:
    path = f"auth/token/roles/{name}"
    return Wanted("token_role", path, path, fields)


# ---- reading and writing Vault -------------------------------------------------------------------


def _read_current(vault: Vault, admin: Secret, wanted: list[Wanted]) -> dict[str, Mapping[str, Any] | None]:
    """What Vault holds at each wanted path (None: missing). Reads only."""
    settings = vault.settings
    current: dict[str, Mapping[str, Any] | None] = {}
    mounts: dict[str, str] | None = None
    engines: dict[str, str] | None = None
    for want in wanted:
        if want.kind == "secrets_mount":
            engines = vault.admin_secrets_mounts(admin)
            current[want.path] = _mount(engines, "keyring_mount", settings.keyring_mount, TRANSIT, "sys/mounts",
                                        "secrets engine")  # fmt: skip
        elif want.kind == "transit_key" and engines is not None and settings.keyring_mount not in engines:
            current[want.path] = None  # no mount yet, so no key in it
        elif want.kind == "auth_mount":
            mounts = vault.admin_auth_mounts(admin)
            current[want.path] = _mount(mounts, "auth_mount", settings.auth_mount, AUTH_TYPE, "sys/auth", "auth mount")
        elif want.kind == "cert_role" and mounts is not None and settings.auth_mount not in mounts:
            current[want.path] = None  # no mount yet, so no role in it
        else:
            current[want.path] = vault.admin_read(admin, want.path)
    return current


def _mount(types: Mapping[str, str], setting: str, name: str, wanted: str, where: str, noun: str) -> dict[str, str] | None:
    """What is mounted at `name` ({"type": ...}, None: nothing); something of another type there is refused:
    bootstrap-roles never reuses or replaces a mount it did not make."""
    found = types.get(name)
    if found is not None and found != wanted:
        flag = "--" + setting.replace("_", "-")
        raise ConfigError(f"{setting} {name!r}: {where}/{name} is a {found!r} {noun}, not {wanted}: choose another {flag}")
    return None if found is None else {"type": found}


def _apply(vault: Vault, admin: Secret, step: Step) -> None:
    want = step.want
    if want.kind == "auth_mount":
        vault.admin_enable_auth(admin, vault.settings.auth_mount, AUTH_TYPE)
        return
    if want.kind == "secrets_mount":
        vault.admin_enable_secrets(admin, vault.settings.keyring_mount, TRANSIT)
        return
    if want.kind == "transit_key":
        if step.action == "create":  # type and exportable are fixed at creation
            fields = {"type": want.fields["type"], "exportable": want.fields["exportable"]}
            vault.admin_write(admin, want.path, fields, '"update"')
        # deletion_allowed lives in the key's config (false on a new key; written anyway: said is checked)
        vault.admin_write(
            admin, f"{want.path}/config", {"deletion_allowed": want.fields["deletion_allowed"]}, '"update"'
        )
        return
    # OpenBao asks "create" for a new token role; everything else here is "update".
    verb = "create" if want.kind == "token_role" and step.action == "create" else "update"
    vault.admin_write(admin, want.path, want.fields, f'"{verb}" (and "read")')


# ---- inputs --------------------------------------------------------------------------------------


def _admin_token(token_file: Path | None) -> Secret:
    """The admin token from --token-file, else $VAULT_TOKEN; read now, never shown."""
    if token_file is None:
        value = os.environ.get("VAULT_TOKEN", "").strip()
        if not value:
            raise ConfigError("no admin token: set $VAULT_TOKEN or pass --token-file FILE (a file holding the token)")
        _check_token_text(value, "$VAULT_TOKEN")
        return Secret(value)
    from nomad_vault_token.core import secret_files

    return secret_files.read(token_file, "--token-file", "token")


def _check_token_text(value: str, where: str) -> None:
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(f"{where}: does not hold one token (it has spaces or several lines): keep only the token")


def _client_ca(path: Path) -> str:
    """The certificates of --client-ca as PEM, after cryptography has parsed every one."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from nomad_vault_token.vault import tls

    certs = tls.load_certs(path.absolute(), "--client-ca")
    return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)


def _login_ttl(text: str) -> int:
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        raise ConfigError(f"--login-ttl: {exc}") from None
    if seconds <= 0:
        raise ConfigError("--login-ttl: must be more than 0 (e.g. 5m): the login token only has to live to mint")
    return seconds


def _task_allowed(given: list[str], settings: Settings) -> list[str]:
    names = list(dict.fromkeys(p.strip() for p in given if p.strip()))
    for name in names:
        if name == "root":
            raise ConfigError("--task-allowed-policy root: tasks must never get the root policy")
        if name in settings.policies:
            raise ConfigError(
                f"--task-allowed-policy {name}: is the server token's policy, which the task role disallows: "
                "give the policies jobs may ask for"
            )
        _check_name(name, "--task-allowed-policy")
    return names


def _common_names(given: list[str]) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in given))
    for name in names:
        if not name or "," in name or not name.isprintable():
            raise ConfigError(f"--allowed-common-name {name!r}: give one common name (or glob) per flag")
    return names


def _check_names(s: Settings) -> None:
    for key, value in (("task_role", s.task_role), ("mint_role", s.mint_role), ("cert_role", s.cert_role)):
        _check_name(value, key)
    if s.keyring:
        for key, value in (("keyring_key", s.keyring_key), ("keyring_policy", s.keyring_policy),
                           ("keyring_role", s.keyring_role)):  # fmt: skip
            _check_name(value, key)
        if not _MOUNT.fullmatch(s.keyring_mount):
            raise ConfigError(f"keyring_mount {s.keyring_mount!r}: give a mount path such as transit")
        if s.keyring_policy == s.cert_role:
            raise ConfigError(f"keyring_policy {s.keyring_policy!r}: is the startup policy's name: choose another")
    for policy in s.policies:
        _check_name(policy, "policies")
    if not _MOUNT.fullmatch(s.auth_mount):
        raise ConfigError(f"auth_mount {s.auth_mount!r}: give a mount path such as cert (no leading or trailing /)")
    if s.cert_role in s.policies:
        raise ConfigError(
            f"cert_role {s.cert_role!r}: names the startup policy too, which must not be the server policy: "
            "choose another cert_role"
        )
    if s.mint_mode == "role" and s.mint_role == s.task_role:
        raise ConfigError(
            f"mint_role and task_role are both {s.task_role!r}: the mint role allows only the server policy, "
            "the task role forbids it: give them different names"
        )


def _check_name(value: str, key: str) -> None:
    if not _NAME.fullmatch(value):
        raise ConfigError(f"{key} {value!r}: use letters, digits, '_', '-' and '.' only (it becomes a Vault path)")
