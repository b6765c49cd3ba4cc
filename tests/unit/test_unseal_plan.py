"""unseal.plan: every situation of the unseal issue as a row, plus the prober's loop against a model
of Vault's Shamir unseal (progress, nonce, `invalid key` at the threshold), and the cluster verdict.

The JSON shapes used here are the ones OpenBao 2.7.2 answered (see unseal.plan's docstring)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from nomad_vault_token.unseal.plan import (
    Context,
    Decision,
    NodeMemory,
    Probe,
    UnsealAnswer,
    after_unseal,
    decide,
    health_role,
)
from nomad_vault_token.unseal.verdict import verdict

# ---- what the real server answered (OpenBao 2.7.2) -----------------------------------------------

RESTARTED = {  # a raft node just restarted, and equally one sealed through sys/seal
    "type": "shamir",
    "initialized": True,
    "sealed": True,
    "t": 2,
    "n": 3,
    "progress": 0,
    "nonce": "",
    "recovery_seal": False,
    "version": "2.7.2",
    "commit_date": "2026-10-26T20:32:27Z",
    "migration": False,
    "storage_type": "raft",
}
UNSEALED = RESTARTED | {"sealed": False, "cluster_name": "vault-cluster-0013f18b", "cluster_id": "147ed038"}
MID_PROGRESS = RESTARTED | {"progress": 1, "nonce": "14c57276-c79d-02a0-2bd8-f25e73b52f55"}
UNINITIALISED = RESTARTED | {"initialized": False, "t": 0, "n": 0}
STATIC_SEALED = RESTARTED | {"type": "static", "t": 1, "n": 1, "recovery_seal": True, "recovery_seal_type": "shamir"}
TRANSIT_SEALED = STATIC_SEALED | {"type": "transit"}
# seal migration (OpenBao 2.7.2, 3-node raft): a node restarted with `seal "static"` added ...
MIGRATION_PENDING = RESTARTED | {"type": "static", "recovery_seal": True, "recovery_seal_type": "shamir", "migration": True}
# ... and one on static restarted with the stanza `disabled = "true"` (back to Shamir)
REVERSE_PENDING = RESTARTED | {"migration": True}
STATIC_UNSEALED = MIGRATION_PENDING | {"sealed": False, "migration": False, "cluster_id": "147ed038"}
# a migrated standby until the active node steps down (sys/seal-status and sys/health: 500) ...
MIGRATED_ERROR = 'barrier seal type of "shamir" does not match loaded type of "static"'
# ... and the old active node after the step-down, still on its old stanza
OLD_SEAL_ERROR = 'barrier seal type of "static" does not match expected type of "shamir"'
INVALID_KEY = {
    "errors": [
        "unable to retrieve stored keys: invalid key: failed to decrypt keys from storage: "
        "cipher: message authentication failed"
    ]
}

T0 = 1000.0


def ctx(**kw: Any) -> Context:
    values: dict[str, Any] = {"now": T0, "keys_held": 2}
    values.update(kw)
    return Context(**values)


def probe(body: dict[str, Any], health: int | None = 503, conn: int | None = 1, node: str = "node-1") -> Probe:
    return Probe.answered(node, body, health=health, connection=conn)


def test_health_codes_as_documented() -> None:
    assert [health_role(c) for c in (200, 429, 472, 473, 501, 503, 474, None)] == [
        "active",
        "standby",
        "dr_secondary",
        "perf_standby",
        "uninitialized",
        "sealed",
        "unknown",
        "unknown",
    ]


def test_probe_reads_the_real_json_and_tolerates_garbage() -> None:
    p = probe(MID_PROGRESS)
    assert (p.initialized, p.sealed, p.seal_type, p.threshold, p.shares, p.progress) == (True, True, "shamir", 2, 3, 1)
    assert p.nonce == MID_PROGRESS["nonce"] and p.version == "2.7.2" and not p.recovery_seal
    assert probe(UNSEALED).cluster_id == "147ed038"
    odd = Probe.answered("n", {"sealed": "no", "t": "2", "progress": True, "nonce": 5})
    assert odd.sealed and odd.threshold == 0 and odd.progress == 0 and odd.nonce == "" and not odd.initialized


# ---- one probe, one decision: the rows of the issue -----------------------------------------------


@dataclass
class Row:
    situation: str
    probe: Probe
    memory: NodeMemory = field(default_factory=NodeMemory)
    context: Context = field(default_factory=ctx)
    state: str = ""
    action: str = ""
    key_index: int | None = None
    says: str = ""
    migrate: bool = False


ROWS = [
    Row(
        "unreachable (timeout) is never mistaken for sealed",
        Probe.unreachable("node-1", "timeout after 5s"),
        state="unreachable",
        action="wait",
        says="timeout after 5s",
    ),
    Row(
        "a transit node whose provider hangs never opens its port: unreachable",
        Probe.unreachable("node-1", "connection refused"),
        NodeMemory(unsealed_on=4),
        state="unreachable",
        action="wait",
        says="connection refused",
    ),
    Row(
        "initialized: false is never touched",
        probe(UNINITIALISED, health=501),
        state="uninitialized",
        action="none",
        says="never touched",
    ),
    Row(
        "a sealed static-seal node gets no key and is reported as auto-unseal",
        probe(STATIC_SEALED),
        state="auto_unseal",
        action="alert",
        says="auto-unseal node sealed: check its seal provider (static)",
    ),
    Row(
        "a sealed transit-seal node likewise",
        probe(TRANSIT_SEALED),
        state="auto_unseal",
        action="alert",
        says="check its seal provider (transit)",
    ),
    Row(
        "recovery_seal: true on a node that says shamir is still not ours to feed",
        probe(RESTARTED | {"recovery_seal": True}),
        state="auto_unseal",
        action="alert",
    ),
    Row(
        "an auto-unseal node already alerted is not alerted again",
        probe(STATIC_SEALED),
        NodeMemory(state="auto_unseal"),
        state="auto_unseal",
        action="none",
    ),
    Row(
        "an unsealed auto-unseal node counts as unsealed",
        probe(STATIC_SEALED | {"sealed": False}, health=200),
        state="unsealed",
        action="none",
    ),
    Row(
        "threshold/shares other than expected: refused",
        probe(RESTARTED | {"t": 3, "n": 5}),
        context=ctx(expect_threshold=2, expect_shares=3),
        state="mismatch",
        action="alert",
        says="threshold/shares 3/5, expected 2/3",
    ),
    Row(
        "only the threshold expected: a different share count is fine",
        probe(RESTARTED | {"n": 5}),
        context=ctx(expect_threshold=2),
        state="sealed",
        action="submit_next_key",
        key_index=0,
    ),
    Row(
        "a restarted node (new connection) is unsealed: first key",
        probe(RESTARTED, conn=2),
        NodeMemory(unsealed_on=1, state="unsealed"),
        state="sealed",
        action="submit_next_key",
        key_index=0,
    ),
    Row(
        "sealed on the connection it was seen unsealed on: sealed on purpose, alert",
        probe(RESTARTED, conn=7),
        NodeMemory(unsealed_on=7, state="unsealed"),
        state="sealed_on_purpose",
        action="alert",
        says="sealed on purpose",
    ),
    Row(
        "sealed on purpose stays so, alerted once",
        probe(RESTARTED, conn=7),
        NodeMemory(unsealed_on=7, state="sealed_on_purpose"),
        state="sealed_on_purpose",
        action="none",
    ),
    Row(
        "sealed on purpose, then restarted (new connection): unsealed",
        probe(RESTARTED, conn=8),
        NodeMemory(unsealed_on=7, state="sealed_on_purpose"),
        state="sealed",
        action="submit_next_key",
        key_index=0,
    ),
    Row(
        "a prober that cannot name its connection never proves the same process",
        probe(RESTARTED, conn=None),
        NodeMemory(unsealed_on=None, state="unsealed"),
        state="sealed",
        action="submit_next_key",
        key_index=0,
    ),
    Row(
        "someone else's progress in flight: wait",
        probe(MID_PROGRESS),
        NodeMemory(seen_progress=(1, MID_PROGRESS["nonce"]), progress_moved_at=T0 - 30),
        context=ctx(stale_after=60),
        state="foreign_progress",
        action="wait",
        says="unchanged for 30s",
    ),
    Row(
        "someone else's progress first seen now: wait, the clock starts",
        probe(MID_PROGRESS),
        NodeMemory(seen_progress=(0, ""), progress_moved_at=T0 - 3600),
        context=ctx(stale_after=60),
        state="foreign_progress",
        action="wait",
        says="unchanged for 0s",
    ),
    Row(
        "someone else's progress unchanged for the stale bound: reset, then our first key",
        probe(MID_PROGRESS),
        NodeMemory(seen_progress=(1, MID_PROGRESS["nonce"]), progress_moved_at=T0 - 60),
        context=ctx(stale_after=60),
        state="foreign_progress",
        action="reset_then_submit",
        key_index=0,
        says="resetting",
    ),
    Row(
        "split custody: someone else's progress gets our key, no waiting for each other",
        probe(MID_PROGRESS),
        context=ctx(keys_held=1),
        state="foreign_progress",
        action="submit_next_key",
        key_index=0,
        says="we hold 1 of 2",
    ),
    Row(
        "our own attempt in progress: next key",
        probe(MID_PROGRESS),
        NodeMemory(attempt_nonce=MID_PROGRESS["nonce"], attempt_given=1),
        state="sealed",
        action="submit_next_key",
        key_index=1,
    ),
    Row(
        "split custody: all our keys given, wait for another custodian",
        probe(MID_PROGRESS),
        NodeMemory(attempt_nonce=MID_PROGRESS["nonce"], attempt_given=1),
        context=ctx(keys_held=1),
        state="sealed",
        action="wait",
        says="waiting for another custodian",
    ),
    Row(
        "split custody, fresh node: say so and give our key",
        probe(RESTARTED),
        context=ctx(keys_held=1),
        state="sealed",
        action="submit_next_key",
        key_index=0,
        says="split custody",
    ),
    Row(
        "keys Vault refused: held back, alert",
        probe(RESTARTED, conn=3),
        NodeMemory(wrong_keys_generation=0),
        state="wrong_keys",
        action="alert",
        says="invalid key",
    ),
    Row(
        "keys Vault refused stay refused on a restarted node (no retry storm)",
        probe(RESTARTED, conn=9),
        NodeMemory(wrong_keys_generation=0, state="wrong_keys"),
        state="wrong_keys",
        action="none",
    ),
    Row(
        "new keys (reloaded) are tried again",
        probe(RESTARTED, conn=3),
        NodeMemory(wrong_keys_generation=0, state="wrong_keys"),
        context=ctx(keys_generation=1),
        state="sealed",
        action="submit_next_key",
        key_index=0,
    ),
    Row(
        "threshold reached, still sealed, progress 0 (raft joining): poll, do not resend",
        probe(RESTARTED, conn=5),
        NodeMemory(completed_on=5, state="joining", state_since=T0 - 4),
        state="joining",
        action="wait",
        says="for 4s",
    ),
    Row(
        "joining on a process that is gone: a new process needs the keys again",
        probe(RESTARTED, conn=6),
        NodeMemory(completed_on=5, state="joining"),
        state="sealed",
        action="submit_next_key",
        key_index=0,
    ),
    Row(
        "hold file: nothing sent",
        probe(RESTARTED),
        context=ctx(hold=True),
        state="held",
        action="none",
    ),
    Row(
        "hold file: not even a stale reset",
        probe(MID_PROGRESS),
        NodeMemory(seen_progress=(1, MID_PROGRESS["nonce"]), progress_moved_at=T0 - 3600),
        context=ctx(hold=True, stale_after=60),
        state="held",
        action="none",
    ),
    Row(
        "hold file does not hide an unsealed node",
        probe(UNSEALED, health=200),
        context=ctx(hold=True),
        state="unsealed",
        action="none",
    ),
    Row(
        "an instance with no key does nothing",
        probe(RESTARTED),
        context=ctx(keys_held=0),
        state="sealed",
        action="none",
        says="holds no key",
    ),
    Row(
        "unsealed standby",
        probe(UNSEALED, health=429),
        state="unsealed",
        action="none",
        says="standby",
    ),
    # ---- seal migration
    Row(
        "migration pending, no --migrate: no key, alert, say what to run",
        probe(MIGRATION_PENDING),
        state="migration_pending",
        action="alert",
        says="seal migration pending (shamir -> static): run unseal with --migrate",
    ),
    Row(
        "migration pending, already alerted: quiet",
        probe(MIGRATION_PENDING),
        NodeMemory(state="migration_pending"),
        state="migration_pending",
        action="none",
    ),
    Row(
        "migration pending, the node was on transit before: named from memory",
        probe(MIGRATION_PENDING),
        NodeMemory(seal_type_seen="transit"),
        state="migration_pending",
        action="alert",
        says="(transit -> static)",
    ),
    Row(
        "reverse migration pending (static back to Shamir), seen on static before",
        probe(REVERSE_PENDING),
        NodeMemory(seal_type_seen="static", unsealed_on=1),
        state="migration_pending",
        action="alert",
        says="seal migration pending (static -> shamir): run unseal with --migrate",
    ),
    Row(
        "reverse migration pending, never seen before: the old seal unnamed",
        probe(REVERSE_PENDING),
        state="migration_pending",
        action="alert",
        says="(auto-unseal -> shamir)",
    ),
    Row(
        "--migrate: the first key, with migrate",
        probe(MIGRATION_PENDING),
        context=ctx(migrate=True),
        state="sealed",
        action="submit_next_key",
        key_index=0,
        says="seal migration (shamir -> static): sealed: giving key 1",
        migrate=True,
    ),
    Row(
        "--migrate: our attempt in progress, the next key",
        probe(MIGRATION_PENDING | {"progress": 1, "nonce": MID_PROGRESS["nonce"]}),
        NodeMemory(attempt_nonce=MID_PROGRESS["nonce"], attempt_given=1),
        context=ctx(migrate=True),
        state="sealed",
        action="submit_next_key",
        key_index=1,
        migrate=True,
    ),
    Row(
        "--migrate: someone else's progress respected",
        probe(MIGRATION_PENDING | {"progress": 1, "nonce": MID_PROGRESS["nonce"]}),
        context=ctx(migrate=True),
        state="foreign_progress",
        action="wait",
        migrate=True,
    ),
    Row(
        "--migrate: keys refused stay refused",
        probe(MIGRATION_PENDING),
        NodeMemory(wrong_keys_generation=0),
        context=ctx(migrate=True),
        state="wrong_keys",
        action="alert",
        says="invalid key",
        migrate=True,
    ),
    Row(
        "--migrate: the hold file still holds",
        probe(MIGRATION_PENDING),
        context=ctx(migrate=True, hold=True),
        state="held",
        action="none",
        migrate=True,
    ),
    Row(
        "--migrate: threshold mismatch still refused",
        probe(MIGRATION_PENDING),
        context=ctx(migrate=True, expect_threshold=3),
        state="mismatch",
        action="alert",
        migrate=True,
    ),
    Row(
        "--migrate: the threshold reached on this process, still sealed: joining, nothing resent",
        probe(MIGRATION_PENDING, conn=5),
        NodeMemory(completed_on=5, state="joining"),
        context=ctx(migrate=True),
        state="joining",
        action="wait",
        migrate=True,
    ),
    Row(
        "--migrate: a reverse migration gets the keys (recovery keys now) with migrate",
        probe(REVERSE_PENDING),
        NodeMemory(seal_type_seen="static"),
        context=ctx(migrate=True),
        state="sealed",
        action="submit_next_key",
        key_index=0,
        says="seal migration (static -> shamir)",
        migrate=True,
    ),
    Row(
        "500 on the connection our migrate keys unsealed: migrated, waiting for the step-down",
        Probe.refused("node-1", 500, "", connection=4),
        NodeMemory(migrated_on=4),
        state="migrated",
        action="wait",
        # no step-down advice from one node's answer: a single node answers the same 500 for 30-50 ms
        # and then completes the migration as the active node (the verdict tells the two apart)
        says="migrated to the new seal, waiting for the active node to complete the migration",
    ),
    Row(
        "500 saying so, keys fed by someone else (or before a restart of ours): migrated too",
        Probe.refused("node-1", 500, MIGRATED_ERROR, connection=9),
        state="migrated",
        action="wait",
        says="migrated to the new seal",
    ),
    Row(
        "500 on another connection, no such words: a broken node, unreachable as before",
        Probe.refused("node-1", 500, "internal error", connection=5),
        NodeMemory(migrated_on=4),
        state="unreachable",
        action="wait",
        says="sys/seal-status answered HTTP 500",
    ),
    Row(
        "the old active node after the step-down, on its old stanza: restart it with the new one",
        Probe.refused("node-1", 500, OLD_SEAL_ERROR, connection=2),
        state="old_seal",
        action="wait",
        says="restart it with the new seal stanza",
    ),
    Row(
        "migrated and unsealed (migration still true): waiting for the step-down",
        probe(MIGRATION_PENDING | {"sealed": False}, health=429),
        context=ctx(migrate=True),
        state="migrated",
        action="wait",
    ),
    Row(
        "after the migration: auto-unseal (static), unsealed",
        probe(STATIC_UNSEALED, health=200),
        state="unsealed",
        action="none",
        says="auto-unseal (static): unsealed (active)",
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.situation for r in ROWS])
def test_one_probe(row: Row) -> None:
    d = decide(row.probe, row.memory, row.context)
    assert (d.state, d.action, d.key_index) == (row.state, row.action, row.key_index), d.message
    assert row.says in d.message
    assert d.memory.state == row.state
    assert d.migrate == row.migrate
    if row.action not in ("submit_next_key", "reset_then_submit"):
        assert not d.sends_key and d.key_index is None


def test_unsealed_is_remembered_with_its_connection_and_clears_an_attempt() -> None:
    memory = NodeMemory(attempt_nonce="x", attempt_given=1, completed_on=4)
    d = decide(probe(UNSEALED, health=200, conn=4), memory, ctx())
    assert d.role == "active" and d.memory.unsealed_on == 4
    assert (d.memory.attempt_nonce, d.memory.attempt_given, d.memory.completed_on) == ("", 0, None)


def test_unsealed_with_unexpected_threshold_warns() -> None:
    d = decide(probe(UNSEALED | {"t": 3}, health=429), NodeMemory(), ctx(expect_threshold=2))
    assert d.state == "unsealed" and d.warnings and "3/3, expected 2/-" in d.warnings[0]


def test_state_since_kept_while_the_state_lasts() -> None:
    first = decide(Probe.unreachable("n", "refused"), NodeMemory(), ctx(now=10))
    later = decide(Probe.unreachable("n", "refused"), first.memory, ctx(now=50))
    assert first.memory.state_since == 10 and later.memory.state_since == 10


def test_moving_foreign_progress_restarts_the_stale_clock() -> None:
    memory = NodeMemory(seen_progress=(1, "old-nonce"), progress_moved_at=T0 - 3600)
    d = decide(probe(MID_PROGRESS), memory, ctx(stale_after=60))
    assert d.action == "wait" and d.memory.progress_moved_at == T0


# ---- after POST sys/unseal ------------------------------------------------------------------------


def test_invalid_key_at_threshold_holds_the_node_back() -> None:
    answer = UnsealAnswer.from_response(400, INVALID_KEY)
    assert answer.invalid_key
    memory = after_unseal(NodeMemory(attempt_nonce="n1", attempt_given=1), 1, answer, ctx(), connection=1)
    assert memory.wrong_keys_generation == 0 and memory.attempt_nonce == ""
    d = decide(probe(RESTARTED), memory, ctx())
    assert d.state == "wrong_keys" and not d.sends_key and "another custodian" not in d.message


def test_invalid_key_after_contributing_to_someone_elses_attempt_says_so() -> None:
    first = decide(probe(MID_PROGRESS), NodeMemory(), ctx(keys_held=1))
    memory = after_unseal(first.memory, 0, UnsealAnswer.from_response(400, INVALID_KEY), ctx(keys_held=1), 1)
    d = decide(probe(RESTARTED), memory, ctx(keys_held=1))
    assert d.state == "wrong_keys" and "another custodian" in d.message


def test_progress_answer_records_our_attempt() -> None:
    answer = UnsealAnswer.from_response(200, MID_PROGRESS)
    memory = after_unseal(NodeMemory(), 0, answer, ctx(now=5), connection=1)
    assert (memory.attempt_nonce, memory.attempt_given, memory.progress_moved_at) == (MID_PROGRESS["nonce"], 1, 5)
    d = decide(probe(MID_PROGRESS), memory, ctx())
    assert (d.state, d.action, d.key_index) == ("sealed", "submit_next_key", 1)


def test_unsealed_answer_remembers_the_connection() -> None:
    memory = after_unseal(NodeMemory(), 1, UnsealAnswer.from_response(200, UNSEALED), ctx(), connection=3)
    assert memory.unsealed_on == 3
    assert decide(probe(RESTARTED, conn=3), memory, ctx()).state == "sealed_on_purpose"


def test_threshold_reached_still_sealed_is_joining() -> None:
    memory = after_unseal(NodeMemory(), 1, UnsealAnswer.from_response(200, RESTARTED), ctx(), connection=2)
    assert memory.completed_on == 2
    d = decide(probe(RESTARTED, conn=2), memory, ctx())
    assert (d.state, d.action) == ("joining", "wait")


@pytest.mark.parametrize(
    "answer",
    [UnsealAnswer(status=0, error="timeout"), UnsealAnswer.from_response(503, {"errors": ["Vault is sealed"]})],
    ids=["no answer", "503"],
)
def test_no_usable_answer_changes_nothing(answer: UnsealAnswer) -> None:
    memory = NodeMemory(attempt_nonce="n", attempt_given=1)
    assert after_unseal(memory, 1, answer, ctx(), connection=1) == memory
    assert not answer.invalid_key


def test_a_400_that_is_not_about_the_key_is_not_wrong_keys() -> None:
    answer = UnsealAnswer.from_response(400, {"errors": ["'key' must be a valid hex or base64 string"]})
    assert not answer.invalid_key


def test_migrate_keys_that_unseal_remember_the_connection_then_500_is_migrated() -> None:
    c = ctx(migrate=True)
    first = decide(probe(MIGRATION_PENDING, conn=4), NodeMemory(), c)
    memory = after_unseal(first.memory, 0, UnsealAnswer.from_response(200, MIGRATION_PENDING | {"progress": 1}), c, 4)
    done = UnsealAnswer.from_response(200, MIGRATION_PENDING | {"sealed": False})
    memory = after_unseal(memory, 1, done, c, 4, migrate=True)
    assert memory.migrated_on == 4
    waiting = decide(Probe.refused("node-1", 500, "", connection=4), memory, c)
    assert (waiting.state, waiting.action, waiting.sends_key) == ("migrated", "wait", False)
    # the step-down: the new active node finishes the migration, this one answers again
    after = decide(probe(STATIC_UNSEALED, health=429, conn=4), waiting.memory, c)
    assert after.state == "unsealed" and after.memory.migrated_on is None and after.auto_unseal
    assert after.memory.seal_type_seen == "static"


def test_an_ordinary_unseal_does_not_count_as_migrated() -> None:
    memory = after_unseal(NodeMemory(), 1, UnsealAnswer.from_response(200, UNSEALED), ctx(), connection=3)
    assert memory.migrated_on is None
    assert decide(Probe.refused("node-1", 500, "", connection=3), memory, ctx()).state == "unreachable"


# ---- the prober's loop against a model of Vault's Shamir unseal -----------------------------------


@dataclass
class ShamirNode:
    """What OpenBao did, reduced: progress and nonce per attempt, duplicate keys ignored, a join delay,
    `invalid key` (400) at the threshold when the keys do not belong, progress reset after it."""

    good: set[str]
    t: int = 2
    n: int = 3
    sealed: bool = True
    progress: set[str] = field(default_factory=set)
    nonce: str = ""
    joining_rounds: int = 0  # rounds a raft node stays sealed after the threshold
    pending_join: int = -1
    connection: int = 1
    requests: int = 0

    def seal_status(self) -> dict[str, Any]:
        return RESTARTED | {"sealed": self.sealed, "progress": len(self.progress), "nonce": self.nonce}

    def health(self) -> int:
        return 503 if self.sealed else 429

    def tick(self) -> None:
        if self.pending_join > 0:
            self.pending_join -= 1
        if self.pending_join == 0:
            self.sealed, self.pending_join = False, -1

    def unseal(self, key: str | None, reset: bool = False) -> tuple[int, dict[str, Any]]:
        self.requests += 1
        if reset:
            self.progress, self.nonce = set(), ""
            return 200, self.seal_status()
        assert key is not None
        if not self.sealed:
            return 200, self.seal_status()
        if not self.progress:
            self.nonce = str(uuid.uuid4())
        self.progress.add(key)
        if len(self.progress) < self.t:
            return 200, self.seal_status()
        ok = self.progress <= self.good
        self.progress, self.nonce = set(), ""
        if not ok:
            return 400, INVALID_KEY
        if self.joining_rounds:
            self.pending_join = self.joining_rounds
        else:
            self.sealed = False
        return 200, self.seal_status()

    def restart(self) -> None:
        self.sealed, self.progress, self.nonce, self.pending_join = True, set(), "", -1
        self.connection += 1  # a new process: the prober's kept-alive connection is gone

    def seal(self) -> None:
        self.sealed = True


def one_round(node: ShamirNode, keys: list[str], memory: NodeMemory, context: Context) -> tuple[Decision, NodeMemory]:
    """What the prober will do for one node each interval: probe, decide, and while the plan says
    to send a key, send it and decide again on Vault's answer."""
    node.tick()
    p = Probe.answered("node-1", node.seal_status(), node.health(), node.connection)
    d = decide(p, memory, context)
    memory = d.memory
    for _ in range(len(keys) + 2):  # bounded, whatever the plan says
        if not d.sends_key:
            break
        assert d.key_index is not None
        if d.action == "reset_then_submit":
            node.unseal(None, reset=True)
        status, body = node.unseal(keys[d.key_index])
        answer = UnsealAnswer.from_response(status, body)
        memory = after_unseal(memory, d.key_index, answer, context, node.connection)
        # Vault's answer has seal-status's shape; an error answer is followed by a fresh probe
        seen = body if status == 200 else node.seal_status()
        d = decide(Probe.answered("node-1", seen, None, node.connection), memory, context)
        memory = d.memory
    return d, memory


