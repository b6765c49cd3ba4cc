"""The shipped unit under a real systemd: the sandbox of systemd_sandbox.py, a real OpenBao, the stand-in agent.

Each test renders `systemd/nomad.service` with `systemd_unit.render` (this venv's nomad-vault-token, a config
pointing at its own OpenBao, the stand-in agent as the agent), adds a drop-in with test-only settings,
boots a sandbox with it, and reads back what systemd saw. Everything the unit needs lives in a work
directory under /var/lib (the sandbox's /tmp, /run and /var/tmp are private), deleted afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import nomad_vault_token
from nomad_vault_token.setup import systemd_unit
from testbed import jsonl, quick_start, systemd_sandbox
from testbed.agent import FAKE_NOMAD, Event, agent_config
from testbed.bao import STARTUP_ROLE, Bao, Certs
from testbed.config import write_config
from testbed.procs import mentioning, wait_for
from testbed.systemd_sandbox import Props, Sandbox

UNIT = systemd_unit.UNIT_NAME
TARGET = "nvt-test.target"
BIN = Path(sys.executable).parent / "nomad-vault-token"
VAR_LIB = Path("/var/lib")


def _needed_binds() -> tuple[list[Path], str | None]:
    """Host directories the unit runs from that the sandbox's private /tmp would hide (a venv in /tmp)."""
    code = [Path(sys.prefix), Path(sys.base_prefix), Path(nomad_vault_token.__file__).parent, FAKE_NOMAD.parent]
    try:
        return systemd_sandbox.hidden(code), None
    except ValueError as exc:
        return [], f"systemd sandbox: {exc}"


BINDS, _BIND_PROBLEM = _needed_binds()
REASON = systemd_sandbox.unavailable() or _BIND_PROBLEM or (None if BIN.exists() else f"no {BIN} in this venv")

