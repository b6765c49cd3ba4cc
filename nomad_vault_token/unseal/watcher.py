"""The unsealer's rounds: every node probed in parallel, `unseal.plan` applied, the cluster reported.

Each node has a `Worker`: one `vault.NodeClient` (one kept-alive connection, numbered: what
`unseal.plan` needs to tell "sealed on purpose" from "restarted"), the plan's `NodeMemory`, and at
most one thread at a time. A round starts a thread for every node whose previous one has ended,
waits for them up to a bound, and takes the verdict: a node still busy (hung: SIGSTOP, a black hole)
counts as unreachable this round and gets no second thread, so one hung node never delays another's
unsealing and threads never pile up. Each request has `request_timeout`.

`--once` probes every node each round. Watch mode gives each node its own schedule (`Unsealer.watch`):
the steady interval while healthy, FAST_INTERVAL while it is expected back sealed, and at once when
the server closes its idle kept-alive connection (a restart); a round waits JOIN for its probes and
the slower ones report when they end. The node list can come from a file that is followed while the
watcher runs (`NodeList`): a node that stays keeps its `Worker`, hence its memory.

Inside a node's thread: probe (`sys/seal-status`, `sys/health`), `decide`, and while the plan says
to send a key, send it (`sys/unseal`), `after_unseal`, probe again: a node goes from sealed to
unsealed within one round. The keys are `UnsealKey`s: revealed only into the request body.

The main thread logs what changed, writes `unseal.json` (for `status`; never a key) and the metrics,
and in watch mode tells systemd: READY after the first round, STATUS every round, WATCHDOG only while
the unsealer can do its job (it holds keys no node refused, and some node answers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import selectors
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomad_vault_token.core import at_rest
from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError, NvtError
from nomad_vault_token.core.key_files import UnsealKeys
from nomad_vault_token.core.notify import Notifier, Watchdog
from nomad_vault_token.unseal import keys as unseal_keys
from nomad_vault_token.unseal.plan import (
    Context,
    Decision,
    NodeMemory,
    Probe,
    UnsealAnswer,
    after_unseal,
    decide,
)
from nomad_vault_token.unseal.verdict import Verdict, verdict
from nomad_vault_token.vault.node import NodeClient, NodeUnreachable

log = logging.getLogger(__name__)

JITTER = 0.2  # a watch-mode interval is shortened by up to this fraction, never lengthened
ONCE_POLL = 1.0  # seconds between `--once`'s rounds while the outcome is not settled
# A node expected back sealed (unreachable, or sealed and not yet unsealed) is probed this often ...
FAST_INTERVAL = 0.25
# ... for at most this long after it entered that state (then at the steady interval again).
FAST_FOR = 60.0
# (a migrated node too: a single node is active 30-50 ms after its migrate keys, a standby once the active
# node steps down)
FAST_STATES = frozenset({"unreachable", "sealed", "joining", "migrated"})
# Such a probe waits at most this long for an answer: a server shutting down may still accept a
# connection and never answer it; the next fast probe reaches the new process. Keys are never sent
# with it (a key whose answer is lost would leave the attempt in doubt).
QUICK_TIMEOUT = 1.0
JOIN = 1.0  # watch mode: how long a round waits for its probes before reporting (the rest report later)
WAKE = 0.25  # watch mode: the longest the loop sleeps (SIGTERM, a closed connection, a due probe)


def node_name(addr: str) -> str:
    """How a node is named in STATUS, logs and metrics: HOST:PORT (addresses are canonical, `core.address`)."""
    return addr.partition("://")[2] or addr


class Keys:
    """The keys this instance holds, from a file or a systemd credential; read again when the file
    changes (a Nomad template re-rendering it), `generation` bumped when the keys themselves change."""

    def __init__(self, settings: Settings) -> None:
        if settings.unseal_keys_file is None and settings.unseal_credential is None:
            raise ConfigError(
                "unseal: no keys: give --keys-file (config unseal_keys_file) or --credential NAME "
                "(config unseal_credential, systemd LoadCredentialEncrypted=NAME:/path.cred)"
            )
        self.file = settings.unseal_keys_file
        self.credential = settings.unseal_credential
        self.generation = 0
        self.keys = self._read()
        self.stamp = self._stamp()
        self.problem = ""
        self.at_rest = at_rest.warning_for(self.keys.source, credential=self.credential is not None)

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


class NodeList:
    """The nodes to watch: `unseal_nodes` (fixed), or `unseal_nodes_file`, read again when the file
    changes (a Nomad template rendering it from `nomadService`). A file that became unusable keeps the
    list held (logged once): an empty render must not make the unsealer forget every node."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.file = settings.unseal_nodes_file
        self.problem = ""
        self.stamp: tuple[int, int, int] | None = None
        if self.file is None:
            self.addresses = settings.unseal_addresses
        else:
            self.stamp = self._stamp()
            self.addresses = self._read()

    def _stamp(self) -> tuple[int, int, int] | None:
        assert self.file is not None
        try:
            st = os.stat(self.file)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> tuple[str, ...]:
        from nomad_vault_token.core.config import parse_node_list

        assert self.file is not None
        try:
            text = self.file.read_text()
        except OSError as exc:
            raise ConfigError(f"{self.file}: cannot read the node list: {exc.strerror}") from None
        return parse_node_list(text, self.file, self.settings.allow_insecure_http)

    def refresh(self) -> bool:
        """Read the file again if it changed; True when the list itself changed."""
        if self.file is None:
            return False
        stamp = self._stamp()
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        try:
            addresses = self._read()
        except NvtError as exc:
            if exc.message != self.problem:
                log.error("unseal nodes not reloaded, keeping the %d held: %s", len(self.addresses), exc.message)
            self.problem = exc.message
            return False
        self.problem = ""
        if addresses == self.addresses:
            return False
        added = [a for a in addresses if a not in self.addresses]
        removed = [a for a in self.addresses if a not in addresses]
        log.info(
            "unseal nodes reloaded from %s: %d (added: %s; removed: %s)",
            self.file,
            len(addresses),
            ", ".join(map(node_name, added)) or "none",
            ", ".join(map(node_name, removed)) or "none",
        )
        self.addresses = addresses
        return True


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
        self.completed = 0  # probes finished (a watch-mode report notices new ones)
        self.next_probe = 0.0  # watch mode: monotonic time of the next probe
        self.quick = False  # watch mode: the next probe is a fast one (QUICK_TIMEOUT)
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
        finally:
            self.completed += 1

    def delay(self, interval: float, now: float) -> float:
        """Seconds to the next watch-mode probe: short while the node is expected back sealed (see
        FAST_STATES), else `interval` less jitter."""
        d = self.decision
        self.quick = d is not None and d.state in FAST_STATES and now - d.memory.state_since < FAST_FOR
        if self.quick:
            return FAST_INTERVAL
        return interval * (1 - JITTER * random.random())  # noqa: S311

    def probe(self) -> Probe:
        wait = min(QUICK_TIMEOUT, self.client.timeout) if self.quick else None
        try:
            answer = self.client.seal_status_answer(wait)
            if answer.status != 200:  # a migrated node waiting for the step-down answers 500
                errors = answer.body.get("errors")
                text = "; ".join(str(e) for e in errors) if isinstance(errors, list) else ""
                p = Probe.refused(self.name, answer.status, text, self.client.connection)
            else:
                code = self.client.health_code(wait)
                p = Probe.answered(self.name, answer.body, code, self.client.connection)
        except NodeUnreachable as exc:
            p = Probe.unreachable(self.name, exc.problem)
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
                elif d.migrate:
                    log.info("%s: %s", self.name, d.message)  # "seal migration (shamir -> static): ..."
                sent = self.client.unseal(keys[d.key_index].reveal(), migrate=d.migrate)
                answer = UnsealAnswer.from_response(sent.status, sent.body)
            except NodeUnreachable as exc:
                log.warning("%s: sending an unseal key failed: %s", self.name, exc.problem)
                answer = UnsealAnswer(status=0)
            self.memory = after_unseal(self.memory, d.key_index, answer, ctx, self.client.connection, d.migrate)
            if answer.status == 200 and not answer.sealed:
                self.last_unseal = time.time()
                log.info("%s: %s", self.name, "migrated to its new seal" if d.migrate else "unsealed")
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
    workers: list[Worker]  # the nodes the decisions are of, in order (the list may change later)