def rounds(
    node: ShamirNode, keys: list[str], memory: NodeMemory | None = None, count: int = 1, **kw: Any
) -> Iterator[tuple[Decision, NodeMemory]]:
    memory = memory or NodeMemory()
    for i in range(count):
        d, memory = one_round(node, keys, memory, ctx(now=T0 + i, keys_held=len(keys), **kw))
        yield d, memory


def last(it: Iterator[tuple[Decision, NodeMemory]]) -> tuple[Decision, NodeMemory]:
    *_, final = it
    return final


GOOD = ["k1", "k2", "k3"]


def test_restarted_node_unsealed_in_one_round_with_two_of_three_keys() -> None:
    node = ShamirNode(good=set(GOOD))
    d, _ = last(rounds(node, GOOD[:2]))
    assert d.state == "unsealed" and not node.sealed and node.requests == 2


def test_sealed_on_purpose_is_left_alone_and_the_same_node_restarted_is_unsealed() -> None:
    node = ShamirNode(good=set(GOOD))
    d, memory = last(rounds(node, GOOD[:2]))
    assert d.state == "unsealed"
    node.seal()  # an operator's sys/seal: same process, same connection
    seen = [d for d, memory in rounds(node, GOOD[:2], memory, count=5)]
    assert [d.state for d in seen] == ["sealed_on_purpose"] * 5
    assert [d.action for d in seen] == ["alert"] + ["none"] * 4
    assert node.sealed and node.requests == 2
    node.restart()
    d, _ = last(rounds(node, GOOD[:2], memory))
    assert d.state == "unsealed" and not node.sealed


