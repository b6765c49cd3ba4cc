"""TLS material: the CA, the client certificate and its key, checked before use.

Read from disk on every call (never cached), so a renewed certificate is picked
up at the next login. cryptography is imported only here, only when needed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.files import read_bytes

if TYPE_CHECKING:
    from cryptography.x509 import Certificate


@dataclass(frozen=True)
class CertInfo:
    """What the operator wants to know about the client certificate."""

    path: Path
    subject: str
    not_before: datetime
    not_after: datetime
    days_left: int
    fingerprint_sha256: str
    warnings: tuple[str, ...]


def read_file(path: Path, what: str) -> bytes:
    """Bytes of `path`, or one ConfigError line naming it and what to do."""
    return read_bytes(path, what, "give the PEM file itself")


def check_key_mode(path: Path) -> None:
    """Refuse a private key that group or others can read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"client_key {path}: file not found: check the path in the config") from None
    except OSError as exc:
        raise ConfigError(f"client_key {path}: cannot stat: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"client_key {path}: not a regular file: give the PEM key file itself")
    if mode & 0o077:
        raise ConfigError(
            f"client_key {path}: mode {stat.S_IMODE(mode):04o} lets others read the key: chmod 600 {path}"
        )


def load_certs(path: Path, what: str) -> list[Certificate]:
    """All PEM certificates in `path` (at least one)."""
    from cryptography import x509

    data = read_file(path, what)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise ConfigError(f"{what} {path}: no PEM certificate found: give a PEM file (-----BEGIN CERTIFICATE-----)")
    return certs


def check_ca(path: Path) -> None:
    """The CA file parses and holds at least one CA certificate."""
    from cryptography import x509

    for cert in load_certs(path, "ca_cert"):
        try:
            if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                return
        except x509.ExtensionNotFound:
            continue
    raise ConfigError(f"ca_cert {path}: holds no CA certificate (basicConstraints CA:TRUE): give the CA's PEM")


def check_client(cert_path: Path, key_path: Path, warn_days: int, now: datetime | None = None) -> CertInfo:
    """Key mode, key parses and is unencrypted, key matches cert, cert inside its validity window."""
    from cryptography.hazmat.primitives import hashes, serialization

    check_key_mode(key_path)
    cert = load_certs(cert_path, "client_cert")[0]
    key_pem = read_file(key_path, "client_key")
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ConfigError(
            f"client_key {key_path}: the key is encrypted: store it unencrypted with mode 0600 "
            "(e.g. openssl pkey -in KEY -out KEY.plain)"
        ) from None
    except (ValueError, Exception):  # cryptography raises several types for garbage
        raise ConfigError(f"client_key {key_path}: not a PEM private key: give the key of client_cert") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if key.public_key().public_bytes(enc, public) != cert.public_key().public_bytes(enc, public):
        raise ConfigError(
            f"client_key {key_path}: does not match client_cert {cert_path}: give the key the certificate was issued for"
        )
    moment = now or datetime.now(UTC)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    days_left, warnings = validity(cert_path, not_before, not_after, warn_days, moment)
    return CertInfo(
        path=cert_path,
        subject=cert.subject.rfc4514_string(),
        not_before=not_before,
        not_after=not_after,
        days_left=days_left,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        warnings=warnings,
    )


def validity(
    cert_path: Path, not_before: datetime, not_after: datetime, warn_days: int, now: datetime
) -> tuple[int, tuple[str, ...]]:
    """Days left and the expiry warning; ConfigError outside the validity window."""
    if now < not_before:
        raise ConfigError(
            f"client_cert {cert_path}: not valid before {not_before:%Y-%m-%d %H:%M}Z: check the clock or the certificate"
        )
    if now >= not_after:
        raise ConfigError(f"client_cert {cert_path}: expired on {not_after:%Y-%m-%d %H:%M}Z: issue a new certificate")
    days_left = int((not_after - now).total_seconds() // 86400)
    if days_left >= warn_days:
        return days_left, ()
    return days_left, (f"client certificate {cert_path} expires in {days_left} days ({not_after:%Y-%m-%d}): renew it",)


def preflight(cert_path: Path, key_path: Path, ca_path: Path | None, warn_days: int) -> CertInfo:
    """Everything local `run` and `token` check before talking to Vault."""
    if ca_path is not None:
        check_ca(ca_path)
    return check_client(cert_path, key_path, warn_days)


def sealed_listener(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key (0600) in `directory`, for a listener nobody may use.

    The throwaway server's TCP listener exists only because OpenBao derives its raft cluster listener from
    a TCP one; it is given this certificate as its own client CA and requires a client certificate, so no
    client can complete a handshake with it: the only way in is the unix socket."""
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from nomad_vault_token.core.files import write_private

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nomad-vault-token throwaway (no client may connect)")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "listener.pem", directory / "listener-key.pem"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(key_path, key_pem, "throwaway listener key")
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), "throwaway listener certificate")
    return cert_path, key_path
