"""What a snapshot run says to Prometheus: nomad_vault_token_snapshot.prom (node_exporter's textfile
collector), written at the end of every run, failed or not, and per `--copy-to` destination whether its
copy was verified. A failure to write is logged, never fatal."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nomad_vault_token.core.config import Settings

if TYPE_CHECKING:  # metrics and the archive are loaded only when a run writes metrics
    from nomad_vault_token.core.metrics import Gauge
    from nomad_vault_token.snapshot.archive import SnapshotInfo

log = logging.getLogger(__name__)

METRICS_COMPONENT = "snapshot"
COPY_SUCCESS = "nomad_vault_token_snapshot_copy_last_success"
COPY_TIMESTAMP = "nomad_vault_token_snapshot_copy_last_success_timestamp_seconds"


class SnapshotMetrics:
    """nomad_vault_token_snapshot.prom when metrics_dir is set; a failure to write is logged, never fatal."""

    def __init__(self, settings: Settings, directory: Path, prefix: str, started: float, copies: list[str]) -> None:
        self.dir = settings.metrics_dir
        self.snap_dir = directory
        self.prefix = prefix
        self.started = started
        self.copies = copies

    def _copy_gauges(self, ok: dict[str, bool]) -> list[Gauge]:
        """Per destination: this run's copy verified (1) or not (0), and when a copy last was: now, or what the
        previous file said (carried over: the bucket may be what is down)."""
        from nomad_vault_token.core import metrics
        from nomad_vault_token.core.metrics import flag, gauge

        assert self.dir is not None
        before = metrics.read_values(self.dir, METRICS_COMPONENT, COPY_TIMESTAMP, "destination")
        now = time.time()
        gauges = []
        for url in self.copies:
            gauges.append(gauge(COPY_SUCCESS, flag(ok.get(url, False)), destination=url))
            when = now if ok.get(url) else before.get(url)
            if when is not None:
                gauges.append(gauge(COPY_TIMESTAMP, when, destination=url))
        return gauges

    def _write(self, gauges: list[Gauge]) -> None:
        if self.dir is None:
            return
        from nomad_vault_token.core import metrics

        try:
            metrics.write_textfile(self.dir, METRICS_COMPONENT, gauges)
        except OSError as exc:
            log.warning("metrics: cannot write in %s: %s", self.dir, exc.strerror)

    def _common(self, success: bool) -> list[Gauge]:
        from nomad_vault_token.core.metrics import flag, gauge

        return [
            gauge("nomad_vault_token_snapshot_last_run_timestamp_seconds", time.time()),
            gauge("nomad_vault_token_snapshot_last_run_success", flag(success)),
            gauge("nomad_vault_token_snapshot_last_duration_seconds", time.monotonic() - self.started),
        ]

    def failed(self, verified: bool | None) -> None:
        """What a failed run can say: the newest verified snapshot still there, from its manifest."""
        if self.dir is None:
            return
        from nomad_vault_token.core.metrics import flag, gauge
        from nomad_vault_token.snapshot import store

        gauges = self._common(False) + self._copy_gauges({})
        if verified is not None:
            gauges.append(gauge("nomad_vault_token_snapshot_last_verification_success", flag(verified)))
        try:
            _, present = store.survey(self.snap_dir, self.prefix)
        except OSError:
            present = []
        good = [p.name for p in present if p.verified]
        gauges += [
            gauge("nomad_vault_token_snapshot_kept", len(good)),
            gauge("nomad_vault_token_snapshot_unverified", len(present) - len(good)),
        ]
        if good:
            newest = good[-1]
            manifest = store.read_manifest(self.snap_dir / newest.manifest_name)
            gauges.append(
                gauge("nomad_vault_token_snapshot_last_success_timestamp_seconds", newest.taken_at.timestamp())
            )
            if manifest is not None:
                gauges += [
                    gauge("nomad_vault_token_snapshot_last_size_bytes", manifest.size),
                    gauge("nomad_vault_token_snapshot_last_raft_index", manifest.index),
                    gauge("nomad_vault_token_snapshot_last_raft_term", manifest.term),
                ]
        self._write(gauges)

    def succeeded(self, info: SnapshotInfo, kept: int, unverified: int, copies: dict[str, bool]) -> None:
        from nomad_vault_token.core.metrics import flag, gauge

        if self.dir is None:
            return
        self._write(
            [
                *self._common(True),
                gauge("nomad_vault_token_snapshot_last_success_timestamp_seconds", time.time()),
                gauge("nomad_vault_token_snapshot_last_verification_success", flag(True)),
                gauge("nomad_vault_token_snapshot_last_size_bytes", info.size),
                gauge("nomad_vault_token_snapshot_last_raft_index", info.index),
                gauge("nomad_vault_token_snapshot_last_raft_term", info.term),
                gauge("nomad_vault_token_snapshot_kept", kept),
                gauge("nomad_vault_token_snapshot_unverified", unverified),
                *self._copy_gauges(copies),
            ]
        )
