"""The invariants, checked all the time by `Monitor` (threads), each violation recorded with the seed,
the time since the start (to replay it: the same seed, the same fault index), the faults active then
and the machine's load (`/proc/loadavg`: a 2 s bound missed under load says so).

1. a node sealed on purpose is never unsealed by the tool (until the soak heals it);
2. a restarted node is unsealed within 2 s of answering sealed (counted from when the unsealer could
   act: its READY after a restart), and the cluster has a leader within 30 s of the faults healing;
3. every snapshot kept verifies, has its manifest, and so has every copy (`snapshots.py`);
4. a half-written file never carries a final name (`snapshots.py`: final names verify, also in a full
   directory);
5. the agent holds a live token within 90 s of Vault being usable, and is stopped only when the
   documented escalation says so (the tracker's "stopping it" line before the exit); the same 90 s
   bound holds for the keyring token in its file, and after the keyring token is revoked, Nomad's
   keyring wrapper is built with its replacement (a rotation the soak asks for, as an operator would);
6. no traceback and no secret in any log (`scan_text`);
7. no process of the tool dies unless its supervisor restarts it: the tracker lives as long as its
   agent (nothing restarts a tracker); `run` and the unsealer are restarted as their units would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench.soak.faults import Fault
from testbed import jsonl, procs

UNSEAL_BOUND = 2.0
LEADER_BOUND = 30.0
TOKEN_BOUND = 90.0
TRACKER_GRACE = 5.0  # after the agent's start event, its tracker must be there
ESCALATION = ("so systemd restarts it with the saved token", "so systemd restarts it with the new token")
TRACEBACK = "Traceback (most recent call last)"


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "?"


@dataclass
class Violation:
    check: str
    detail: str
    seed: int
    elapsed: float  # seconds since the soak's start
    faults: list[str]  # the faults active (or last injected) then
    load: str = field(default_factory=loadavg)


def scan_text(text: str, secrets: Iterable[str], tool_log: bool) -> list[str]:
    """What is wrong in one log: a secret (named by its first 4 characters only), a Python traceback in
    a log of the tool's."""
    found = []
    for s in secrets:
        if len(s) >= 8 and s in text:
            found.append(f"a secret ({s[:4]}...) appears")
    if tool_log and TRACEBACK in text:
        line = text[text.index(TRACEBACK) :].splitlines()
        found.append(f"a traceback: {' | '.join(line[-3:]) if len(line) < 40 else line[0]}")
    return found


@dataclass
class NodeView:
    sealed: bool | None = None  # None: no answer
    code: int | None = None  # sys/health
    at: float = 0.0


@dataclass
class Expectation:
    """A restarted node that must be unsealed: since when it answers sealed, and when it was unsealed."""

    node: int
    since: float  # relaunch
    sealed_at: float | None = None
    done: bool = False
    reported: bool = False


@dataclass
class Recovery:
    fault: Fault
    healed_at: float
    healed_wall: float = field(default_factory=time.time)
    took: float | None = None