def test_keys_of_another_cluster_bounded_requests_and_held_back() -> None:
    node = ShamirNode(good=set(GOOD))
    foreign = ["x1", "x2"]
    seen = list(rounds(node, foreign, count=20))
    assert node.requests == 2, "at most the threshold's worth of keys, then nothing"
    assert {d.state for d, _ in seen} == {"wrong_keys"}
    assert [d.action for d, _ in seen[:2]] == ["alert", "none"]
    assert not node.progress, "Vault reset the progress"
    node.restart()  # still the wrong keys for it
    list(rounds(node, foreign, seen[-1][1], count=5))
    assert node.requests == 2


def test_split_custody_two_instances_unseal_together() -> None:
    node = ShamirNode(good=set(GOOD))
    mem_a, mem_b = NodeMemory(), NodeMemory()
    d_a, mem_a = one_round(node, ["k1"], mem_a, ctx(keys_held=1))
    assert d_a.state == "sealed" and d_a.action == "wait" and "another custodian" in d_a.message
    d_b, mem_b = one_round(node, ["k2"], mem_b, ctx(keys_held=1))
    assert d_b.state == "unsealed" and not node.sealed and node.requests == 2


def test_foreign_progress_left_alone_then_reset_once_stale() -> None:
    node = ShamirNode(good=set(GOOD))
    node.unseal("k3")  # someone else's first key, then nothing
    memory = NodeMemory()
    states = []
    for i in range(0, 70, 10):
        d, memory = one_round(node, GOOD[:2], memory, ctx(now=T0 + i, stale_after=60))
        states.append((i, d.state, d.action))
    assert states[:6] == [(i, "foreign_progress", "wait") for i in range(0, 60, 10)]
    assert states[6] == (60, "unsealed", "none") and not node.sealed
    assert node.requests == 1 + 1 + 2, "their key, one reset, our two keys"


