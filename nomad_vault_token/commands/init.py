"""`init`: initialise a new cluster with its keys going straight into custody; never print a key or the root token.

In order: every flag and file checked (nothing sent yet); `GET sys/seal-status` (an initialised node is
refused, exit 78, and nothing else is sent); `PUT sys/init` (Shamir shares, or recovery shares on an
auto-unseal node; with `--pgp-key`, Vault encrypts each share to its holder); then, before anything else,
the rescue file: every share in one file in the state directory, 0600, encrypted by `systemd-creds` with
this host's key (with `--pgp-key` the shares are already encrypted and the file holds them as Vault gave
them); then each destination on its own (a failed one does not stop the others); the rescue file is
removed only when every destination took its shares. The root token: encrypted to `--root-token-pgp-key`,
or used for `bootstrap-roles` (`--bootstrap`), or revoked at once (the node is unsealed with the new keys
for that); it is never written in plain text.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import EX_TEMPFAIL, ConfigError, NvtError, UsageError, VaultUnavailable
from nomad_vault_token.core.options import DEFAULT_NOMAD_ADDR
from nomad_vault_token.core.results import Result
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.setup import init_plan
from nomad_vault_token.setup.init_plan import Holder, PlanError

if TYPE_CHECKING:
    from nomad_vault_token.vault.lifecycle import Lifecycle

log = logging.getLogger(__name__)

RESCUE_NAME = "nvt-init-rescue"  # the rescue credential's embedded name
INIT_TIMEOUT = 120  # seconds a request may take here (sys/init above all)
ACTIVE_TIMEOUT = 120.0  # a new raft node becomes active within seconds; bounded for a loaded host


@dataclass
class Outcome:
    holder: Holder
    ok: bool = False
    error: str = ""
    written: list[str] = field(default_factory=list)

    def view(self) -> dict[str, object]:
        doc: dict[str, object] = {"kind": self.holder.kind, "where": self.holder.where, "shares": list(self.holder.shares)}
        doc["ok"] = self.ok
        if self.written:
            doc["files"] = self.written
        if self.error:
            doc["error"] = self.error
        return doc


def _int(text: str | None, flag: str, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: give a whole number") from None


def main(
    settings: Settings,
    *,
    shares: str | None = None,
    threshold: str | None = None,
    nomad_variable: str | None = None,
    nomad_addr: str | None = None,
    nomad_token_file: Path | None = None,
    nomad_ca: Path | None = None,
    credential_file: list[str] | None = None,
    credential_key: str | None = None,
    pgp_key: list[str] | None = None,
    root_token_pgp_key: Path | None = None,
    share_dir: Path | None = None,
    bootstrap: bool = False,
    client_ca: Path | None = None,
    allowed_common_name: list[str] | None = None,
    task_allowed_policy: list[str] | None = None,
    login_ttl: str = "5m",
) -> Result:
    from nomad_vault_token.core import credentials, secret_files
    from nomad_vault_token.core.files import read_bytes

    # ---- everything checked before a request ----------------------------------------------------------
    if len(settings.unseal_nodes) > 1:
        raise UsageError(
            f"init: {len(settings.unseal_nodes)} nodes given (--node or unseal_nodes): give the one node to "
            "initialise, --node ADDR; the others join it and need no init"
        )
    node_addr = (settings.unseal_nodes[0] if settings.unseal_nodes else settings.vault_addr).rstrip("/")
    pgp_files = list(pgp_key or [])
    n_shares = _int(shares, "--shares", len(pgp_files) or 5)
    n_threshold = _int(threshold, "--threshold", min(3, n_shares))
    if not (nomad_variable or credential_file or pgp_files):
        raise UsageError(
            "init: give at least one destination for the keys: --nomad-variable PATH, --credential-file PATH "
            "or --pgp-key FILE (repeated)"
        )
    if pgp_files and (nomad_variable or credential_file):
        raise UsageError(
            "init: --pgp-key encrypts every share to a person (Vault's pgp_keys), so none is left for "
            "--nomad-variable or --credential-file: give one kind of destination"
        )
    if bootstrap and client_ca is None:
        raise UsageError("init --bootstrap: give --client-ca FILE (the CA the cert role trusts), as bootstrap-roles")
    if bootstrap and root_token_pgp_key is not None:
        raise UsageError("init: --bootstrap uses the root token and revokes it; --root-token-pgp-key keeps it: give one")
    if bootstrap and client_ca is not None:  # read now: a bad bootstrap flag must not show only after sys/init
        read_bytes(client_ca, "--client-ca", "give the CA (or certificate) the cert role trusts")
    with_key = credentials.check_with_key(credential_key or "auto")
    holders: list[Holder] = []
    try:
        init_plan.check_counts(n_shares, n_threshold)
        if nomad_variable:
            from nomad_vault_token.core.address import read_address

            nomad_addr = read_address(  # refused before sys/init: the shares must not go in clear
                nomad_addr or DEFAULT_NOMAD_ADDR, "--nomad-addr", settings.allow_insecure_http
            ).origin
            where, numbers = init_plan.split_group(nomad_variable, n_shares, "--nomad-variable")
            holders.append(Holder("nomad-variable", where.strip("/"), numbers))
        for spec in credential_file or []:
            where, numbers = init_plan.split_group(spec, n_shares, "--credential-file")
            holders.append(Holder("credential-file", where, numbers))
        pgp_b64 = []
        for i, f in enumerate(pgp_files, start=1):
            pgp_b64.append(init_plan.pgp_key_base64(read_bytes(Path(f), "--pgp-key", "give `gpg --export` output"), f))
            holders.append(Holder("pgp", f, (i,)))
        root_pgp = (
            init_plan.pgp_key_base64(
                read_bytes(root_token_pgp_key, "--root-token-pgp-key", "give `gpg --export` output"),
                str(root_token_pgp_key),
            )
            if root_token_pgp_key is not None
            else None
        )
        for warning in init_plan.check_coverage(holders, n_shares, n_threshold):
            log.warning("init: %s", warning)
    except PlanError as exc:
        raise ConfigError(str(exc)) from None
    nomad_token = secret_files.read(nomad_token_file, "--nomad-token-file", "Nomad ACL token") if nomad_token_file else None
    nomad_ca_pem = read_bytes(nomad_ca, "--nomad-ca").decode(errors="replace") if nomad_ca else ""
    if not pgp_files:
        credentials.binary()  # the rescue file (and any credential) needs it: found before init, not after
    rescue_dir = settings.state_dir
    out_dir = share_dir or Path(".")
    from nomad_vault_token.core.files import ensure_private_dir

    ensure_private_dir(rescue_dir, "state_dir")  # the rescue file's place must exist before Vault answers

    # ---- the node --------------------------------------------------------------------------------------
    from nomad_vault_token.vault.lifecycle import Lifecycle

    # sys/init on raft can take many seconds on a loaded host, and an answer lost to a timeout is a cluster whose
    # keys nobody has: wait for it longer than for any other request
    node = Lifecycle(replace(settings, vault_addr=node_addr, request_timeout=max(settings.request_timeout, INIT_TIMEOUT)))
    status = node.seal_status()
    if status.initialized:
        raise ConfigError(
            f"init: {node_addr} is already initialised (seal type {status.seal_type}): nothing was sent; "
            "a joining node needs no init, the unsealer unseals it"
        )
    if pgp_files and not status.auto_unseal and (root_pgp is None or bootstrap):
        raise ConfigError(
            f"init: {node_addr} is Shamir-sealed and --pgp-key encrypts every share, so this tool cannot unseal it "
            "to use or revoke the root token: give --root-token-pgp-key FILE (and no --bootstrap); nothing was sent"
        )
    kind = "recovery" if status.auto_unseal else "unseal"
    try:
        body = init_plan.init_request(
            auto_unseal=status.auto_unseal,
            shares=n_shares,
            threshold=n_threshold,
            pgp_keys=pgp_b64,
            root_token_pgp_key=root_pgp,
        )
    except PlanError as exc:
        raise ConfigError(str(exc)) from None
    started = time.monotonic()
    answer = node.initialize(body)  # from here on, the keys exist only in this process until they are kept
    keys_field = "recovery_keys" if status.auto_unseal else "keys"
    keys: list[str] = list(answer.get(f"{keys_field}_base64" if pgp_files else keys_field) or [])
    root = Secret(str(answer.get("root_token") or ""))
    del answer
    log.debug("init: %s initialised: %d %s shares, threshold %d", node_addr, len(keys), kind, n_threshold)

    # ---- the rescue file first, then the destinations ------------------------------------------------
    rescue_doc: dict[str, object] = {
        "node": node_addr,
        "kind": kind,
        "threshold": n_threshold,
        "shares": len(keys),
        "keys" if not pgp_files else "keys_pgp_base64": keys,
    }
    if root_pgp:
        rescue_doc["root_token_pgp_base64"] = root.reveal()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    rescue, rescue_error = _keep_rescue(rescue_dir, stamp, rescue_doc, encrypted=not pgp_files, with_key=with_key)
    del rescue_doc
    if len(keys) != n_shares:  # kept in the rescue file all the same (when there are any)
        raise VaultUnavailable(
            f"sys/init: {node_addr} answered {len(keys)} {kind} shares, {n_shares} were asked: nothing written but "
            f"the rescue file {rescue}",
            state="error",
        )
    outcomes = [Outcome(h) for h in holders]
    for outcome in outcomes:
        try:
            _deliver(outcome, keys, kind, nomad_addr, nomad_token, nomad_ca_pem, with_key, out_dir,
                     settings.allow_insecure_http)  # fmt: skip
            outcome.ok = True
        except NvtError as exc:
            outcome.error = exc.message
            log.debug("init: %s %s failed: %s", outcome.holder.kind, outcome.holder.where, exc.message)

    # ---- the root token ----------------------------------------------------------------------------------
    root_outcome = Outcome(Holder("root-token", str(root_token_pgp_key or ""), ()))
    if root_pgp:
        try:
            path = out_dir / "root-token.gpg"
            _write_new(path, _b64(root.reveal(), "--root-token-pgp-key"), "--share-dir")
            root_outcome.written.append(str(path))
            root_outcome.ok = True
            root_how = f"encrypted to {root_token_pgp_key}: {path}"
        except NvtError as exc:
            root_outcome.error = exc.message
            root_how = "encrypted, kept in the rescue file"
    else:
        root_how, root_error = _use_and_revoke(
            node, root, keys if not pgp_files else [], status.auto_unseal, n_threshold, bootstrap,
            dict(client_ca=client_ca, allowed_common_name=allowed_common_name,
                 task_allowed_policy=task_allowed_policy, login_ttl=login_ttl),
        )  # fmt: skip
        root_outcome.ok = not root_error
        root_outcome.error = root_error
    del keys, root

    failed = [o for o in outcomes if not o.ok] + ([root_outcome] if root_pgp and not root_outcome.ok else [])
    if rescue is not None and not failed:
        try:
            rescue.unlink()
        except OSError as exc:
            log.warning("init: could not remove the rescue file %s (%s): remove it", rescue, exc.strerror)
    data: dict[str, object] = {
        "ok": not failed and not root_outcome.error,
        "node": node_addr,
        "seal_type": status.seal_type,
        "keys": kind,
        "shares": n_shares,
        "threshold": n_threshold,
        "destinations": [o.view() for o in outcomes],
        "root_token": root_how,
        "rescue_file": str(rescue) if rescue is not None and failed else None,
        "duration_seconds": round(time.monotonic() - started, 3),
    }
    lines = [f"{node_addr}: initialised: {n_shares} {kind} shares, threshold {n_threshold}"]
    for o in outcomes:
        shown = ",".join(map(str, o.holder.shares))
        lines.append(f"  {o.holder.kind} {o.holder.where}: shares {shown}: " + ("kept" if o.ok else f"FAILED: {o.error}"))
    lines.append(f"  root token: {root_how}")
    if failed:
        if rescue is not None:
            how = (
                f"`systemd-creds decrypt --name={RESCUE_NAME} {rescue} -` prints them as JSON that --keys-file reads"
                if not pgp_files
                else f"{rescue} holds them, each encrypted to its holder (keys_pgp_base64, in --pgp-key order)"
            )
            error = (
                f"init: {len(failed)} destination(s) failed ({failed[0].error}); every share is kept in {rescue} (0600): {how}; put them where they belong, "
                "then delete it"
            )
        else:
            error = (
                f"init: {len(failed)} destination(s) failed ({failed[0].error}) and the rescue file could not be "
                f"written ({rescue_error}): the shares the other destinations hold are all that is left"
            )
        data["error"] = {"message": error, "exit_code": EX_TEMPFAIL}
        return Result(data, "\n".join(lines), exit_code=EX_TEMPFAIL, error=error)
    if root_outcome.error:
        data["error"] = {"message": root_outcome.error, "exit_code": EX_TEMPFAIL}
        return Result(data, "\n".join(lines), exit_code=EX_TEMPFAIL, error=root_outcome.error)
    return Result(data, "\n".join(lines))


# ---- where the keys go -------------------------------------------------------------------------------


def _keep_rescue(
    directory: Path, stamp: str, doc: dict[str, object], *, encrypted: bool, with_key: str
) -> tuple[Path | None, str]:
    """Every share in one 0600 file before any destination is tried: (its path, or None and why not)."""
    from nomad_vault_token.core import credentials

    data = json.dumps(doc).encode()
    try:
        if encrypted:
            path = directory / f"init-rescue-{stamp}.cred"
            _write_new(path, credentials.encrypt(RESCUE_NAME, data, with_key, f"rescue file {path}"), "state_dir")
        else:
            path = directory / f"init-rescue-{stamp}.json"
            _write_new(path, data, "state_dir")
    except NvtError as exc:
        log.error("init: %s", exc.message)
        return None, exc.message
    finally:
        del data
    return path, ""


def _deliver(
    outcome: Outcome,
    keys: list[str],
    kind: str,
    nomad_addr: str | None,
    nomad_token: Secret | None,
    nomad_ca_pem: str,
    with_key: str,
    out_dir: Path,
    allow_insecure_http: bool,
) -> None:
    h = outcome.holder
    if h.kind == "nomad-variable":
        from nomad_vault_token.vault import nomad_api

        index = nomad_api.put_variable_new(
            nomad_addr or DEFAULT_NOMAD_ADDR, h.where, init_plan.nomad_items(keys, h.shares), nomad_token,
            nomad_ca_pem, allow_insecure_http,
        )  # fmt: skip
        log.debug("init: Nomad Variable %s created (index %d), items %s", h.where, index,
                 ", ".join(init_plan.NOMAD_ITEM.format(n) for n in h.shares))  # fmt: skip
    elif h.kind == "credential-file":
        from nomad_vault_token.core import credentials

        path = Path(h.where)
        name = init_plan.credential_name(h.where)
        blob = credentials.encrypt(name, init_plan.keys_text(keys, h.shares).encode(), with_key, f"--credential-file {path}")
        _write_new(path, blob, "--credential-file")
        outcome.written.append(str(path))
        log.debug("init: credential %s (name %s, %s keys) written", path, name, kind)
    elif h.kind == "pgp":
        (number,) = h.shares
        path = out_dir / init_plan.pgp_share_name(h.where, number)
        _write_new(path, _b64(keys[number - 1], "--pgp-key"), "--share-dir")
        outcome.written.append(str(path))
        log.debug("init: share %d encrypted to %s: %s", number, h.where, path)


def _b64(text: str, flag: str) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VaultUnavailable(f"sys/init: the {flag} share is not base64", state="error") from None


def _write_new(path: Path, data: bytes, what: str) -> None:
    """0600, atomically; a file already there is never replaced (it may hold another cluster's keys)."""
    from nomad_vault_token.core.files import write_private

    if path.exists() or path.is_symlink():
        raise ConfigError(f"{what} {path}: already exists: nothing overwritten")
    write_private(path, data, what)


# ---- the root token -------------------------------------------------------------------------------


def _use_and_revoke(
    node: Lifecycle,
    root: Secret,
    keys: list[str],
    auto_unseal: bool,
    threshold: int,
    bootstrap: bool,
    bootstrap_args: dict[str, Any],
) -> tuple[str, str]:
    """Unseal (Shamir, with the new keys in memory), wait for the node to be active, run bootstrap-roles if
    asked, and revoke the root token: (what became of it, an error or "")."""
    try:
        if not auto_unseal:
            for key in keys[:threshold]:
                if not node.unseal_with(key):
                    break
        deadline = time.monotonic() + ACTIVE_TIMEOUT
        while True:
            health = node.health()
            if health.usable and not health.standby:
                break
            if time.monotonic() > deadline:
                raise VaultUnavailable(
                    f"init: {node.settings.vault_addr} did not become active within {ACTIVE_TIMEOUT:.0f}s", state="error"
                )
            time.sleep(0.2)
    except NvtError as exc:
        return "NOT revoked", (
            f"init: keys kept, but the node did not come up to revoke the root token ({exc.message}): it was never "
            "written anywhere; revoke root tokens with `bao token revoke` once the cluster serves"
        )
    how = "revoked"
    error = ""
    if bootstrap:  # its failure is reported; the root token is revoked all the same
        from nomad_vault_token.commands import bootstrap as bootstrap_roles

        how = "used for bootstrap-roles, then revoked"
        try:
            done = bootstrap_roles.main(
                node.settings, token_file=None, admin=root, dry_run=False, diff=False, **bootstrap_args
            )
            if done.exit_code:
                error = f"init: keys kept, but bootstrap-roles failed: {done.error}: run it with an admin token"
        except NvtError as exc:
            error = f"init: keys kept, but bootstrap-roles failed: {exc.message}: run it with an admin token"
    try:
        node.revoke(root)
    except NvtError as exc:
        return "NOT revoked", (
            f"init: keys kept, but the root token could not be revoked ({exc.message}): it was never written "
            "anywhere; revoke root tokens with `bao token revoke` once the cluster serves"
        )
    return how, error
