"""The keyring token's file, for the agent's `keyring "transit" { token = "file://<path>" }`.

Nomad's transit wrapper reads a `file://` token again every time Nomad builds a wrapper (at every use:
`newKMSWrapper`, `nomad/encrypter.go` v2.0.5:1057-1098) and reads it WITHOUT trimming
(`WithNoTrimSpaces(true)` in go-kms-wrapping's `wrappers/transit/transit_client.go`): a trailing
newline would be part of the token and Vault answers 403. So the file holds the token's bytes and
nothing else, and a new token written here is used at the next build with no restart and no signal.
Written atomically (temp file, fsync, rename), 0600 in a 0700 directory: the agent is this process
after its exec, so it runs as the same user.
"""

from __future__ import annotations

from pathlib import Path

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.files import ensure_private_dir, write_private
from nomad_vault_token.core.secret import Secret


def render(token: Secret) -> bytes:
    """The file's bytes: the token, no newline. A token with whitespace in it is refused (never written)."""
    value = token.reveal()
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(
            "keyring token: holds whitespace or control characters, which Nomad would send to Vault as part "
            "of the token (file:// tokens are read without trimming): not written"
        )
    return value.encode("ascii")


def write(settings: Settings, token: Secret) -> Path:
    """Write the keyring token file (0600, atomically, no trailing newline) and return its path."""
    path = settings.keyring_token_path
    ensure_private_dir(path.parent, "keyring_token_file directory")
    write_private(path, render(token), "keyring_token_file")
    return path


def stanza(path: Path) -> str:
    """The `token` line the agent's keyring block needs."""
    return f'token = "file://{path}"'