@dataclass
class MigratingNode(ShamirNode):
    """A node restarted with a new seal stanza: keys without migrate refused (500), with migrate they
    unseal it and it answers 500 until `step_down()`."""

    migration: bool = True
    waiting: bool = False

    def seal_status(self) -> dict[str, Any]:
        base = MIGRATION_PENDING if self.migration else STATIC_UNSEALED
        return base | {"sealed": self.sealed, "progress": len(self.progress), "nonce": self.nonce}

    def unseal_migrate(self, key: str, migrate: bool) -> tuple[int, dict[str, Any]]:
        if not migrate:
            self.requests += 1
            return 500, {"errors": ["migrate option not provided and seal migration is pending"]}
        status, body = self.unseal(key)
        if status == 200 and not self.sealed:
            self.waiting = True
        return status, body

    def step_down(self) -> None:
        self.waiting, self.migration = False, False


def migration_round(node: MigratingNode, keys: list[str], memory: NodeMemory, context: Context) -> Decision:
    def look() -> Probe:
        if node.waiting:
            return Probe.refused("node-1", 500, "", node.connection)
        return Probe.answered("node-1", node.seal_status(), 503 if node.sealed else 429, node.connection)

    d = decide(look(), memory, context)
    for _ in range(len(keys) + 2):
        if not d.sends_key:
            break
        assert d.key_index is not None
        status, body = node.unseal_migrate(keys[d.key_index], d.migrate)
        memory = after_unseal(d.memory, d.key_index, UnsealAnswer.from_response(status, body), context, 1, d.migrate)
        d = decide(look(), memory, context)
    return d


