"""Metrics for node_exporter's textfile collector: one `*.prom` file per component, written atomically.

Each component (the tracker, the unsealer, `snapshot`) describes its state as a list of
`Gauge`s and calls `write_textfile(directory, component, gauges)`; the text comes from
prometheus_client (imported on the first write, so `run` and every command that writes
no metrics never load it), the file from `files.write_atomic`: a temp file in the same
directory (`.name.pid.tmp`, which the collector ignores), mode 0644 whatever the umask
(node_exporter runs as another user), fsync, rename, fsync the directory. The
collector reads either the old file or the new one, never half of one, and a file
survives a crash whole. prometheus_client's own `write_to_textfile` is not used: it
neither fsyncs nor sets the mode (under a `UMask=0077` unit node_exporter could not read
the file).

Conventions: every name starts `nomad_vault_token_`; units in the name (`_seconds`,
`_bytes`); points in time are Unix `_timestamp_seconds` (they stay right between two
writes, where a "seconds left" gauge goes stale: alert on `X - time()`); yes/no is a
0/1 gauge; a state is one series per possible state, labelled `state`, 1 for the
current one and 0 for the others (OpenMetrics' StateSet, as kube-state-metrics
does), so every series exists all the time. What is unknown (no token yet, a node that
did not answer) is left out, never written as 0. No sample carries a timestamp
(node_exporter refuses them); a name lives in one component's file only and its HELP
comes from `CATALOG`, so two files never disagree about it.

The catalogue (each name, its HELP, its labels and its file) is `CATALOG`, `LABELS` and `FILES` below;
docs/metrics.md is generated from them (`scripts/gen-docs`), and a test fails when the two differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nomad_vault_token.core.files import write_atomic

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

PREFIX = "nomad_vault_token_"
FILE_MODE = 0o644
COMPONENTS = ("tracker", "unseal", "snapshot")

CATALOG: dict[str, str] = {
    # tracker
    "nomad_vault_token_token_ttl_seconds": "TTL of the agent's Vault token at the tracker's last lookup.",
    "nomad_vault_token_token_expiry_timestamp_seconds": "When the agent's Vault token expires unless renewed.",
    "nomad_vault_token_token_last_renewal_timestamp_seconds": "When Vault last renewed the agent's token (lookup-self last_renewal_time).",
    "nomad_vault_token_token_last_lookup_timestamp_seconds": "When the tracker last looked the agent's token up successfully.",
    "nomad_vault_token_token_last_mint_timestamp_seconds": "When the tracker last minted a replacement token.",
    "nomad_vault_token_token_adopted": "1 once Nomad has renewed the token handed to it (adoption proven), else 0.",
    "nomad_vault_token_tracker_state": "The tracker's state: awaiting, healthy, not_adopted, dead, unreachable, degraded.",
    "nomad_vault_token_degraded_start": "1 if the agent was started without Vault's word on its token, else 0.",
    "nomad_vault_token_degraded_duration_seconds": "How long the degraded start lasted (so far, while it lasts).",
    "nomad_vault_token_client_cert_expiry_timestamp_seconds": "When the client certificate used to log in to Vault expires (notAfter).",
    "nomad_vault_token_keyring_token_ttl_seconds": "TTL of Nomad's keyring token at the tracker's last lookup (0 while it is dead or missing).",
    "nomad_vault_token_keyring_token_last_lookup_timestamp_seconds": "When the tracker last looked the keyring token up successfully.",
    "nomad_vault_token_keyring_token_last_mint_timestamp_seconds": "When the tracker last minted a replacement keyring token.",
    "nomad_vault_token_keyring_token_in_use": "1 once Nomad has renewed the keyring token in its file (its keyring wrapper used it), else 0.",
    "nomad_vault_token_keyring_state": "The keyring token's state: written, in_use, dead, unreachable, degraded, missing.",
    "nomad_vault_token_keyring_waiting_for_vault": "1 while Nomad waits for Vault to unwrap its keyring (not read since start, Vault away), else 0.",
    # unsealer
    "nomad_vault_token_unseal_node_reachable": "1 if the node answered the last check, else 0.",
    "nomad_vault_token_unseal_node_sealed": "1 if the node said it is sealed at the last check, else 0.",
    "nomad_vault_token_unseal_node_auto_unseal": "1 if the node uses auto-unseal (never given keys), else 0.",
    "nomad_vault_token_unseal_node_migration_pending": "1 if the node waits for a seal migration's keys (unseal --migrate), else 0.",
    "nomad_vault_token_unseal_last_unseal_timestamp_seconds": "When this unsealer last unsealed the node.",
    "nomad_vault_token_unseal_leader_present": "1 if the cluster had an active node at the last check, else 0.",
    "nomad_vault_token_unseal_last_check_timestamp_seconds": "When the unsealer last checked the cluster.",
    # snapshot
    "nomad_vault_token_snapshot_last_run_timestamp_seconds": "When the last snapshot run ended.",
    "nomad_vault_token_snapshot_last_run_success": "1 if the last run kept a verified snapshot, else 0.",
    "nomad_vault_token_snapshot_last_success_timestamp_seconds": "When a run last kept a verified snapshot.",
    "nomad_vault_token_snapshot_last_verification_success": "1 if the last snapshot received passed verification, 0 if it failed.",
    "nomad_vault_token_snapshot_last_size_bytes": "Size of the newest verified snapshot.",
    "nomad_vault_token_snapshot_last_raft_index": "Raft index of the newest verified snapshot.",
    "nomad_vault_token_snapshot_last_raft_term": "Raft term of the newest verified snapshot.",
    "nomad_vault_token_snapshot_last_duration_seconds": "How long the last snapshot run took.",
    "nomad_vault_token_snapshot_kept": "Verified snapshots in the directory after retention.",
    "nomad_vault_token_snapshot_unverified": "Snapshot files without a manifest vouching for them (left alone).",
    "nomad_vault_token_snapshot_copy_last_success": "1 if the last run's copy to this destination was verified, else 0.",
    "nomad_vault_token_snapshot_copy_last_success_timestamp_seconds": "When a copy to this destination was last verified.",
}

# The labels of the labelled metrics (every other metric has none); `gauge` refuses any other set, and
# docs/metrics.md is made from CATALOG, LABELS and FILES.
LABELS: dict[str, tuple[str, ...]] = {
    "nomad_vault_token_tracker_state": ("state",),
    "nomad_vault_token_keyring_state": ("state",),
    "nomad_vault_token_unseal_node_reachable": ("node",),
    "nomad_vault_token_unseal_node_sealed": ("node",),
    "nomad_vault_token_unseal_node_auto_unseal": ("node",),
    "nomad_vault_token_unseal_node_migration_pending": ("node",),
    "nomad_vault_token_unseal_last_unseal_timestamp_seconds": ("node",),
    "nomad_vault_token_snapshot_copy_last_success": ("destination",),
    "nomad_vault_token_snapshot_copy_last_success_timestamp_seconds": ("destination",),
}

# Which component's file holds a metric, by the start of its name
FILES: dict[str, tuple[str, ...]] = {
    "tracker": (
        PREFIX + "token_",
        PREFIX + "tracker_",
        PREFIX + "degraded_",
        PREFIX + "client_cert_",
        PREFIX + "keyring_",
    ),
    "unseal": (PREFIX + "unseal_",),
    "snapshot": (PREFIX + "snapshot_",),
}


def component_of(name: str) -> str:
    """The component whose `.prom` file holds metric `name`; ValueError when none or two claim it."""
    owners = [c for c, starts in FILES.items() if name.startswith(starts)]
    if len(owners) != 1:
        raise ValueError(f"metric {name!r}: claimed by {owners or 'no component'} in metrics.FILES")
    return owners[0]


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_COMPONENT = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True)
class Gauge:
    """One sample: a gauge's name, its HELP text, its labels and its value."""

    name: str
    help: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or not self.name.startswith(PREFIX):
            raise ValueError(f"metric name {self.name!r}: must match {_NAME.pattern} and start with {PREFIX}")
        if not self.help.strip():
            raise ValueError(f"metric {self.name}: empty help")
        for key, value in self.labels.items():
            if not _LABEL.fullmatch(key) or key.startswith("__"):
                raise ValueError(f"metric {self.name}: label name {key!r} is not allowed")
            if not isinstance(value, str):
                raise ValueError(f"metric {self.name}: label {key} value {value!r} is not a string")
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise ValueError(f"metric {self.name}: value {self.value!r} is not a number (use flag() for yes/no)")


