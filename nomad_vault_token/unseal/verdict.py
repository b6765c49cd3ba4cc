"""What the cluster's state means, from every node's decision this round (`plan.decide`): the leader,
the quorum, the STATUS line, and what `unseal --once` exits with. Pure, no I/O.

A migrated node (sys/seal-status 500 after its migrate keys) waits for the operator only while another
node is active on the old seal: then the STATUS line tells them to step that node down. Without such a
node (one node, which completes the migration itself as the active node 30-50 ms later; an election
after the step-down; a new active node completing the migration) it is on its way: no step-down advice,
and `--once` is not settled (it probes again, up to its settle timeout)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nomad_vault_token.core.errors import EX_DATAERR, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE
from nomad_vault_token.unseal.plan import MIGRATED, MIGRATION, ON_THE_WAY, SETTLED, Decision, Kind, State


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    leader: str | None
    unsealed: int
    members: int
    quorum: int
    status: str  # the STATUS line: "3/3 unsealed, leader node-2"
    exit_code: int  # what `unseal --once` exits with if it stops now
    settled: bool  # waiting will not change the exit code: `--once` may stop now
    keys_usable: bool  # no node refused our keys (a hint for WATCHDOG)
    warnings: tuple[str, ...] = ()
    notes: Mapping[str, str] = field(default_factory=dict)  # node -> what the STATUS line says of it


def _migrated(d: Decision, leader: Decision | None) -> tuple[str, bool]:
    """What a migrated node waits for, and whether that is the operator (waiting will not change it)."""
    if leader is None:
        return "migrated, no active node yet: waiting for one to take over and complete the migration", False
    old = d.memory.seal_type_seen
    if old and leader.seal_type and leader.seal_type != old:
        return f"migrated, the active node ({leader.node}) is completing the migration", False
    return MIGRATED, True  # the STATUS line names the leader


_PROBLEM_WORDS: Mapping[State, str] = {
    "sealed": "sealed",
    "unreachable": "unreachable",
    "uninitialized": "not initialised",
    "auto_unseal": "auto-unseal sealed",
    "sealed_on_purpose": "sealed on purpose",
    "wrong_keys": "wrong keys",
    "foreign_progress": "someone else unsealing",
    "joining": "joining",
    "mismatch": "threshold/shares mismatch",
    "held": "held",
}
# States whose message the STATUS line spells out per node: what the operator does next.
_SPELLED_OUT: frozenset[State] = MIGRATION


def verdict(decisions: Sequence[Decision], keys_held: int) -> Verdict:
    """The cluster's state from every node's decision this round."""
    members = [d for d in decisions if d.state != "uninitialized"]
    total = len(members)
    quorum = total // 2 + 1
    unsealed = sum(1 for d in members if d.unsealed)
    active = [d for d in members if d.unsealed and d.role == "active"]
    leaders = [d.node for d in active]
    leader = leaders[0] if leaders else None
    on_the_way = sum(1 for d in members if d.state in ON_THE_WAY)

    warnings: list[str] = []
    if len(leaders) > 1:
        warnings.append(f"{len(leaders)} nodes answer as active ({', '.join(leaders)}): more than one cluster?")
    clusters = sorted({d.cluster_id for d in members if d.unsealed and d.cluster_id})
    if len(clusters) > 1:
        warnings.append(f"unsealed nodes report {len(clusters)} different cluster_ids: more than one cluster?")
    for d in decisions:
        warnings.extend(f"{d.node}: {w}" for w in d.warnings)

    problems: dict[str, list[str]] = {}
    spelled: list[str] = []
    notes: dict[str, str] = {}
    operator_waits = True  # every migrated node waits for the operator (not for the cluster)
    for d in decisions:
        if d.state == "migrated":
            note, operator = _migrated(d, active[0] if active else None)
            operator_waits = operator_waits and operator
            notes[d.node] = note
            spelled.append(f"; {d.node}: {note}")
        elif d.state in _SPELLED_OUT:
            spelled.append(f"; {d.node}: {d.message}")
        elif not d.unsealed:
            problems.setdefault(_PROBLEM_WORDS[d.state], []).append(d.node)
    tail = "".join(f"; {word}: {', '.join(nodes)}" for word, nodes in problems.items()) + "".join(spelled)
    all_auto = bool(members) and all(d.unsealed and d.auto_unseal for d in members)

    kind: Kind
    if leader is not None and all_auto:
        kind = "leader"
        types = ", ".join(sorted({d.seal_type for d in members}))
        held = "; the keys held are recovery keys now" if keys_held else ""
        status = f"cluster on auto-unseal ({types}): nothing to unseal{held}; leader {leader}{tail}"
    elif leader is not None:
        kind = "leader"
        status = f"{unsealed}/{total} unsealed, leader {leader}{tail}"
    elif total and unsealed + on_the_way >= quorum:
        kind = "no_leader_yet"
        status = f"no leader yet: {unsealed}/{total} unsealed{tail}"
    else:
        kind = "quorum_lost"
        status = f"quorum lost: {unsealed}/{total} unsealed, {quorum} needed{tail}"

    states = {d.state for d in decisions}
    pending = states & (ON_THE_WAY | MIGRATION | {"sealed_on_purpose"})
    if leader is not None and not pending and not states & {"wrong_keys", "mismatch"}:
        code = EX_OK
    elif states & {"wrong_keys", "mismatch"}:
        code = EX_DATAERR
    elif leader is None and kind == "quorum_lost" and "unreachable" in states:
        code = EX_UNAVAILABLE
    else:
        code = EX_TEMPFAIL
    election_pending = leader is None and unsealed >= quorum
    settled = code == EX_OK or (states <= SETTLED and not election_pending and operator_waits)
    return Verdict(
        kind=kind,
        leader=leader,
        unsealed=unsealed,
        members=total,
        quorum=quorum,
        status=status,
        exit_code=code,
        settled=settled,
        keys_usable=keys_held > 0 and "wrong_keys" not in states,
        warnings=tuple(warnings),
        notes=notes,
    )
