"""How `snapshot` logs in: --auth when given, else from what the user gave (cert > token > JWT), as the Vault CLI
uses what it is given."""

from __future__ import annotations

import pytest

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.snapshot.auth import Given, choose

NOTHING = Given(client_cert=False, token=False, jwt_file=False)
CERT = Given(client_cert=True, token=False, jwt_file=False)
TOKEN = Given(client_cert=False, token=True, jwt_file=False)
JWT = Given(client_cert=False, token=False, jwt_file=True)
ALL = Given(client_cert=True, token=True, jwt_file=True)


@pytest.mark.parametrize(
    ("explicit", "given", "chosen"),
    [
        # --auth not given: what the user gave decides
        (None, CERT, "cert"),
        (None, TOKEN, "token"),  # $VAULT_TOKEN or --token-file, no client certificate: the defect's case
        (None, JWT, "jwt"),
        (None, Given(client_cert=True, token=True, jwt_file=False), "cert"),  # a configured certificate first
        (None, Given(client_cert=True, token=False, jwt_file=True), "cert"),
        (None, Given(client_cert=False, token=True, jwt_file=True), "token"),  # then a token
        (None, ALL, "cert"),
        # an explicit --auth (or snapshot_auth) wins, whatever else is there
        ("cert", NOTHING, "cert"),
        ("token", ALL, "token"),
        ("token", CERT, "token"),
        ("jwt", Given(client_cert=True, token=True, jwt_file=False), "jwt"),
        ("cert", TOKEN, "cert"),
    ],
)
def test_choose(explicit: str | None, given: Given, chosen: str) -> None:
    assert choose(explicit, given) == chosen


def test_nothing_given_is_one_line_naming_all_three() -> None:
    with pytest.raises(ConfigError) as err:
        choose(None, NOTHING)
    message = err.value.message
    assert "\n" not in message and err.value.exit_code == 78
    for needle in ("--client-cert", "--token-file", "$VAULT_TOKEN", "--jwt-file", "--auth"):
        assert needle in message, needle
