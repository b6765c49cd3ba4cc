"""Pure tests: no process that talks to a server, no OpenBao, no systemd; table tests of the pure logic.

Every test in this folder carries the `unit` marker (`-m unit` runs the folder's kind)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.unit)
