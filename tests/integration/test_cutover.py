"""The way off the server token, on one host: readiness refuses while legacy remains; after it, `run` starts
the agent without a token (nor VAULT_TOKEN), and `cutover` revokes the old server token and nothing else.

Real OpenBao (a private server: this writes the JWT side and revokes tokens), the stand-in Nomad for the
upgrade check and the JWKS, and the stand-in agent (testbed/fake_nomad.py) started by a real `run`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import hvac
import pytest

from testbed.agent import AgentRun
from testbed.bao import Bao, Certs
from testbed.cli import Result, run_cli
from testbed.config import write_config
from testbed.env import clean_env
from testbed.nomad_identity import Job, Node, NomadIdentity
from testbed.procs import environ

pytestmark = pytest.mark.vault

SERVER_HCL = """vault {
  default_identity {
    aud = ["vault.io"]
    extra_claims {
      unique_id = "${job.region}:${job.namespace}:${job.id}"
    }
  }
}
"""


@pytest.fixture
def nomad(certs: Certs) -> Iterator[NomadIdentity]:
    stand_in = NomadIdentity(certs.server_pem, acl_token="nomad-acl-token-for-cutover").start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


def token_valid(server: Bao, token: str) -> bool:
    try:
        hvac.Client(server.addr, verify=str(server.certs.ca_path), token=token).auth.token.lookup_self()
    except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
        return False
    return True


def cutover(
    cfg: Path, server: Bao, nomad: NomadIdentity, tmp_path: Path, *extra: str
) -> tuple[Result, dict[str, dict[str, str]]]:
    token_file = tmp_path / "nomad-token"
    token_file.write_text(nomad.acl_token)
    token_file.chmod(0o600)
    server_hcl = tmp_path / "server.hcl"
    server_hcl.write_text(SERVER_HCL)
    result = run_cli(
        "cutover", "--config", str(cfg), "--nomad-addr", nomad.address, "--nomad-ca", str(server.certs.ca_path),
        "--nomad-token-file", str(token_file), "--format", "json", *extra,
        "--", "/usr/bin/nomad", "agent", "-config", str(server_hcl),
        env=clean_env(VAULT_TOKEN=server.root_token),
    )  # fmt: skip
    assert nomad.acl_token not in result.out + result.err and server.root_token not in result.out + result.err
    doc = json.loads(result.out.splitlines()[0])
    return result, {r["check"]: r for r in doc.get("checks", [])}


def done_accessor(cfg: Path) -> str:
    return json.dumps(json.loads((cfg.parent / "state" / "token.json").read_text())["accessor"])


def test_refused_while_legacy_remains_then_run_drops_the_token_and_cutover_revokes_it(
    new_bao: Callable[..., Bao], certs: Certs, nomad: NomadIdentity, runs: Callable[..., AgentRun], tmp_path: Path
) -> None:
    server = new_bao()
    done = run_cli(
        "bootstrap-roles", "--workload-identity", "--vault-addr", server.addr, "--ca-cert", str(certs.ca_path),
        "--nomad-jwks-url", nomad.jwks_url, "--nomad-jwks-ca", str(certs.ca_path),
        env=clean_env(VAULT_TOKEN=server.root_token),
    )  # fmt: skip
    assert done.code == 0, done.err
    nomad.jobs.append(Job("default", "legacy-web"))
    nomad.nodes.append(Node("client-1", "1.9.7"))
    nomad.vault_accessors.append({"AllocID": "0f0f0f0f-aaaa", "Task": "web", "Accessor": "x", "CreationTTL": 60})

    cfg = write_config(tmp_path / "cfg" / "config.toml", server, certs)
    legacy = runs(cfg, server)
    assert legacy.wait_event("validated")["ok"] is True
    saved = json.loads((cfg.parent / "state" / "token.json").read_text())["token"]
    bystander = server.client().auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]

    # 1. not ready: a legacy job and a legacy task token remain, and run still hands the token over
    refused, rows = cutover(cfg, server, nomad, tmp_path)
    assert refused.code == 78, refused.err  # legacy_token is still true: a config matter first
    assert "cutover refused" in refused.err and len(refused.err.strip().splitlines()) == 1
    assert rows["jobs on workload identity"]["result"] == "fail"
    assert rows["no legacy task tokens"]["result"] == "warn"  # the task role is orphan: they outlive it
    assert rows["legacy_token = false"]["result"] == "fail"
    assert token_valid(server, saved)

    # 2. legacy_token = false and a restart: the agent starts with no token and no VAULT_TOKEN
    legacy.stop()
    write_config(cfg, server, certs, legacy_token=False)
    still_legacy, rows = cutover(cfg, server, nomad, tmp_path)
    assert still_legacy.code == 75 and rows["agent restarted without the token"]["result"] == "fail"
    assert token_valid(server, saved)
    tokenless = runs(cfg, server, env=clean_env(VAULT_TOKEN=saved))  # a VAULT_TOKEN left in the unit's env
    start = tokenless.wait_event("start")
    assert start["token_source"] in (None, "", "none") and start["client"] == "noop", start
    assert not any(e.startswith("VAULT_TOKEN=") for e in environ(tokenless.pid))
    assert not (cfg.parent / "run" / "vault-token.hcl").exists()
    assert tokenless.trackers() == []

    # 3. still refused while Nomad tracks a legacy task token that is a child of the server token
    nomad.jobs[0].vault_identity = True
    server.client().write_data("auth/token/roles/nomad-cluster", data={"orphan": False})
    waiting, rows = cutover(cfg, server, nomad, tmp_path)
    assert waiting.code == 75 and rows["no legacy task tokens"]["result"] == "fail"
    assert token_valid(server, saved)
    # ... and only warned about when the task role is orphan (bootstrap-roles' way): they outlive it
    server.client().write_data("auth/token/roles/nomad-cluster", data={"orphan": True})
    orphan_ok, rows = cutover(cfg, server, nomad, tmp_path, "--check")
    assert orphan_ok.code == 0 and rows["no legacy task tokens"]["result"] == "warn", orphan_ok.out

    # 4. ready: --check says what it would do, then the server token goes, and nothing else
    nomad.vault_accessors.clear()
    dry, _ = cutover(cfg, server, nomad, tmp_path, "--check")
    assert dry.code == 0 and token_valid(server, saved), dry.out
    assert json.loads(dry.out)["would_revoke"] == json.loads(done_accessor(cfg))
    done, rows = cutover(cfg, server, nomad, tmp_path)
    assert done.code == 0, done.out + done.err
    assert all(r["result"] == "pass" for r in rows.values()), rows
    assert not token_valid(server, saved)
    assert token_valid(server, bystander) and token_valid(server, server.root_token)
    assert not (cfg.parent / "state" / "token.json").exists()
    again, _ = cutover(cfg, server, nomad, tmp_path)
    assert again.code == 0 and "nothing to revoke" in json.loads(again.out)["message"]


def test_remove_legacy_deletes_only_what_bootstrap_roles_wrote_and_only_when_unused(
    new_bao: Callable[..., Bao], certs: Certs
) -> None:
    server = new_bao(configure=False)
    root = server.client()
    base = ["bootstrap-roles", "--vault-addr", server.addr, "--ca-cert", str(certs.ca_path),
            "--client-ca", str(certs.ca_path), "--allowed-common-name", "nomad-startup"]  # fmt: skip
    env = clean_env(VAULT_TOKEN=server.root_token)
    assert run_cli(*base, env=env).code == 0
    server_token = root.auth.token.create(policies=["nomad_cluster"], ttl="10m")["auth"]
    refused = run_cli(*base, "--remove-legacy", env=env)
    assert refused.code == 75 and "cutover" in refused.err and server_token["accessor"][:8] in refused.err
    assert len(refused.err.strip().splitlines()) == 1 and server_token["client_token"] not in refused.err
    root.auth.token.revoke_accessor(server_token["accessor"])

    root.write_data("auth/token/roles/nomad-cluster", data={"token_period": "24h"})  # someone changed it
    dry = run_cli(*base, "--remove-legacy", "--check", env=env)
    assert dry.code == 0, dry.err
    assert "would delete policy nomad_cluster" in dry.out
    assert (
        "left alone role auth/token/roles/nomad-cluster: differs from what bootstrap-roles writes (token_period)"
        in dry.out
    )
    assert "nomad_cluster" in root.sys.list_acl_policies()["data"]["keys"]

    done = run_cli(*base, "--remove-legacy", env=env)
    assert done.code == 0, done.err
    assert done.out.splitlines() == [
        "deleted role auth/cert/certs/nomad_startup",
        "deleted role auth/token/roles/nomad-server-mint",
        "left alone role auth/token/roles/nomad-cluster: differs from what bootstrap-roles writes (token_period)",
        "deleted policy nomad_startup",
        "deleted policy nomad_cluster",
    ]
    assert set(root.sys.list_acl_policies()["data"]["keys"]) == {"default", "root"}
    assert root.read("auth/token/roles/nomad-cluster") is not None
    assert "cert/" in root.sys.list_auth_methods()["data"]  # the mount stays
    again = run_cli(*base, "--remove-legacy", env=env)
    assert again.code == 0 and again.out.count("absent") == 4, again.out


def test_a_task_token_minted_before_the_role_became_orphan_keeps_cutover_waiting(
    new_bao: Callable[..., Bao], certs: Certs, nomad: NomadIdentity, runs: Callable[..., AgentRun], tmp_path: Path
) -> None:
    """Issue 30: a token role's `orphan` applies when a token is minted. A task token Nomad minted through the task
    role while it was not orphan is a child of the server token, and revoke-self takes it along, whatever the
    role says now. cutover judges the tracked tokens themselves (lookup-accessor's `orphan`), not the role."""
    server = new_bao()
    done = run_cli(
        "bootstrap-roles", "--workload-identity", "--vault-addr", server.addr, "--ca-cert", str(certs.ca_path),
        "--nomad-jwks-url", nomad.jwks_url, "--nomad-jwks-ca", str(certs.ca_path),
        env=clean_env(VAULT_TOKEN=server.root_token),
    )  # fmt: skip
    assert done.code == 0, done.err
    nomad.nodes.append(Node("client-1", "1.9.7"))
    cfg = write_config(tmp_path / "cfg" / "config.toml", server, certs)
    legacy = runs(cfg, server)
    assert legacy.wait_event("validated")["ok"] is True
    saved = json.loads((cfg.parent / "state" / "token.json").read_text())["token"]

    # Nomad mints a task token through the task role while the role is not orphan: a child of the server token
    root = server.client()
    root.write_data("auth/token/roles/nomad-cluster", data={"orphan": False})
    as_server = hvac.Client(server.addr, verify=str(certs.ca_path), token=saved)
    minted = as_server.auth.token.create(role_name="nomad-cluster", policies=["default"], ttl="10m")["auth"]
    child, accessor = minted["client_token"], minted["accessor"]
    assert root.write_data("auth/token/lookup-accessor", data={"accessor": accessor})["data"]["orphan"] is False
    # ... then the role is made orphan, as bootstrap-roles writes it
    root.write_data("auth/token/roles/nomad-cluster", data={"orphan": True})
    nomad.vault_accessors.append({"AllocID": "0f0f0f0f-bbbb", "Task": "web", "Accessor": accessor, "CreationTTL": 600})

    legacy.stop()
    write_config(cfg, server, certs, legacy_token=False)
    runs(cfg, server).wait_event("start")  # the agent restarted without a token

    waiting, rows = cutover(cfg, server, nomad, tmp_path)
    assert token_valid(server, child), "cutover revoked the server token and with it a task token still in use"
    assert waiting.code == 75 and rows["no legacy task tokens"]["result"] == "fail", rows["no legacy task tokens"]
    assert "not an orphan" in rows["no legacy task tokens"]["detail"]
    assert token_valid(server, saved)

    # Once that token is gone (its allocation replaced: Nomad revokes it), cutover goes ahead
    root.auth.token.revoke_accessor(accessor)
    ready, rows = cutover(cfg, server, nomad, tmp_path)
    assert ready.code == 0 and rows["no legacy task tokens"]["result"] == "warn", ready.out + ready.err
    assert not token_valid(server, saved)
