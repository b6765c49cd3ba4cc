"""The unsealer's rounds: every node probed in parallel, `unseal_plan` applied, the cluster reported.

Each node has a `Worker`: one `vault.NodeClient` (one kept-alive connection, numbered: what
`unseal_plan` needs to tell "sealed on purpose" from "restarted"), the plan's `NodeMemory`, and at
most one thread at a time. A round starts a thread for every node whose previous one has ended,
waits for them up to a bound, and takes the verdict: a node still busy (hung: SIGSTOP, a black hole)
counts as unreachable this round and gets no second thread, so one hung node never delays another's
unsealing and threads never pile up. Each request has `request_timeout`.

Inside a node's thread: probe (`sys/seal-status`, `sys/health`), `decide`, and while the plan says
to send a key, send it (`sys/unseal`), `after_unseal`, probe again: a node goes from sealed to
unsealed within one round. The keys are `UnsealKey`s: revealed only into the request body.

The main thread logs what changed, writes `unseal.json` (for `status`; never a key) and the metrics,
and in watch mode tells systemd: READY after the first round, STATUS every round, WATCHDOG only while
the unsealer can do its job (it holds keys no node refused, and some node answers).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError, NvtError
from nomad_vault_token.core.key_files import UnsealKeys
from nomad_vault_token.core.notify import Notifier
from nomad_vault_token.unseal import keys as unseal_keys
from nomad_vault_token.unseal.plan import (
    Context,
    Decision,
    NodeMemory,
    Probe,
    UnsealAnswer,
    Verdict,
    after_unseal,
    decide,
    verdict,
)
from nomad_vault_token.vault.client import NodeClient, NodeUnreachable

log = logging.getLogger("nomad_vault_token.unseal")

JITTER = 0.2  # a watch-mode interval is shortened by up to this fraction, never lengthened
ONCE_POLL = 1.0  # seconds between `--once`'s rounds while the outcome is not settled


def node_name(addr: str) -> str:
    """How a node is named in STATUS, logs and metrics: HOST:PORT."""
    parts = urlsplit(addr)
    return parts.netloc or addr


class Keys:
    """The keys this instance holds, from a file or a systemd credential; read again when the file
    changes (a Nomad template re-rendering it), `generation` bumped when the keys themselves change."""

    def __init__(self, settings: Settings) -> None:
        if settings.unseal_keys_file is None and settings.unseal_credential is None:
            raise ConfigError(
                "unseal: no keys: give --keys-file (config unseal_keys_file) or --credential NAME "
                "(config unseal_credential, systemd LoadCredential=NAME:/path)"
            )
        self.file = settings.unseal_keys_file
        self.credential = settings.unseal_credential
        self.generation = 0
        self.keys = self._read()
        self.stamp = self._stamp()
        self.problem = ""

    def _read(self) -> UnsealKeys:
        return unseal_keys.load(self.file, self.credential)

    @property
    def path(self) -> Path:
        return self.keys.source

    def _stamp(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)

    def refresh(self) -> None:
        """Read the keys again if their file changed; a file that became unusable keeps the old keys
        (logged once), as taking none would stop the unsealing for a typo."""
        stamp = self._stamp()
        if stamp == self.stamp:
            return
        self.stamp = stamp
        try:
            keys = self._read()
        except NvtError as exc:
            if exc.message != self.problem:
                log.error("unseal keys not reloaded, keeping the %d held: %s", len(self.keys), exc.message)
            self.problem = exc.message
            return
        self.problem = ""
        if not keys.same_as(self.keys):
            self.generation += 1
            log.info("unseal keys reloaded from %s: %d held", keys.source, len(keys))
        self.keys = keys


class Worker:
    """One node: its client, the plan's memory of it, and at most one thread."""

    def __init__(self, addr: str, settings: Settings) -> None:
        self.addr = addr
        self.name = node_name(addr)
        self.client = NodeClient(addr, settings, float(settings.request_timeout))
        self.memory = NodeMemory()
        self.decision: Decision | None = None
        self.probe_seen: Probe | None = None
        self.last_unseal: float | None = None  # wall clock
        self.started = 0.0
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, ctx: Context, keys: UnsealKeys) -> threading.Thread:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(ctx, keys), name=f"unseal {self.name}", daemon=True)
        self._thread.start()
        return self._thread

    def _run(self, ctx: Context, keys: UnsealKeys) -> None:
        try:
            self.decision = self.round(ctx, keys)
        except Exception:  # a bug must not end the watcher; the node shows as unreachable
            log.exception("probing %s failed", self.name)
            self.decision = decide(Probe.unreachable(self.name, "internal error"), self.memory, ctx)

    def probe(self) -> Probe:
        try:
            status = self.client.seal_status()
            code = self.client.health_code()
        except NodeUnreachable as exc:
            p = Probe.unreachable(self.name, exc.problem)
        else:
            p = Probe.answered(self.name, status, code, self.client.connection)
        self.probe_seen = p
        return p

    def round(self, ctx: Context, keys: UnsealKeys) -> Decision:
        """Probe, decide, and send keys while the plan says so (at most one attempt's worth)."""
        d = decide(self.probe(), self.memory, ctx)
        self.memory = d.memory
        for _ in range(len(keys) + 1):
            if not d.sends_key or d.key_index is None or d.key_index >= len(keys):
                break
            try:
                if d.action == "reset_then_submit":
                    self.client.reset()
                    log.warning("%s: %s", self.name, d.message)
                sent = self.client.unseal(keys[d.key_index].reveal())
                answer = UnsealAnswer.from_response(sent.status, sent.body)
            except NodeUnreachable as exc:
                log.warning("%s: sending an unseal key failed: %s", self.name, exc.problem)
                answer = UnsealAnswer(status=0)
            self.memory = after_unseal(self.memory, d.key_index, answer, ctx, self.client.connection)
            if answer.status == 200 and not answer.sealed:
                self.last_unseal = time.time()
                log.info("%s: unsealed", self.name)
            elif answer.invalid_key:
                log.error("%s: Vault refused our unseal keys (invalid key): not sending them again", self.name)
            elif answer.status not in (0, 200):
                log.warning("%s: sys/unseal answered HTTP %d", self.name, answer.status)
            d = decide(self.probe(), self.memory, ctx)
            self.memory = d.memory
        return d

    def close(self) -> None:
        if not self.busy:
            self.client.close()


