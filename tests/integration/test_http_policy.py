"""The one HTTP policy (issue 30, findings 2, 3, 4, 6), each finding against the tool as a real process.

A real OpenBao on raft (snapshots work), servers that must receive nothing (`testbed/http_traps.py`):
a recording HTTP proxy named in every proxy variable, an HTTPS server redirecting everything to a
plain-HTTP sink, a listener on the host a backslash address would really dial. What each of them
received is compared with nothing; the tool's own answer is one line with the documented code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.bao import Bao, Certs
from testbed.cli import Result, assert_one_line_error, run_cli
from testbed.config import write_config
from testbed.env import clean_env
from testbed.http_traps import PlainBridge, Recorder, Redirector, proxied_env
from testbed.proxy import CountingProxy
from testbed.s3 import Rclone
from testbed.snapshot_setup import SNAP_ROLE, prepared_raft
from testbed.unsealing import write_keys

pytestmark = pytest.mark.vault

AMBIENT_ENV = "s.ambient-token-from-VAULT_TOKEN"
AMBIENT_FILE = "s.ambient-token-from-home-vault-token"


@pytest.fixture(scope="module")
def raft(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bao, Certs]]:
    """One raft OpenBao for the module, prepared for snapshots as an admin would."""
    yield from prepared_raft(tmp_path_factory.mktemp("policycerts"), tmp_path_factory.mktemp("policybao"))


@pytest.fixture
def proxy() -> Iterator[Recorder]:
    trap = Recorder()
    try:
        yield trap
    finally:
        trap.close()


@pytest.fixture
def sink() -> Iterator[Recorder]:
    trap = Recorder(answer=b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}')
    try:
        yield trap
    finally:
        trap.close()


@pytest.fixture
def redirector(raft: tuple[Bao, Certs], sink: Recorder) -> Iterator[Redirector]:
    trap = Redirector(raft[1], sink.url)  # https -> http: a downgrade, with whatever the request carried
    try:
        yield trap
    finally:
        trap.close()


def snapshot_args(addr: str, certs: Certs, directory: Path) -> list[str]:
    return ["snapshot", "--format", "json", "--dir", str(directory), "--vault-addr", addr,
            "--ca-cert", str(certs.ca_path), "--snapshot-role", SNAP_ROLE]  # fmt: skip


def cert_args(certs: Certs) -> list[str]:
    return ["--client-cert", str(certs.client_cert), "--client-key", str(certs.client_key)]


def secret_file(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def ok(result: Result) -> None:
    assert result.code == 0, f"exit {result.code}: {result.err}"


# ---- finding 2: no proxy from the environment -------------------------------------------------------------


def test_no_command_goes_through_a_proxy_from_the_environment(
    raft: tuple[Bao, Certs], proxy: Recorder, tmp_path: Path
) -> None:
    """HTTP(S)_PROXY and ALL_PROXY (both cases) name a recording proxy and NO_PROXY is unset: the tool
    still talks to Vault directly, over https and over a plain-http loopback address alike."""
    server, certs = raft
    env = proxied_env(clean_env(), proxy.url)
    cfg = write_config(tmp_path / "c.toml", server, certs)
    admin = secret_file(tmp_path / "admin", server.root_token)

    ok(run_cli("token", "--config", str(cfg), "--output", str(tmp_path / "tok"), env=env))
    ok(run_cli("run", "--config", str(cfg), "--", "/bin/true", env=env))
    ok(run_cli("status", "--config", str(cfg), env=env))
    ok(run_cli("bootstrap-roles", "--check", "--config", str(cfg), "--token-file", str(admin), "--client-ca",
               str(certs.ca_path), "--allowed-common-name", "nomad-startup", env=env))  # fmt: skip
    ok(run_cli(*snapshot_args(server.addr, certs, tmp_path / "snaps"), *cert_args(certs), env=env, timeout=120))
    assert proxy.connections == 0, proxy.everything[:300]

    bridge = PlainBridge(server.port, str(certs.ca_path))  # http://127.0.0.1: the proxy would read it all
    try:
        plain = write_config(tmp_path / "plain.toml", server, certs, vault_addr=bridge.url)
        ok(run_cli("status", "--config", str(plain), env=env))
        ok(run_cli("bootstrap-roles", "--check", "--config", str(plain), "--token-file", str(admin), "--client-ca",
                   str(certs.ca_path), "--allowed-common-name", "nomad-startup", env=env))  # fmt: skip
        ok(run_cli(*snapshot_args(bridge.url, certs, tmp_path / "snaps2"), "--auth", "token", "--token-file",
                   str(admin), env=env, timeout=120))  # fmt: skip
        keys = write_keys(tmp_path / "keys", [server.unseal_key])
        server.seal()
        try:
            ok(run_cli("unseal", "--once", "--node", bridge.url, "--keys-file", str(keys), "--ca-cert",
                       str(certs.ca_path), "--state-dir", str(tmp_path / "ustate"), env=env, timeout=120))  # fmt: skip
        finally:
            if not server.active():
                server.unseal()
    finally:
        bridge.close()
    assert proxy.connections == 0, proxy.everything[:300]
    assert server.root_token.encode() not in proxy.everything and server.unseal_key.encode() not in proxy.everything


def test_an_s3_copy_goes_through_no_proxy_from_the_environment(
    raft: tuple[Bao, Certs], proxy: Recorder, tmp_path: Path
) -> None:
    """boto3 reads HTTP(S)_PROXY unless told otherwise: the copy to a real S3 server (rclone) goes direct."""
    server, certs = raft
    store = Rclone(tmp_path / "rclone")
    try:
        store.start()
        store.make_bucket("snaps")
        env = proxied_env(clean_env(**store.env()), proxy.url)
        ok(run_cli(*snapshot_args(server.addr, certs, tmp_path / "snaps"), *cert_args(certs), "--copy-to",
                   "s3://snaps/policy", env=env, timeout=180))  # fmt: skip
    finally:
        store.stop()
    assert proxy.connections == 0, proxy.everything[:300]


# ---- finding 3: no redirect followed, no ambient token ----------------------------------------------------


def test_a_redirect_to_plain_http_gets_nothing_and_the_tool_fails_with_one_line(
    raft: tuple[Bao, Certs], redirector: Redirector, sink: Recorder, tmp_path: Path
) -> None:
    """An HTTPS "Vault" answering 307 to a plain-HTTP sink: the admin token, a JWT, a token file and a
    certificate login each reach the address given and go no further."""
    server, certs = raft
    env = clean_env()
    admin = secret_file(tmp_path / "admin", "s.admin-token-for-the-redirect-test")
    jwt = secret_file(tmp_path / "jwt", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3b3JrbG9hZCJ9.c2lnbmF0dXJl")
    cfg = write_config(tmp_path / "c.toml", server, certs, vault_addr=redirector.addr)

    results = [
        run_cli("bootstrap-roles", "--check", "--config", str(cfg), "--token-file", str(admin), "--client-ca",
                str(certs.ca_path), "--allowed-common-name", "nomad-startup", env=env),
        run_cli(*snapshot_args(redirector.addr, certs, tmp_path / "s1"), "--auth", "jwt", "--jwt-file", str(jwt),
                "--jwt-role", "snap", env=env),
        run_cli(*snapshot_args(redirector.addr, certs, tmp_path / "s2"), "--auth", "token", "--token-file",
                str(admin), env=env),
        run_cli(*snapshot_args(redirector.addr, certs, tmp_path / "s3"), *cert_args(certs), env=env),
        run_cli("token", "--config", str(cfg), env=env),
    ]  # fmt: skip
    assert sink.connections == 0, sink.everything[:300]
    assert len(redirector.seen) >= len(results), "each asked the address it was given"
    for result in results:
        assert_one_line_error(result, 77, "redirect", "not followed")


def test_no_ambient_token_unless_token_auth_was_chosen(raft: tuple[Bao, Certs], tmp_path: Path) -> None:
    """VAULT_TOKEN and ~/.vault-token set while `snapshot` and `token` log in with the client certificate:
    neither is ever sent (a TLS-terminating proxy in front of Vault reads every request)."""
    server, certs = raft
    home = tmp_path / "home"
    home.mkdir()
    secret_file(home / ".vault-token", AMBIENT_FILE)
    env = clean_env(VAULT_TOKEN=AMBIENT_ENV, HOME=str(home))
    watch = CountingProxy(server, certs, record=True)  # type: ignore[arg-type]  # a Node's port is all it uses
    # TLS ends at the proxy: it presents the client certificate to Vault itself (its server side asks for none)
    watch.client_ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    try:
        ok(run_cli(*snapshot_args(watch.addr, certs, tmp_path / "snaps"), "--auth", "cert", *cert_args(certs),
                   env=env, timeout=120))  # fmt: skip
        cfg = write_config(tmp_path / "c.toml", server, certs, vault_addr=watch.addr)
        ok(run_cli("token", "--config", str(cfg), "--output", str(tmp_path / "tok"), env=env))
    finally:
        watch.close()
    seen = bytes(watch.heads)
    assert b"/v1/sys/leader" in seen and b"/login" in seen, "the requests went through the watching proxy"
    assert AMBIENT_ENV.encode() not in seen and AMBIENT_FILE.encode() not in seen


# ---- finding 4: one URL reader --------------------------------------------------------------------------


BACKSLASH = "http://127.0.0.2:{port}\\@127.0.0.1:8200"


@pytest.mark.parametrize("where", ["--node", "--nodes-file", "--vault-addr", "config"])
def test_a_backslash_address_is_refused_and_nothing_is_dialled(where: str, tmp_path: Path) -> None:
    """urlsplit reads 127.0.0.1 (loopback) after `\\@`; requests dials 127.0.0.2:PORT before it. The
    listener there receives nothing; the tool exits 78 naming the field."""
    evil = Recorder(host="127.0.0.2")
    try:
        addr = BACKSLASH.format(port=evil.port)
        keys = write_keys(tmp_path / "keys", ["aa" * 33, "bb" * 33])
        unseal = ["unseal", "--once", "--keys-file", str(keys), "--state-dir", str(tmp_path / "st")]
        if where == "--node":
            result = run_cli(*unseal, "--node", addr)
        elif where == "--nodes-file":
            nodes = tmp_path / "nodes"
            nodes.write_text(addr + "\n")
            result = run_cli(*unseal, "--nodes-file", str(nodes))
        elif where == "--vault-addr":
            result = run_cli("status", "--vault-addr", addr, "--state-dir", str(tmp_path / "st"))
        else:
            cfg = tmp_path / "c.toml"
            cfg.write_text(f"vault_addr = '{addr}'\n")
            result = run_cli("token", "--config", str(cfg))
        assert_one_line_error(result, 78, "backslash")
        assert evil.connections == 0, evil.everything[:300]
    finally:
        evil.close()


# ---- finding 6: Nomad's API -----------------------------------------------------------------------------


def test_nomads_token_never_follows_a_redirect(
    raft: tuple[Bao, Certs], redirector: Redirector, sink: Recorder, tmp_path: Path
) -> None:
    """`--nomad-addr` answering 307 to plain HTTP: X-Nomad-Token reaches the address given, not the sink."""
    server, certs = raft
    nomad_token = secret_file(tmp_path / "nomad-token", "nomad-acl-token-for-the-redirect-test")
    cfg = write_config(tmp_path / "c.toml", server, certs)
    result = run_cli(
        "check", "--workload-identity-readiness", "--config", str(cfg), "--nomad-addr", redirector.addr, "--nomad-ca",
        str(certs.ca_path), "--nomad-token-file", str(nomad_token), "--format", "json",
        env=clean_env(VAULT_TOKEN=server.root_token),
    )  # fmt: skip
    assert sink.connections == 0, sink.everything[:300]
    assert any(r.get("x-nomad-token") for r in redirector.seen), "the token went to the address given"
    assert "redirect" in result.out and "not followed" in result.out
    assert "Traceback" not in result.err and "nomad-acl-token" not in result.out + result.err


@pytest.mark.parametrize("addr", ["http://nomad.example:4646", "http://10.0.0.1:4646", "https://u@nomad:4646"])
def test_a_remote_plain_http_nomad_address_is_refused(raft: tuple[Bao, Certs], addr: str, tmp_path: Path) -> None:
    server, certs = raft
    cfg = write_config(tmp_path / "c.toml", server, certs)
    result = run_cli("check", "--workload-identity-readiness", "--config", str(cfg), "--nomad-addr", addr,
                     env=clean_env(VAULT_TOKEN=server.root_token))  # fmt: skip
    assert_one_line_error(result, 78, "--nomad-addr")


def test_the_machines_ca_bundle_variables_do_not_replace_the_pinned_ca(
    raft: tuple[Bao, Certs], tmp_path: Path
) -> None:
    """REQUESTS_CA_BUNDLE naming the test CA does not make Vault's certificate trusted when ca_cert
    names another CA: the configured CA is used on every request."""
    server, certs = raft
    other = Certs(tmp_path / "other")
    cfg = write_config(tmp_path / "c.toml", server, certs, ca_cert=str(other.ca_path))
    env = clean_env(REQUESTS_CA_BUNDLE=str(certs.ca_path), CURL_CA_BUNDLE=str(certs.ca_path))
    assert_one_line_error(run_cli("token", "--config", str(cfg), env=env), 78, "not trusted")


def test_a_standby_sending_us_to_its_active_node_is_waited_for_not_refused_and_not_followed(
    raft: tuple[Bao, Certs], tmp_path: Path
) -> None:
    """What a Vault standby answers when it does not forward (the fault soak met it mid-election): 307 to the
    same path on its active node. Not followed (the active node sees nothing), but an outage to wait out
    (69, and `run` starts the agent after degraded_start_after), not a refused address (77)."""
    server, certs = raft
    standby = Redirector(certs, server.addr)  # https, the same path, another node: Vault's own standby answer
    try:
        cfg = write_config(tmp_path / "c.toml", server, certs, vault_addr=standby.addr, degraded_start_after="1s")
        token = run_cli("token", "--config", str(cfg), env=clean_env())
        assert_one_line_error(token, 69, "a standby node answered", f"its active node {server.addr}", "not followed")
        started = run_cli("run", "--config", str(cfg), "--", "/bin/true", env=clean_env(), timeout=60)
        assert started.code == 0, started.err
        assert "degraded start" in started.err and "Traceback" not in started.err
        assert standby.seen and all(s["path"].startswith("/v1/") for s in standby.seen)
    finally:
        standby.close()
