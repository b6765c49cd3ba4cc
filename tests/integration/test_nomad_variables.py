"""The stand-in Nomad's Variables API behaves as Nomad v1.9.7's (`testbed/nomad_standin/variables.py` cites the
lines): check-and-set, the 409 that shows no items, 404, 403 without the ACL token, 400 without items. And
`vault.nomad_api.put_variable_new` against it: created once, never overwritten."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from nomad_vault_token.core.errors import NomadError
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.vault import nomad_api
from testbed.bao import Certs
from testbed.nomad_standin.variables import NomadVariables

TOKEN = "acl-token"


@pytest.fixture
def nomad(certs: Certs) -> Iterator[NomadVariables]:
    server = NomadVariables(certs.server_pem, acl_token=TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


def call(nomad: NomadVariables, certs: Certs, method: str, path: str, body: Any = None,
         token: str = TOKEN) -> tuple[int, Any]:  # fmt: skip
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(nomad.addr + path, data=data, method=method, headers={"X-Nomad-Token": token})  # noqa: S310
    ctx = ssl.create_default_context(cafile=str(certs.ca_path))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:  # noqa: S310
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode()


def test_check_and_set_as_nomad_does_it(nomad: NomadVariables, certs: Certs) -> None:
    assert call(nomad, certs, "GET", "/v1/var/a/b") == (404, "variable not found")
    code, created = call(nomad, certs, "PUT", "/v1/var/a/b?cas=0", {"Items": {"k": "v1"}})
    assert code == 200 and created["Items"] == {"k": "v1"} and created["Path"] == "a/b"
    code, conflict = call(nomad, certs, "PUT", "/v1/var/a/b?cas=0", {"Items": {"k": "v2"}})
    assert code == 409 and conflict["Items"] is None and conflict["ModifyIndex"] == created["ModifyIndex"]
    assert call(nomad, certs, "PUT", "/v1/var/a/b?cas=1", {"Items": {"k": "v2"}})[0] == 409
    code, _ = call(nomad, certs, "PUT", f"/v1/var/a/b?cas={created['ModifyIndex']}", {"Items": {"k": "v3"}})
    assert code == 200 and nomad.items("a/b") == {"k": "v3"}
    assert call(nomad, certs, "PUT", "/v1/var/new?cas=7", {"Items": {"k": "v"}})[0] == 409  # index on a missing one
    assert call(nomad, certs, "PUT", "/v1/var/a/b", {"Items": {}}) == (400, "variable missing required Items object")
    assert call(nomad, certs, "PUT", "/v1/var/a/b?cas=x", {"Items": {"k": "v"}}) == (400, "can not parse cas: x")
    assert call(nomad, certs, "GET", "/v1/var/a/b", token="wrong") == (403, "Permission denied")


def test_put_variable_new_never_overwrites(nomad: NomadVariables, certs: Certs) -> None:
    ca = certs.ca_path.read_text()
    assert nomad_api.put_variable_new(nomad.addr, "nomad/jobs/u", {"key_1": "aa"}, Secret(TOKEN), ca) > 0
    with pytest.raises(NomadError, match="already exists") as exc:
        nomad_api.put_variable_new(nomad.addr, "nomad/jobs/u", {"key_1": "bb"}, Secret(TOKEN), ca)
    assert exc.value.exit_code == 78 and "bb" not in exc.value.message
    assert nomad.items("nomad/jobs/u") == {"key_1": "aa"}
    with pytest.raises(NomadError, match="permission denied") as denied:
        nomad_api.put_variable_new(nomad.addr, "nomad/jobs/v", {"key_1": "cc"}, Secret("wrong"), ca)
    assert denied.value.exit_code == 77