def gauge(name: str, value: float, **labels: str) -> Gauge:
    """A gauge from `CATALOG` (its HELP filled in); ValueError for a name not in it."""
    try:
        help_text = CATALOG[name]
    except KeyError:
        raise ValueError(f"metric {name!r} is not in metrics.CATALOG") from None
    if sorted(labels) != sorted(LABELS.get(name, ())):
        raise ValueError(f"metric {name}: labels {sorted(labels)}, metrics.LABELS says {list(LABELS.get(name, ()))}")
    return Gauge(name, help_text, value, labels)


def flag(value: bool) -> float:
    """A yes/no as a gauge value: 1.0 or 0.0."""
    return 1.0 if value else 0.0


def state_set(name: str, states: Sequence[str], current: str, label: str = "state", **labels: str) -> list[Gauge]:
    """One series per state, `current` at 1 and the others at 0."""
    if current not in states:
        raise ValueError(f"metric {name}: state {current!r} is not one of {list(states)}")
    return [gauge(name, flag(s == current), **{**labels, label: s}) for s in states]


def render(gauges: Iterable[Gauge]) -> bytes:
    """The Prometheus text format (version 0.0.4) for `gauges`: one family per name, in first-seen order.

    ValueError when one name comes with two HELP texts or two samples share a name and labels."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.metrics_core import GaugeMetricFamily

    families: dict[str, tuple[str, list[Gauge]]] = {}
    for g in gauges:
        help_text, members = families.setdefault(g.name, (g.help, []))
        if help_text != g.help:
            raise ValueError(f"metric {g.name}: two HELP texts ({help_text!r}, {g.help!r})")
        if any(dict(m.labels) == dict(g.labels) for m in members):
            raise ValueError(f"metric {g.name}: two samples with labels {dict(g.labels)}")
        members.append(g)

    metrics: list[Metric] = []
    for name, (help_text, members) in families.items():
        label_names = sorted({k for m in members for k in m.labels})
        family = GaugeMetricFamily(name, help_text, labels=label_names)
        for m in members:
            family.add_metric([m.labels.get(k, "") for k in label_names], float(m.value))
        metrics.append(family)

    class _Fixed:
        def collect(self) -> Iterable[Metric]:
            return metrics

    return generate_latest(_Fixed())


def textfile_path(directory: Path, component: str) -> Path:
    """Where `component`'s metrics go: `<directory>/nomad_vault_token_<component>.prom`."""
    if not _COMPONENT.fullmatch(component):
        raise ValueError(f"metrics component {component!r}: lowercase letters, digits and '_'")
    return directory / f"{PREFIX}{component}.prom"


def write_textfile(directory: Path, component: str, gauges: Iterable[Gauge]) -> Path:
    """Replace `component`'s `.prom` file in `directory` (which must exist) atomically, mode 0644.

    Raises OSError (the caller logs it: metrics never stop the work they describe)."""
    path = textfile_path(directory, component)
    write_atomic(path, render(gauges), FILE_MODE)
    return path


def read_values(directory: Path, component: str, name: str, label: str) -> dict[str, float]:
    """The samples of `name` in `component`'s file as it is now, by the value of `label`; {} when the file is
    missing or unreadable (a value carried over from the previous run, e.g. a last success's timestamp)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = textfile_path(directory, component).read_text()
        families = list(text_string_to_metric_families(text))
    except (OSError, ValueError):
        return {}
    return {s.labels[label]: s.value for f in families for s in f.samples if s.name == name and label in s.labels}
