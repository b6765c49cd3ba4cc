"""`bootstrap-roles --workload-identity` and `check --workload-identity` against OpenBao's real JWT auth method,
with Nomad's identities signed by the stand-in Nomad (testbed/nomad_identity.py) and its JWKS served over TLS.

One OpenBao for the module (KV v2 at secret/), one stand-in Nomad; bootstrap-roles writes the JWT side
once with the default user claim (the `extra_claims` unique ID), and the tasks below log in with
identities carrying the claim the servers' `vault { default_identity { extra_claims {...} } }` adds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest
import trustme

from nomad_vault_token.setup import workload_identity as wi
from testbed.bao import Bao, Certs
from testbed.cli import Result, assert_one_line_error, run_cli
from testbed.env import clean_env
from testbed.nomad_identity import NomadIdentity

pytestmark = pytest.mark.vault

UNIQUE = {"unique_id": "${job.region}:${job.namespace}:${job.id}"}  # vault.mdx v1.9.7:42-44


@pytest.fixture(scope="module")
def wcerts(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("wicerts"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, wcerts: Certs) -> Iterator[Bao]:
    bao = Bao(tmp_path_factory.mktemp("wibao"), wcerts)
    try:
        bao.start()
        bao.client().sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        yield bao
    finally:
        bao.stop()


@pytest.fixture(scope="module")
def nomad(wcerts: Certs) -> Iterator[NomadIdentity]:
    stand_in = NomadIdentity(wcerts.server_pem).start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


def bootstrap(server: Bao, nomad: NomadIdentity | None, *args: str, url: str | None = None) -> Result:
    extra = ["--nomad-jwks-url", url or (nomad.jwks_url if nomad else "")]
    result = run_cli(
        "bootstrap-roles", "--workload-identity", "--vault-addr", server.addr, "--ca-cert", str(server.certs.ca_path),
        "--nomad-jwks-ca", str(server.certs.ca_path), *extra, *args,
        env=clean_env(VAULT_TOKEN=server.root_token), timeout=90,
    )  # fmt: skip
    assert server.root_token not in result.out + result.err
    return result


@pytest.fixture(scope="module")
def written(server: Bao, nomad: NomadIdentity) -> Result:
    done = bootstrap(server, nomad)
    assert done.code == 0, done.err
    return done


def login(server: Bao, jwt: str, role: str = "nomad-workloads", mount: str = "jwt-nomad") -> hvac.Client:
    c = hvac.Client(server.addr, verify=str(server.certs.ca_path))
    token = c.write_data(f"auth/{mount}/login", data={"role": role, "jwt": jwt})["auth"]["client_token"]
    return hvac.Client(server.addr, verify=str(server.certs.ca_path), token=token)


def put(server: Bao, path: str, value: str) -> None:
    server.client().secrets.kv.v2.create_or_update_secret(path, secret={"v": value}, mount_point="secret")


def reads(task: hvac.Client, path: str) -> str | None:
    """The secret's value, or None when the task is refused."""
    try:
        return str(
            task.secrets.kv.v2.read_secret_version(path, mount_point="secret", raise_on_deleted_version=True)["data"][
                "data"
            ]["v"]
        )
    except hvac.exceptions.Forbidden:
        return None


def test_first_run_writes_everything_and_prints_the_server_line(written: Result) -> None:
    lines = written.out.splitlines()
    assert lines[:4] == [
        "created auth mount sys/auth/jwt-nomad",
        "created JWT config auth/jwt-nomad/config",
        "created policy nomad-workloads",
        "created role auth/jwt-nomad/role/nomad-workloads",
    ], written.out
    assert 'extra_claims { unique_id = "${job.region}:${job.namespace}:${job.id}" }' in written.out


def test_second_run_changes_nothing_and_check_mode_agrees(server: Bao, nomad: NomadIdentity, written: Result) -> None:
    again = bootstrap(server, nomad)
    assert again.code == 0 and again.out.count("unchanged") == 4, again.out
    dry = bootstrap(server, nomad, "--check", "--format", "json")
    assert dry.code == 0 and json.loads(dry.out)["changed"] is False


