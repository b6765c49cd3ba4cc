"""The fault catalogue and the schedule a seed gives: pure, no I/O.

`schedule(seed, seconds)` draws every fault of a run from `random.Random(seed)` alone: which kind,
on which node, how long it is held, and when it is due. The driver runs them in that order (a fault
waits while two are already active, or while its target is taken by another), so the same seed
replays the same sequence; only the wall-clock times move with the machine's speed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Kind = Literal[
    "node_kill",  # a Vault node killed (-9), started again after `hold`
    "node_freeze",  # SIGSTOP for `hold`, then SIGCONT
    "node_seal",  # sys/seal on purpose; the soak unseals it by hand after `hold`
    "step_down",  # the active node steps down
    "cluster_restart",  # all three nodes stopped and started at once
    "token_revoke",  # the agent's server token revoked
    "keyring_revoke",  # the keyring token (Nomad's keyring "transit" block reads it from its file) revoked
    "blackhole",  # the connection to Vault (through the proxy) drops everything for `hold`
    "s3_down",  # the S3 server stopped for `hold`, then started
    "snapdir_full",  # the snapshot directory is a tmpfs too small for a snapshot, for the next run
    "unsealer_kill",  # the unsealer killed (-9); its unit restarts it (Restart=always, RestartSec)
]
KINDS: tuple[Kind, ...] = (
    "node_kill",
    "node_freeze",
    "node_seal",
    "step_down",
    "cluster_restart",
    "token_revoke",
    "keyring_revoke",
    "blackhole",
    "s3_down",
    "snapdir_full",
    "unsealer_kill",
)
NODE_KINDS = frozenset({"node_kill", "node_freeze", "node_seal"})
CLUSTER_KINDS = frozenset({"node_kill", "node_freeze", "node_seal", "step_down", "cluster_restart"})
# how long each kind is held, seconds (low, high); 0: the fault is one act
HOLD: dict[Kind, tuple[float, float]] = {
    "node_kill": (0.5, 3.0),
    "node_freeze": (0.5, 4.0),
    "node_seal": (1.0, 5.0),
    "step_down": (0.0, 0.0),
    "cluster_restart": (0.0, 1.0),
    "token_revoke": (0.0, 0.0),
    "keyring_revoke": (0.0, 0.0),
    "blackhole": (1.0, 6.0),
    "s3_down": (1.0, 6.0),
    "snapdir_full": (0.0, 0.0),
    "unsealer_kill": (0.0, 0.0),
}
MAX_ACTIVE = 2  # two faults may overlap, never more


@dataclass(frozen=True)
class Fault:
    index: int
    due: float  # seconds after the soak's start, as planned
    kind: Kind
    node: int  # 1..3 for the node kinds, 0 otherwise
    hold: float  # seconds the fault is held before it is healed
    size: int  # snapdir_full: bytes of the tmpfs; 0 otherwise

    def target(self) -> str:
        """What two overlapping faults must not share."""
        if self.kind in NODE_KINDS:
            return f"node-{self.node}"
        if self.kind in ("step_down", "cluster_restart"):
            return "cluster"
        return self.kind

    def conflicts(self, other: Fault) -> bool:
        mine, theirs = self.target(), other.target()
        if mine == theirs:
            return True
        # a whole-cluster fault and a node fault touch the same processes
        return {mine, theirs} & {"cluster"} != set() and (mine.startswith("node-") or theirs.startswith("node-"))

    def describe(self) -> str:
        where = f" node-{self.node}" if self.node else ""
        held = f" for {self.hold:.1f}s" if self.hold else ""
        size = f" ({self.size} bytes)" if self.size else ""
        return f"#{self.index} {self.kind}{where}{held}{size}"


def schedule(seed: int, seconds: float, mean_gap: float = 1.6) -> list[Fault]:
    """Every fault of a `seconds`-long run, due at exponential gaps (mean `mean_gap`), kinds in shuffled
    rounds (each round holds every kind once, so a short run still meets every kind)."""
    rng = random.Random(seed)  # noqa: S311 - a replayable schedule, not a secret
    faults: list[Fault] = []
    at = 0.0
    kinds: list[Kind] = []
    while True:
        at += rng.expovariate(1 / mean_gap)
        if at >= seconds:
            return faults
        if not kinds:
            kinds = list(KINDS)
            rng.shuffle(kinds)
        kind = kinds.pop()
        low, high = HOLD[kind]
        node = rng.randint(1, 3) if kind in NODE_KINDS else 0
        size = rng.choice((4096, 16384, 65536)) if kind == "snapdir_full" else 0
        faults.append(Fault(len(faults), round(at, 3), kind, node, round(rng.uniform(low, high), 3), size))
