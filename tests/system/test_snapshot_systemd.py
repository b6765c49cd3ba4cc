"""The shipped nomad-vault-snapshot.service and .timer under a real systemd (systemd_sandbox.py) against a real
OpenBao: the hardening lets the run work, and what it writes is private.

The shipped unit runs as a DynamicUser and with ProtectHome=yes; this machine's Python lives under /root
(0700), which no dynamic user can reach, so the test's drop-in runs it as root with ProtectHome=read-only.
LoadCredential= does not work in the sandbox (systemd 252 there leaves the credentials directory empty,
even for /etc/hostname), so the key is given by its path. Everything else is the shipped unit: UMask,
ProtectSystem=strict, the system-call filter, the address families, StateDirectory for the snapshots.
"""

from __future__ import annotations

import json
import secrets
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import nomad_vault_token
from testbed import systemd_sandbox
from testbed.bao import Bao, Certs
from testbed.snapshot_setup import prepare
from testbed.systemd_sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "nomad-vault-snapshot.service"
TIMER = "nomad-vault-snapshot.timer"
TARGET = "nvt-test.target"
BIN = Path(sys.executable).parent / "nomad-vault-token"
VAR_LIB = Path("/var/lib")


def _binds() -> tuple[list[Path], str | None]:
    code = [Path(sys.prefix), Path(sys.base_prefix), Path(nomad_vault_token.__file__).parent]
    try:
        return systemd_sandbox.hidden(code), None
    except ValueError as exc:
        return [], f"systemd sandbox: {exc}"


BINDS, _PROBLEM = _binds()
REASON = systemd_sandbox.unavailable() or _PROBLEM or (None if BIN.exists() else f"no {BIN} in this venv")

pytestmark = [pytest.mark.vault, pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = VAR_LIB / f"nvt-snap-test-{secrets.token_hex(4)}"
    path.mkdir(mode=0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_shipped_snapshot_unit_takes_a_private_verified_snapshot(workdir: Path) -> None:
    certs = Certs(workdir / "certs")
    server = Bao(workdir / "bao", certs, durable=True)
    sandbox: Sandbox | None = None
    try:
        server.start()
        server.configure()
        prepare(server, certs)
        snaps = workdir / "state" / "snaps"
        metrics = workdir / "state" / "metrics"
        config = workdir / "snapshot.toml"
        config.write_text(
            f'vault_addr = "{server.addr}"\nca_cert = "{certs.ca_path}"\nclient_cert = "{certs.client_cert}"\n'
            f'snapshot_dir = "{snaps}"\nmetrics_dir = "{metrics}"\nsnapshot_keep = 3\n'
        )
        units = workdir / "units"
        systemd_sandbox.write_target(units, TARGET)
        text = (ROOT / "systemd" / SERVICE).read_text()
        text = text.replace("/usr/local/bin/nomad-vault-token", str(BIN))
        text = text.replace("/etc/nomad-vault-token/snapshot.toml", str(config))
        text = text.replace("/etc/nomad-vault-token/snapshot.key", str(certs.client_key))
        (units / SERVICE).write_text(text)
        shutil.copy(ROOT / "systemd" / TIMER, units / TIMER)
        (units / f"{SERVICE}.d").mkdir()
        (units / f"{SERVICE}.d" / "test.conf").write_text(
            "[Unit]\nDefaultDependencies=no\n[Service]\n"
            "DynamicUser=no\n" + systemd_sandbox.code_reachable(ROOT) +
            # systemd 252 in the sandbox's namespaces leaves the credentials directory empty (even for
            # /etc/hostname): the key comes by its path instead.
            f"LoadCredential=\nEnvironment=VAULT_CLIENT_KEY={certs.client_key}\n"
            "StateDirectory=\n"
            f"StateDirectory={(workdir / 'state').relative_to(VAR_LIB)}\n"
            f"StandardOutput=append:{workdir / 'unit.log'}\nStandardError=inherit\n"
        )
        systemd_sandbox.mask(units, "network-online.target")
        (workdir / "state").mkdir(mode=0o700)
        (workdir / "state" / "metrics").mkdir(mode=0o755)
        sandbox = Sandbox(units, TARGET, workdir / "boot.log", binds=BINDS).up()
        assert "OnCalendar" in sandbox.ctl("cat", TIMER)
        sandbox.ctl("start", SERVICE, timeout=120, check=False)  # a oneshot: returns when the run ended
        props = sandbox.show(SERVICE, "Result", "ExecMainStatus")
        try:
            log = (workdir / "unit.log").read_text(errors="replace")
        except FileNotFoundError:
            log = "(no unit.log) " + sandbox.ctl("status", SERVICE, check=False)
        assert props["Result"] == "success" and props["ExecMainStatus"] == "0", (props, log)
        line = json.loads(log.strip().splitlines()[-1])
        snap = Path(line["file"])
        assert snap.parent == snaps and stat.S_IMODE(snap.stat().st_mode) == 0o600
        assert stat.S_IMODE(snaps.stat().st_mode) == 0o700
        prom = metrics / "nomad_vault_token_snapshot.prom"
        assert stat.S_IMODE(prom.stat().st_mode) == 0o644  # node_exporter, another user, reads it
        assert "nomad_vault_token_snapshot_last_run_success 1.0" in prom.read_text()
    finally:
        if sandbox is not None:
            sandbox.down()
        server.stop()