def test_the_policy_has_no_cross_namespace_list_and_refuses_slashes(server: Bao, written: Result) -> None:
    data = server.client().read("sys/policies/acl/nomad-workloads")["data"]
    accessor = server.client().sys.list_auth_methods()["data"]["jwt-nomad/"]["accessor"]
    assert f"identity.entity.aliases.{accessor}.metadata.nomad_job_id" in data["policy"]
    assert 'path "secret/metadata/*"' not in data["policy"]
    assert "metadata/{{identity.entity.aliases." + accessor + ".metadata.nomad_namespace}}/*" not in data["policy"]
    assert data["allow_slashes_in_identity_templates"] is False  # the default: issue 30, finding 7
    assert data["allow_wildcards_in_identity_templates"] is False


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_a_task_reads_its_own_job_and_nothing_else(
    server: Bao, nomad: NomadIdentity, written: Result, alg: str
) -> None:
    if nomad.active_key.alg != alg:
        nomad.rotate(alg)
    put(server, f"default/api-{alg}/db", "mine")
    put(server, f"default/other-{alg}/db", "neighbour")
    put(server, f"prod/api-{alg}/db", "other namespace")
    task = login(server, nomad.identity("default", f"api-{alg}", extra_claims=UNIQUE))
    assert reads(task, f"default/api-{alg}/db") == "mine"
    assert reads(task, f"default/other-{alg}/db") is None
    assert reads(task, f"prod/api-{alg}/db") is None
    with pytest.raises(hvac.exceptions.Forbidden):
        task.secrets.kv.v2.list_secrets("default", mount_point="secret")  # no listing of the namespace's jobs


def test_same_job_id_in_two_namespaces_never_swaps_paths(server: Bao, nomad: NomadIdentity, written: Result) -> None:
    """hashicorp/nomad#20104, vault#27586: with the bare job ID as user claim the second login rewrites the shared
    alias's metadata; with the unique ID each job keeps its own alias."""
    put(server, "default/web/cfg", "default's")
    put(server, "prod/web/cfg", "prod's")
    web_default = login(server, nomad.identity("default", "web", extra_claims=UNIQUE))
    assert reads(web_default, "default/web/cfg") == "default's"
    web_prod = login(server, nomad.identity("prod", "web", extra_claims=UNIQUE))
    assert reads(web_prod, "prod/web/cfg") == "prod's"
    assert reads(web_default, "default/web/cfg") == "default's"  # still its own after prod logged in
    assert reads(web_default, "prod/web/cfg") is None
    assert reads(web_prod, "default/web/cfg") is None


def test_the_collision_is_real_with_nomads_own_user_claim(server: Bao, nomad: NomadIdentity, written: Result) -> None:
    """The same two logins through a role like `nomad setup vault`'s (user_claim /nomad_job_id): the first task's
    token follows the alias metadata the second login wrote. This is what the unique ID prevents."""
    root = server.client()
    root.write_data("auth/jwt-nomad/role/setup-vault-like", data={
        "role_type": "jwt", "bound_audiences": ["vault.io"], "user_claim": "/nomad_job_id", "user_claim_json_pointer": True,
        "claim_mappings": {"nomad_namespace": "nomad_namespace", "nomad_job_id": "nomad_job_id"},
        "token_policies": ["nomad-workloads"], "token_ttl": 300,
    })  # fmt: skip
    try:
        put(server, "default/shared/cfg", "default's")
        put(server, "prod/shared/cfg", "prod's")
        first = login(server, nomad.identity("default", "shared"), role="setup-vault-like")
        assert reads(first, "default/shared/cfg") == "default's"
        login(server, nomad.identity("prod", "shared"), role="setup-vault-like")
        assert reads(first, "default/shared/cfg") is None
        assert reads(first, "prod/shared/cfg") == "prod's"
    finally:
        root.delete("auth/jwt-nomad/role/setup-vault-like")


def test_by_default_no_job_reads_another_jobs_path(
    server: Bao, nomad: NomadIdentity, written: Result, tmp_path: Path
) -> None:
    """Issue 30, finding 7: with slashes allowed (the old default) job `web/db` had `default/web/db/...`, inside job
    `web`'s tree `default/web/*`: web read web/db's secrets. By default a job ID holding '/' gets no path at all (on
    OpenBao 2.7.2 the templated policy fails for its entity and its token is refused everything, 400 Forbidden), so
    nothing under `default/web/` belongs to another job."""
    put(server, "default/web/db/x", "put there by web/db's owners")
    nested = login(server, nomad.identity("default", "web/db", extra_claims=UNIQUE))
    with pytest.raises(hvac.exceptions.InvalidRequest, match="Forbidden"):
        nested.secrets.kv.v2.read_secret_version(
            "default/web/db/x", mount_point="secret", raise_on_deleted_version=True
        )
    with pytest.raises(hvac.exceptions.InvalidRequest, match="Forbidden"):
        nested.auth.token.lookup_self()
    jf = tmp_path / "slash.jwt"
    jf.write_text(nomad.identity("default", "web/db", extra_claims=UNIQUE))
    jf.chmod(0o600)
    checked = run_cli(
        "check", "--workload-identity", "--jwt-file", str(jf), "--vault-addr", server.addr,
        "--ca-cert", str(server.certs.ca_path), "--format", "json", env=clean_env(VAULT_TOKEN=server.root_token),
    )  # fmt: skip
    rows = {r["check"]: r for r in json.loads(checked.out)["checks"]}
    assert checked.code == 77 and rows["task token"]["result"] == "fail", rows
    assert "rename the job" in rows["task token"]["fix"] and "parent job then reads" in rows["task token"]["fix"]
    assert "note: " + wi.NESTED_JOBS_REFUSED in written.out