def test_without_migrate_a_migrating_node_gets_no_request_in_any_round() -> None:
    node = MigratingNode(good=set(GOOD))
    memory = NodeMemory()
    seen = []
    for i in range(10):
        d = migration_round(node, GOOD[:2], memory, ctx(now=T0 + i))
        memory = d.memory
        seen.append((d.state, d.action))
    assert node.requests == 0
    assert seen == [("migration_pending", "alert")] + [("migration_pending", "none")] * 9


def test_with_migrate_threshold_keys_then_waiting_for_the_step_down_then_auto_unseal() -> None:
    node = MigratingNode(good=set(GOOD))
    memory = NodeMemory()
    states = []
    for i in range(6):
        if i == 3:
            node.step_down()
        d = migration_round(node, GOOD[:2], memory, ctx(now=T0 + i, migrate=True))
        memory = d.memory
        states.append(d.state)
    assert node.requests == 2, "the threshold's worth of keys, nothing resent while it waits"
    assert states == ["migrated"] * 3 + ["unsealed"] * 3
    assert d.message == "auto-unseal (static): unsealed (standby)"


def test_with_migrate_wrong_keys_stop_at_the_threshold() -> None:
    node = MigratingNode(good=set(GOOD))
    memory = NodeMemory()
    for i in range(5):
        d = migration_round(node, ["x1", "x2"], memory, ctx(now=T0 + i, migrate=True))
        memory = d.memory
    assert node.requests == 2 and d.state == "wrong_keys" and node.sealed


