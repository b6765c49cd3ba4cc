"""The stand-in Nomad's identities against OpenBao's real JWT auth method, its JWKS fetched over TLS.

These prove the test bed itself (testbed/nomad_identity.py): that what it signs is what Vault accepts
from a Nomad server, and that its claims have Nomad's shape. The tool's own JWT work is tested in
test_workload_identity.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import hvac
import pytest
import requests

from testbed.bao import Bao, Certs
from testbed.nomad_identity import NomadIdentity

pytestmark = pytest.mark.vault


@pytest.fixture
def nomad(certs: Certs) -> Iterator[NomadIdentity]:
    stand_in = NomadIdentity(certs.server_pem).start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


def payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    doc: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return doc


def header(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    doc: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return doc


def test_claims_have_nomads_shape(nomad: NomadIdentity) -> None:
    # nomad/structs/workload_id.go v1.9.7:188-221, 259-279
    token = nomad.identity(
        "prod", "web", group="g", task="t", extra_claims={"unique_id": "${job.region}:${job.namespace}:${job.id}"}
    )
    claims = payload(token)
    assert claims["aud"] == "vault.io"  # one audience: a plain string
    assert claims["sub"] == "global:prod:web:g:t:vault_default"
    assert claims["nomad_namespace"] == "prod" and claims["nomad_job_id"] == "web" and claims["nomad_task"] == "t"
    assert claims["extra_claims"] == {"unique_id": "global:prod:web"}
    assert claims["iat"] == claims["nbf"] and claims["exp"] > claims["iat"]
    assert "iss" not in claims and "vault_role" not in claims
    two = payload(nomad.identity("prod", "web", aud=["a", "b"], ttl=0))
    assert two["aud"] == ["a", "b"] and "exp" not in two
    assert header(token) == {"alg": "RS256", "kid": nomad.active_key.key_id, "typ": "JWT"}


def test_jwks_over_tls_and_rotation(nomad: NomadIdentity, certs: Certs) -> None:
    old = nomad.active_key
    new = nomad.rotate("EdDSA")
    keys = requests.get(nomad.jwks_url, verify=str(certs.ca_path), timeout=10).json()["keys"]
    assert {(k["kid"], k["alg"], k["use"]) for k in keys} == {
        (old.key_id, "RS256", "sig"),
        (new.key_id, "EdDSA", "sig"),
    }
    assert header(nomad.identity("default", "web"))["kid"] == new.key_id
    nomad.deprecate(old.key_id)
    keys = requests.get(nomad.jwks_url, verify=str(certs.ca_path), timeout=10).json()["keys"]
    assert [k["kid"] for k in keys] == [new.key_id]


def test_upgrade_check_from_state(certs: Certs) -> None:
    from testbed.nomad_identity import Job, Node

    nomad = NomadIdentity(certs.server_pem, acl_token="nomad-acl").start()
    try:
        nomad.jobs += [
            Job("default", "legacy"),
            Job("default", "moved", vault_identity=True),
            Job("default", "novault", vault=False),
        ]
        nomad.nodes += [Node("n1", "1.6.10"), Node("n2", "1.7.2"), Node("n3", "garbage")]
        url = nomad.address + "/v1/operator/upgrade-check/vault-workload-identity"
        assert requests.get(url, verify=str(certs.ca_path), timeout=10).status_code == 403
        body = requests.get(url, verify=str(certs.ca_path), headers={"X-Nomad-Token": "nomad-acl"}, timeout=10).json()
        assert [j["ID"] for j in body["JobsWithoutVaultIdentity"]] == ["legacy"]
        assert [n["ID"] for n in body["OutdatedNodes"]] == ["n1", "n3"]
        assert body["VaultTokens"] == []
    finally:
        nomad.stop()


def test_openbao_accepts_rs256_and_eddsa_identities(bao: Bao, nomad: NomadIdentity, certs: Certs) -> None:
    root = bao.client(bao.root_token)
    mount = "jwt-standin"
    root.sys.enable_auth_method("jwt", path=mount)
    try:
        root.write_data(
            f"auth/{mount}/config",
            data={
                "jwks_url": nomad.jwks_url,
                "jwks_ca_pem": certs.ca_path.read_text(),
                "jwt_supported_algs": ["RS256", "EdDSA"],
            },
        )
        root.write_data(
            f"auth/{mount}/role/r",
            data={
                "role_type": "jwt",
                "bound_audiences": ["vault.io"],
                "user_claim": "sub",
                "token_policies": ["default"],
                "token_ttl": 60,
            },
        )

        def login(jwt: str) -> dict[str, Any]:
            return hvac.Client(bao.addr, verify=str(certs.ca_path)).write_data(
                f"auth/{mount}/login", data={"role": "r", "jwt": jwt}
            )

        assert login(nomad.identity("default", "web"))["auth"]["client_token"]
        nomad.rotate("EdDSA")
        assert login(nomad.identity("default", "web"))["auth"]["client_token"]  # a new kid, fetched again
    finally:
        root.sys.disable_auth_method(mount)
