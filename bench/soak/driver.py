"""Runs a schedule against the stack: injects each fault when it is due (and fewer than two are active,
and its target is free), heals it after its hold, and lets `Monitor` check everything meanwhile."""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field

import requests

from bench.soak.faults import MAX_ACTIVE, Fault, schedule
from bench.soak.invariants import Monitor
from bench.soak.snapshots import SnapshotTimer
from bench.soak.stack import Stack
from testbed import procs

SETTLE = 90.0  # seconds the stack gets after the last fault to be whole again (the agent's 90 s bound)
DEFER = 20.0  # seconds a fault may wait for something to act on (a leader, an unsealed node) before it is skipped


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Outcome:
    seed: int
    seconds: float
    planned: int
    injected: list[Fault] = field(default_factory=list)
    skipped: list[tuple[Fault, str]] = field(default_factory=list)  # could not apply (e.g. no leader to step down)
    not_reached: int = 0
    formed_in: float = 0.0


class Driver:
    def __init__(self, stack: Stack, seed: int, seconds: float, settle: float = SETTLE) -> None:
        self.stack, self.seed, self.seconds, self.settle = stack, seed, seconds, settle
        self.plan = schedule(seed, seconds)
        self.started = time.monotonic()
        self.monitor = Monitor(stack, seed, self.started)
        self.snapshots = SnapshotTimer(stack, self.monitor)
        self.outcome = Outcome(seed, seconds, len(self.plan))
        self.active: list[tuple[Fault, float]] = []  # (fault, heal at)

    def run(self) -> Outcome:
        self.started = self.monitor.started = time.monotonic()
        self.monitor.start()
        self.snapshots.start()
        pending = deque(self.plan)
        end = self.started + self.seconds
        while True:
            now = time.monotonic()
            for fault, heal_at in list(self.active):
                if now >= heal_at:
                    self.heal(fault)
            if now >= end:
                break
            if pending and now - self.started >= pending[0].due and self._may_start(pending[0]):
                waited = now - self.started - pending[0].due
                if self.inject(pending[0], last_try=waited > DEFER):
                    pending.popleft()
            time.sleep(0.05)
        self.outcome.not_reached = len(pending)
        for fault, _ in list(self.active):
            self.heal(fault)
        log(f"faults over: {len(self.outcome.injected)} injected; waiting for the stack to settle")
        settle = time.monotonic() + self.settle
        while time.monotonic() < settle and not self._settled():
            time.sleep(0.5)
        self.snapshots.stop()
        self.monitor.final()
        self.monitor.scan_logs()
        self.monitor.stop()
        return self.outcome

    def _settled(self) -> bool:
        m = self.monitor
        return (all(r.took is not None for r in m.recoveries) and m.cluster_green() and m.token_live is True
                and m.ring_live is True)  # fmt: skip

    def _may_start(self, fault: Fault) -> bool:
        if len(self.active) >= MAX_ACTIVE:
            return False
        return not any(fault.conflicts(other) for other, _ in self.active)

    # ---- the faults ------------------------------------------------------------------------

    def inject(self, fault: Fault, last_try: bool) -> bool:
        """Apply `fault`; False while it cannot be yet (it is tried again: the order stays the seed's)."""
        why = self._apply(fault)
        if why:
            self.monitor.withdrawn(fault)
        if why and not last_try:
            return False
        if why:
            self.outcome.skipped.append((fault, why))
            log(f"{fault.describe()}: skipped ({why})")
            return True
        log(f"{fault.describe()}: injected")
        self.outcome.injected.append(fault)
        self.monitor.injected(fault)
        self.active.append((fault, time.monotonic() + fault.hold))
        return True

    def heal(self, fault: Fault) -> None:
        self.active = [(f, t) for f, t in self.active if f.index != fault.index]
        c = self.stack.cluster
        if fault.kind == "node_kill":
            c.node(fault.node).launch(wait=False)
            self.monitor.relaunched(fault.node)
        elif fault.kind == "node_freeze":
            c.node(fault.node).thaw()
        elif fault.kind == "node_seal":
            self.monitor.unsealing_by_hand(fault.node)
            try:
                c.unseal(fault.node, wait=False)
            except (AssertionError, requests.RequestException) as exc:
                log(f"{fault.describe()}: unsealing by hand: {exc}")
        elif fault.kind == "cluster_restart":
            for i, n in enumerate(c.nodes, start=1):
                n.launch(wait=False)
                self.monitor.relaunched(i)
        elif fault.kind == "blackhole":
            assert self.stack.balancer is not None
            self.stack.balancer.blackhole.clear()
        elif fault.kind == "s3_down":
            with self.stack.s3_lock:
                self.stack.s3.start()
        self.monitor.healed(fault)

    def _apply(self, fault: Fault) -> str:
        """Inject `fault`; a reason when it cannot be (nothing to act on right now)."""
        c = self.stack.cluster
        node = c.node(fault.node) if fault.node else None
        if fault.kind == "node_kill":
            assert node is not None and node.proc is not None
            if not node.running:
                return "not running"
            self.monitor.injected(fault)
            os.kill(node.pid, signal.SIGKILL)
            node.proc.wait(10)
        elif fault.kind == "node_freeze":
            assert node is not None
            if not node.running:
                return "not running"
            node.freeze()
        elif fault.kind == "node_seal":
            assert node is not None
            view = self.monitor.nodes[fault.node]
            if view.sealed is not False:
                return "not unsealed"
            self.monitor.injected(fault)  # sys/seal may take seconds
            unsealer_log = self.stack.logs / "unsealer.log"
            offset = unsealer_log.stat().st_size if unsealer_log.exists() else 0
            try:
                answer = node.post("sys/seal", token=c.root_token, timeout=10)
            except requests.RequestException as exc:
                # The server may still seal it after our timeout (sys/seal on a busy active node takes
                # seconds): count it as injected, so it is unsealed by hand like any other, but without the
                # "never unsealed by the tool" check, since whether it sealed is not known.
                log(f"{fault.describe()}: sys/seal {type(exc).__name__}: healed by hand, not checked")
                return ""
            if answer.code != 204:
                return f"sys/seal answered {answer.code}"
            self.monitor.sealed_on_purpose(fault.node, offset)
        elif fault.kind == "step_down":
            leader = self.monitor.leader()
            if leader is None:
                return "no leader"
            try:
                answer = c.node(leader).post("sys/step-down", token=c.root_token, timeout=10)
            except requests.RequestException as exc:
                return f"step-down: {type(exc).__name__}"
            if answer.code != 204:
                return f"step-down answered {answer.code}"
        elif fault.kind == "cluster_restart":
            self.monitor.injected(fault)  # stopping three servers takes seconds
            for n in c.nodes:
                if n.running:
                    n.thaw()
            procs.stop_all([n.proc for n in c.nodes if n.proc is not None and n.running], signal.SIGTERM, 10)
        elif fault.kind == "token_revoke":
            return self._revoke(fault, self.monitor.agent_accessor or self.stack.state_accessor())
        elif fault.kind == "keyring_revoke":
            return self._revoke(fault, self.monitor.ring_accessor)
        elif fault.kind == "blackhole":
            assert self.stack.balancer is not None
            self.stack.balancer.blackhole.set()
        elif fault.kind == "s3_down":
            with self.stack.s3_lock:
                self.stack.s3.stop()
        elif fault.kind == "snapdir_full":
            self.snapshots.full_size = fault.size
        elif fault.kind == "unsealer_kill":
            assert self.stack.unsealer is not None
            if self.stack.unsealer.pid is None:
                return "unsealer down (its unit is restarting it)"
            self.stack.unsealer.kill()
        return ""

    def _revoke(self, fault: Fault, accessor: str | None) -> str:
        """Revoke the token of `accessor` with the root token on the active node; a reason when it cannot be."""
        client = self.stack.root(self.monitor.leader())
        if accessor is None or client is None:
            return "no live token or no leader"
        try:
            client.auth.token.revoke_accessor(accessor)
        except Exception as exc:  # already gone, or Vault moving
            return f"revoke: {type(exc).__name__}"
        self.monitor.revoked[fault.index] = accessor
        return ""
