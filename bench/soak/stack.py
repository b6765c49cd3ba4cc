"""The whole stack on this machine, every process started and stopped by PID (the test bed's parts).

- a 3-node raft OpenBao cluster, Shamir 3/2 (`testbed.raft_cluster`), configured as an admin would
  (`testbed.bao.Bao.configure`: policies, mint role, cert auth) plus a snapshot token;
- the unsealer (`unseal --config`, watching the three nodes directly), restarted when it dies as its
  unit would (systemd/vault-unseal.service: Restart=always, RestartSec=10), its STATUS and READY read
  from a notify socket;
- `run` with its tracker and the stand-in Nomad agent (Restart=always, RestartSec=2 as
  systemd/nomad.service), reaching Vault through a proxy that sends each connection to the active
  node (a load balancer with a health check) and can black-hole it;
- `rclone serve s3` (`testbed.s3.Rclone`) and `snapshot --copy-to` on a short timer, one run at a
  time; a run under the "directory full" fault runs in a mount namespace of its own with a small
  tmpfs on the snapshot directory (`unshare --mount`, as testbed/s3.py mounts its volume).

The agent is a Nomad 1.9 server on both integrations, the one version that has both tokens: `run
--keyring` keeps the server token (its `vault` block) and the keyring token (`keyring "transit"`, read
from its file at every wrapper build, `testbed/nomad_standin/keyring.py`), against the cluster's own
transit engine as `bootstrap-roles --keyring` writes it. A rotation (Nomad's `operator root keyring
rotate`) is asked for by creating `Stack.rotate_trigger`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import hvac

from testbed import procs
from testbed.agent import NotifySocket, fake_nomad, keyring_block
from testbed.bao import Bao, Certs
from testbed.cli import CLI
from testbed.config import write_config
from testbed.env import clean_env
from testbed.procs import wait_for
from testbed.proxy import DelayProxy
from testbed.raft_cluster import RaftCluster
from testbed.s3 import Rclone
from testbed.unsealing import write_cfg, write_keys

ROOT = Path(__file__).resolve().parents[2]
UNSEALER_RESTART_SEC = 10.0  # systemd/vault-unseal.service RestartSec=10
AGENT_RESTART_SEC = 2.0  # systemd/nomad.service RestartSec=2
SNAPSHOT_EVERY = 6.0  # the timer, seconds between the end of one run and the start of the next
BUCKET = "soak"


class ClusterAdmin(Bao):
    """`Bao`'s admin writes (`configure`) aimed at the cluster's active node with its root token."""

    def __init__(self, addr: str, certs: Certs, root_token: str) -> None:  # no server of its own
        self.addr, self.certs, self.root_token = addr, certs, root_token


class Balancer(DelayProxy):
    """TCP (TLS passes through) to whichever node answered sys/health 200 last: a load balancer."""

    def __init__(self, cluster: RaftCluster) -> None:
        self.cluster = cluster
        self.active_port = cluster.nodes[0].port
        super().__init__(self.active_port)

    def upstream_port(self) -> int:
        return self.active_port


class Supervised:
    """One service as its unit runs it: started again `restart_sec` after it exits, whatever the code."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, restart_sec: float) -> None:
        self.name, self.argv, self.env, self.log, self.restart_sec = name, argv, env, log, restart_sec
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits: list[tuple[float, int, bool]] = []  # (monotonic, code, killed by the soak)
        self.started_at: list[float] = []
        self.log_offsets: list[int] = []  # the log's size at each start: what each process wrote begins there
        self._killed_by_us = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._spawn()
        self.thread.start()

    def _spawn(self) -> None:
        self.log_offsets.append(self.log.stat().st_size if self.log.exists() else 0)
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.started_at.append(time.monotonic())
        threading.Thread(target=self._copy, args=(self.proc,), daemon=True).start()

    def _copy(self, proc: subprocess.Popen[bytes]) -> None:
        """The process's output into the log, each line stamped with the wall clock (the tool's own lines
        carry no time: journald adds it)."""
        assert proc.stdout is not None
        with open(self.log, "ab") as out:
            for line in proc.stdout:
                out.write(time.strftime("%H:%M:%S").encode() + f".{int(time.time() * 1000) % 1000:03d} ".encode())
                out.write(line)
                out.flush()

    def _loop(self) -> None:
        while not self._stop.is_set():
            proc = self.proc
            assert proc is not None
            try:
                code = proc.wait(0.2)
            except subprocess.TimeoutExpired:
                continue
            with self._lock:
                self.exits.append((time.monotonic(), code, self._killed_by_us))
                self._killed_by_us = False
            if self._stop.wait(self.restart_sec):
                return
            with self._lock:
                if not self._stop.is_set():
                    self._spawn()

    def kill(self) -> None:
        """SIGKILL by PID: a crash its unit restarts."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self._killed_by_us = True
                os.kill(self.proc.pid, signal.SIGKILL)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        if self.proc is not None:
            procs.stop_tree(self.proc, timeout=10)


class Stack:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.certs = Certs(work / "certs")
        self.cluster = RaftCluster(work / "raft", self.certs)
        self.s3 = Rclone(work / "s3")
        self.balancer: Balancer | None = None
        self.unsealer: Supervised | None = None
        self.agent: Supervised | None = None
        self.notify: NotifySocket | None = None
        self.snap_dir = work / "snapshots"
        self.snap_token = ""
        self.agent_report = self.logs / "agent-report.jsonl"
        self.run_config = work / "run" / "config.toml"
        self.token_config = work / "run" / "vault-token.hcl"
        self.keyring_token = work / "run" / "keyring-token"
        self.rotate_trigger = work / "run" / "rotate-keyring"
        self.keyring_tokens_seen: set[str] = set()  # a revoked keyring token must not reach a log either
        self.s3_lock = threading.Lock()

    # ---- start -------------------------------------------------------------------------

    def start(self) -> None:
        self.cluster.start()
        leader = self.cluster.leader()
        assert leader is not None
        admin = ClusterAdmin(self.cluster.node(leader).addr, self.certs, self.cluster.root_token)
        admin.configure()
        admin.configure_keyring()
        root = admin.client()
        root.sys.create_or_update_policy("nomad_snapshot", (ROOT / "policies" / "snapshot.hcl").read_text())
        self.snap_token = root.auth.token.create(policies=["nomad_snapshot"], period="24h", no_parent=True)["auth"][
            "client_token"
        ]
        self.balancer = Balancer(self.cluster)
        self.balancer.active_port = self.cluster.node(leader).port
        self.s3.start()
        self.s3.make_bucket(BUCKET)
        self.start_unsealer()
        self.start_agent()

    def start_unsealer(self) -> None:
        keys = write_keys(self.work / "unseal-keys", self.cluster.keys[:2])
        (self.work / "unseal").mkdir(exist_ok=True)
        nodes = [n.addr for n in self.cluster.nodes]
        # the defaults otherwise: request_timeout 10 s as the unit has it (the test bed's file says 3 s)
        cfg = write_cfg(self.work / "unseal" / "unseal.toml", self.certs, nodes, keys, request_timeout="10s")
        self.notify = NotifySocket(self.work / "unseal-notify.sock")
        env = clean_env(NOTIFY_SOCKET=str(self.notify.path))
        self.unsealer = Supervised(
            "unsealer", [*CLI, "unseal", "--config", str(cfg)], env, self.logs / "unsealer.log", UNSEALER_RESTART_SEC
        )
        self.unsealer.start()

    def start_agent(self) -> None:
        assert self.balancer is not None
        lb = f"https://127.0.0.1:{self.balancer.port}"
        server = ClusterAdmin(lb, self.certs, self.cluster.root_token)
        write_config(
            self.run_config, server, self.certs,
            token_config=str(self.token_config), check_interval="2s", request_timeout="3s",
            sighup_grace="4s", adoption_timeout="20s", keyring=True, keyring_token_file=str(self.keyring_token),
        )  # fmt: skip
        agent_hcl = self.work / "run" / "agent.hcl"
        agent_hcl.write_text(
            f'data_dir = "{agent_hcl.parent}/data"\nvault {{\n  enabled = true\n  address = "{lb}"\n'
            f'  ca_file = "{self.certs.ca_path}"\n}}\n'
            + keyring_block(lb, self.certs.ca_path, f"file://{self.keyring_token}")
        )
        env = clean_env(  # Nomad's own timings (validation retry 30 s)
            FAKE_NOMAD_REPORT=str(self.agent_report),
            FAKE_NOMAD_KEYRING_VERSION="1.9",
            FAKE_NOMAD_KEYRING_ROTATE=str(self.rotate_trigger),
        )
        argv = [*CLI, "run", "--config", str(self.run_config), "--", *fake_nomad(agent_hcl)]
        self.agent = Supervised("agent", argv, env, self.logs / "run.log", AGENT_RESTART_SEC)
        self.agent.start()

    def keyring_file_token(self) -> str:
        """The keyring token in its file now ("" when there is none), remembered for the log scan."""
        try:
            token = self.keyring_token.read_text()
        except OSError:
            return ""
        if token:
            self.keyring_tokens_seen.add(token)
        return token

    # ---- what the checks read ------------------------------------------------------------

    def root(self, leader: int | None, timeout: float = 3) -> hvac.Client | None:
        """hvac with the root token on node-`leader` (the active node), or None without one."""
        if leader is None:
            return None
        return hvac.Client(
            url=self.cluster.node(leader).addr, token=self.cluster.root_token, verify=str(self.certs.ca_path),
            timeout=timeout,
        )  # fmt: skip

    def secrets(self) -> list[str]:
        """Every secret the soak knows: root token, unseal keys, S3 secret, snapshot token, agent tokens."""
        found = [self.cluster.root_token, self.s3.secret, self.snap_token, *self.cluster.keys]
        found += self.cluster.keys_base64
        found += self.agent_tokens()
        self.keyring_file_token()
        found += sorted(self.keyring_tokens_seen)
        return [s for s in found if s]

    def agent_tokens(self) -> list[str]:
        tokens = []
        try:
            text = self.token_config.read_text()
        except OSError:
            text = ""
        for line in text.splitlines():
            if "token" in line and '"' in line:
                tokens.append(line.split('"')[1])
        state = self.work / "run" / "state"
        for f in state.glob("*.json") if state.exists() else []:
            try:
                doc: Any = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("token"), str):
                tokens.append(doc["token"])
        return tokens

    def log_files(self) -> list[tuple[Path, bool]]:
        """Every log of the run, and whether it is the tool's own (a Python traceback there is a crash)."""
        found = [(p, p.name != "agent-report.jsonl") for p in sorted(self.logs.rglob("*")) if p.is_file()]
        found += [(n.log_path, False) for n in self.cluster.nodes]
        found.append((self.s3.log, False))
        return found

    def state_accessor(self) -> str | None:
        """The accessor of the server token `run` saved last (its state file; the keyring's is another)."""
        try:
            doc: Any = json.loads((self.work / "run" / "state" / "token.json").read_text())
        except (OSError, ValueError):
            return None
        if isinstance(doc, dict) and isinstance(doc.get("accessor"), str) and doc.get("token"):
            return str(doc["accessor"])
        return None

    def tracker_doc(self) -> dict[str, Any]:
        """The tracker's tracker.json (`status` reads it), or {}."""
        try:
            doc = json.loads((self.work / "run" / "state" / "tracker.json").read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def s3_env(self) -> dict[str, str]:
        return clean_env(**self.s3.env(AWS_MAX_ATTEMPTS="2"), VAULT_TOKEN=self.snap_token)

    def snapshot_argv(self) -> list[str]:
        assert self.balancer is not None
        return [
            *CLI, "snapshot", "--auth", "token", "--dir", str(self.snap_dir), "--keep", "4",
            "--vault-addr", f"https://127.0.0.1:{self.balancer.port}", "--ca-cert", str(self.certs.ca_path),
            "--copy-to", f"s3://{BUCKET}/vault", "--snapshot-timeout", "30s", "--format", "json",
        ]  # fmt: skip

    # ---- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        for part in (self.agent, self.unsealer):
            if part is not None:
                part.stop()
        procs.stop_mentioning(str(self.run_config), signal.SIGKILL)  # a tracker left behind, by PID
        if self.balancer is not None:
            self.balancer.close()
        self.s3.stop()
        self.cluster.stop_all()
        if self.notify is not None:
            self.notify.close()

    def wait_healthy(self, timeout: float = 120) -> None:
        wait_for(lambda: all(n.running for n in self.cluster.nodes), timeout, "every node running")
        self.cluster.wait_formed(timeout)
