"""`run`'s TLS preflight, remembered: certificate, key and CA bytes that passed it once are not parsed again.

Parsing them with cryptography costs about 45 ms of every Nomad start. The verdict of the last full
check is kept in the state directory (0600), keyed by the SHA-256 of the three files' paths and
bytes; when they are unchanged, only what can change without their bytes changing is checked again:
the key's mode (every time) and the certificate's validity window (from the kept dates, against the
clock now). Anything else, a changed byte included, runs the full check. Stdlib only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.files import write_atomic
from nomad_vault_token.vault import tls

VERSION = 1


def preflight(settings: Settings, now: datetime | None = None) -> tuple[str, ...]:
    """tls.preflight's checks (ConfigError on failure); its warnings."""
    cert, key = settings.client_tls()
    tls.check_key_mode(key)
    moment = now or datetime.now(UTC)
    files = [(cert, "client_cert"), (key, "client_key")]
    if settings.ca_cert is not None:
        files.append((settings.ca_cert, "ca_cert"))
    digest = _digest(files)
    kept = _read(settings.verdict_file)
    if kept is not None and kept.get("digest") == digest:
        try:
            not_before = datetime.fromisoformat(kept["not_before"])
            not_after = datetime.fromisoformat(kept["not_after"])
        except (KeyError, TypeError, ValueError):
            pass
        else:
            return tls.validity(cert, not_before, not_after, settings.cert_warn_days, moment)[1]
    info = tls.preflight(cert, key, settings.ca_cert, settings.cert_warn_days)
    doc = {
        "version": VERSION,
        "digest": digest,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
    }
    with contextlib.suppress(OSError):  # only a cache: the next start checks in full again
        write_atomic(settings.verdict_file, (json.dumps(doc) + "\n").encode(), 0o600)
    return info.warnings


def _digest(files: list[tuple[Path, str]]) -> str:
    h = hashlib.sha256()
    for path, what in files:
        data = tls.read_file(path, what)
        h.update(f"{path}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _read(path: Path) -> dict[str, str] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("version") == VERSION else None