def test_joining_node_polled_not_resent() -> None:
    node = ShamirNode(good=set(GOOD), joining_rounds=3)
    seen = [d.state for d, _ in rounds(node, GOOD[:2], count=5)]
    assert seen == ["joining", "joining", "joining", "unsealed", "unsealed"]
    assert node.requests == 2


# ---- the cluster --------------------------------------------------------------------------------


def node_decision(name: str, body: dict[str, Any] | None, health: int | None = None, **kw: Any) -> Decision:
    p = Probe.unreachable(name, "connection refused") if body is None else probe(body, health, node=name)
    context = ctx(**kw)
    return decide(p, NodeMemory(), context)


def up(name: str, active: bool = False) -> Decision:
    return node_decision(name, UNSEALED, 200 if active else 429)


def sealed(name: str, **kw: Any) -> Decision:
    return node_decision(name, RESTARTED, 503, **kw)


def down(name: str) -> Decision:
    return node_decision(name, None)


def with_state(d: Decision, state: str) -> Decision:
    return replace(d, state=state)  # type: ignore[arg-type]


CLUSTER_ROWS: list[tuple[str, list[Decision], str, int, bool]] = [
    (
        "all unsealed, a leader",
        [up("node-1"), up("node-2", True), up("node-3")],
        "3/3 unsealed, leader node-2",
        0,
        True,
    ),
    (
        "full-cluster restart: all unsealed, no leader until the election",
        [up("node-1"), up("node-2"), up("node-3")],
        "no leader yet: 3/3 unsealed",
        75,
        False,
    ),
    (
        "full-cluster restart, unsealing under way",
        [up("node-1"), sealed("node-2"), sealed("node-3")],
        "no leader yet: 1/3 unsealed; sealed: node-2, node-3",
        75,
        False,
    ),
    (
        "quorum lost: two nodes unreachable",
        [up("node-1"), down("node-2"), down("node-3")],
        "quorum lost: 1/3 unsealed, 2 needed; unreachable: node-2, node-3",
        69,
        False,
    ),
    (
        "a leader, one node down: every reachable node unsealed is success",
        [up("node-1", True), up("node-2"), down("node-3")],
        "2/3 unsealed, leader node-1; unreachable: node-3",
        0,
        True,
    ),
    (
        "a leader, keys refused by one node",
        [up("node-1", True), up("node-2"), with_state(sealed("node-3"), "wrong_keys")],
        "2/3 unsealed, leader node-1; wrong keys: node-3",
        65,
        True,
    ),
    (
        "a leader, a node waiting for another custodian",
        [up("node-1", True), up("node-2"), sealed("node-3", keys_held=1)],
        "2/3 unsealed, leader node-1; sealed: node-3",
        75,
        False,
    ),
    (
        "a leader, a node sealed on purpose",
        [up("node-1", True), up("node-2"), with_state(sealed("node-3"), "sealed_on_purpose")],
        "2/3 unsealed, leader node-1; sealed on purpose: node-3",
        75,
        True,
    ),
    (
        "a leader, an auto-unseal node sealed: not a Shamir node, reported",
        [up("node-1", True), up("node-2"), node_decision("node-3", STATIC_SEALED, 503)],
        "2/3 unsealed, leader node-1; auto-unseal sealed: node-3",
        0,
        True,
    ),
    (
        "an uninitialised node is not a member",
        [up("node-1", True), up("node-2"), up("node-3"), node_decision("node-4", UNINITIALISED, 501)],
        "3/3 unsealed, leader node-1; not initialised: node-4",
        0,
        True,
    ),
    (
        "threshold mismatch",
        [up("node-1", True), up("node-2"), sealed("node-3", expect_threshold=3)],
        "2/3 unsealed, leader node-1; threshold/shares mismatch: node-3",
        65,
        True,
    ),
    (
        "hold file: try again later",
        [up("node-1", True), up("node-2"), sealed("node-3", hold=True)],
        "2/3 unsealed, leader node-1; held: node-3",
        75,
        False,
    ),
    (
        "everything unreachable",
        [down("node-1"), down("node-2"), down("node-3")],
        "quorum lost: 0/3 unsealed, 2 needed; unreachable: node-1, node-2, node-3",
        69,
        False,
    ),
    (
        "a node waits for a seal migration (no --migrate): 75, the node and what to run spelled out",
        [up("node-1", True), up("node-2"), node_decision("node-3", MIGRATION_PENDING, 503)],
        "2/3 unsealed, leader node-1; node-3: seal migration pending (shamir -> static): run unseal with --migrate",
        75,
        True,
    ),
    (
        "a migrated standby waits for the step-down: 75, what to do next",
        [
            up("node-1", True),
            decide(Probe.refused("node-2", 500, MIGRATED_ERROR), NodeMemory(), ctx()),
            node_decision("node-3", MIGRATION_PENDING, 503, migrate=True),
        ],
        "1/3 unsealed, leader node-1; sealed: node-3; node-2: migrated, waiting for the active node to step down: "
        "bao operator step-down",
        75,
        False,
    ),
    (
        "after the step-down, the old active node on its old stanza",
        [
            node_decision("node-1", STATIC_UNSEALED, 429),
            node_decision("node-2", STATIC_UNSEALED, 200),
            decide(Probe.refused("node-3", 500, OLD_SEAL_ERROR), NodeMemory(), ctx()),
        ],
        "2/3 unsealed, leader node-2; node-3: still on the old seal after the migration: restart it with the new "
        "seal stanza",
        75,
        True,
    ),
    (
        "a cluster all on auto-unseal: nothing to unseal, the keys are recovery keys now",
        [node_decision(f"node-{i}", STATIC_UNSEALED, 200 if i == 2 else 429) for i in (1, 2, 3)],
        "cluster on auto-unseal (static): nothing to unseal; the keys held are recovery keys now; leader node-2",
        0,
        True,
    ),
    (
        "all on auto-unseal but one sealed: reported as before, naming the seal type",
        [
            node_decision("node-1", STATIC_UNSEALED, 200),
            node_decision("node-2", STATIC_UNSEALED, 429),
            node_decision("node-3", STATIC_SEALED, 503),
        ],
        "2/3 unsealed, leader node-1; auto-unseal sealed: node-3",
        0,
        True,
    ),
    (
        "no leader, the missing nodes sealed on purpose: not unavailable, not waiting either",
        [up("node-1"), with_state(sealed("node-2"), "sealed_on_purpose"), with_state(sealed("node-3"), "wrong_keys")],
        "quorum lost: 1/3 unsealed, 2 needed; sealed on purpose: node-2; wrong keys: node-3",
        65,
        True,
    ),
]