pytestmark = [
    pytest.mark.vault,
    pytest.mark.slow,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
]


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """Outside the sandbox's private /tmp: it sees this directory as it is."""
    path = VAR_LIB / f"nvt-test-{secrets.token_hex(4)}"
    path.mkdir(mode=0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def sd_certs(workdir: Path) -> Certs:
    return Certs(workdir / "certs")


@pytest.fixture
def server(request: pytest.FixtureRequest, workdir: Path, sd_certs: Certs) -> Iterator[Bao]:
    """A private OpenBao per test: tests seal it and delete its roles."""
    bao = Bao(workdir / request.node.name / "bao", sd_certs)
    try:
        bao.start()
        bao.configure()
        yield bao
    finally:
        bao.stop()


@dataclass
class Service:
    """nomad.service in a running sandbox, and the stand-in agent's report."""

    sandbox: Sandbox
    dir: Path
    config: Path
    report: Path

    def show(self, *props: str) -> Props:
        return self.sandbox.show(UNIT, *props)

    def wait(
        self, predicate: Callable[[Props], bool], what: str, timeout: float = 30, props: tuple[str, ...] = ()
    ) -> Props:
        return self.sandbox.wait(UNIT, predicate, timeout, what, props)

    def events(self, name: str | None = None) -> list[Event]:
        return jsonl.events(self.report, name)

    def wait_event(self, name: str, timeout: float = 30) -> Event:
        found: list[Event] = wait_for(lambda: self.events(name), timeout, f"agent event {name!r}")
        return found[0]

    def trackers(self) -> list[int]:
        """Host PIDs of this unit's tracker: the only process left whose argv is `run --config <ours>`
        (the process that ran `run` is the agent now)."""
        return [p.pid for p in mentioning(f" run --config {self.config} ")]

    def log(self, name: str = "unit.log") -> str:
        """The unit's output (unit.log), or systemd's own (boot.log)."""
        try:
            return (self.dir / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
def service(
    request: pytest.FixtureRequest, workdir: Path, sd_certs: Certs, server: Bao
) -> Iterator[Callable[..., Service]]:
    """Start nomad.service (the shipped unit) in a fresh sandbox; the sandbox is always brought down."""
    started: list[Sandbox] = []

    def start(unit_settings: str = "", **config: str) -> Service:
        d = workdir / request.node.name
        units = d / "units"
        report = d / "report.jsonl"
        cfg = write_config(
            d / "config.toml", server, sd_certs, state_dir=None, token_config=None, request_timeout="2s", **config
        )
        agent = [sys.executable, str(FAKE_NOMAD), "agent", "-config", str(agent_config(d / "agent.hcl", server))]
        rendered = systemd_unit.render(systemd_unit.shipped_template(), bin_path=BIN, config=cfg, agent=agent, start_timeout="2min")
        systemd_sandbox.write_target(units, TARGET)
        (units / UNIT).write_text(rendered)
        (units / f"{UNIT}.d").mkdir()
        (units / f"{UNIT}.d" / "test.conf").write_text(
            "# Test-only settings over the shipped unit.\n"
            "[Unit]\n"
            "DefaultDependencies=no\n"
            "[Service]\n"
            f"Environment=FAKE_NOMAD_REPORT={report}\n"
            # The shipped StateDirectory is the machine's /var/lib/nomad-vault-token: use the work dir's.
            "StateDirectory=\n"
            f"StateDirectory={(d / 'state').relative_to(VAR_LIB)}\n"
            # The watchdog's SIGABRT must not drop a core file in / (core_pattern may be a plain "core").
            "LimitCORE=0\n"
            # No journal in the sandbox: the unit's own output (run, tracker, agent) goes to a file.
            f"StandardOutput=append:{d / 'unit.log'}\n"
            "StandardError=inherit\n"
            f"{unit_settings}\n"
        )
        # Nothing in the sandbox brings the network up: nothing to wait for.
        systemd_sandbox.mask(units, "network-online.target")
        sandbox = Sandbox(units, TARGET, d / "boot.log", binds=BINDS)
        started.append(sandbox)
        sandbox.up()
        sandbox.ctl("start", "--no-block", UNIT)
        return Service(sandbox, d, cfg, report)

    try:
        yield start
    finally:
        for sandbox in started:
            sandbox.down()


def active(p: Props) -> bool:
    return p["ActiveState"] == "active"


def test_shipped_unit_runs_reloads_and_stops_the_agent(service: Callable[..., Service]) -> None:
    svc = service()
    props = svc.wait(active, "active", props=("MainPID",))
    assert props["SubState"] == "running", props
    validated = svc.wait_event("validated")
    assert validated["ok"] is True, validated
    accessor = validated["accessor"]
    assert props["StatusText"].startswith(f"token {accessor[:8]}... ttl "), props

    # MainPID is the agent (PIDs as the sandbox's namespace sees them), with the token config added by `run`.
    main = int(props["MainPID"])
    argv = svc.sandbox.cmdline(main)
    assert argv[1:3] == [str(FAKE_NOMAD), "agent"], argv
    assert argv[-2:] == ["-config", "/run/nomad-vault-token/vault-token.hcl"], argv  # RuntimeDirectory=
    assert svc.events("start")[0]["pid"] == main
    state = svc.dir / "state" / "token.json"  # StateDirectory=, 0700, the token saved 0600
    assert (state.parent.stat().st_mode & 0o777, state.stat().st_mode & 0o777) == (0o700, 0o600)

    # The tracker sits beside the agent, in the unit's cgroup (so NotifyAccess=all takes its messages).
    [tracker] = wait_for(svc.trackers, 10, "the tracker")
    assert "/nomad.service" in Path(f"/proc/{tracker}/cgroup").read_text()

    svc.sandbox.ctl("reload", UNIT)
    reload = svc.wait_event("reload", timeout=10)
    assert reload["pid"] == main and reload["token_changed"] is False, reload
    assert active(svc.show("ActiveState"))

    svc.sandbox.ctl("stop", UNIT)
    signal = svc.wait_event("signal", timeout=10)
    assert (signal["signal"], signal["pid"]) == ("SIGINT", main)
    # Nomad exits 1 on SIGINT unless leave_on_interrupt (command.go v1.9.7:1056-1085), under its own unit too
    props = svc.show("ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert (props["Result"], props["ExecMainStatus"], props["NRestarts"]) == ("exit-code", "1", "0"), props
    assert props["ActiveState"] in ("failed", "inactive"), props
    wait_for(lambda: not svc.trackers(), 5, "no tracker left after stop")


def test_config_error_fails_with_78_and_no_restart_loop(workdir: Path, service: Callable[..., Service]) -> None:
    missing = workdir / "no-such-client.key"
    svc = service(client_key=str(missing))
    props = svc.wait(lambda p: p["ActiveState"] == "failed", "failed", props=("ExecMainStatus",))
    assert (props["Result"], props["ExecMainStatus"], props["NRestarts"]) == ("exit-code", "78", "0"), props
    # RestartSec=2: a restart would show within this window; RestartPreventExitStatus=78 keeps it failed.
    svc.sandbox.holds(UNIT, lambda p: (p["ActiveState"], p["NRestarts"]) == ("failed", "0"), 4, "failed, 0 restarts")
    assert svc.events() == [], "the agent must not start"
    assert str(missing) in svc.log() and "Traceback" not in svc.log(), svc.log()


def test_sealed_vault_keeps_the_unit_activating_until_unsealed(server: Bao, service: Callable[..., Service]) -> None:
    server.seal()
    svc = service()
    props = svc.wait(lambda p: "waiting for Vault" in p["StatusText"], "waiting for Vault")
    assert props["ActiveState"] == "activating" and "sealed" in props["StatusText"], props
    svc.sandbox.holds(UNIT, lambda p: p["ActiveState"] == "activating", 2, "activating while Vault is sealed")
    assert svc.events() == [], "the agent must not start before the token is ready"

    server.unseal()
    props = svc.wait(active, "active once Vault is unsealed")
    assert props["SubState"] == "running" and props["StatusText"].startswith("token "), props
    assert svc.wait_event("validated")["ok"] is True


def test_watchdog_restarts_the_service_when_the_token_cannot_be_kept(
    server: Bao, service: Callable[..., Service]
) -> None:
    svc = service("WatchdogSec=3s", check_interval="1s")
    svc.wait(active, "active")
    accessor = svc.wait_event("validated")["accessor"]
    # Healthy: the tracker's WATCHDOG=1 keeps it running well past WatchdogSec.
    svc.sandbox.holds(UNIT, lambda p: active(p) and p["NRestarts"] == "0", 5, "active, 0 restarts, token healthy")

    # Dead and unrecoverable: revoked, and the certificate can no longer log in to mint a new one.
    root = server.client()
    root.delete(f"auth/cert/certs/{STARTUP_ROLE}")
    root.auth.token.revoke_accessor(accessor)
    seen: list[Props] = []

    def restarted(p: Props) -> bool:
        seen.append(p)
        return int(p["NRestarts"] or 0) >= 1

    svc.wait(restarted, "restarted by the watchdog", timeout=30)
    # Seen on the way (polled every 50 ms; each lasts a second or more): the tracker's STATUS while it
    # stopped feeding the watchdog, and systemd's verdict while it waited RestartSec= to restart.
    assert any("DEAD" in p["StatusText"] for p in seen), seen
    assert "watchdog" in {p["Result"] for p in seen}, seen
    assert "recovery failed" in svc.log()


def test_vault_down_at_boot_the_unit_still_comes_up_degraded(server: Bao, service: Callable[..., Service]) -> None:
    """Vault as a Nomad job: Nomad must come up first. No restart loop, StatusText says why."""
    server.seal()
    try:
        svc = service("WatchdogSec=3s", degraded_start_after="2s", check_interval="1s", sighup_grace="2s")
        props = svc.wait(active, "active while Vault is sealed", timeout=30)
        assert props["StatusText"].startswith("degraded: Vault unreachable since"), props
        assert svc.wait_event("start")["pid"] == int(svc.show("MainPID")["MainPID"])
        # WATCHDOG=1 keeps coming: a Vault outage is not the agent's fault (WatchdogSec=3s would restart it)
        svc.sandbox.holds(UNIT, lambda p: active(p) and p["NRestarts"] == "0", 6, "active, degraded, 0 restarts")
    finally:
        server.unseal()
    svc.wait(lambda p: "adopted by Nomad" in p["StatusText"], "adopted once Vault is back", timeout=60)
    assert svc.show("NRestarts")["NRestarts"] == "0"


def test_readme_quick_start_walked_under_systemd(workdir: Path, sd_certs: Certs) -> None:
    """The README's five steps, read from the README and run as written but for where things are.

    What differs from a real host, and only that: paths live under a work directory (not /etc), the Vault
    address and CA are the test OpenBao's, the agent is the stand-in Nomad, step 1's "have the CA sign it"
    is the test CA signing the CSR, `install` writes under `--root` (no machine's /etc is touched; its config is
    then put where the unit names it) with the state directory in the work directory, `systemctl enable --now nomad` is the sandbox's systemd starting
    the unit `install` wrote, and `status` and `check` are given that config with `--config`.
    """
    steps = quick_start.steps()
    assert len(steps) == 5
    d = workdir / "quick-start"
    etc = d / "etc" / "nomad-vault-token"
    root, state, units = d / "root", d / "state", d / "units"
    config = etc / "config.toml"
    bao = Bao(d / "bao", sd_certs)  # a fresh OpenBao: bootstrap-roles writes everything an admin would
    sandbox: Sandbox | None = None
    try:
        bao.start()
        agent = shlex.join(
            [sys.executable, str(FAKE_NOMAD), "agent", "-config", str(agent_config(d / "agent.hcl", bao))]
        )
        here = {
            "https://vault.example.com:8200": bao.addr,
            "/etc/nomad-vault-token": str(etc),
            "/etc/pki/nomad-startup-ca.pem": str(sd_certs.ca_path),
            "/tmp/nomad_startup.csr": str(d / "nomad_startup.csr"),
            "/usr/bin/nomad agent -config /etc/nomad.d": agent,
            "VAULT_TOKEN=...": 'VAULT_TOKEN="$QUICK_START_ROOT_TOKEN"',
            "nomad-vault-token install ": f"nomad-vault-token install --root {root} --config-path {config} "
            f"--set state_dir={state} ",
            "nomad-vault-token status": f"nomad-vault-token status --config {config}",
            "nomad-vault-token check": f"nomad-vault-token check --config {config}",
        }
        pattern = re.compile("|".join(re.escape(k) for k in sorted(here, key=len, reverse=True)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "NOMAD_VAULT_TOKEN_"))}
        env |= {"PATH": f"{BIN.parent}:{os.environ['PATH']}", "QUICK_START_ROOT_TOKEN": bao.root_token}

        def sh(step: int) -> list[subprocess.CompletedProcess[str]]:
            done = []
            for line in steps[step - 1]:
                command = pattern.sub(lambda m: here[m.group(0)], line)
                result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120)
                assert result.returncode == 0, f"step {step}: {line}\n{result.stdout}{result.stderr}"
                done.append(result)
            return done

        # 1. the certificate: the README's commands make the key and the CSR; the test CA signs it
        sh(1)
        csr = x509.load_pem_x509_csr((d / "nomad_startup.csr").read_bytes())
        ca_key = serialization.load_pem_private_key(sd_certs.ca.private_key_pem.bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(sd_certs.ca.cert_pem.bytes())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca_cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        (etc / "nomad_startup.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (etc / "vault-ca.pem").write_bytes(sd_certs.ca_path.read_bytes())
        assert (etc / "nomad_startup_key.pem").stat().st_mode & 0o777 == 0o600

        # 2. bootstrap-roles, 3. install
        sh(2)
        [installed] = sh(3)
        assert '"changed": true' in installed.stdout, installed.stdout
        unit_file = root / "etc" / "systemd" / "system" / UNIT
        shutil.copy2(root / config.relative_to("/"), config)  # --root: where the unit names it, as on a host
        assert f"--config {config} -- {agent}" in unit_file.read_text()

        # 4. systemctl enable --now nomad: the unit install wrote, in the sandbox's systemd
        assert steps[3] == [f"systemctl enable --now {UNIT.removesuffix('.service')}"], steps[3]
        systemd_sandbox.write_target(units, TARGET)
        (units / UNIT).write_text(unit_file.read_text())
        (units / f"{UNIT}.d").mkdir()
        (units / f"{UNIT}.d" / "test.conf").write_text(
            "[Unit]\nDefaultDependencies=no\n[Service]\n"
            f"StateDirectory=\nStateDirectory={state.relative_to(VAR_LIB)}\nLimitCORE=0\n"
            f"StandardOutput=append:{d / 'unit.log'}\nStandardError=inherit\n"
        )
        systemd_sandbox.mask(units, "network-online.target")
        sandbox = Sandbox(units, TARGET, d / "boot.log", binds=BINDS)
        sandbox.up()
        sandbox.ctl("start", "--no-block", UNIT)
        deadline = 60  # the unit's own start plus the stand-in's first renewal (it renews on adopting)
        try:
            sandbox.wait(UNIT, lambda p: "adopted by Nomad" in p["StatusText"], deadline, "adopted by Nomad")
        except AssertionError as exc:
            log = (d / "unit.log").read_text(errors="replace") if (d / "unit.log").exists() else ""
            raise AssertionError(f"{exc}\nunit.log:\n{log[-3000:]}") from None

        # 5. status and check, as written (with --config): both exit 0
        kept, checked = sh(5)
        assert "adopted" in kept.stdout, kept.stdout
        assert checked.returncode == 0
    finally:
        if sandbox is not None:
            sandbox.down()
        bao.stop()
