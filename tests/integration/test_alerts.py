"""The shipped Prometheus alerting rules (examples/prometheus/), run by Debian's real tools.

`promtool check rules` and `promtool test rules` (series shaped like node_exporter exposes the tool's
textfiles); then node_exporter's textfile collector, on 127.0.0.1 and a free port, reads the `*.prom` files
the tool really wrote (a tracker behind a real `run`, `unseal --once` over the raft cluster, a `snapshot`
whose copy fails): every metric a rule names must be in that scrape, so renaming one breaks this test.

Outside CI the tests skip when the Debian packages are missing (`apt-get install prometheus
prometheus-node-exporter`); in CI (CI=true) they must be there (.ci/run installs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from nomad_vault_token.core.metrics import CATALOG
from testbed import procs
from testbed.agent import AgentRun
from testbed.bao import Bao, Certs
from testbed.cli import run_cli
from testbed.config import write_config
from testbed.env import clean_env
from testbed.procs import free_port, wait_for
from testbed.raft_cluster import RaftCluster
from testbed.unsealing import write_keys

RULES_DIR = Path(__file__).resolve().parents[2] / "examples" / "prometheus"
RULES = RULES_DIR / "nomad-vault-token.rules.yml"
RULES_TEST = RULES_DIR / "nomad-vault-token.rules.test.yml"
NAME = re.compile(r"\bnomad_vault_token_[a-z0-9_]+")
# Named by a rule and in the catalog, but not written by the runs below (none so far).
NOT_YET_WRITTEN: set[str] = set()


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing in CI: .ci/run installs the Debian packages prometheus and "
                        "prometheus-node-exporter")  # fmt: skip
        pytest.skip(f"{name} not installed: apt-get install prometheus prometheus-node-exporter")
    return found


def named_in(path: Path) -> set[str]:
    """The metrics a rule's expression or a test's series names (not the comments' file names)."""
    lines = [line for line in path.read_text().splitlines() if re.match(r"\s*(- )?(expr|series):", line)]
    return set(NAME.findall("\n".join(lines)))


def test_promtool_checks_and_tests_the_rules(tmp_path: Path) -> None:
    promtool = tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", str(RULES_TEST)], capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # the unit tests can fail: a rule reading a renamed metric no longer fires
    for name in ("nomad_vault_token_snapshot_copy_last_success", "nomad_vault_token_unseal_leader_present"):
        (tmp_path / RULES.name).write_text(RULES.read_text().replace(name + " ", name + "_renamed "))
        shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
        broken = subprocess.run(
            [promtool, "test", "rules", str(tmp_path / RULES_TEST.name)], capture_output=True, text=True, timeout=120
        )
        assert broken.returncode != 0, f"renaming {name} went unnoticed"


def test_every_metric_a_rule_or_its_test_names_is_in_the_catalog() -> None:
    names = named_in(RULES) | named_in(RULES_TEST)
    assert names, "no metric found in the rules"
    assert names - set(CATALOG) == set()
    alerts = re.findall(r"- alert: (\w+)", RULES.read_text())
    tested = set(re.findall(r"alertname: (\w+)", RULES_TEST.read_text()))
    assert set(alerts) == tested, f"alerts without a promtool test: {set(alerts) - tested}"


# ---- node_exporter reading what the tool wrote --------------------------------------------------------


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """node_exporter with only the textfile collector, over a fresh directory; stopped by PID."""
    binary = tool("prometheus-node-exporter")
    directory = tmp_path / "textfiles"
    directory.mkdir()
    port = free_port()
    log = (tmp_path / "node_exporter.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={directory}", f"--web.listen-address=127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:

        def answers() -> bool:
            try:
                return requests.get(url, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, 30, f"node_exporter on {url}", proc=proc)
        yield directory, url
    finally:
        procs.stop(proc)
        log.close()


def scrape(url: str) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=10).text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append({**sample.labels, "__value__": str(float(sample.value))})
    return found


def test_node_exporter_serves_every_metric_the_rules_read_from_files_the_tool_wrote(
    node_exporter: tuple[Path, str],
    raft_cluster: RaftCluster,
    new_bao: Callable[..., Bao],
    certs: Certs,
    runs: Callable[..., AgentRun],
    tmp_path: Path,
) -> None:
    directory, url = node_exporter
    # the tracker, behind a real `run` with both tokens (the keyring token's metrics too)
    server = new_bao()
    server.configure_keyring()
    ring = tmp_path / "run" / "keyring-token"
    cfg = write_config(tmp_path / "run" / "c.toml", server, certs, metrics_dir=str(directory), keyring=True,
                       keyring_token_file=str(ring))  # fmt: skip
    r = runs(cfg, server, keyring_token=f"file://{ring}")
    r.wait_event("validated")
    prom = directory / "nomad_vault_token_tracker.prom"
    wanted_lines = ("nomad_vault_token_token_adopted 1", 'nomad_vault_token_keyring_state{state="in_use"} 1')
    wait_for(lambda: prom.exists() and all(w in prom.read_text() for w in wanted_lines), 60,
             "the tracker's metrics to say adopted, and the keyring token in use", interval=0.2)  # fmt: skip
    # the unsealer, over the raft cluster
    c = raft_cluster
    keys = write_keys(tmp_path / "keys", c.keys[:2])
    ucfg = tmp_path / "u.toml"
    ucfg.write_text(
        f"unseal_nodes = {json.dumps([n.addr for n in c.nodes])}\nca_cert = {json.dumps(str(certs.ca_path))}\n"
        f"state_dir = {json.dumps(str(tmp_path / 'ustate'))}\nunseal_keys_file = {json.dumps(str(keys))}\n"
        f"metrics_dir = {json.dumps(str(directory))}\n"
    )
    unsealed = run_cli("unseal", "--once", "--config", str(ucfg), timeout=120)
    assert unsealed.code == 0, unsealed.err
    # a snapshot of the cluster, kept, whose copy fails (no S3 server on that port)
    leader = c.leader()
    assert leader is not None
    snapped = run_cli(
        "snapshot", "--auth", "token", "--dir", str(tmp_path / "snaps"), "--vault-addr", c.node(leader).addr,
        "--ca-cert", str(certs.ca_path), "--metrics-dir", str(directory), "--copy-to", "s3://backups/vault",
        env=clean_env(VAULT_TOKEN=c.root_token, AWS_ACCESS_KEY_ID="nvt", AWS_SECRET_ACCESS_KEY="nvt-secret",
                      AWS_REGION="us-east-1", AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{free_port()}",
                      AWS_EC2_METADATA_DISABLED="true", AWS_MAX_ATTEMPTS="1"),
        timeout=180,
    )  # fmt: skip
    assert snapped.code == 75, snapped.err

    served = scrape(url)
    assert served["node_textfile_scrape_error"][0]["__value__"] == "0.0"
    ours = {name for name in served if name.startswith("nomad_vault_token_")}
    assert ours - set(CATALOG) == set(), "a metric the catalog does not know"
    wanted = named_in(RULES) - NOT_YET_WRITTEN
    assert wanted - ours == set(), f"rules read metrics no file the tool wrote has: {sorted(wanted - ours)}"
    assert set(CATALOG) >= NOT_YET_WRITTEN
    copy = served["nomad_vault_token_snapshot_copy_last_success"]
    assert [(s["destination"], s["__value__"]) for s in copy] == [("s3://backups/vault/", "0.0")]