@dataclass
class Round:
    """One round's outcome: every node's decision and the cluster's verdict."""

    decisions: list[Decision]
    verdict: Verdict
    status: str
    watchdog_ok: bool


class Unsealer:
    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings)
        self.workers = [Worker(a, settings) for a in settings.unseal_addresses]
        self.notifier = notifier or Notifier()
        self.stop = threading.Event()
        self.last: Round | None = None
        self.ready_sent = False
        self._states: dict[str, str] = {}
        self._status = ""
        self._state_dir_ok = True

    # ---- one round -------------------------------------------------------------------

    def context(self) -> Context:
        s = self.settings
        hold = s.unseal_hold_file is not None and s.unseal_hold_file.exists()
        return Context(
            now=time.monotonic(),
            keys_held=len(self.keys.keys),
            keys_generation=self.keys.generation,
            expect_threshold=s.unseal_expect_threshold or None,
            expect_shares=s.unseal_expect_shares or None,
            stale_after=float(s.unseal_stale_after),
            hold=hold,
        )

    def round(self) -> Round:
        self.keys.refresh()
        ctx = self.context()
        threads = [w.start(ctx, self.keys.keys) for w in self.workers if not w.busy]
        deadline = time.monotonic() + 2 * self.settings.request_timeout + 1
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        decisions = []
        for w in self.workers:
            if w.busy or w.decision is None:
                waited = int(time.monotonic() - w.started)
                d = decide(Probe.unreachable(w.name, f"no answer for {waited}s"), w.memory, ctx)
            else:
                d = w.decision
            decisions.append(d)
        v = verdict(decisions, len(self.keys.keys))
        status = v.status + self._custody_note()
        if ctx.hold:
            status += f"; HOLD: {self.settings.unseal_hold_file} present"
        reachable = any(d.state != "unreachable" for d in decisions)
        r = Round(decisions, v, status, watchdog_ok=v.keys_usable and reachable)
        self.last = r
        self._log(r)
        self.publish(r)
        return r

    def _custody_note(self) -> str:
        thresholds = [
            w.probe_seen.threshold
            for w in self.workers
            if w.probe_seen is not None and w.probe_seen.reachable and not w.probe_seen.auto_unseal
        ]
        t = max(thresholds, default=0)
        held = len(self.keys.keys)
        if t and held < t:
            return f"; holding {held} of {t} keys (split custody)"
        return ""

    def _log(self, r: Round) -> None:
        for d in r.decisions:
            before = self._states.get(d.node)
            if d.action == "alert":
                log.error("%s: %s", d.node, d.message)
            elif d.state != before:
                level = logging.INFO if d.state in ("unsealed", "sealed", "joining") else logging.WARNING
                log.log(level, "%s: %s", d.node, d.message)
            self._states[d.node] = d.state
            for w in d.warnings:
                log.warning("%s: %s", d.node, w)
        if r.status != self._status:
            log.info("cluster: %s", r.status)
            self._status = r.status

    # ---- reporting -------------------------------------------------------------------

    def view(self, r: Round) -> dict[str, Any]:
        """The unsealer's view (never a key), for `--format json`, unseal.json and `status`."""
        v = r.verdict
        nodes = []
        for w, d in zip(self.workers, r.decisions, strict=True):
            p = w.probe_seen if d.state != "unreachable" else None
            nodes.append(
                {
                    "node": w.name,
                    "address": w.addr,
                    "state": d.state,
                    "message": d.message,
                    "role": d.role,
                    "reachable": d.state != "unreachable",
                    "sealed": None if p is None else p.sealed,
                    "auto_unseal": None if p is None else p.auto_unseal,
                    "seal_type": None if p is None else p.seal_type,
                    "last_unseal": w.last_unseal,
                }
            )
        return {
            "status": r.status,
            "cluster": v.kind,
            "leader": v.leader,
            "unsealed": v.unsealed,
            "members": v.members,
            "quorum": v.quorum,
            "keys_held": len(self.keys.keys),
            "keys_source": str(self.keys.path),
            "keys_usable": v.keys_usable,
            "settled": v.settled,
            "exit_code": v.exit_code,
            "warnings": list(v.warnings),
            "nodes": nodes,
        }

    def publish(self, r: Round) -> None:
        doc = {"version": 1, "pid": os.getpid(), **self.view(r), "updated_at": time.time()}
        self._write_state(doc)
        if self.settings.metrics_dir is not None:
            self._write_metrics(r)

    def _write_state(self, doc: dict[str, Any]) -> None:
        from nomad_vault_token.core.files import ensure_private_dir, write_atomic

        path = self.settings.unseal_file
        try:
            ensure_private_dir(path.parent, "state_dir")
            write_atomic(path, (json.dumps(doc) + "\n").encode(), 0o600)
            self._state_dir_ok = True
        except (OSError, NvtError) as exc:
            if self._state_dir_ok:
                log.warning("cannot write %s (status will not show the unsealer): %s", path, exc)
            self._state_dir_ok = False

    def _write_metrics(self, r: Round) -> None:
        from nomad_vault_token.core import metrics as m

        gauges: list[m.Gauge] = []
        for w, d in zip(self.workers, r.decisions, strict=True):
            reachable = d.state != "unreachable"
            gauges.append(m.gauge("nomad_vault_token_unseal_node_reachable", m.flag(reachable), node=w.name))
            p = w.probe_seen
            if reachable and p is not None and p.reachable:
                gauges.append(m.gauge("nomad_vault_token_unseal_node_sealed", m.flag(p.sealed), node=w.name))
                gauges.append(m.gauge("nomad_vault_token_unseal_node_auto_unseal", m.flag(p.auto_unseal), node=w.name))
            if w.last_unseal is not None:
                gauges.append(
                    m.gauge("nomad_vault_token_unseal_last_unseal_timestamp_seconds", w.last_unseal, node=w.name)
                )
        gauges.append(m.gauge("nomad_vault_token_unseal_leader_present", m.flag(r.verdict.leader is not None)))
        gauges.append(m.gauge("nomad_vault_token_unseal_last_check_timestamp_seconds", time.time()))
        assert self.settings.metrics_dir is not None
        try:
            m.write_textfile(self.settings.metrics_dir, "unseal", gauges)
        except OSError as exc:
            log.warning("cannot write metrics to %s: %s", self.settings.metrics_dir, exc.strerror)

    # ---- the two modes -----------------------------------------------------------------

    def once(self, settle_timeout: float) -> Round:
        """Rounds until the outcome is settled (or `settle_timeout`): the last one."""
        deadline = time.monotonic() + settle_timeout
        r = self.round()
        while not r.verdict.settled and time.monotonic() + ONCE_POLL < deadline and not self.stop.is_set():
            self.stop.wait(ONCE_POLL)
            r = self.round()
        return r

    def watch(self) -> None:
        """Round after round, every `unseal_interval` less jitter, until `stop` is set."""
        interval = float(self.settings.unseal_interval)
        next_watchdog = 0.0
        next_round = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_round:
                r = self.round()
                if not self.ready_sent:
                    self.notifier.ready(r.status)
                    self.ready_sent = True
                else:
                    self.notifier.status(r.status)
                next_round = time.monotonic() + interval * (1 - JITTER * random.random())  # noqa: S311
                next_watchdog = 0.0  # a fresh verdict: tell the watchdog now
            if self.notifier.watchdog_enabled and time.monotonic() >= next_watchdog:
                next_watchdog = time.monotonic() + self.notifier.watchdog_usec / 2_000_000
                if self.last is not None and self.last.watchdog_ok:
                    self.notifier.watchdog()
            wake = next_round
            if self.notifier.watchdog_enabled:
                wake = min(wake, next_watchdog)
            self.stop.wait(max(0.0, wake - time.monotonic()))

    def close(self) -> None:
        for w in self.workers:
            w.close()


def describe(r: Round, nodes: Sequence[Worker]) -> str:
    """`--once`'s text: the STATUS line, then one line per node."""
    lines = [r.status]
    for w, d in zip(nodes, r.decisions, strict=True):
        lines.append(f"  {w.name}: {d.message}")
    lines.extend(f"  warning: {text}" for text in r.verdict.warnings)
    return "\n".join(lines)
