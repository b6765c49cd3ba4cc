"""Encrypted systemd credentials, made by systemd's own `systemd-creds encrypt`: the secret goes in on
stdin and the credential comes out on stdout, never through argv or a plain file.

`--with-key`: `auto` (the TPM2 and the host key where there is a TPM2, else the host key), `host`
(`/var/lib/systemd/credential.secret`, created by systemd on first use as root), `tpm2`, `host+tpm2`.
The embedded `--name` is what `LoadCredentialEncrypted=NAME:PATH` must call it (systemd checks it when
it decrypts). Errors are one line naming the file, never the secret.
"""

from __future__ import annotations

import shutil
import subprocess  # nosec B404

from nomad_vault_token.core.errors import ConfigError

WITH_KEYS = ("auto", "host", "tpm2", "host+tpm2")
TIMEOUT = 60.0


def binary() -> str:
    found = shutil.which("systemd-creds")
    if not found:
        raise ConfigError("systemd-creds not found: encrypted credentials need systemd 250+ on this host")
    return found


def check_with_key(with_key: str) -> str:
    if with_key not in WITH_KEYS:
        raise ConfigError(f"--credential-key {with_key!r}: use one of {', '.join(WITH_KEYS)}")
    return with_key


def encrypt(name: str, secret: bytes, with_key: str, what: str) -> bytes:
    """The encrypted credential holding `secret`, named `name` (ConfigError, one line, if systemd-creds fails)."""
    argv = [binary(), "encrypt", f"--with-key={check_with_key(with_key)}", f"--name={name}", "-", "-"]
    try:
        # a fixed argv, no shell; the secret goes on stdin
        done = subprocess.run(  # nosec B603
            argv, input=secret, capture_output=True, timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{what}: systemd-creds encrypt could not run ({type(exc).__name__})") from None
    if done.returncode != 0 or not done.stdout:
        words = " ".join(done.stderr.decode(errors="replace").split())[:200]
        raise ConfigError(f"{what}: systemd-creds encrypt failed ({words or f'exit {done.returncode}'})")
    return done.stdout
