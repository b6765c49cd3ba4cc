"""`init` against real uninitialised OpenBao nodes: keys straight into custody (the stand-in Nomad's Variables
with check-and-set, encrypted systemd credentials made by the real `systemd-creds`, PGP through Vault's own
`pgp_keys` with real GnuPG keys), never printed; an initialised node refused with only GETs sent; and, with
each destination broken in turn after Vault answered, every share recovered from the rescue file.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad_vault_token.core.key_files import parse_keys
from testbed.bao import Certs
from testbed.cli import Result, assert_one_line_error, run_cli
from testbed.env import clean_env
from testbed.nomad_standin.variables import NomadVariables
from testbed.pgp import GnuPG
from testbed.procs import wait_for
from testbed.proxy import CountingProxy
from testbed.raft_cluster import Single, static_key, static_seal

pytestmark = [
    pytest.mark.vault,
    pytest.mark.skipif(shutil.which("systemd-creds") is None or os.geteuid() != 0, reason="systemd-creds as root"),
]

NOMAD_TOKEN = "6f1b1e5c-0c2a-4e55-9d7e-3c0ad1f7c0de"
VAR = "nomad/jobs/vault-unseal"


@pytest.fixture
def node(tmp_path: Path, certs: Certs) -> Iterator[Single]:
    """A raft node nobody initialised (the testbed's uninitialised node), stopped by PID."""
    n = Single("uninit", tmp_path / "uninit", certs)
    try:
        n.launch()
        yield n
    finally:
        n.stop()


@pytest.fixture
def nomad(certs: Certs) -> Iterator[NomadVariables]:
    server = NomadVariables(certs.server_pem, acl_token=NOMAD_TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


def init(node: Single, certs: Certs, tmp: Path, *args: str, nomad: NomadVariables | None = None) -> Result:
    token_file = tmp / "nomad-token"
    if not token_file.exists():
        token_file.write_text(NOMAD_TOKEN + "\n")
        token_file.chmod(0o600)
    nomad_args = (
        ["--nomad-addr", nomad.addr, "--nomad-token-file", str(token_file), "--nomad-ca", str(certs.ca_path)]
        if nomad
        else []
    )
    return run_cli(
        "init", "--node", node.addr, "--ca-cert", str(certs.ca_path), "--state-dir", str(tmp / "state"),
        "--credential-key", "host", *nomad_args, *args, env=clean_env(), timeout=180,
    )  # fmt: skip


def decrypt_credential(path: Path, name: str | None = None) -> str:
    argv = ["systemd-creds", "decrypt", *([f"--name={name}"] if name else []), str(path), "-"]
    done = subprocess.run(argv, capture_output=True, check=True, timeout=60)
    return done.stdout.decode()


def hexes(text: str) -> list[str]:
    return [k.reveal() for k in parse_keys(text, Path("decrypted"))]


def assert_no_secret(result: Result, *secrets: str) -> None:
    for s in secrets:
        assert s not in result.out and s not in result.err, "a key or token was printed"


def restart_and_unseal(node: Single, keys: list[str], threshold: int) -> None:
    """The shares are the cluster's: a restarted (sealed) node unseals with `threshold` of them."""
    node.stop()
    node.launch()
    assert node.sealed()
    for key in keys[:threshold]:
        answer = node.submit_key(key)
        assert answer.code == 200, answer
    wait_for(lambda: not node.sealed(), 60, "the node unsealed with the recovered shares", interval=0.2)


def test_init_into_a_nomad_variable_and_split_custody_credentials(
    node: Single, nomad: NomadVariables, certs: Certs, tmp_path: Path
) -> None:
    creds = tmp_path / "credstore"
    creds.mkdir()
    result = init(
        node, certs, tmp_path, "--shares", "3", "--threshold", "2", "--nomad-variable", f"{VAR}:1,2",
        "--credential-file", f"{creds}/unseal-a.cred:1,2", "--credential-file", f"{creds}/unseal-b.cred:2,3",
        "--credential-file", f"{creds}/unseal-c.cred:1,3", "--format", "json", "--verbose", nomad=nomad,
    )  # fmt: skip
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["ok"] and doc["keys"] == "unseal" and doc["root_token"] == "revoked" and doc["rescue_file"] is None
    items = nomad.items(VAR)
    assert sorted(items) == ["key_1", "key_2"]  # the names the shipped unsealer job's template reads
    a, b, c = (hexes(decrypt_credential(creds / f"unseal-{x}.cred", f"unseal-{x}")) for x in "abc")
    assert a == [items["key_1"], items["key_2"]] and b[0] == items["key_2"] and c[0] == items["key_1"]
    assert b[1] == c[1] and len({*a, *b, *c}) == 3
    for f in creds.iterdir():
        assert f.stat().st_mode & 0o777 == 0o600
        assert not any(k.encode() in f.read_bytes() for k in a + b), "a credential holds a key in plain text"
    assert not list((tmp_path / "state").iterdir()), "the rescue file stays only when a destination failed"
    assert_no_secret(result, *a, *b)  # debug logging on, too
    assert "DEBUG" in result.err
    # init unsealed the node to revoke the root token: it is active; each holder alone unseals it again
    assert node.health_code() == 200
    restart_and_unseal(node, b, 2)


def test_an_initialised_node_is_refused_with_only_reads_sent(
    tmp_path: Path, certs: Certs, node: Single, nomad: NomadVariables
) -> None:
    node.initialize(secret_shares=1, secret_threshold=1)
    proxy = CountingProxy(node, certs)
    try:
        result = run_cli(
            "init", "--node", proxy.addr, "--ca-cert", str(certs.ca_path), "--state-dir", str(tmp_path / "state"),
            "--nomad-variable", VAR, "--nomad-addr", nomad.addr, env=clean_env(),
        )  # fmt: skip
    finally:
        proxy.close()
    assert_one_line_error(result, 78, "already initialised", "nothing was sent")
    assert proxy.lines and all(line.startswith("GET ") for line in proxy.lines), proxy.lines
    assert nomad.writes == 0


@pytest.mark.parametrize("broken", ["nomad-down", "nomad-409", "nomad-403", "credential-dir"])
def test_a_broken_destination_loses_no_share(
    broken: str, node: Single, nomad: NomadVariables, certs: Certs, tmp_path: Path
) -> None:
    creds = tmp_path / "credstore"
    creds.mkdir()
    target = creds / "unseal.cred"
    if broken == "nomad-down":
        nomad.stop()
    elif broken == "nomad-409":
        nomad.put(VAR, {"Items": {"key_1": "someone else's"}}, None)
    elif broken == "nomad-403":
        nomad.acl_token = "another-token"
    else:
        (tmp_path / "not-a-dir").write_text("")
        target = tmp_path / "not-a-dir" / "unseal.cred"  # its directory cannot be written (ENOTDIR)
    result = init(
        node, certs, tmp_path, "--shares", "3", "--threshold", "2", "--nomad-variable", VAR,
        "--credential-file", str(target), nomad=nomad,
    )  # fmt: skip
    assert_one_line_error(result, 75, "init-rescue-", "systemd-creds decrypt")
    (rescue,) = (tmp_path / "state").iterdir()
    assert rescue.stat().st_mode & 0o777 == 0o600
    doc = json.loads(decrypt_credential(rescue, "nvt-init-rescue"))
    keys = hexes(json.dumps(doc))
    assert len(keys) == 3 and doc["threshold"] == 2 and doc["kind"] == "unseal"
    assert not any(k.encode() in rescue.read_bytes() for k in keys)
    assert_no_secret(result, *keys)
    if broken == "nomad-409":
        assert nomad.items(VAR) == {"key_1": "someone else's"}  # never overwritten
    elif broken == "credential-dir":
        assert nomad.items(VAR) == {f"key_{i}": k for i, k in enumerate(keys, start=1)}  # the others still written
    if broken != "credential-dir":
        assert hexes(decrypt_credential(target, "unseal")) == keys
    restart_and_unseal(node, keys[1:], 2)


@pytest.fixture(scope="module")
def gpg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GnuPG, dict[str, Path]]]:
    if shutil.which("gpg") is None:
        pytest.skip("no gpg: apt-get install gnupg")
    home = tmp_path_factory.mktemp("gnupg")
    g = GnuPG(home / "home")
    try:
        keys = {n: g.new_key(n, home / f"{n}.gpg", armor=n == "carol") for n in ("alice", "bob", "carol", "root")}
        yield g, keys
    finally:
        g.close()  # gpg starts a gpg-agent daemon for the home and leaves it running


