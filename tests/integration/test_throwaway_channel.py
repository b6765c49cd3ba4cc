"""`snapshot restore-test`'s throwaway server against a local squatter (issue 30, finding 1).

The drill restarts its throwaway server mid-run. A squatter (a real process, user nobody, `testbed/squatter.py`)
is given every TCP port the throwaway server listens on, binds each the moment it is freed, answers like a sealed
Vault and records every byte it gets. The tool talks to its server over a unix socket in its private directory
only, so the drill still reads the canary back from the real server and the squatter receives nothing. On the
old plain-HTTP TCP channel, the squatter got the unseal key and the canary token.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.bao import Bao, Certs
from testbed.cli import CLI, run_cli
from testbed.env import clean_env
from testbed.snapshot_setup import CANARY, SNAP_ROLE, prepared_raft

SQUATTER = Path(__file__).resolve().parents[2] / "testbed" / "squatter.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # nobody cannot run the venv's interpreter under /root
NOBODY = "65534"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root, setpriv and a system python3 to run the squatter as nobody",
)


@pytest.fixture(scope="module")
def raft(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bao, Certs]]:
    yield from prepared_raft(tmp_path_factory.mktemp("squatcerts"), tmp_path_factory.mktemp("squatbao"))


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def _tcp_listen_ports(pids: list[int]) -> set[int]:
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ports = set()
    for line in out.splitlines():
        if any(f"pid={p}," in line for p in pids):
            ports.add(int(line.split()[3].rsplit(":", 1)[1]))
    return ports


class Squatter:
    """Watch the drill's server for TCP ports; hand them to a squatter running as nobody."""

    def __init__(self, drill: subprocess.Popen[str]) -> None:
        self.drill = drill
        self.proc: subprocess.Popen[str] | None = None
        self.ports: set[int] = set()
        self.workdir: Path | None = None
        self.workdir_mode = 0
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while self.drill.poll() is None and self.proc is None:
            children = _children(self.drill.pid)
            ports = _tcp_listen_ports(children)
            if ports:
                self.ports = ports
                for pid in children:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
                    if "-config" in argv:
                        self.workdir = Path(argv[argv.index("-config") + 1]).parent
                        self.workdir_mode = self.workdir.stat().st_mode & 0o777
                self.proc = subprocess.Popen(
                    ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                     SYSTEM_PYTHON, str(SQUATTER), *map(str, sorted(ports))],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
                )  # fmt: skip
                return
            threading.Event().wait(0.02)

    def finish(self) -> list[str]:
        self.thread.join(10)
        if self.proc is None:
            return []
        self.proc.terminate()  # setpriv execs python: this is the squatter's own PID
        out, _ = self.proc.communicate(timeout=10)
        return out.splitlines()


def test_a_squatter_on_the_drills_ports_gets_nothing(raft: tuple[Bao, Certs], tmp_path: Path) -> None:
    server, certs = raft
    reader = server.client().auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
    taken = run_cli(
        "snapshot", "--format", "json", "--dir", str(tmp_path / "s"), "--vault-addr", server.addr,
        "--ca-cert", str(certs.ca_path), "--client-cert", str(certs.client_cert), "--client-key",
        str(certs.client_key), "--snapshot-role", SNAP_ROLE, timeout=120,
    )  # fmt: skip
    assert taken.code == 0, taken.err
    snapshot = json.loads(taken.out)["file"]
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [server.unseal_key]}))
    keys.chmod(0o600)
    token_file = tmp_path / "token"
    token_file.write_text(reader)
    token_file.chmod(0o600)

    drill = subprocess.Popen(
        [*CLI, "snapshot", "restore-test", snapshot, "--keys-file", str(keys), "--canary", CANARY,
         "--token-file", str(token_file), "--format", "json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    squatter = Squatter(drill)
    try:
        out, err = drill.communicate(timeout=180)
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.wait()
        lines = squatter.finish()

    assert squatter.ports, "the drill's server never listened on TCP: nothing to squat (the raft cluster listener is)"
    assert any(line.startswith("bound ") for line in lines), f"the squatter never got a port: {lines}"
    received = [line for line in lines if line.startswith("got ")]
    assert not received, "the squatter received: " + " ".join(
        bytes.fromhex(line.split()[2]).decode(errors="replace")[:200] for line in received
    )
    assert drill.returncode == 0, err
    data = json.loads(out)
    assert data["canary_keys"] == ["value"], data  # the real server's canary ("sing"), not the squatter's
    assert server.unseal_key not in out + err and reader not in out + err
    # the socket, the listener's key and the raft data lived in a 0700 directory, gone after the drill
    assert squatter.workdir is not None and squatter.workdir_mode == 0o700, (squatter.workdir, squatter.workdir_mode)
    assert not squatter.workdir.exists()


def test_the_throwaway_channel_takes_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The socket or nothing: with every proxy variable pointing at a listener that records, the throwaway's client
    still reaches its own server, and the listener gets no byte."""
    from nomad_vault_token.core.config import Settings
    from nomad_vault_token.vault.throwaway import throwaway_server

    got: list[bytes] = []
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(8)
        proxy.settimeout(0.2)
        url = f"http://127.0.0.1:{proxy.getsockname()[1]}"
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with throwaway_server(Settings()) as node:
            health = node.api.health()
            assert health.reachable and not health.initialized, health
        with contextlib.suppress(TimeoutError):
            conn, _ = proxy.accept()
            with conn:
                got.append(conn.recv(65536))
    assert got == [], got
