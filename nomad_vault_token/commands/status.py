"""`status`: the current server token (from the state file and lookup-self) and the certificate. Never the token."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from nomad_vault_token.core import config
from nomad_vault_token.core.durations import format_duration
from nomad_vault_token.core.errors import EX_FAILED, NvtError, TokenInvalid, VaultUnavailable
from nomad_vault_token.core.results import Result
from nomad_vault_token.token import store, tracker_report
from nomad_vault_token.unseal import published
from nomad_vault_token.vault import tls
from nomad_vault_token.vault.client import Vault

_P = TypeVar("_P")


def main(settings: config.Settings) -> Result:
    if settings.keyring and not settings.legacy_token:
        return keyring_only(settings)
    saved = store.read(settings.state_file)
    unsealer = unsealer_view(settings.unseal_file)
    if saved is None:
        message = (
            f"no saved server token in {settings.state_file}: the service has not minted one yet "
            "(or --state-dir points elsewhere)"
        )
        if unsealer is None:
            raise NoToken(message)
        none: dict[str, Any] = {"state_file": str(settings.state_file), "accessor": None, "unsealer": unsealer}
        return Result(none, unsealer_text(unsealer), EX_FAILED, message)
    doc: dict[str, Any] = {
        "state_file": str(settings.state_file),
        "accessor": saved.accessor,
        "vault_addr": settings.vault_addr,
        "minted_at": _iso(saved.minted_at),
    }
    doc["client_cert"] = cert_summary(settings)
    doc["tracker"] = tracker_view(settings.tracker_file, saved.accessor)
    doc["unsealer"] = unsealer
    try:
        info = Vault(settings).lookup_self(saved.token)
    except (TokenInvalid, VaultUnavailable) as exc:  # what is known without Vault matters most in an outage
        doc |= {"valid": None if isinstance(exc, VaultUnavailable) else False, "problem": exc.message}
        return Result(doc, text(doc) + unsealer_text(unsealer), exc.exit_code, exc.message)
    now = time.time()
    renewal = info.raw.get("last_renewal_time")
    ring = keyring_view(settings)
    if ring is not None:
        doc["keyring"] = ring
    doc |= {
        "valid": True,
        "policies": list(info.policies),
        "role": info.role or None,
        "orphan": info.orphan,
        "renewable": info.renewable,
        "period": info.effective_period,
        "ttl": info.ttl,
        "expires_at": _iso(now + info.ttl),
        "last_renewal": _iso(float(renewal)) if renewal else None,
        "display_name": info.display_name,
    }
    return Result(doc, text(doc) + keyring_text(ring) + unsealer_text(unsealer))


def keyring_only(settings: config.Settings) -> Result:
    """Nomad 1.10+ (`legacy_token = false`, `keyring = true`): the keyring token is the server's only one."""
    ring = keyring_view(settings)
    assert ring is not None
    doc: dict[str, Any] = {"vault_addr": settings.vault_addr, "keyring": ring, "client_cert": cert_summary(settings)}
    doc["unsealer"] = unsealer = unsealer_view(settings.unseal_file)
    body = keyring_text(ring) + unsealer_text(unsealer)
    if ring["accessor"] is None:
        message = f"no saved keyring token in {settings.keyring_state_file}: the service has not minted one yet"
        return Result(doc, body, EX_FAILED, message)
    if ring.get("valid") is not True:
        code = VaultUnavailable.exit_code if ring.get("valid") is None else TokenInvalid.exit_code
        return Result(doc, body, code, ring["problem"])
    return Result(doc, body)


def keyring_view(settings: config.Settings) -> dict[str, Any] | None:
    """The keyring token: its accessor (never the token), what Vault says of it, what the tracker last knew."""
    if not settings.keyring:
        return None
    saved = store.read(settings.keyring_state_file)
    view: dict[str, Any] = {"accessor": saved.accessor if saved else None, "file": str(settings.keyring_token_path)}
    try:
        published = json.loads(settings.tracker_file.read_text(encoding="utf-8")).get("keyring")
    except (OSError, ValueError, AttributeError):
        published = None
    view["tracker"] = published if isinstance(published, dict) else None
    if saved is None:
        return view
    try:
        info = Vault(settings).lookup_self(saved.token)
    except (TokenInvalid, VaultUnavailable) as exc:
        return view | {"valid": None if isinstance(exc, VaultUnavailable) else False, "problem": exc.message}
    renewal = info.raw.get("last_renewal_time")
    return view | {
        "valid": True,
        "policies": list(info.policies),
        "role": info.role or None,
        "ttl": info.ttl,
        "expires_at": _iso(time.time() + info.ttl),
        "last_renewal": _iso(float(renewal)) if renewal else None,
    }


