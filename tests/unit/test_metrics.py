"""The textfile-collector writer: files a Prometheus parser reads, that follow the state, written atomically."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nomad_vault_token.core import metrics
from nomad_vault_token.core.metrics import CATALOG, Gauge, flag, gauge, state_set, write_textfile
from nomad_vault_token.token.tracker_state import STATES


def parse(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample in a `.prom` file, by name and labels; fails on anything a Prometheus parser refuses."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge", family
        assert family.documentation == CATALOG.get(family.name, family.documentation)
        for s in family.samples:
            assert s.timestamp is None  # node_exporter refuses timestamps
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in samples
            samples[key] = s.value
    return samples


def tracker_gauges(state: str, ttl: float, adopted: bool, renewed_at: float) -> list[Gauge]:
    return [
        gauge("nomad_vault_token_token_ttl_seconds", ttl),
        gauge("nomad_vault_token_token_expiry_timestamp_seconds", 1_795_462_182 + ttl),
        gauge("nomad_vault_token_token_last_renewal_timestamp_seconds", renewed_at),
        gauge("nomad_vault_token_token_adopted", flag(adopted)),
        *state_set("nomad_vault_token_tracker_state", STATES, state),
        gauge("nomad_vault_token_degraded_start", flag(False)),
        gauge("nomad_vault_token_client_cert_expiry_timestamp_seconds", 1_813_000_000),
    ]


def test_tracker_file_follows_the_state(tmp_path: Path) -> None:
    path = write_textfile(tmp_path, "tracker", tracker_gauges("awaiting", 259_200, False, 1_795_462_100.25))
    assert path == tmp_path / "nomad_vault_token_tracker.prom"
    first = parse(path)
    assert first[("nomad_vault_token_token_ttl_seconds", ())] == 259_200
    assert first[("nomad_vault_token_token_adopted", ())] == 0
    assert first[("nomad_vault_token_token_last_renewal_timestamp_seconds", ())] == 1_795_462_100.25
    states = {dict(k[1])["state"]: v for k, v in first.items() if k[0] == "nomad_vault_token_tracker_state"}
    assert states == {s: float(s == "awaiting") for s in STATES}

    write_textfile(tmp_path, "tracker", tracker_gauges("healthy", 259_100, True, 1_795_462_180))
    second = parse(path)
    assert second[("nomad_vault_token_token_ttl_seconds", ())] == 259_100
    assert second[("nomad_vault_token_token_adopted", ())] == 1
    assert second[("nomad_vault_token_tracker_state", (("state", "healthy"),))] == 1
    assert second[("nomad_vault_token_tracker_state", (("state", "awaiting"),))] == 0
    assert sum(v for k, v in second.items() if k[0] == "nomad_vault_token_tracker_state") == 1
    assert os.listdir(tmp_path) == [path.name]  # no temp file left behind


def test_unknown_values_are_left_out(tmp_path: Path) -> None:
    """No token yet: no TTL series at all, rather than a 0 that reads as an expired token."""
    path = write_textfile(
        tmp_path, "tracker", [*state_set("nomad_vault_token_tracker_state", STATES, "degraded")]
    )
    assert ("nomad_vault_token_token_ttl_seconds", ()) not in parse(path)


def test_unsealer_file_with_node_labels(tmp_path: Path) -> None:
    nodes = {
        "https://10.0.0.1:8200": (True, False),
        "https://10.0.0.2:8200": (True, True),
        "https://10.0.0.3:8200": (False, None),
    }
    gauges = [gauge("nomad_vault_token_unseal_leader_present", flag(True))]
    for node, (reachable, sealed) in nodes.items():
        gauges.append(gauge("nomad_vault_token_unseal_node_reachable", flag(reachable), node=node))
        if sealed is not None:
            gauges.append(gauge("nomad_vault_token_unseal_node_sealed", flag(sealed), node=node))
        gauges.append(gauge("nomad_vault_token_unseal_node_auto_unseal", flag(False), node=node))
    samples = parse(write_textfile(tmp_path, "unseal", gauges))
    assert samples[("nomad_vault_token_unseal_node_sealed", (("node", "https://10.0.0.2:8200"),))] == 1
    assert samples[("nomad_vault_token_unseal_node_reachable", (("node", "https://10.0.0.3:8200"),))] == 0
    assert ("nomad_vault_token_unseal_node_sealed", (("node", "https://10.0.0.3:8200"),)) not in samples

    gauges[0] = gauge("nomad_vault_token_unseal_leader_present", flag(False))
    assert parse(write_textfile(tmp_path, "unseal", gauges))[("nomad_vault_token_unseal_leader_present", ())] == 0


def test_snapshot_file(tmp_path: Path) -> None:
    def run(ok: bool, size: int, index: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse(
            write_textfile(
                tmp_path,
                "snapshot",
                [
                    gauge("nomad_vault_token_snapshot_last_run_success", flag(ok)),
                    gauge("nomad_vault_token_snapshot_last_verification_success", flag(ok)),
                    gauge("nomad_vault_token_snapshot_last_size_bytes", size),
                    gauge("nomad_vault_token_snapshot_last_raft_index", index),
                    gauge("nomad_vault_token_snapshot_kept", 3),
                ],
            )
        )

    assert run(True, 21529, 39)[("nomad_vault_token_snapshot_last_raft_index", ())] == 39
    after = run(False, 22041, 40)
    assert after[("nomad_vault_token_snapshot_last_run_success", ())] == 0
    assert after[("nomad_vault_token_snapshot_last_size_bytes", ())] == 22041


def test_escaping_survives_the_parser(tmp_path: Path) -> None:
    odd = 'https://a"b\\c\nd:8200'
    samples = parse(write_textfile(tmp_path, "unseal", [gauge("nomad_vault_token_unseal_node_sealed", 1, node=odd)]))
    assert samples == {("nomad_vault_token_unseal_node_sealed", (("node", odd),)): 1}


@pytest.mark.parametrize("value", [0, -1, 1.5, 1e300, 2**53, float("inf")])
def test_values_round_trip(tmp_path: Path, value: float) -> None:
    samples = parse(write_textfile(tmp_path, "snapshot", [gauge("nomad_vault_token_snapshot_last_size_bytes", value)]))
    assert samples[("nomad_vault_token_snapshot_last_size_bytes", ())] == value


def test_mode_0644_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        path = write_textfile(tmp_path, "tracker", [gauge("nomad_vault_token_token_adopted", 1)])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_replacement_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write leaves the previous file whole and no temp file (which the collector ignores anyway)."""
    path = write_textfile(tmp_path, "tracker", [gauge("nomad_vault_token_token_adopted", 1)])
    before = path.read_bytes()

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="No space"):
        write_textfile(tmp_path, "tracker", [gauge("nomad_vault_token_token_adopted", 0)])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