class Monitor:
    def __init__(self, stack: Any, seed: int, started: float) -> None:
        self.stack = stack
        self.seed = seed
        self.started = started
        self.violations: list[Violation] = []
        self.excused: list[Violation] = []  # outside the product's documented promise (with the reason)
        self.active: list[Fault] = []
        self.last: list[str] = []
        self.nodes = {i: NodeView() for i in (1, 2, 3)}
        self.purposely_sealed: dict[int, tuple[float, int]] = {}  # node -> (since, its process count)
        self.purposely_sealed_at: dict[int, tuple[float, int, int]] = {}  # ... and the unsealer log's size then
        self.unsealer_had_looked: dict[int, bool] = {}
        self.expect: list[Expectation] = []
        self.recoveries: list[Recovery] = []
        self.revoked: dict[int, str] = {}  # token_revoke / keyring_revoke fault index -> the accessor revoked
        self.cluster_quiet_since: float | None = time.monotonic()
        self.leader_reported = False
        self.usable_since: float | None = None
        self.token_reported = False
        self.token_live: bool | None = None
        self.agent_accessor: str | None = None
        self.ring_live: bool | None = None  # the keyring token in its file, looked up as the agent's is
        self.ring_accessor: str | None = None
        self.ring_reported = False
        self.rotation_asked = 0.0  # monotonic: when the soak last asked Nomad for a keyring rotation
        self.unsealer_ready_at: float | None = None
        self.ready_seen = 0
        self.snapshot_ok_at: list[float] = []  # runs that exited 0: when they started
        self.agent_exits_checked = 0
        self.unsealer_exits_checked = 0
        self.scanned: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._poll_node, args=(i,), daemon=True) for i in (1, 2, 3)]
        self.threads.append(threading.Thread(target=self._loop, daemon=True))

    # ---- recording ---------------------------------------------------------------------

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def violate(self, check: str, detail: str, excuse: str = "") -> None:
        faults = [f.describe() for f in self.active] or self.last
        v = Violation(check, detail + (f" [excused: {excuse}]" if excuse else ""), self.seed, self.elapsed(), faults)
        with self.lock:
            (self.excused if excuse else self.violations).append(v)
        print(f"[soak {v.elapsed:7.1f}s] {'EXCUSED' if excuse else 'VIOLATION'} {check}: {v.detail} "
              f"(faults {faults}, load {v.load})", flush=True)  # fmt: skip

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(10)

    # ---- what the driver tells it ------------------------------------------------------------

    def injected(self, fault: Fault) -> None:
        """`fault` is being applied (told before a slow act such as stopping the cluster: the bounds of
        what it breaks must not run meanwhile). Idempotent."""
        with self.lock:
            if any(f.index == fault.index for f in self.active):
                return
            if fault.kind in ("node_kill", "node_freeze", "node_seal", "cluster_restart"):
                # a node faulted again: the 2 s bound of an earlier restart no longer applies to it
                self.expect = [e for e in self.expect if fault.kind != "cluster_restart" and e.node != fault.node]
            self.active.append(fault)
            self.last = [fault.describe()]
            if fault.kind in ("node_kill", "node_freeze", "node_seal", "step_down", "cluster_restart"):
                self.cluster_quiet_since = None
                self.leader_reported = False

    def withdrawn(self, fault: Fault) -> None:
        """`fault` could not be applied after all."""
        with self.lock:
            self.active = [f for f in self.active if f.index != fault.index]

    def healed(self, fault: Fault) -> None:
        now = time.monotonic()
        with self.lock:
            self.active = [f for f in self.active if f.index != fault.index]
            self.recoveries.append(Recovery(fault, now))
            if not any(f.kind in ("node_kill", "node_freeze", "node_seal", "step_down", "cluster_restart")
                       for f in self.active):  # fmt: skip
                self.cluster_quiet_since = now

    def sealed_on_purpose(self, node: int, log_offset: int) -> None:
        """node-`node` was just sealed through sys/seal; the unsealer's log was `log_offset` bytes long before."""
        with self.lock:
            self.purposely_sealed[node] = (time.monotonic(), self.stack.cluster.node(node).starts)
            self.purposely_sealed_at[node] = (*self.purposely_sealed[node], log_offset)
            unsealer = self.stack.unsealer
            # whether the unsealer running now had finished a round (READY) before the seal: else it may
            # never have seen the node unsealed on its connection, the only evidence it goes by
            self.unsealer_had_looked[node] = bool(
                unsealer is not None and unsealer.pid is not None and unsealer.started_at
                and self.unsealer_ready_at is not None and self.unsealer_ready_at > unsealer.started_at[-1]
            )  # fmt: skip

    def unsealing_by_hand(self, node: int) -> None:
        with self.lock:
            self.purposely_sealed.pop(node, None)

    def relaunched(self, node: int) -> None:
        with self.lock:
            self.expect = [e for e in self.expect if e.node != node]
            self.expect.append(Expectation(node, time.monotonic()))

    # ---- the node pollers ----------------------------------------------------------------

    def _poll_node(self, i: int) -> None:
        node = self.stack.cluster.node(i)
        session = requests.Session()
        ca = str(self.stack.certs.ca_path)
        while not self.stop_event.is_set():
            sealed: bool | None = None
            code: int | None = None
            try:
                r = session.get(f"{node.addr}/v1/sys/health", timeout=1, verify=ca)
                code = r.status_code
                body = r.json() if r.content else {}
                sealed = bool(body.get("sealed")) if isinstance(body, dict) and "sealed" in body else None
            except (requests.RequestException, ValueError):
                session.close()
                session = requests.Session()
            now = time.monotonic()
            self.nodes[i] = NodeView(sealed, code, now)
            if code == 200 and self.stack.balancer is not None:
                self.stack.balancer.active_port = node.port
            self._check_node(i, sealed, now)
            self.stop_event.wait(0.1)

    def _check_node(self, i: int, sealed: bool | None, now: float) -> None:
        node = self.stack.cluster.node(i)
        purposely = self.purposely_sealed.get(i)
        if purposely is not None and sealed is False and node.starts == purposely[1]:
            self.violate("sealed-on-purpose", f"node-{i} sealed on purpose was unsealed", self._seal_excuse(i))
            with self.lock:
                self.purposely_sealed.pop(i, None)
        for e in list(self.expect):
            if e.node != i or e.done:
                continue
            if sealed is True and e.sealed_at is None:
                e.sealed_at = now
            if sealed is False and (e.sealed_at is not None or now > e.since):
                e.done = True  # unsealed (seen sealed first, or not: it was quicker than the poll)
            bound_from = self._bound_from(e)
            if bound_from is not None and not e.done and not e.reported and now - bound_from > UNSEAL_BOUND:
                e.reported = True
                where = self.stack.cluster.node(i).addr.removeprefix("https://")
                try:
                    said = [ln for ln in (self.stack.logs / "unsealer.log").read_text().splitlines() if where in ln]
                except OSError:
                    said = []
                self.violate("unseal-2s", f"node-{i} still sealed {now - bound_from:.1f}s after answering sealed "
                             f"with the unsealer up; the unsealer's last words on it: {said[-3:]}")  # fmt: skip

    def _seal_excuse(self, i: int) -> str:
        """Why unsealing node-`i` was within the documented cost of "sealed on purpose" (plan.py): the
        evidence is the unsealer's kept connection, and it was gone (the unsealer restarted, or its probe
        of that node timed out, which leaves the connection unusable). "" when neither happened."""
        since, _, offset = self.purposely_sealed_at[i]
        unsealer = self.stack.unsealer
        if unsealer is not None and unsealer.started_at and unsealer.started_at[-1] > since:
            return "the unsealer restarted after the seal: its connection, the only evidence, is gone (unseal/plan.py)"
        if not self.unsealer_had_looked.get(i, True):
            return (
                "the unsealer had just restarted and not finished its first round when the node was sealed: it "
                "never saw the node unsealed on its connection, the only evidence (unseal/plan.py)"
            )
        where = self.stack.cluster.node(i).addr.removeprefix("https://")
        try:
            with open(self.stack.logs / "unsealer.log", "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            text = ""
        if f"{where}: unreachable: timeout" in text:
            return (
                "the unsealer's probe of that node timed out after the seal: a new connection cannot tell a "
                "restart from a seal (unseal/plan.py, 'a request that timed out leaves its connection unusable')"
            )
        return ""

    def _bound_from(self, e: Expectation) -> float | None:
        """From when the 2 s run: the later of its first sealed answer and the unsealer's READY."""
        if e.sealed_at is None or self.unsealer_ready_at is None:
            return None
        unsealer = self.stack.unsealer
        if unsealer is None or unsealer.pid is None:
            return None
        if unsealer.started_at and self.unsealer_ready_at < unsealer.started_at[-1]:
            return None  # the running unsealer has not said READY yet
        return max(e.sealed_at, self.unsealer_ready_at)

    # ---- the slower checks -----------------------------------------------------------------

    def _loop(self) -> None:
        next_token = next_scan = 0.0
        while not self.stop_event.wait(0.2):
            now = time.monotonic()
            self._watch_unsealer_notify(now)
            self._check_leader(now)
            self._check_recoveries(now)
            if now >= next_token:
                next_token = now + 1.0
                self._check_token(now)
                self._check_keyring(now)
                self._check_agent_exits()
                self._check_unsealer_exits()
                self._check_tracker()
            if now >= next_scan:
                next_scan = now + 15.0
                self.scan_logs()

    def _watch_unsealer_notify(self, now: float) -> None:
        notify = self.stack.notify
        if notify is None:
            return
        messages = notify.drain()
        ready = sum(1 for m in messages if "READY=1" in m)
        if ready > self.ready_seen:
            self.ready_seen = ready
            self.unsealer_ready_at = now

    def leader(self) -> int | None:
        return next((i for i, v in self.nodes.items() if v.code == 200), None)

    def cluster_green(self) -> bool:
        views = list(self.nodes.values())
        return self.leader() is not None and all(v.sealed is False for v in views)

    def _check_leader(self, now: float) -> None:
        quiet = self.cluster_quiet_since
        if quiet is None or self.leader() is not None or self.leader_reported:
            return
        if now - quiet > LEADER_BOUND:
            self.leader_reported = True
            self.violate("leader-30s", f"no leader {now - quiet:.0f}s after the faults healed")

    def vault_usable(self) -> bool:
        b = self.stack.balancer
        return self.leader() is not None and b is not None and not b.blackhole.is_set()

    def _check_token(self, now: float) -> None:
        usable = self.vault_usable()
        if not usable:
            self.usable_since = None
            self.token_reported = False
        elif self.usable_since is None:
            self.usable_since = now
        self.agent_accessor = self._agent_accessor()
        live = None
        if usable and self.agent_accessor:
            client = self.stack.root(self.leader())
            if client is not None:
                try:
                    data = client.auth.token.lookup_accessor(self.agent_accessor)["data"]
                    live = bool(data.get("accessor"))
                except Exception:  # revoked (400) or Vault moving: not live as far as we know
                    live = False
        self.token_live = live
        since = self.usable_since
        if since is not None and live is not True and not self.token_reported and now - since > TOKEN_BOUND:
            self.token_reported = True
            self.violate("agent-token-90s", f"the agent holds no live token {now - since:.0f}s after Vault "
                         f"became usable (accessor {self.agent_accessor})")  # fmt: skip

    def _check_keyring(self, now: float) -> None:
        """The keyring token in its file is live within 90 s of Vault being usable (the tracker replaces a
        dead one with no signal, and Nomad reads the file at its next wrapper build); while a revoked one's
        recovery is pending and its replacement is live, ask Nomad for a rotation (its next wrapper build)."""
        token = self.stack.keyring_file_token()
        client = self.stack.root(self.leader()) if self.vault_usable() else None
        live = accessor = None
        if client is not None and token:
            try:
                data = client.auth.token.lookup(token)["data"]
                live, accessor = bool(data.get("accessor")), data.get("accessor")
            except Exception:  # revoked (403) or Vault moving: not live as far as we know
                live = False
        self.ring_live, self.ring_accessor = live, accessor if live else None
        since = self.usable_since
        if since is None:
            self.ring_reported = False
        elif live is not True and not self.ring_reported and now - since > TOKEN_BOUND:
            self.ring_reported = True
            self.violate("keyring-token-90s", f"no live keyring token in its file {now - since:.0f}s after Vault "
                         f"became usable")  # fmt: skip
        waiting = [r for r in self.recoveries if r.fault.kind == "keyring_revoke" and r.took is None]
        revoked = {self.revoked.get(r.fault.index) for r in waiting}
        if waiting and live and accessor not in revoked and now - self.rotation_asked > 5.0:
            self.rotation_asked = now
            self.stack.rotate_trigger.touch()

    def _ring_used_since(self, wall: float, revoked: str | None) -> bool:
        """Nomad built a keyring wrapper after `wall` with a token other than `revoked` (the wrapper renews
        the token it read as itself first: the event's accessor)."""
        return any(
            e.get("event") == "keyring_wrapper" and float(e.get("time", 0)) > wall
            and e.get("accessor") not in (None, revoked)
            for e in jsonl.read(self.stack.agent_report, skip_invalid=True)
        )  # fmt: skip

    def _agent_accessor(self) -> str | None:
        """The accessor of the token the agent holds now, as its report says (the latest one it took)."""
        accessor = None
        for e in jsonl.read(self.stack.agent_report, skip_invalid=True):
            kind = e.get("event")
            if kind == "start":
                accessor = e.get("token_accessor")
            elif (kind in ("validated", "renewed") and e.get("accessor")) or (
                kind == "reload" and not e.get("error") and e.get("accessor")
            ):
                accessor = e["accessor"]
        return accessor

    def _check_agent_exits(self) -> None:
        agent = self.stack.agent
        if agent is None:
            return
        exits = list(agent.exits)
        for n in range(self.agent_exits_checked, len(exits)):
            self.agent_exits_checked = n + 1
            _, code, killed = exits[n]
            offsets = agent.log_offsets
            start = offsets[n] if n < len(offsets) else 0
            end = offsets[n + 1] if n + 1 < len(offsets) else None
            with open(agent.log, "rb") as f:
                f.seek(start)
                text = f.read(None if end is None else end - start).decode(errors="replace")
            if killed or ("Caught signal" not in text and "==> " not in text):
                continue  # ours, or `run` that never exec'd the agent (its exit is its unit's to handle)
            if code == 78:
                self.violate("unit-would-not-restart", f"run exited 78 (RestartPreventExitStatus=78): {text[-300:]}")
            elif not any(line in text for line in ESCALATION):
                self.violate("agent-stopped", f"the agent exited ({code}) without the tracker's escalation: "
                             f"{text.strip().splitlines()[-1] if text.strip() else ''}")  # fmt: skip

    def _check_unsealer_exits(self) -> None:
        unsealer = self.stack.unsealer
        exits = list(unsealer.exits) if unsealer is not None else []
        for _, code, killed in exits[self.unsealer_exits_checked :]:
            if not killed:
                self.violate("unsealer-exit", f"the unsealer exited {code} without being killed"
                             + (" (78: its unit would not restart it)" if code == 78 else ""))  # fmt: skip
        self.unsealer_exits_checked = len(exits)

    def final(self) -> None:
        """After the faults and the settling: the stack must be whole again."""
        if not self.cluster_green():
            self.violate("not-recovered", f"the cluster is not green at the end: {self.nodes}")
        if self.token_live is not True:
            self.violate("not-recovered", f"the agent holds no live token at the end ({self.agent_accessor})")
        if self.ring_live is not True:
            self.violate("not-recovered", "no live keyring token in its file at the end")
        for r in self.recoveries:
            if r.took is None:
                self.violate("not-recovered", f"{r.fault.describe()} never recovered")

    def _check_tracker(self) -> None:
        agent = self.stack.agent
        pid = agent.pid if agent is not None else None
        if pid is None:
            return
        starts = [e for e in jsonl.read(self.stack.agent_report, skip_invalid=True)
                  if e.get("event") == "start" and e.get("pid") == pid]  # fmt: skip
        if not starts or time.time() - float(starts[-1]["time"]) < TRACKER_GRACE:
            return
        trackers = [p for p in procs.mentioning(str(self.stack.run_config)) if p.pid != pid and p.state != "Z"]
        if not trackers and procs.alive(pid):
            self.violate("tracker-alive", f"agent pid {pid} runs without its tracker")

    def _check_recoveries(self, now: float) -> None:
        for r in self.recoveries:
            if r.took is not None:
                continue
            if self._recovered(r):
                r.took = round(now - r.healed_at, 3)

    def _recovered(self, r: Recovery) -> bool:
        """The fault's own effect is gone (not the stack's green: later faults would count in it)."""
        kind, view = r.fault.kind, self.nodes.get(r.fault.node)
        if kind == "node_kill":  # the relaunched node unsealed
            return view is not None and view.sealed is False and view.at > r.healed_at
        if kind in ("node_freeze", "node_seal"):  # the node answers unsealed again, and there is a leader
            return view is not None and view.sealed is False and view.at > r.healed_at and self.leader() is not None
        if kind == "step_down":
            return self.leader() is not None
        if kind == "cluster_restart":
            return self.cluster_green()
        if kind == "token_revoke":  # the agent holds a live token other than the one revoked
            return self.token_live is True and self.agent_accessor not in (None, self.revoked.get(r.fault.index))
        if kind == "keyring_revoke":  # Nomad's keyring wrapper built with the token that replaced it
            return self._ring_used_since(r.healed_wall, self.revoked.get(r.fault.index))
        if kind == "blackhole":  # the tracker reached Vault again through the proxy
            doc = self.stack.tracker_doc()
            return bool(doc) and doc.get("state") != "unreachable" and doc.get("updated_at", 0) > r.healed_wall
        if kind in ("s3_down", "snapdir_full"):  # the next snapshot run started after it did it all
            return any(at > r.healed_at for at in self.snapshot_ok_at)
        if kind == "unsealer_kill":  # its unit restarted it and it said READY (RestartSec=10 included)
            return self.unsealer_ready_at is not None and self.unsealer_ready_at > r.healed_at
        return self.cluster_green()

    # ---- the logs --------------------------------------------------------------------------

    def scan_logs(self) -> None:
        secrets = self.stack.secrets()
        for path, tool in self.stack.log_files():
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            for problem in scan_text(text, secrets, tool):
                if (str(path), problem) not in self.scanned:
                    self.scanned.add((str(path), problem))
                    self.violate("logs", f"{path.relative_to(self.stack.work)}: {problem}")

    def summary(self) -> dict[str, Any]:
        return {
            "violations": [asdict(v) for v in self.violations],
            "excused": [asdict(v) for v in self.excused],
        }