def test_the_test_bed_s_gnupg_stops_the_agent_gpg_leaves_running(tmp_path: Path) -> None:
    if shutil.which("gpg") is None:
        pytest.skip("no gpg: apt-get install gnupg")
    g = GnuPG(tmp_path / "home")
    try:
        g.new_key("dave", tmp_path / "dave.gpg")
        assert g.agent_pids(), "gpg started no gpg-agent: nothing here would have leaked"
    finally:
        g.close()
    assert g.agent_pids() == []


def test_shares_encrypted_to_people_and_the_root_token_too(
    gpg: tuple[GnuPG, dict[str, Path]], node: Single, certs: Certs, tmp_path: Path
) -> None:
    g, keys = gpg
    out = tmp_path / "shares"
    out.mkdir()
    result = init(
        node, certs, tmp_path, "--threshold", "2", "--pgp-key", str(keys["alice"]), "--pgp-key", str(keys["bob"]),
        "--pgp-key", str(keys["carol"]), "--root-token-pgp-key", str(keys["root"]), "--share-dir", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    files = sorted(p.name for p in out.iterdir())
    assert files == ["alice.share-1.gpg", "bob.share-2.gpg", "carol.share-3.gpg", "root-token.gpg"]
    assert all((out / f).stat().st_mode & 0o777 == 0o600 for f in files)
    shares = [g.decrypt((out / f).read_bytes()).decode().strip() for f in files[:3]]
    assert all(len(s) == 66 for s in shares) and len(set(shares)) == 3
    root = g.decrypt((out / "root-token.gpg").read_bytes()).decode().strip()
    assert root.startswith("s.")
    assert_no_secret(result, *shares, root)
    for share in (shares[2], shares[0]):
        node.submit_key(share)
    wait_for(lambda: node.health_code() == 200, 60, "active after two decrypted shares", interval=0.2)
    assert node.get("auth/token/lookup-self", token=root).code == 200  # kept, encrypted: still valid


def test_an_auto_unseal_node_gets_recovery_keys(nomad: NomadVariables, certs: Certs, tmp_path: Path) -> None:
    seal = static_seal(static_key(tmp_path / "static.key"), "static-1")
    n = Single("static", tmp_path / "static", certs, seal=seal)
    try:
        n.launch()
        result = init(n, certs, tmp_path, "--shares", "3", "--threshold", "2", "--nomad-variable", VAR,
                      "--format", "json", nomad=nomad)  # fmt: skip
        assert result.code == 0, result.err
        doc: dict[str, Any] = json.loads(result.out)
        assert doc["keys"] == "recovery" and doc["seal_type"] == "static" and doc["root_token"] == "revoked"
        assert sorted(nomad.items(VAR)) == ["key_1", "key_2", "key_3"]
        assert n.seal_status()["recovery_seal"] is True
        assert_no_secret(result, *nomad.items(VAR).values())
    finally:
        n.stop()


def test_bootstrap_with_the_root_token_then_revoke_it(node: Single, certs: Certs, tmp_path: Path) -> None:
    creds = tmp_path / "credstore"
    creds.mkdir()
    result = init(node, certs, tmp_path, "--shares", "1", "--threshold", "1", "--credential-file",
                  f"{creds}/unseal.cred", "--bootstrap", "--client-ca", str(certs.ca_path), "--format", "json")  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads(result.out)["root_token"] == "used for bootstrap-roles, then revoked"
    # what bootstrap-roles wrote works: the startup certificate logs in and mints a server token
    minted = run_cli("token", "--vault-addr", node.addr, "--ca-cert", str(certs.ca_path), "--client-cert",
                     str(certs.client_cert), "--client-key", str(certs.client_key), env=clean_env())  # fmt: skip
    assert minted.code == 0, minted.err
    assert minted.out.strip().startswith("s.")


def test_pgp_shares_on_shamir_need_the_root_token_encrypted_too(
    gpg: tuple[GnuPG, dict[str, Path]], node: Single, certs: Certs, tmp_path: Path
) -> None:
    """The tool cannot unseal with shares it cannot read, so it could neither use nor revoke the root token."""
    _, keys = gpg
    result = init(node, certs, tmp_path, "--shares", "1", "--threshold", "1", "--pgp-key", str(keys["alice"]))
    assert_one_line_error(result, 78, "--root-token-pgp-key", "nothing was sent")
    assert node.seal_status()["initialized"] is False


def test_pgp_shares_that_cannot_be_written_are_kept_as_vault_encrypted_them(
    gpg: tuple[GnuPG, dict[str, Path]], node: Single, certs: Certs, tmp_path: Path
) -> None:
    g, keys = gpg
    (tmp_path / "not-a-dir").write_text("")
    result = init(node, certs, tmp_path, "--threshold", "2", "--pgp-key", str(keys["alice"]), "--pgp-key",
                  str(keys["bob"]), "--root-token-pgp-key", str(keys["root"]), "--share-dir",
                  str(tmp_path / "not-a-dir" / "out"))  # fmt: skip
    assert_one_line_error(result, 75, "init-rescue-", "keys_pgp_base64")
    (rescue,) = (tmp_path / "state").iterdir()
    assert rescue.stat().st_mode & 0o777 == 0o600
    doc = json.loads(rescue.read_text())
    shares = [g.decrypt(base64.b64decode(b)).decode().strip() for b in doc["keys_pgp_base64"]]
    root = g.decrypt(base64.b64decode(doc["root_token_pgp_base64"])).decode().strip()
    assert all(len(s) == 66 for s in shares) and root.startswith("s.")
    for share in shares:
        node.submit_key(share)
    wait_for(lambda: node.health_code() == 200, 60, "active with the rescued shares", interval=0.2)
    assert node.get("auth/token/lookup-self", token=root).code == 200