class Unsealer:
    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings)
        self.nodes = NodeList(settings)
        self.workers = [Worker(a, settings) for a in self.nodes.addresses]
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
            migrate=s.unseal_migrate,
        )

    @property
    def hung_after(self) -> float:
        """A probe still under way after this long counts as unreachable (a hung node)."""
        return 2.0 * self.settings.request_timeout + 1

    def refresh_nodes(self) -> None:
        """Follow a changed node list: a node kept keeps its worker (its connection and the plan's
        memory: the sealed-on-purpose rule depends on it), a new one gets a worker, a removed one's is
        closed (once its probe under way, if any, has ended)."""
        if not self.nodes.refresh():
            return
        kept = {w.addr: w for w in self.workers}
        workers = [kept.pop(a) if a in kept else Worker(a, self.settings) for a in self.nodes.addresses]
        self.workers = workers
        for gone in kept.values():
            gone.close()
            self._states.pop(gone.name, None)

    def round(self, only: Sequence[Worker] | None = None, join: float | None = None) -> Round:
        """Probe every node (or `only` these) that has no probe under way, wait for them up to `join`
        (default: until a probe counts as hung), and report."""
        if only is None:
            self.refresh_nodes()
        self.keys.refresh()
        ctx = self.context()
        targets = self.workers if only is None else only
        threads = [w.start(ctx, self.keys.keys) for w in targets if not w.busy]
        deadline = time.monotonic() + (self.hung_after if join is None else min(join, self.hung_after))
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return self.report(ctx)

    def report(self, ctx: Context | None = None) -> Round:
        """The verdict from every node's last finished probe; a probe under way longer than
        `hung_after` (or a node never answered yet) counts as unreachable."""
        ctx = ctx or self.context()
        decisions = []
        for w in self.workers:
            waited = time.monotonic() - w.started
            if w.decision is None or (w.busy and waited >= self.hung_after - 0.01):
                d = decide(Probe.unreachable(w.name, f"no answer for {int(waited)}s"), w.memory, ctx)
            else:
                d = w.decision
            decisions.append(d)
        v = verdict(decisions, len(self.keys.keys))
        status = v.status + self._custody_note()
        if ctx.hold:
            status += f"; HOLD: {self.settings.unseal_hold_file} present"
        reachable = any(d.state != "unreachable" for d in decisions)
        r = Round(decisions, v, status, watchdog_ok=v.keys_usable and reachable, workers=list(self.workers))
        self.last = r
        self._log(r)
        self.publish(r)
        return r

    def _custody_note(self) -> str:
        thresholds = [
            w.probe_seen.threshold
            for w in self.workers
            if w.probe_seen is not None and w.probe_seen.has_fields and not w.probe_seen.auto_unseal
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
        for w, d in zip(r.workers, r.decisions, strict=True):
            p = w.probe_seen if d.state != "unreachable" and w.probe_seen and w.probe_seen.has_fields else None
            nodes.append(
                {
                    "node": w.name,
                    "address": w.addr,
                    "state": d.state,
                    "message": v.notes.get(d.node, d.message),
                    "role": d.role,
                    "reachable": d.state != "unreachable",
                    "sealed": None if p is None else p.sealed,
                    "auto_unseal": None if p is None else p.auto_unseal,
                    "seal_type": None if p is None else p.seal_type,
                    "migration_pending": d.migration_pending,
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
        from nomad_vault_token.unseal.published import Published

        doc = {"version": Published.VERSION, "pid": os.getpid(), **self.view(r), "updated_at": time.time()}
        try:
            published = Published.from_json(doc)  # the model status reads it with
        except ValueError as exc:  # a bug, but never worth stopping the unsealer for
            log.warning("not writing %s: %s", self.settings.unseal_file, exc)
        else:
            self._write_state(published.to_json())
        if self.settings.metrics_dir is not None:
            self._write_metrics(r)

    def _write_state(self, doc: dict[str, Any]) -> None:
        from nomad_vault_token.core.files import ensure_private_dir, publish_json

        path = self.settings.unseal_file
        try:
            ensure_private_dir(path.parent, "state_dir")
            publish_json(path, doc)
            self._state_dir_ok = True
        except (OSError, NvtError) as exc:
            if self._state_dir_ok:
                log.warning("cannot write %s (status will not show the unsealer): %s", path, exc)
            self._state_dir_ok = False

    def _write_metrics(self, r: Round) -> None:
        from nomad_vault_token.core import metrics as m

        gauges: list[m.Gauge] = []
        for w, d in zip(r.workers, r.decisions, strict=True):
            reachable = d.state != "unreachable"
            gauges.append(m.gauge("nomad_vault_token_unseal_node_reachable", m.flag(reachable), node=w.name))
            p = w.probe_seen
            if reachable and p is not None and p.has_fields:
                gauges.append(m.gauge("nomad_vault_token_unseal_node_sealed", m.flag(p.sealed), node=w.name))
                gauges.append(m.gauge("nomad_vault_token_unseal_node_auto_unseal", m.flag(p.auto_unseal), node=w.name))
            if reachable:
                pending = m.flag(d.migration_pending)
                gauges.append(m.gauge("nomad_vault_token_unseal_node_migration_pending", pending, node=w.name))
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

    def _warn_at_rest(self) -> None:
        """Once, when the unsealer starts its work (not while its settings may still be refused, so an error
        stays one line): a re-read of the same file says nothing new."""
        if self.keys.at_rest:
            log.warning("%s", self.keys.at_rest)

    def once(self, settle_timeout: float) -> Round:
        """Rounds until the outcome is settled (or `settle_timeout`): the last one."""
        self._warn_at_rest()
        deadline = time.monotonic() + settle_timeout
        r = self.round()
        while not r.verdict.settled and time.monotonic() + ONCE_POLL < deadline and not self.stop.is_set():
            self.stop.wait(ONCE_POLL)
            r = self.round()
        return r

    def watch(self) -> None:
        """Probe each node on its own schedule until `stop` is set: every `unseal_interval` less jitter
        while healthy; every FAST_INTERVAL while it is expected back sealed (unreachable, sealed), for
        FAST_FOR; and at once when its kept-alive connection closes (a restarting server closes it: the
        node is probed while it restarts and unsealed as soon as it answers). `sys/seal` leaves the
        connection open, so the sealed-on-purpose rule is untouched."""
        self._warn_at_rest()
        interval = float(self.settings.unseal_interval)
        pacer = Watchdog(self.notifier)
        reported: dict[int, int] = {}
        first = True
        while not self.stop.is_set():
            self.refresh_nodes()
            now = time.monotonic()
            due = [w for w in self.workers if not w.busy and now >= w.next_probe]
            fresh = [w for w in self.workers if not w.busy and reported.get(id(w)) != w.completed]
            r: Round | None = None
            if due:
                for w in due:
                    w.next_probe = float("inf")  # scheduled again once its probe is reported
                r = self.round(None if first else due, None if first else JOIN)
            elif fresh:  # probes that outlived their round's JOIN have finished
                r = self.report()
            if r is not None:
                first = False
                done = time.monotonic()
                for w in self.workers:
                    if not w.busy and reported.get(id(w)) != w.completed:
                        reported[id(w)] = w.completed
                        w.next_probe = done + w.delay(interval, done)
                if not self.ready_sent:
                    self.notifier.ready(r.status)
                    self.ready_sent = True
                else:
                    self.notifier.status(r.status)
                pacer.now_due()  # a fresh verdict: tell the watchdog now
            pacer.beat(time.monotonic(), self.last is not None and self.last.watchdog_ok)
            wake = pacer.wake_at(min((w.next_probe for w in self.workers), default=now + WAKE))
            self._sleep(max(0.0, min(wake - time.monotonic(), WAKE)))

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking early for a node whose idle kept-alive connection the server closed (its
        probe becomes due now)."""
        sel = selectors.DefaultSelector()
        try:
            for w in self.workers:
                sock = None if w.busy else w.client.idle_socket()
                if sock is not None:
                    with contextlib.suppress(ValueError, KeyError, OSError):
                        sel.register(sock, selectors.EVENT_READ, w)
            if not sel.get_map():
                self.stop.wait(seconds)
                return
            for key, _ in sel.select(seconds):
                w = key.data
                if w.next_probe > time.monotonic():
                    log.debug("%s: its connection closed: probing it now", w.name)
                    w.next_probe = 0.0
                    w.quick = True
        finally:
            sel.close()

    def close(self) -> None:
        for w in self.workers:
            w.close()


def describe(r: Round) -> str:
    """`--once`'s text: the STATUS line, then one line per node."""
    lines = [r.status]
    for w, d in zip(r.workers, r.decisions, strict=True):
        lines.append(f"  {w.name}: {r.verdict.notes.get(d.node, d.message)}")
    lines.extend(f"  warning: {text}" for text in r.verdict.warnings)
    return "\n".join(lines)