def test_allowing_slashes_lets_the_parent_job_read_the_nested_one(
    server: Bao, nomad: NomadIdentity, written: Result
) -> None:
    """The opt-in, and its documented cost: job `batch/nightly` reaches its paths, and job `batch` reads them."""
    changed = bootstrap(server, nomad, "--allow-slashes-in-job-ids")
    try:
        assert changed.code == 0, changed.err
        assert "updated policy nomad-workloads (allow_slashes_in_identity_templates)" in changed.out
        assert "note: " + wi.NESTED_JOBS_ALLOWED in changed.out and wi.NESTED_JOBS_ALLOWED in changed.err
        put(server, "default/batch/nightly/creds", "nightly's")
        nested = login(server, nomad.identity("default", "batch/nightly", extra_claims=UNIQUE))
        assert reads(nested, "default/batch/nightly/creds") == "nightly's"
        parent = login(server, nomad.identity("default", "batch", extra_claims=UNIQUE))
        assert reads(parent, "default/batch/nightly/creds") == "nightly's"  # the cost
    finally:
        assert bootstrap(server, nomad).code == 0
    assert (
        server.client().read("sys/policies/acl/nomad-workloads")["data"]["allow_slashes_in_identity_templates"] is False
    )


def test_a_rotated_key_is_accepted_without_touching_vault(server: Bao, nomad: NomadIdentity, written: Result) -> None:
    before = server.client().read("auth/jwt-nomad/config")["data"]
    new = nomad.rotate("RS256")
    put(server, "default/rotated/x", "fresh key")
    task = login(server, nomad.identity("default", "rotated", extra_claims=UNIQUE))
    assert reads(task, "default/rotated/x") == "fresh key"
    assert server.client().read("auth/jwt-nomad/config")["data"] == before
    assert nomad.active_key.key_id == new.key_id


def test_an_identity_signed_by_a_stranger_is_refused(
    server: Bao, nomad: NomadIdentity, written: Result, wcerts: Certs
) -> None:
    stranger = NomadIdentity(wcerts.server_pem)  # never served: its keys are not in Vault's JWKS
    with pytest.raises(hvac.exceptions.InvalidRequest):
        login(server, stranger.identity("default", "web", extra_claims=UNIQUE))


def test_check_logs_in_with_a_task_jwt_and_probes_its_paths(
    server: Bao, nomad: NomadIdentity, written: Result, tmp_path: Path
) -> None:
    jwt = nomad.identity("default", "probe", extra_claims=UNIQUE)
    jf = tmp_path / "nomad_vault_default.jwt"
    jf.write_text(jwt)
    jf.chmod(0o600)
    result = run_cli(
        "check", "--workload-identity", "--jwt-file", str(jf), "--vault-addr", server.addr,
        "--ca-cert", str(server.certs.ca_path), "--format", "json", env=clean_env(VAULT_TOKEN=server.root_token),
    )  # fmt: skip
    assert jwt not in result.out + result.err and server.root_token not in result.out + result.err
    doc = json.loads(result.out)
    rows = {r["check"]: r for r in doc["checks"]}
    assert result.code == 0, rows
    for name in ("JWT auth mount", "JWT config", "workload role", "Nomad JWKS", "JWKS keys Vault accepts",
                 "task login", "task reads its own path", "task cannot read neighbours"):  # fmt: skip
        assert rows[name]["result"] == "pass", rows[name]
    assert "nomad-workloads" in rows["task login"]["detail"]