def migrated(name: str, seen: str = "shamir") -> Decision:
    """A node answering 500 after its migrate keys (MIGRATED_ERROR), its old seal `seen` before."""
    return decide(Probe.refused(name, 500, MIGRATED_ERROR), NodeMemory(seal_type_seen=seen), ctx())


STEP_DOWN_ROWS: list[tuple[str, list[Decision], str, int, bool]] = [
    (
        "one node, just migrated (the 500 of its first 30-50 ms): no step-down advice, not settled",
        [migrated("node-1")],
        "no leader yet: 0/1 unsealed; node-1: migrated, no active node yet: waiting for one to take over and "
        "complete the migration",
        75,
        False,
    ),
    (
        "one node, old seal learnt from the 500's text (the unsealer never saw it before): the same",
        [migrated("node-1", seen="")],
        "no leader yet: 0/1 unsealed; node-1: migrated, no active node yet: waiting for one to take over and "
        "complete the migration",
        75,
        False,
    ),
    (
        "one node, migrated, active on the new seal: done",
        [node_decision("node-1", STATIC_UNSEALED, 200)],
        "cluster on auto-unseal (static): nothing to unseal; the keys held are recovery keys now; leader node-1",
        0,
        True,
    ),
    (
        "three nodes, the step-down done, the election under way: no advice, not settled",
        [migrated("node-1"), migrated("node-2"), down("node-3")],
        "no leader yet: 0/3 unsealed; unreachable: node-3; node-1: migrated, no active node yet: waiting for "
        "one to take over and complete the migration; node-2: migrated, no active node yet: waiting for one to take "
        "over and complete the migration",
        75,
        False,
    ),
    (
        "a migrated node active on the new seal, another still answering 500: completing, no step-down advice",
        [node_decision("node-1", STATIC_UNSEALED, 200), migrated("node-2"), node_decision("node-3", RESTARTED, 503)],
        "1/3 unsealed, leader node-1; sealed: node-3; node-2: migrated, the active node (node-1) is completing the "
        "migration",
        75,
        False,
    ),
    (
        "the reverse migration (static -> shamir), the active node still on static: step it down",
        [node_decision("node-1", STATIC_UNSEALED, 200), migrated("node-2", seen="static")],
        "1/2 unsealed, leader node-1; node-2: migrated, waiting for the active node to step down: bao operator "
        "step-down",
        75,
        True,
    ),
]


