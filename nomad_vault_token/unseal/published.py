"""unseal.json (no key in it): what the watcher publishes after each round and `status` reads, one model for both.

Pure: `from_json` checks a document and gives the typed model (ValueError when it is not one: another
version, a torn file); `to_json` gives what is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, get_args

from nomad_vault_token.unseal.plan import Kind, Role, State


@dataclass(frozen=True)
class Node:
    node: str
    address: str
    state: State
    message: str
    role: Role
    reachable: bool
    sealed: bool | None  # None: no answer with the fields
    auto_unseal: bool | None
    seal_type: str | None
    migration_pending: bool
    last_unseal: float | None  # wall clock

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Node:
        return cls(
            node=str(doc["node"]),
            address=str(doc["address"]),
            state=_one_of(doc["state"], State),
            message=str(doc["message"]),
            role=_one_of(doc["role"], Role),
            reachable=bool(doc["reachable"]),
            sealed=_maybe(doc.get("sealed"), bool),
            auto_unseal=_maybe(doc.get("auto_unseal"), bool),
            seal_type=_maybe(doc.get("seal_type"), str),
            migration_pending=bool(doc["migration_pending"]),
            last_unseal=_maybe(doc.get("last_unseal"), float),
        )


@dataclass(frozen=True)
class Published:
    pid: int
    status: str
    cluster: Kind
    leader: str | None
    unsealed: int
    members: int
    quorum: int
    keys_held: int
    keys_source: str
    keys_usable: bool
    settled: bool
    exit_code: int
    warnings: tuple[str, ...]
    nodes: tuple[Node, ...]
    updated_at: float  # wall clock

    VERSION: ClassVar[int] = 1

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["warnings"] = list(self.warnings)
        doc["nodes"] = [asdict(n) for n in self.nodes]
        return {"version": self.VERSION, **doc}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Published:
        try:
            if doc.get("version") != cls.VERSION:
                raise ValueError(f"not a version {cls.VERSION} unseal.json")
            return cls(
                pid=int(doc["pid"]),
                status=str(doc["status"]),
                cluster=_one_of(doc["cluster"], Kind),
                leader=_maybe(doc.get("leader"), str),
                unsealed=int(doc["unsealed"]),
                members=int(doc["members"]),
                quorum=int(doc["quorum"]),
                keys_held=int(doc["keys_held"]),
                keys_source=str(doc["keys_source"]),
                keys_usable=bool(doc["keys_usable"]),
                settled=bool(doc["settled"]),
                exit_code=int(doc["exit_code"]),
                warnings=tuple(str(w) for w in doc["warnings"]),
                nodes=tuple(Node.from_json(n) for n in doc["nodes"]),
                updated_at=float(doc["updated_at"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an unseal.json: {exc!r}") from None


def _one_of(value: object, kind: Any) -> Any:
    if value not in get_args(kind):
        raise ValueError(f"{value!r}: not one of {get_args(kind)}")
    return value


def _maybe(value: object, kind: type[Any]) -> Any:
    return None if value is None else kind(value)