def test_check_without_an_admin_token_still_checks_the_jwks_and_the_task(
    server: Bao, nomad: NomadIdentity, written: Result, tmp_path: Path
) -> None:
    jf = tmp_path / "jwt"
    jf.write_text(nomad.identity("default", "probe", extra_claims=UNIQUE))
    jf.chmod(0o600)
    ca = tmp_path / "config.toml"
    ca.write_text(f'vault_addr = "{server.addr}"\nca_cert = "{server.certs.ca_path}"\n')
    result = run_cli("check", "--workload-identity", "--config", str(ca), "--jwt-file", str(jf),
                     "--nomad-jwks-url", nomad.jwks_url, "--format", "json", env=clean_env())  # fmt: skip
    rows = {r["check"]: r for r in json.loads(result.out)["checks"]}
    assert rows["JWT auth mount"]["result"] == "skip"
    # this host does not trust Nomad's CA by default: that is the JWKS check's finding, in one line
    assert rows["Nomad JWKS"]["result"] == "fail" and "not signed by the CA" in rows["Nomad JWKS"]["detail"]
    assert rows["task reads its own path"]["result"] == "pass"


def test_an_eddsa_only_keyring_is_a_warning(server: Bao, written: Result, wcerts: Certs, tmp_path: Path) -> None:
    old = NomadIdentity(wcerts.server_pem)
    old.keys.clear()
    old.rotate("EdDSA")
    old.start()
    try:
        result = run_cli(
            "check", "--workload-identity", "--vault-addr", server.addr, "--ca-cert", str(server.certs.ca_path),
            "--nomad-jwks-url", old.jwks_url, "--format", "json", env=clean_env(VAULT_TOKEN=server.root_token),
        )  # fmt: skip
    finally:
        old.stop()
    rows = {r["check"]: r for r in json.loads(result.out)["checks"]}
    # --nomad-jwks-url overrides the URL; the CA is Vault's config's, which signs the stand-in's certificate too
    assert rows["JWKS keys Vault accepts"]["result"] == "warn", rows
    assert "nomad#20227" in rows["JWKS keys Vault accepts"]["detail"]


# ---- a JWKS Vault cannot fetch or verify: one line, with the fix ---------------------------------------


