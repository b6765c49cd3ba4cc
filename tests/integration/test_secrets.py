"""Where the token may appear: only the state file (0600), the hand-off file (0600), and the agent's
environment in env mode. Scanned after full runs with recovery, against the real OpenBao."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import hvac
import pytest

from nomad_vault_token.core import config
from nomad_vault_token.core.errors import NvtError
from nomad_vault_token.vault.client import Vault
from testbed import procs
from testbed.agent import AgentRun
from testbed.bao import MINT_ROLE, SERVER_POLICY, STARTUP_ROLE, Bao, Certs
from testbed.config import write_config

pytestmark = pytest.mark.vault


def saved(cfg: Path) -> str:
    return str(json.loads((cfg.parent / "state" / "token.json").read_text())["token"])


def scan(tokens: set[str], root: Path, allowed_files: set[Path], agent_pid: int | None) -> list[str]:
    """Every place a token shows up that it should not."""
    leaks = []
    for proc in procs.scan():
        if any(t in proc.cmdline for t in tokens):
            leaks.append(f"cmdline of pid {proc.pid}")
        if proc.pid == agent_pid:
            continue
        try:
            env = "\0".join(procs.environ(proc.pid))
        except OSError:
            continue
        if any(t in env for t in tokens):
            leaks.append(f"environment of pid {proc.pid}")
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        text = path.read_bytes().decode(errors="replace")
        if any(t in text for t in tokens):
            if path not in allowed_files:
                leaks.append(f"file {path}")
            elif stat.S_IMODE(path.stat().st_mode) != 0o600:
                leaks.append(f"file {path} mode {stat.S_IMODE(path.stat().st_mode):o}")
    return leaks


@pytest.mark.parametrize("handoff", ["file", "env"])
def test_token_appears_only_where_it_must(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path, runs: Callable[..., AgentRun], handoff: str
) -> None:
    server = new_bao()
    cfg = write_config(tmp_path / "c.toml", server, certs, check_interval="1s", handoff=handoff, sighup_grace="3s")
    r = runs(cfg, server)
    first = r.wait_event("validated")["accessor"]
    tokens = {saved(cfg)}
    server.client().auth.token.revoke_accessor(first)
    if handoff == "file":
        r.wait_event("validated", lambda e: e["accessor"] != first, timeout=20)
    else:
        r.wait_event("signal", timeout=20)
        r.wait_exit(10)
        r = runs(cfg, server)
        r.wait_event("validated", lambda e: e["accessor"] != first, timeout=20)
    tokens.add(saved(cfg))
    assert len(tokens) == 2
    allowed = {cfg.parent / "state" / "token.json", cfg.parent / "run" / "vault-token.hcl"}
    assert scan(tokens, tmp_path, allowed, r.pid if handoff == "env" else None) == []
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "agent").glob("stderr-*.log"))
    assert "recovered" in logs or "gone" in logs
    assert not any(t in logs for t in tokens)
    assert first in logs  # the accessor is what gets logged


def test_keyring_tokens_appear_only_in_their_state_file_and_the_file_nomad_reads(
    new_bao: Callable[[], Bao], certs: Certs, tmp_path: Path, runs: Callable[..., AgentRun]
) -> None:
    """Both tokens, the keyring one revoked and replaced: neither in any argv, environment (the agent's too: the
    keyring token goes by file), log or other file; the files that hold them 0600."""
    server = new_bao()
    server.configure_keyring()
    ring_file = tmp_path / "run" / "keyring-token"
    cfg = write_config(tmp_path / "c.toml", server, certs, check_interval="2s", keyring=True,
                       keyring_token_file=str(ring_file))  # fmt: skip
    r = runs(cfg, server, keyring_token=f"file://{ring_file}")
    r.wait_event("keyring_ready")
    first = ring_file.read_text()
    tokens = {saved(cfg), first}
    server.client().auth.token.revoke_accessor(server.client(first).auth.token.lookup_self()["data"]["accessor"])
    procs.wait_for(lambda: ring_file.read_text() != first, 2 + 30, "the keyring token replaced")
    tokens.add(ring_file.read_text())
    logs = lambda: "".join(p.read_text(errors="replace") for p in (tmp_path / "agent").glob("stderr-*.log"))  # noqa: E731
    procs.wait_for(lambda: "replaced by" in logs(), 10, "the replacement logged")
    allowed = {
        cfg.parent / "state" / "token.json",
        cfg.parent / "state" / "keyring-token.json",
        cfg.parent / "run" / "vault-token.hcl",
        ring_file,
    }
    assert scan(tokens, tmp_path, allowed, None) == []
    assert not any(t in logs() for t in tokens)


def test_errors_and_reprs_never_show_the_token(bao: Bao, config: Path) -> None:
    settings = config_settings(config)
    from nomad_vault_token.token.minting import login_and_mint

    v = Vault(settings)
    token, info = login_and_mint(v)
    secret = token.reveal()
    for text in (repr(token), str(token), repr(info), str(info)):
        assert secret not in text
    bao.client().auth.token.revoke_accessor(info.accessor)
    for call in (v.lookup_self, v.renew_self, v.revoke_self):
        with pytest.raises(NvtError) as err:
            call(token)
        assert secret not in str(err.value) and secret not in repr(err.value)
        assert err.value.__cause__ is None and err.value.__context__ is not None
        assert secret not in repr(err.value.__context__)


def config_settings(cfg: Path) -> config.Settings:
    return config.load(cfg, environ={})


@pytest.fixture
def startup(bao: Bao, certs: Certs) -> hvac.Client:
    c = hvac.Client(url=bao.addr, verify=str(certs.ca_path), cert=(str(certs.client_cert), str(certs.client_key)))
    c.token = c.auth.cert.login(name=STARTUP_ROLE)["auth"]["client_token"]
    return c


def test_startup_identity_cannot_mint_other_policies(startup: hvac.Client) -> None:
    with pytest.raises(hvac.exceptions.InvalidRequest, match="subset"):
        startup.auth.token.create(role_name=MINT_ROLE, policies=["admin"])
    with pytest.raises(hvac.exceptions.InvalidRequest):
        startup.auth.token.create(role_name=MINT_ROLE, policies=[SERVER_POLICY, "admin"])


def test_startup_identity_cannot_create_root_or_child_tokens(startup: hvac.Client) -> None:
    with pytest.raises(hvac.exceptions.InvalidRequest):
        startup.auth.token.create(role_name=MINT_ROLE, policies=["root"])
    with pytest.raises(hvac.exceptions.Forbidden):
        startup.auth.token.create(policies=[SERVER_POLICY])  # auth/token/create: a child token
    with pytest.raises(hvac.exceptions.Forbidden):
        startup.auth.token.create_orphan(policies=[SERVER_POLICY])


def test_startup_identity_cannot_read_or_write_policies(startup: hvac.Client) -> None:
    with pytest.raises(hvac.exceptions.Forbidden):
        startup.sys.read_policy(SERVER_POLICY)
    with pytest.raises(hvac.exceptions.Forbidden):
        startup.sys.create_or_update_policy("evil", 'path "*" { capabilities = ["sudo"] }')
    with pytest.raises(hvac.exceptions.Forbidden):
        startup.write(f"auth/token/roles/{MINT_ROLE}", allowed_policies=["admin"])


def test_startup_identity_can_do_its_one_job(startup: hvac.Client) -> None:
    minted = startup.auth.token.create(role_name=MINT_ROLE, policies=[SERVER_POLICY])["auth"]
    assert minted["orphan"] is True and set(minted["policies"]) - {"default"} == {SERVER_POLICY}