def keyring_text(ring: dict[str, Any] | None) -> str:
    if ring is None:
        return ""
    if ring["accessor"] is None:
        lines = [("keyring", "no saved keyring token yet")]
    elif ring.get("valid"):
        lines = [("keyring", f"accessor {ring['accessor']}, ttl {format_duration(ring['ttl'])} "
                             f"(expires {ring['expires_at']}), last renewal {ring['last_renewal'] or 'never'}")]  # fmt: skip
    else:
        word = "unknown" if ring.get("valid") is None else "NOT VALID"
        lines = [("keyring", f"accessor {ring['accessor']}: {word}: {ring.get('problem')}")]
    lines.append(("keyring file", ring["file"]))
    tracker = ring.get("tracker")
    if tracker is not None:
        lines.append(("keyring now", str(tracker.get("status"))))
    return "".join(f"{key + ':':<14}{value}\n" for key, value in lines)


class NoToken(NvtError):
    exit_code = EX_FAILED


def cert_summary(settings: config.Settings) -> dict[str, Any] | None:
    if settings.client_cert is None or settings.client_key is None:
        return None
    try:
        info = tls.check_client(settings.client_cert, settings.client_key, settings.cert_warn_days)
    except NvtError as exc:
        return {"path": str(settings.client_cert), "problem": exc.message}
    return {
        "path": str(info.path),
        "subject": info.subject,
        "expires_at": info.not_after.isoformat(),
        "days_left": info.days_left,
        "warnings": list(info.warnings),
    }


def _read(path: Path, model: Callable[[Mapping[str, Any]], _P]) -> _P | None:
    """What a process published in `path`, through the model it wrote it with; None if never (or not readable)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return model(doc) if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tracker_view(path: Path, accessor: str) -> dict[str, Any] | None:
    """What the tracker last published (tracker.json: no token in it), and whether it still runs."""
    t = _read(path, tracker_report.Published.from_json)
    if t is None:
        return None
    keys = ("state", "adopted", "adoption", "handover", "degraded_for", "status", "agent_pid", "accessor")
    return {k: getattr(t, k) for k in keys} | {
        "pid": t.pid,
        "running": _running(t.pid),
        "updated_at": _iso(t.updated_at),
        "current_token": t.accessor == accessor,
    }


def unsealer_view(path: Path) -> dict[str, Any] | None:
    """What `unseal` last published (unseal.json: no key in it), and whether it still runs."""
    u = _read(path, published.Published.from_json)
    if u is None:
        return None
    keys = ("status", "cluster", "leader", "unsealed", "members", "quorum", "keys_held", "keys_usable")
    return {k: getattr(u, k) for k in keys} | {
        "nodes": [asdict(n) for n in u.nodes],
        "pid": u.pid,
        "running": _running(u.pid),
        "updated_at": _iso(u.updated_at),
    }


def unsealer_text(view: dict[str, Any] | None) -> str:
    if view is None:
        return ""
    when = "" if view["running"] else f" (not running; last {view['updated_at']})"
    lines = [f"{'unsealer:':<14}{view['status']}{when}"]
    for node in view.get("nodes") or []:
        if isinstance(node, dict):
            lines.append(f"{'':<14}{node.get('node')}: {node.get('message')}")
    return "\n".join(lines) + "\n"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def text(doc: dict[str, Any]) -> str:
    lines = [("accessor", doc["accessor"]), ("vault", doc["vault_addr"]), ("minted", doc["minted_at"])]
    if doc.get("valid"):
        lines += [
            ("policies", ", ".join(doc["policies"])),
            ("role", doc["role"] or "(none: create-orphan)"),
            ("orphan", str(doc["orphan"]).lower()),
            ("renewable", str(doc["renewable"]).lower()),
            ("period", format_duration(doc["period"])),
            ("ttl", f"{format_duration(doc['ttl'])} (expires {doc['expires_at']})"),
            ("last renewal", doc["last_renewal"] or "never"),
        ]
    elif doc.get("valid") is None:
        lines.append(("token", f"unknown: {doc['problem']}"))
    else:
        lines.append(("token", f"NOT VALID: {doc['problem']}"))
    cert = doc.get("client_cert")
    if cert:
        if "problem" in cert:
            lines.append(("client cert", f"PROBLEM: {cert['problem']}"))
        else:
            warn = f"  WARNING: {cert['warnings'][0]}" if cert["warnings"] else ""
            lines.append(("client cert", f"expires {cert['expires_at'][:10]} ({cert['days_left']} days){warn}"))
    tracker = doc.get("tracker")
    if tracker is None:
        lines.append(("tracker", "none yet (run starts it)"))
    elif not tracker["running"]:
        lines.append(("tracker", f"not running (last: {tracker['adoption']}, {tracker['updated_at']})"))
    else:
        lines.append(("tracker", f"{tracker['state']}: {tracker['adoption']} (agent pid {tracker['agent_pid']})"))
    if tracker is not None and tracker.get("degraded_for") is not None:
        still = "for" if tracker["state"] == "degraded" else "lasted"
        lines.append(("degraded", f"started without Vault; {still} {format_duration(tracker['degraded_for'])}"))
    return "".join(f"{key + ':':<14}{value}\n" for key, value in lines)