@pytest.mark.parametrize(
    ("situation", "decisions", "status", "code", "settled"),
    CLUSTER_ROWS + STEP_DOWN_ROWS,
    ids=[r[0] for r in CLUSTER_ROWS + STEP_DOWN_ROWS],
)
def test_cluster(situation: str, decisions: list[Decision], status: str, code: int, settled: bool) -> None:
    v = verdict(decisions, keys_held=2)
    assert v.status == status
    assert (v.exit_code, v.settled) == (code, settled)


def test_cluster_fields() -> None:
    v = verdict([up("node-1"), up("node-2", True), down("node-3"), node_decision("u", UNINITIALISED, 501)], 2)
    assert (v.kind, v.leader, v.unsealed, v.members, v.quorum) == ("leader", "node-2", 2, 3, 2)
    assert v.keys_usable
    refused = verdict([up("node-1", True), with_state(sealed("node-2"), "wrong_keys")], 2)
    assert not refused.keys_usable
    assert not verdict([up("node-1", True)], 0).keys_usable


def test_two_active_nodes_or_two_cluster_ids_warn() -> None:
    a = up("node-1", True)
    b = replace(up("node-2", True), cluster_id="other")
    v = verdict([a, b], 2)
    assert any("2 nodes answer as active" in w for w in v.warnings)
    assert any("different cluster_ids" in w for w in v.warnings)


def test_a_migrated_node_learns_its_old_seal_from_the_500() -> None:
    d = decide(Probe.refused("node-1", 500, MIGRATED_ERROR), NodeMemory(), ctx())
    assert d.memory.seal_type_seen == "shamir"
    kept = decide(Probe.refused("node-1", 500, MIGRATED_ERROR), NodeMemory(seal_type_seen="static"), ctx())
    assert kept.memory.seal_type_seen == "static"


def test_the_step_down_advice_goes_into_the_nodes_own_line_only_when_given() -> None:
    lone = verdict([migrated("node-1")], 2)
    assert "step" not in lone.status and "step" not in lone.notes["node-1"]
    three = verdict([up("node-1", True), migrated("node-2"), up("node-3")], 2)
    assert three.notes == {"node-2": "migrated, waiting for the active node to step down: bao operator step-down"}
    assert three.settled and three.exit_code == 75