def test_missing_directory_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_textfile(tmp_path / "absent", "tracker", [gauge("nomad_vault_token_token_adopted", 1)])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Gauge("bad-name", "h", 1), "metric name"),
        (lambda: Gauge("other_ttl_seconds", "h", 1), "start with nomad_vault_token_"),
        (lambda: Gauge("nomad_vault_token_x", " ", 1), "empty help"),
        (lambda: Gauge("nomad_vault_token_x", "h", 1, {"__name__": "y"}), "label name"),
        (lambda: Gauge("nomad_vault_token_x", "h", 1, {"bad-label": "y"}), "label name"),
        (lambda: Gauge("nomad_vault_token_x", "h", True), "use flag"),
        (lambda: Gauge("nomad_vault_token_x", "h", "1"), "not a number"),  # type: ignore[arg-type]
        (lambda: gauge("nomad_vault_token_not_in_catalog", 1), "not in metrics.CATALOG"),
        (lambda: state_set("nomad_vault_token_tracker_state", STATES, "confused"), "not one of"),
        (lambda: metrics.textfile_path(Path("/x"), "../etc"), "component"),
    ],
)
def test_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_inconsistent_families_refused() -> None:
    with pytest.raises(ValueError, match="two HELP texts"):
        metrics.render([Gauge("nomad_vault_token_x", "one", 1), Gauge("nomad_vault_token_x", "two", 1)])
    with pytest.raises(ValueError, match="two samples"):
        metrics.render([gauge("nomad_vault_token_unseal_node_sealed", 1, node="a")] * 2)


def test_catalog_matches_the_docs_page() -> None:
    """docs/metrics.md is the list operators read (generated from CATALOG, LABELS and FILES; test_docs checks it
    whole): every catalogued name is in its tables, and nothing else."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    listed = set(re.findall(r"^\| `(nomad_vault_token_[a-z_]+)`", page, re.MULTILINE))
    assert listed == set(CATALOG)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_catalog_names_follow_conventions(name: str) -> None:
    assert re.fullmatch(r"nomad_vault_token_[a-z][a-z0-9_]*[a-z0-9]", name)
    assert not name.endswith(("_total", "_count", "_sum", "_bucket", "_info")), "reserved suffixes"
    assert "_ms" not in name and "milliseconds" not in name and "_minutes" not in name, "base units only"
    if "timestamp" in name:
        assert name.endswith("_timestamp_seconds")
    if CATALOG[name].startswith("1 "):  # a yes/no gauge carries no unit
        assert not name.endswith(("_seconds", "_bytes"))


def test_importing_the_module_does_not_load_prometheus_client() -> None:
    """`run` must never pay for it: only writing a file loads prometheus_client."""
    probe = (
        "import sys\n"
        "import nomad_vault_token.core.metrics as m\n"
        "assert 'prometheus_client' not in sys.modules, 'loaded at import'\n"
        "m.render([m.gauge('nomad_vault_token_token_adopted', 1)])\n"
        "assert 'prometheus_client' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_run_start_up_does_not_load_prometheus_client() -> None:
    """The modules `run` loads before the exec (entry, fastrun, tracker) stay free of prometheus_client."""
    probe = (
        "import sys\n"
        "import nomad_vault_token.cli.entry, nomad_vault_token.cli.fastrun, nomad_vault_token.token.tracker\n"
        "assert 'prometheus_client' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
