"""Where `unseal` gets its keys: a file (`--keys-file`, config `unseal_keys_file`) or a systemd credential
(`LoadCredentialEncrypted=NAME:/path.cred`, `$CREDENTIALS_DIRECTORY/NAME`). Reading and checking the file is
`core.key_files.read_keys`, the one reader `snapshot restore-test` uses too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.key_files import UnsealKeys, read_keys


def credential_path(name: str, environ: Mapping[str, str] | None = None) -> Path:
    """`$CREDENTIALS_DIRECTORY/name` (systemd `LoadCredentialEncrypted=name:...`, or `LoadCredential=`)."""
    env = os.environ if environ is None else environ
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"unseal credential {name!r}: not a credential name: give the name used in LoadCredentialEncrypted=")
    directory = env.get("CREDENTIALS_DIRECTORY", "")
    if not directory:
        raise ConfigError(
            f"unseal credential {name}: $CREDENTIALS_DIRECTORY is not set: run under systemd with "
            f"LoadCredentialEncrypted={name}:/path/to/keys.cred, or give --keys-file"
        )
    if not os.path.isabs(directory):
        raise ConfigError(f"unseal credential {name}: $CREDENTIALS_DIRECTORY {directory!r} is not an absolute path")
    return Path(directory) / name


def load(
    keys_file: Path | None = None, credential: str | None = None, environ: Mapping[str, str] | None = None
) -> UnsealKeys:
    """The keys from exactly one source: a file, or a systemd credential."""
    if (keys_file is None) == (credential is None):
        raise ConfigError(
            "unseal keys: give exactly one of --keys-file (config unseal_keys_file) or a systemd credential name"
        )
    if keys_file is not None:
        return read_keys(keys_file)
    assert credential is not None
    return read_keys(credential_path(credential, environ), what="unseal credential", credential=True)
