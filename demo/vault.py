"""The demo's Vault side: a 3-node OpenBao raft cluster, the unsealer's watcher unsealing a restarted
node, and a seal migration to `static` auto-unseal carried by `unseal --migrate`.

Part of `scripts/demo` (after the token's story), or on its own: `python -m demo.vault`. Everything
lives under the directory it is given (.demo/vault) and every process is stopped by PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from testbed import ROOT, procs
from testbed.bao import Certs
from testbed.cli import console_script
from testbed.env import clean_env
from testbed.procs import wait_for
from testbed.raft_cluster import RaftCluster, static_key, static_seal
from testbed.unsealing import write_keys

CLI = console_script()


def say(title: str, text: str) -> None:
    import textwrap

    print(f"\n\033[1m== {title}\033[0m")
    print(textwrap.fill(" ".join(text.split()), 96))


def status_line(cfg: Path) -> str:
    try:
        return str(json.loads((cfg.parent / "state" / "unseal.json").read_text())["status"])
    except (OSError, ValueError, KeyError):
        return ""


def node_lines(cfg: Path) -> list[str]:
    try:
        nodes = json.loads((cfg.parent / "state" / "unseal.json").read_text())["nodes"]
    except (OSError, ValueError, KeyError):
        return []
    return [f"    {n['node']}: {n['message']}" for n in nodes]


def show_view(cfg: Path) -> None:
    print(f"  unsealer: {status_line(cfg)}")
    for line in node_lines(cfg):
        print(line)


def run(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    certs = Certs(work / "certs")
    cluster = RaftCluster(work / "raft", certs)
    watcher: subprocess.Popen[bytes] | None = None
    try:
        say(
            "10. Vault's side: a 3-node raft cluster and the unsealer",
            """Vault starts sealed after every restart: someone must give it its unseal keys. We form a real
            3-node OpenBao raft cluster (Shamir keys, 2 of 3 needed) and start `nomad-vault-token unseal`
            in watch mode with two keys in a 0600 file. It needs no Vault token.""",
        )
        cluster.start()
        print(f"  cluster formed in {cluster.formed_in:.1f}s; leader node-{cluster.leader()}")
        keys = write_keys(work / "unseal-keys", cluster.keys[:2])
        cfg = work / "unseal.toml"
        cfg.write_text(
            f"unseal_nodes = {json.dumps([n.addr for n in cluster.nodes])}\nca_cert = {json.dumps(str(certs.ca_path))}\n"
            f"unseal_keys_file = {json.dumps(str(keys))}\nstate_dir = {json.dumps(str(work / 'state'))}\n"
            "unseal_migrate = true  # for the migration below; off by default\n"
        )
        log = work / "unseal.log"
        with open(log, "ab") as out:
            watcher = subprocess.Popen(
                [*CLI, "unseal", "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT, env=clean_env()
            )
        wait_for(lambda: status_line(cfg).startswith("3/3 unsealed"), 30, "the watcher's first round")
        show_view(cfg)

        say(
            "11. A node restarts: unsealed at once",
            """The watcher sees the node's connection close, probes it while it comes back, and unseals it
            as soon as it answers sealed: well under a second, not at its next 10 s probe.""",
        )
        i = next(j for j in (1, 2, 3) if j != cluster.leader())
        cluster.stop(i)
        cluster.node(i).launch(wait=False)
        began = time.monotonic()
        wait_for(lambda: cluster.node(i).health_code() == 429, 30, "the restarted node unsealed", interval=0.02)
        print(f"  node-{i} restarted and unsealed by the watcher {time.monotonic() - began:.2f}s after its start")

        say(
            "12. Before touching the seals: a verified snapshot",
            """Every migration starts with a snapshot that has been verified (gzip, tar, SHA256SUMS, raft
            metadata) before it was kept. Here with an admin token from the environment; in production the
            snapshot identity's certificate or its Nomad workload identity.""",
        )
        leader = cluster.leader()
        assert leader is not None
        snaps = work / "snapshots"
        taken = subprocess.run(
            [*CLI, "snapshot", "--vault-addr", cluster.node(leader).addr, "--ca-cert", str(certs.ca_path),
             "--dir", str(snaps), "--auth", "token"],
            env=clean_env(VAULT_TOKEN=cluster.root_token), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert taken.returncode == 0, taken.stderr
        print("  " + taken.stdout.strip().replace("\n", "\n  "))
        kept = sorted(snaps.glob("*.snap"))[-1]
        checked = subprocess.run([*CLI, "snapshot", "verify", str(kept)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stderr
        print("  " + checked.stdout.strip())

        say(
            "13. A seal migration to auto-unseal, carried by the unsealer",
            """Each standby is restarted with a new `seal "static"` stanza; the unsealer (here with --migrate)
            sends it the old keys with migrate, and the node waits for the step-down. The operator steps
            the active node down (a sudo token: the unsealer holds none), and restarts it on the new stanza.
            The keys held become recovery keys.""",
        )
        seal = static_seal(static_key(work / "static.key"))
        old = cluster.leader()
        assert old is not None
        for j in (1, 2, 3):
            if j != old:
                node = cluster.node(j)
                node.stop()
                node.set_seal(seal)
                node.launch()
                said = f"127.0.0.1:{node.port}: migrated"
                wait_for(lambda said=said: any(said in line for line in node_lines(cfg)), 60, "the watcher migrating it")
        show_view(cfg)
        print(f"  $ bao operator step-down   (on node-{old}, with a sudo token)")
        assert cluster.node(old).post("sys/step-down", token=cluster.root_token, timeout=30).code == 204
        wait_for(lambda: cluster.leader() not in (None, old), 60, "a migrated node active", interval=0.2)
        node = cluster.node(old)
        node.stop()
        node.set_seal(seal)
        node.launch()
        wait_for(lambda: status_line(cfg).startswith("cluster on auto-unseal"), 60, "every node on static")
        show_view(cfg)
        types = sorted({str(n.seal_status()["type"]) for n in cluster.nodes})
        print(f"  seal types now: {', '.join(types)}; no key appears in any output: {not leaked(cluster, log, cfg)}")
    finally:
        if watcher is not None:
            procs.stop(watcher)  # by its PID: SIGTERM, then SIGKILL after 10 s
        cluster.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def leaked(cluster: RaftCluster, log: Path, cfg: Path) -> bool:
    texts = log.read_text(errors="replace") + (cfg.parent / "state" / "unseal.json").read_text()
    return any(k in texts for k in cluster.keys + cluster.keys_base64)


def main() -> int:
    run(ROOT / ".demo" / "vault")
    return 0


if __name__ == "__main__":
    sys.exit(main())
