"""OpenBao's static seal fed from an encrypted systemd credential, under a real systemd (systemd_sandbox.py):
the way out of Shamir that docs/custody.md gives ("Moving to the static seal").

The static key never exists in plain text on disk: 32 random bytes go to `systemd-creds encrypt
--with-key=host --name=static-seal-key - FILE` on standard input (a host key of the test's own, see
systemd_sandbox.CREDENTIAL_SECRET_ENV), the unit loads it with `LoadCredentialEncrypted=`, and the seal
stanza reads `file:///run/credentials/openbao.service/static-seal-key`. The server is initialised
(recovery keys), restarted by systemd, and unseals itself: no key is sent to it. Afterwards the key's
bytes are in no file of the test's directory nor of the sandbox's /run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomad_vault_token.core import at_rest
from testbed import systemd_sandbox
from testbed.bao import Certs
from testbed.procs import wait_for
from testbed.raft_cluster import Single
from testbed.systemd_sandbox import Sandbox

TARGET = "nvt-test.target"
UNIT = "openbao.service"
CREDENTIAL = "static-seal-key"
REASON = systemd_sandbox.unavailable() or (None if shutil.which("systemd-creds") else "no systemd-creds here")

pytestmark = [pytest.mark.vault, pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def static_seal_from_credential(unit: str, name: str, key_id: str = "static-1") -> str:
    """The stanza docs/custody.md gives: the key read from the unit's credentials directory."""
    return f'seal "static" {{\n  current_key_id = "{key_id}"\n  current_key = "file:///run/credentials/{unit}/{name}"\n}}\n'


def files_holding(root: Path, needle: bytes) -> list[Path]:
    found = []
    for directory, _, names in os.walk(root):
        for n in names:
            path = Path(directory) / n
            try:
                if path.is_symlink() or not path.is_file():
                    continue
                if needle in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return sorted(found)


@pytest.fixture
def work() -> Iterator[Path]:
    path = Path("/var/lib") / f"nvt-static-test-{secrets.token_hex(4)}"  # the sandbox's /tmp is private
    path.mkdir(mode=0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_openbao_unseals_itself_from_an_encrypted_static_key_credential(work: Path) -> None:
    key = secrets.token_bytes(32)
    host_key = work / "credential.secret"
    cred = systemd_sandbox.encrypt_credential(CREDENTIAL, key, work / f"{CREDENTIAL}.cred", host_key)
    certs = Certs(work / "certs")
    node = Single("static-systemd", work / "node", certs, seal=static_seal_from_credential(UNIT, CREDENTIAL))
    units = work / "units"
    systemd_sandbox.write_target(units, TARGET)
    # OpenBao's own unit, reduced to what the test needs (its package runs it as User=openbao; root here),
    # plus the one line docs/custody.md adds in a drop-in.
    (units / UNIT).write_text(
        "[Unit]\nDescription=OpenBao\nDefaultDependencies=no\n"
        "[Service]\nType=notify\n"
        f"ExecStart={node.binary} server -config={node.config_path}\n"
        "KillSignal=SIGINT\nPrivateTmp=yes\nPrivateDevices=yes\nNoNewPrivileges=yes\n"
        f"StandardOutput=append:{node.log_path}\nStandardError=inherit\n"
    )
    (units / f"{UNIT}.d").mkdir()
    (units / f"{UNIT}.d" / "static-seal.conf").write_text(f"[Service]\nLoadCredentialEncrypted={CREDENTIAL}:{cred}\n")
    binds = systemd_sandbox.hidden([Path(sys.prefix), Path(sys.base_prefix), Path(node.binary).parent])
    env = {systemd_sandbox.CREDENTIAL_SECRET_ENV: str(host_key)}
    with Sandbox(units, TARGET, work / "boot.log", binds=binds, env=env) as sandbox:

        def log() -> str:
            return node.log_path.read_text(errors="replace")[-3000:] if node.log_path.exists() else ""

        sandbox.ctl("start", "--no-block", UNIT)
        try:
            sandbox.wait(UNIT, lambda p: p["ActiveState"] == "active", 60, "active (READY)")
            node.wait_answers(60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nbao log: {log()}") from None
        status = node.seal_status()
        assert (status["type"], status["initialized"]) == ("static", False), status
        node.initialize(recovery_shares=1, recovery_threshold=1)
        wait_for(node.active, 60, "initialised, unsealed by its static key, active", interval=0.2)
        assert node.post("sys/mounts/canary", {"type": "kv"}, token=node.root_token).code == 204
        assert node.post("canary/data", {"value": "kept"}, token=node.root_token).code == 204

        # restarted by systemd: it unseals itself from the credential, nobody sends a key
        first = sandbox.show(UNIT, "MainPID")["MainPID"]
        sandbox.ctl("restart", UNIT)
        sandbox.wait(UNIT, lambda p: p["ActiveState"] == "active", 60, "active again")
        assert sandbox.show(UNIT, "MainPID")["MainPID"] != first
        wait_for(node.active, 60, "unsealed by itself after the restart", interval=0.2)
        status = node.seal_status()
        assert (status["type"], status["sealed"], status["migration"]) == ("static", False, False), status
        assert node.get("canary/data", token=node.root_token).body["data"]["value"] == "kept"

        # the key in memory only: the unit's credentials directory is a ramfs, and the search finds it there
        inside = Path(f"/proc/{sandbox.pid}/root")
        where = f"/run/credentials/{UNIT}/{CREDENTIAL}"
        assert at_rest.mount_fs_type(where, Path(f"/proc/{sandbox.pid}/mountinfo").read_text()) == "ramfs"
        assert files_holding(inside / "run", key) == [inside / where.lstrip("/")]
        sandbox.ctl("stop", UNIT)
        assert files_holding(inside / "run", key) == []
    assert files_holding(work, key) == []
    assert files_holding(work, key.hex().encode()) == []
