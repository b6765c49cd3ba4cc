"""`bootstrap-roles --workload-identity`: the Vault side of Nomad's JWT integration, written like the rest.

Objects, in writing order: the JWT auth mount (`jwt_mount`, default `jwt-nomad`), its config (Nomad's
JWKS), the workload policy (templated on the mount's accessor) and the workload role (the mount's
default_role); with `--snapshot`, the snapshot policy and a JWT role bound to the snapshot job's
claims instead of the workload role and policy. Everything is read first and compared by content
(`setup.bootstrap_plan`); only what differs is written; nothing is deleted.

A new mount's accessor is known only once the mount exists: without `--check` the mount is enabled
first and the policy is planned against its real accessor; with `--check` the policy shows a
placeholder (and would be created or updated anyway, its mount being new).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nomad_vault_token.core import resources
from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError, NvtError
from nomad_vault_token.core.results import Result
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.setup import workload_identity as wi
from nomad_vault_token.setup.bootstrap_plan import PlanError, Step, Wanted, compare, fill_text, plan, result
from nomad_vault_token.vault import jwt_auth
from nomad_vault_token.vault.client import Vault

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*")
_CLAIM_VALUE = re.compile(r"[^\s\x00]{1,256}")


def workload_settings(settings: Settings) -> wi.WorkloadSettings:
    """The workload names from the config, checked."""
    for key in ("jwt_mount", "kv_mount"):
        value = getattr(settings, key)
        if not _MOUNT.fullmatch(value):
            raise ConfigError(f"{key} {value!r}: give a mount path such as jwt-nomad (no leading or trailing /)")
    for key in ("workload_role", "workload_policy"):
        value = getattr(settings, key)
        if not _NAME.fullmatch(value):
            raise ConfigError(f"{key} {value!r}: use letters, digits, '_', '-' and '.' only (it becomes a Vault path)")
    if settings.kv_version not in (1, 2):
        raise ConfigError(f"kv_version {settings.kv_version}: use 1 or 2")
    if settings.workload_policy in settings.policies or settings.workload_policy in (
        settings.cert_role,
        settings.snapshot_role,
    ):
        raise ConfigError(
            f"workload_policy {settings.workload_policy!r}: is the name of another policy bootstrap-roles writes: "
            "choose another --workload-policy"
        )
    return wi.WorkloadSettings(
        mount=settings.jwt_mount,
        role=settings.workload_role,
        policy=settings.workload_policy,
        kv_mount=settings.kv_mount,
        kv_version=settings.kv_version,
        user_claim=settings.workload_user_claim,  # type: ignore[arg-type]  # a checked choice
        allow_slashes=settings.allow_slashes_in_job_ids,
    )


def main(
    settings: Settings,
    *,
    token: Secret,
    jwks_url: str | None,
    jwks_ca: Path | None,
    check: bool,
    diff: bool,
    snapshot: bool,
    snapshot_claims: tuple[str, str, str],
) -> Result:
    import tomllib

    ws = workload_settings(settings)
    if snapshot:
        if not _NAME.fullmatch(settings.jwt_role):
            raise ConfigError(f"jwt_role {settings.jwt_role!r}: use letters, digits, '_', '-' and '.' only")
        if settings.jwt_role == ws.role:
            raise ConfigError(
                f"jwt_role {settings.jwt_role!r}: is the workload role too, which every task may log in as: "
                "choose another --jwt-role"
            )
        for what, value in zip(
            ("--snapshot-job", "--snapshot-job-namespace", "--snapshot-task"), snapshot_claims, strict=True
        ):
            if not _CLAIM_VALUE.fullmatch(value):
                raise ConfigError(f"{what} {value!r}: give the exact value of the claim (no spaces)")
    url = _jwks_url(jwks_url)
    ca_pem = _jwks_ca(jwks_ca)
    try:
        roles = tomllib.loads(resources.read_text("policies", "roles.toml"))
        policy_template = resources.read_text("policies", wi.policy_file(ws.kv_version))
        snapshot_text = resources.read_text("policies", "snapshot.hcl")
    except (FileNotFoundError, KeyError, PlanError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"policies/ shipped with nomad-vault-token: {exc}: reinstall nomad-vault-token") from None

    if snapshot:
        advice: list[str] = []
    else:
        advice = wi.advice(ws)
        if ws.user_claim == "job-id":
            logger.warning("%s", advice[0])

    vault = Vault(settings)
    vault.lookup_self(token, admin=True)
    mounts = jwt_auth.auth_mounts(vault, token)
    found = mounts.get(ws.mount)
    if found is not None and found.type != wi.AUTH_TYPE:
        raise ConfigError(
            f"jwt_mount {ws.mount!r}: sys/auth/{ws.mount} is a {found.type!r} auth mount, not jwt: choose another --jwt-mount"
        )
    flags = jwt_auth.policy_templating_flags(vault, token)
    if not snapshot:
        nested = wi.slash_advice(ws, templating_flags=flags)
        advice.append(nested)
        if nested != wi.NESTED_JOBS_REFUSED:
            logger.warning("%s", nested)

    done: list[Step] = []
    mount_want = wi.mount_object(ws.mount)
    made = False
    if found is None and not check:
        try:
            vault.admin_enable_auth(token, ws.mount, wi.AUTH_TYPE)
        except NvtError as exc:
            return _result(done, check, diff, advice, exc.exit_code, exc.message)
        found, made = jwt_auth.auth_mounts(vault, token).get(ws.mount), True
    done.append(compare(mount_want, None if found is None or made else {"type": found.type}))
    accessor = found.accessor if found is not None else wi.ACCESSOR_UNKNOWN

    try:
        wanted: list[Wanted] = [
            wi.config_object(ws.mount, roles, jwks_url=url, jwks_ca_pem=ca_pem, default_role=ws.role),
        ]
        if snapshot:
            name = settings.snapshot_role
            job = wi.SnapshotJob(namespace=snapshot_claims[1], job=snapshot_claims[0], task=snapshot_claims[2])
            wanted += [
                Wanted("policy", f"sys/policies/acl/{name}", name, {"policy": fill_text(snapshot_text, {})}),
                wi.snapshot_role(ws.mount, settings.jwt_role, name, job, roles),
            ]
        else:
            wanted += [
                wi.workload_policy(ws, policy_template, accessor, templating_flags=flags),
                wi.workload_role(ws, roles),
            ]
    except (KeyError, PlanError) as exc:
        raise ConfigError(f"policies/ shipped with nomad-vault-token: {exc}: reinstall nomad-vault-token") from None

    current: dict[str, Mapping[str, Any] | None] = {}
    for want in wanted:
        if want.kind in ("jwt_config", "jwt_role") and found is None:
            current[want.path] = None  # no mount yet, so nothing in it
        else:
            current[want.path] = vault.admin_read(token, want.path)
    try:
        steps = plan(wanted, current)
    except PlanError as exc:
        raise ConfigError(f"bootstrap-roles: {exc}") from None

    try:
        for step in steps:
            if not check and step.changed:
                _apply(vault, token, step)
            done.append(step)
    except NvtError as exc:  # what was written before the failure, then the failure
        return _result(done, check, diff, advice, exc.exit_code, exc.message)
    return _result(done, check, diff, advice)


def _apply(vault: Vault, token: Secret, step: Step) -> None:
    want = step.want
    if want.kind == "jwt_config":
        mount = want.path.removeprefix("auth/").removesuffix("/config")
        jwt_auth.write_config(vault, token, mount, want.fields)
        return
    vault.admin_write(token, want.path, want.fields, '"update" (and "read")')


def _result(
    steps: list[Step], check: bool, diff: bool, advice: list[str], code: int = 0, error: str | None = None
) -> Result:
    lines = [line for step in steps for line in [step.line(check), *(step.diff_lines() if diff else [])]]
    lines += [f"note: {a}" for a in advice]
    doc = result(steps, check)
    doc["advice"] = advice
    return Result(doc, "".join(line + "\n" for line in lines), code, error)


def _jwks_url(given: str | None) -> str:
    if not given:
        raise ConfigError(
            "--workload-identity: give --nomad-jwks-url URL (Nomad's https://NOMAD:4646/.well-known/jwks.json)"
        )
    url = given.strip()
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError(
            f"--nomad-jwks-url {given!r}: give a URL such as https://nomad.example:4646/.well-known/jwks.json"
        )
    if url.startswith("http://"):
        logger.warning("--nomad-jwks-url %s: plain http: anyone on the path can swap Nomad's keys; use https", url)
    return url


def _jwks_ca(path: Path | None) -> str:
    """The certificates of --nomad-jwks-ca as PEM, after cryptography has parsed every one ("" : none given)."""
    if path is None:
        return ""
    from cryptography.hazmat.primitives.serialization import Encoding

    from nomad_vault_token.vault import tls

    certs = tls.load_certs(path.absolute(), "--nomad-jwks-ca")
    return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certs)
