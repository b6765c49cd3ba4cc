"""How `snapshot` logs in. Pure.

`--auth` (config `snapshot_auth`) when given. Otherwise, like the Vault CLI, what the user gave: a
configured client certificate means `cert` (login as `--snapshot-role`), else a token from
`--token-file` or `$VAULT_TOKEN` means `token`, else `--jwt-file` means `jwt`. None of them: one line
naming all three.
"""

from __future__ import annotations

from dataclasses import dataclass

from nomad_vault_token.core.errors import ConfigError

CERT, TOKEN, JWT = "cert", "token", "jwt"

NOTHING_GIVEN = (
    "snapshot: nothing to log in with: give a client certificate (--client-cert and --client-key), a token "
    "(--token-file FILE or $VAULT_TOKEN) or a JWT (--jwt-file FILE); --auth cert|token|jwt picks one"
)


@dataclass(frozen=True)
class Given:
    """What the user gave, whatever its source (flag, environment, config file)."""

    client_cert: bool  # client_cert is set
    token: bool  # --token-file, or a non-empty $VAULT_TOKEN
    jwt_file: bool  # jwt_file is set


def choose(explicit: str | None, given: Given) -> str:
    """`explicit` (--auth) when set, else cert, token or jwt by what was given, in that order."""
    if explicit:
        return explicit
    if given.client_cert:
        return CERT
    if given.token:
        return TOKEN
    if given.jwt_file:
        return JWT
    raise ConfigError(NOTHING_GIVEN)