def test_wrong_ca(server: Bao, nomad: NomadIdentity, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    result = run_cli(
        "bootstrap-roles", "--workload-identity", "--jwt-mount", "jwt-wrongca", "--nomad-jwks-url", nomad.jwks_url,
        "--nomad-jwks-ca", str(other), "--workload-policy", "wrongca", "--vault-addr", server.addr,
        "--ca-cert", str(server.certs.ca_path), env=clean_env(VAULT_TOKEN=server.root_token),
    )  # fmt: skip
    assert_one_line_error(result, 78, "auth/jwt-wrongca/config", "not signed by the CA given (--nomad-jwks-ca)")
    assert "created auth mount sys/auth/jwt-wrongca" in result.out  # what was done before the failure


def test_nomad_demanding_client_certificates(server: Bao, wcerts: Certs) -> None:
    strict = NomadIdentity(wcerts.server_pem, require_client_cert=True, client_ca=wcerts.ca_path).start()
    try:
        result = bootstrap(server, None, "--jwt-mount", "jwt-mtls", "--workload-policy", "mtls", url=strict.jwks_url)
    finally:
        strict.stop()
    assert_one_line_error(result, 78, "auth/jwt-mtls/config", "verify_https_client")


def test_unreachable_nomad(server: Bao) -> None:
    from testbed.bao import free_port

    url = f"https://127.0.0.1:{free_port()}/.well-known/jwks.json"
    result = bootstrap(server, None, "--jwt-mount", "jwt-gone", "--workload-policy", "gone", url=url)
    assert_one_line_error(result, 69, "auth/jwt-gone/config", "unreachable")


def test_check_mode_on_an_empty_vault_writes_nothing(tmp_path: Path, wcerts: Certs, nomad: NomadIdentity) -> None:
    bao = Bao(tmp_path / "empty", wcerts)
    try:
        bao.start()
        dry = bootstrap(bao, nomad, "--check", "--diff")
        assert dry.code == 0, dry.err
        assert dry.out.splitlines()[:4] == [
            "would create auth mount sys/auth/jwt-nomad",
            "    type: (unset) -> jwt",
            "would create JWT config auth/jwt-nomad/config",
            "    jwks_url: (unset) -> " + nomad.jwks_url,
        ]
        assert "jwt-nomad/" not in bao.client().sys.list_auth_methods()["data"]
        assert "nomad-workloads" not in bao.client().sys.list_acl_policies()["data"]["keys"]
    finally:
        bao.stop()


# ---- readiness: the way off the server token --------------------------------------------------------

SERVER_HCL = """
vault {
  enabled = true
  default_identity {
    aud = ["vault.io"]
    ttl = "1h"
    extra_claims {
      unique_id = "${job.region}:${job.namespace}:${job.id}"
    }
  }
}
"""


def readiness(server: Bao, nomad: NomadIdentity, tmp_path: Path, agent_config: Path) -> tuple[Result, dict[str, Any]]:
    token_file = tmp_path / "nomad-token"
    token_file.write_text(nomad.acl_token + "\n")
    token_file.chmod(0o600)
    result = run_cli(
        "check", "--workload-identity-readiness", "--vault-addr", server.addr, "--ca-cert", str(server.certs.ca_path),
        "--nomad-addr", nomad.address, "--nomad-ca", str(server.certs.ca_path), "--nomad-token-file", str(token_file),
        "--format", "json", "--", "/usr/bin/nomad", "agent", "-config", str(agent_config),
        env=clean_env(VAULT_TOKEN=server.root_token),
    )  # fmt: skip
    assert nomad.acl_token not in result.out + result.err and server.root_token not in result.out + result.err
    return result, {r["check"]: r for r in json.loads(result.out)["checks"]}


def test_readiness_refuses_while_legacy_remains_then_passes(
    server: Bao, written: Result, wcerts: Certs, tmp_path: Path
) -> None:
    from testbed.nomad_identity import Job, Node

    nomad = NomadIdentity(wcerts.server_pem, acl_token="nomad-acl-secret-token").start()
    try:
        nomad.jobs += [Job("default", "legacy-web"), Job("prod", "moved", vault_identity=True)]
        nomad.nodes += [Node("server-1", "1.9.7"), Node("old-client", "1.7.0")]
        nomad.vault_accessors.append({"AllocID": "8b1b5a2e-0000-4000-8000-000000000000", "Task": "web", "NodeID": "n",
                                      "Accessor": "acc", "CreationTTL": 3600, "CreateIndex": 7})  # fmt: skip
        legacy_config = tmp_path / "legacy.hcl"
        legacy_config.write_text('vault {\n  enabled = true\n  create_from_role = "nomad-cluster"\n}\n')
        result, rows = readiness(server, nomad, tmp_path, legacy_config)
        assert result.code == 75, result.out
        assert json.loads(result.out)["ready"] is False
        assert rows["JWT auth mount"]["result"] == "pass"
        assert rows["server vault.default_identity"]["result"] == "fail"
        assert "extra_claims" in rows["server vault.default_identity"]["fix"]
        assert (
            rows["nodes on Nomad 1.7.2+"]["result"] == "fail"
            and "old-client (1.7.0)" in rows["nodes on Nomad 1.7.2+"]["detail"]
        )
        assert (
            rows["jobs on workload identity"]["result"] == "fail"
            and "default/legacy-web" in rows["jobs on workload identity"]["detail"]
        )
        assert (
            rows["no legacy task tokens"]["result"] == "fail" and "8b1b5a2e" in rows["no legacy task tokens"]["detail"]
        )

        wrong_token = tmp_path / "wrong"
        wrong_token.write_text("not-it")
        wrong_token.chmod(0o600)
        denied = run_cli(
            "check", "--workload-identity-readiness", "--vault-addr", server.addr, "--ca-cert", str(server.certs.ca_path),
            "--nomad-addr", nomad.address, "--nomad-ca", str(server.certs.ca_path), "--nomad-token-file", str(wrong_token),
            "--format", "json", "--", "/usr/bin/nomad", "agent", "-config", str(legacy_config),
            env=clean_env(VAULT_TOKEN=server.root_token),
        )  # fmt: skip
        api = {r["check"]: r for r in json.loads(denied.out)["checks"]}["Nomad API"]
        assert api["result"] == "fail" and "operator:read" in api["detail"]

        # the operator follows the fixes, in Nomad's order
        ready_config = tmp_path / "server.hcl"
        ready_config.write_text(SERVER_HCL)
        nomad.jobs[0].vault_identity = True  # re-submitted after default_identity
        nomad.nodes[1].version = "1.9.7"
        nomad.vault_accessors.clear()  # its allocations replaced
        result, rows = readiness(server, nomad, tmp_path, ready_config)
        assert result.code == 0, result.out
        assert json.loads(result.out)["ready"] is True
        assert all(r["result"] == "pass" for r in rows.values()), rows
    finally:
        nomad.stop()
