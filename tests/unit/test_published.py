"""tracker.json and unseal.json: one typed model each, written by the tracker and the watcher, read by `status`
and `check`. What the writer writes comes back the same; anything else (another version, a torn or foreign
file) is no view at all, not a view of Nones."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from nomad_vault_token.commands import status
from nomad_vault_token.core.files import publish_json
from nomad_vault_token.token import tracker_report
from nomad_vault_token.unseal import published

TRACKER = tracker_report.Published(
    pid=os.getpid(),
    agent_pid=4242,
    accessor="acc-1",
    state="healthy",
    adopted=True,
    adoption="adopted by the agent",
    handover="sighup",
    degraded_for=None,
    status="token acc-1... ttl 71h",
    updated_at=1_700_000_000.5,
)

NODE = published.Node(
    node="node-1",
    address="https://127.0.0.1:8200",
    state="unsealed",
    message="unsealed",
    role="active",
    reachable=True,
    sealed=False,
    auto_unseal=False,
    seal_type="shamir",
    migration_pending=False,
    last_unseal=1_700_000_000.0,
)
UNSEAL = published.Published(
    pid=os.getpid(),
    status="1/1 unsealed, leader node-1",
    cluster="leader",
    leader="node-1",
    unsealed=1,
    members=1,
    quorum=1,
    keys_held=2,
    keys_source="/etc/keys",
    keys_usable=True,
    settled=True,
    exit_code=0,
    warnings=("one",),
    nodes=(NODE, NODE.__class__(**{**NODE.__dict__, "node": "node-2", "sealed": None, "last_unseal": None})),
    updated_at=1_700_000_001.0,
)


def through_a_file(doc: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(doc))
    return loaded


def test_tracker_json_comes_back_as_written() -> None:
    assert tracker_report.Published.from_json(through_a_file(TRACKER.to_json())) == TRACKER


def test_unseal_json_comes_back_as_written() -> None:
    assert published.Published.from_json(through_a_file(UNSEAL.to_json())) == UNSEAL


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


@pytest.mark.parametrize(
    "change",
    [
        lambda d: _without(d, "state"),
        lambda d: _without(d, "pid"),
        lambda d: d | {"version": 2},
        lambda d: d | {"state": "sleeping"},
        lambda d: d | {"handover": "telepathy"},
        lambda d: d | {"pid": "many"},
        lambda d: {"pid": 1, "updated_at": 0},  # all the old reader asked for
    ],
    ids=["no state", "no pid", "version 2", "unknown state", "unknown handover", "pid not a number", "pid only"],
)
def test_tracker_json_that_is_not_one_is_refused(change: Any) -> None:
    with pytest.raises(ValueError):
        tracker_report.Published.from_json(change(TRACKER.to_json()))


@pytest.mark.parametrize(
    "change",
    [
        lambda d: _without(d, "nodes"),
        lambda d: d | {"version": 0},
        lambda d: d | {"cluster": "anarchy"},
        lambda d: d | {"nodes": [{"node": "n"}]},
        lambda d: d | {"nodes": [{**d["nodes"][0], "role": "king"}]},
        lambda d: {"pid": 1, "updated_at": 0, "status": "ok"},
    ],
    ids=["no nodes", "version 0", "unknown cluster kind", "a torn node", "unknown role", "pid only"],
)
def test_unseal_json_that_is_not_one_is_refused(change: Any) -> None:
    with pytest.raises(ValueError):
        published.Published.from_json(change(UNSEAL.to_json()))


def test_status_reads_the_files_through_the_models(tmp_path: Path) -> None:
    tracker, unseal = tmp_path / "tracker.json", tmp_path / "unseal.json"
    publish_json(tracker, TRACKER.to_json())
    publish_json(unseal, UNSEAL.to_json())
    view = status.tracker_view(tracker, "acc-1")
    assert view is not None
    assert (view["state"], view["handover"], view["agent_pid"], view["running"], view["current_token"]) == (
        "healthy",
        "sighup",
        4242,
        True,
        True,
    )
    assert view["updated_at"] == "2023-11-14T22:13:20Z"
    u = status.unsealer_view(unseal)
    assert u is not None and u["cluster"] == "leader" and [n["node"] for n in u["nodes"]] == ["node-1", "node-2"]
    assert "node-2: unsealed" in status.unsealer_text(u)


@pytest.mark.parametrize("text", ["", "{", "[]", '{"pid": 1, "updated_at": 0}', '{"version": 1, "pid": 1}'])
def test_status_shows_no_view_for_a_file_no_writer_wrote(tmp_path: Path, text: str) -> None:
    for name in ("tracker.json", "unseal.json"):
        (tmp_path / name).write_text(text)
    assert status.tracker_view(tmp_path / "tracker.json", "acc-1") is None
    assert status.unsealer_view(tmp_path / "unseal.json") is None
