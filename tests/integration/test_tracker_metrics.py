"""The tracker's node_exporter textfile: written on every state change when `metrics_dir` is set, parsed by
Prometheus' own text-format parser, and following the token (here: revoked, then replaced)."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed.agent import AgentRun
from testbed.bao import Bao, Certs
from testbed.config import write_config
from testbed.procs import wait_for

pytestmark = pytest.mark.vault


def read_metrics(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items()))] = s.value
    return out


def test_tracker_metrics_follow_a_revoked_token(
    tmp_path: Path, server: Bao, certs: Certs, runs: Callable[..., AgentRun]
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    cfg = write_config(
        tmp_path / "c.toml", server, certs, check_interval="1s", request_timeout="2s", sighup_grace="3s",
        metrics_dir=str(metrics_dir),
    )  # fmt: skip
    prom = metrics_dir / "nomad_vault_token_tracker.prom"
    r = runs(cfg, server)
    old = r.wait_event("validated")["accessor"]

    def adopted() -> dict[str, float] | None:
        if not prom.exists():
            return None
        m = read_metrics(prom)
        return m if m.get("nomad_vault_token_token_adopted") == 1 else None

    before = wait_for(adopted, 20, "the tracker's metrics to say adopted", interval=0.2)
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    assert before["nomad_vault_token_tracker_state{state=healthy}"] == 1
    assert before["nomad_vault_token_tracker_state{state=dead}"] == 0
    assert 0 < before["nomad_vault_token_token_ttl_seconds"] <= 72 * 3600
    assert before["nomad_vault_token_client_cert_expiry_timestamp_seconds"] > before[
        "nomad_vault_token_token_expiry_timestamp_seconds"
    ] - 72 * 3600
    assert before["nomad_vault_token_degraded_start"] == 0
    assert "nomad_vault_token_token_last_mint_timestamp_seconds" not in before  # unknown: left out

    server.client().auth.token.revoke_accessor(old)
    r.wait_event("reload", lambda e: e["token_changed"], timeout=15)

    def replaced() -> dict[str, float] | None:
        m = read_metrics(prom)
        return m if "nomad_vault_token_token_last_mint_timestamp_seconds" in m else None

    after = wait_for(replaced, 20, "the metrics to show the replacement token", interval=0.2)
    assert after["nomad_vault_token_token_last_mint_timestamp_seconds"] >= before[
        "nomad_vault_token_token_last_lookup_timestamp_seconds"
    ]
    healthy_again = wait_for(adopted, 30, "the new token adopted in the metrics", interval=0.2)
    assert healthy_again["nomad_vault_token_tracker_state{state=healthy}"] == 1
