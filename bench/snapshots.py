"""Snapshots at size: `snapshot` (verified as it streams in) against `bao operator raft snapshot save` (verifies
nothing) and against the same stream received by this tool without the verification, `snapshot verify` alone,
and the copy to S3 (`rclone serve s3` on disk) beside `rclone copyto` of the same file to the same server. Wall
time, peak RSS and CPU of each process (GNU time), and the CPU OpenBao used meanwhile.

    .venv/bin/python -m bench.snapshots                 # 256 MiB and 1 GiB of data, 3 rounds
    .venv/bin/python -m bench.snapshots --sizes 64 --rounds 1   # a smoke run

The data: random bytes written as KV v1 values (768 KiB each, below raft's 1 MiB entry limit) into a real
OpenBao on raft storage, so the snapshot is about the size asked. Variants alternate within each round; the
best and the median of the rounds are reported, as JSON lines on stdout and a table on stderr. Nothing here
asserts anything: a missed target is a result.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.common import BAO, log
from testbed.bao import Bao, Certs
from testbed.s3 import Rclone, rclone_binary

CHUNK = 384 << 10  # random bytes per value: 768 KiB of hex
BUCKET = "bench"
# The rows the targets compare (`bench/report.py`): a verified snapshot against the same stream unverified and `bao`'s.
BAO_SAVE = "bao operator raft snapshot save"
VERIFIED = "snapshot (verified as it streams)"
UNVERIFIED = "the same stream received, not verified"


# What `snapshot` does up to the verification, without it: the same imports, requests and stream, written to disk
# the same way (writev, fdatasync behind, fsync) with the file's SHA-256; no gzip, tar or SHA256SUMS check, no keep.
RECEIVE = """
import os, sys
from pathlib import Path
from nomad_vault_token.core import config
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.snapshot import store
from nomad_vault_token.vault.client import Vault
directory = Path(sys.argv[1]); directory.mkdir(mode=0o700)
vault = Vault(config.load(Path("/dev/null")))
vault.leader(); vault.version()
with vault.snapshot_stream(Secret(os.environ["VAULT_TOKEN"]), 600) as chunks:
    store.receive(chunks, directory, "vault")
"""

TIME = "/usr/bin/time"  # GNU time: a small parent, so the peak RSS is the process's own


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    argv: list[str], env: dict[str, str], cwd: str | None = None, server: int | None = None
) -> tuple[float, int, subprocess.CompletedProcess[bytes], float, float]:
    """Wall seconds, peak RSS (KiB), the process, its CPU seconds (user + system) and those `server` used meanwhile.

    The peak comes from GNU time when it is there: a child forked from this (bigger) process would carry this
    process's high-water mark through its exec into its own ru_maxrss."""
    with tempfile.NamedTemporaryFile(prefix="nvt-bench-rss-") as rss:
        wrapped = [TIME, "-f", "%M %U %S", "-o", rss.name, *argv] if os.path.exists(TIME) else argv
        before = cpu_seconds(server) if server else 0.0
        began = time.monotonic()
        done = subprocess.run(wrapped, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        elapsed = time.monotonic() - began
        served = cpu_seconds(server) - before if server else 0.0
        if done.returncode != 0:
            raise RuntimeError(f"{argv[:4]} exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}")
        peak, user, system = Path(rss.name).read_text().split()[-3:] if wrapped is not argv else ("0", "0", "0")
    return elapsed, int(peak), done, float(user) + float(system), served


def load(server: Bao, certs: Certs, mib: int) -> None:
    """Write about `mib` MiB of random data (raft storage grows by that much)."""
    session = requests.Session()
    ca = str(certs.ca_path)  # per request: REQUESTS_CA_BUNDLE beats a session's verify
    headers = {"X-Vault-Token": server.root_token}
    session.post(f"{server.addr}/v1/sys/mounts/kv", json={"type": "kv"}, headers=headers, timeout=30, verify=ca)
    count = (mib << 20) // (2 * CHUNK)

    def put(i: int) -> None:
        resp = session.put(
            f"{server.addr}/v1/kv/blob{i}", json={"v": os.urandom(CHUNK).hex()}, headers=headers, timeout=120, verify=ca
        )
        resp.raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(put, range(count)))


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per size and variant; each also printed as a JSON line on stdout unless `args.echo` is false
    (`python -m bench` prints its report there)."""
    rows: list[dict[str, Any]] = []
    nvt = [sys.executable, "-m", "nomad_vault_token"]
    for mib in args.sizes:
        with tempfile.TemporaryDirectory(prefix="nvt-bench-snap-", dir=args.workdir) as tmp:
            work = Path(tmp)
            certs = Certs(work / "certs")
            server = Bao(work / "bao", certs, durable=True)
            rclone = Rclone(work / "rclone")
            try:
                server.start()
                server.configure()
                began = time.monotonic()
                load(server, certs, mib)
                log(f"{mib} MiB of data loaded in {time.monotonic() - began:.0f} s")
                rclone.start()
                rclone.make_bucket(BUCKET)
                base = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "AWS_", "RCLONE_"))}
                vault_env = {**base, "VAULT_ADDR": server.addr, "VAULT_CACERT": str(certs.ca_path),
                             "VAULT_TOKEN": server.root_token}  # fmt: skip
                s3_env = {**base, **rclone.env()}
                rclone_env = {**base, "RCLONE_CONFIG": "/dev/null", "RCLONE_S3_PROVIDER": "Other",
                              "RCLONE_S3_ENDPOINT": rclone.endpoint, "RCLONE_S3_ACCESS_KEY_ID": rclone.key_id,
                              "RCLONE_S3_SECRET_ACCESS_KEY": rclone.secret, "RCLONE_S3_REGION": "us-east-1",
                              "RCLONE_S3_FORCE_PATH_STYLE": "true"}  # fmt: skip
                times: dict[str, list[tuple[float, int, float, float]]] = {}
                size = 0
                for round_ in range(args.rounds):
                    saved = work / f"bao-{round_}.snap"
                    t = run([BAO, "operator", "raft", "snapshot", "save", str(saved)], vault_env, server=server.pid)
                    times.setdefault(BAO_SAVE, []).append(sample(t))
                    size = saved.stat().st_size
                    saved.unlink()
                    d = work / f"snaps-{round_}"
                    t = run([*nvt, "snapshot", "--auth", "token", "--dir", str(d), "--format", "json"], vault_env,
                            server=server.pid)  # fmt: skip
                    times.setdefault(VERIFIED, []).append(sample(t))
                    kept = Path(json.loads(t[2].stdout)["file"])
                    t = run([sys.executable, "-c", RECEIVE, str(d) + "-unverified"], vault_env, server=server.pid)
                    times.setdefault(UNVERIFIED, []).append(sample(t))
                    subprocess.run(["rm", "-rf", str(d) + "-unverified"], check=True)
                    if args.baseline:  # the same command from another checkout (main: receive, then verify)
                        t = run([*nvt, "snapshot", "--auth", "token", "--dir", str(d) + "-base"],
                                {**vault_env, "PYTHONPATH": args.baseline}, cwd=args.baseline,
                                server=server.pid)  # fmt: skip
                        times.setdefault(f"snapshot of {args.baseline}", []).append(sample(t))
                        subprocess.run(["rm", "-rf", str(d) + "-base"], check=True)
                    t = run([*nvt, "snapshot", "verify", str(kept)], base)
                    times.setdefault("snapshot verify (the file alone)", []).append(sample(t))
                    probe = (
                        "import json, sys\nfrom pathlib import Path\n"
                        "from nomad_vault_token.snapshot import remote, store\n"
                        "from nomad_vault_token.snapshot.archive import Manifest\n"
                        "from nomad_vault_token.snapshot.retention import parse_name\n"
                        "p = Path(sys.argv[1]); m = Manifest.from_json(p.with_suffix('.json').read_bytes())\n"
                        "dest = remote.parse_destination(sys.argv[2]); s3 = remote.client()\n"
                        "name = parse_name(p.name, 'vault')\n"
                        "if sys.argv[3] == 'upload': remote.upload(s3, dest, p, m)\n"
                        "else: remote.copy(s3, dest, p, name, m)\n"
                    )
                    for mode in ("upload", "copy"):
                        t = run([sys.executable, "-c", probe, str(kept), f"s3://{BUCKET}/{mode}{round_}", mode], s3_env)
                        label = "upload (multipart)" if mode == "upload" else "copy (upload + read back, verified)"
                        times.setdefault(label, []).append(sample(t))
                    t = run([str(rclone_binary()), "copyto", str(kept), f":s3:{BUCKET}/rclone{round_}/{kept.name}"],
                            rclone_env)  # fmt: skip
                    times.setdefault("rclone copyto (same file, same server)", []).append(sample(t))
                    for sub in (rclone.data / BUCKET).iterdir():  # room for the next round
                        subprocess.run(["rm", "-rf", str(sub)], check=True)
                    subprocess.run(["rm", "-rf", str(d)], check=True)
                for what, samples in times.items():
                    walls = [w for w, _, _, _ in samples]
                    rows.append({
                        "data_mib": mib, "snapshot_bytes": size, "what": what,
                        "best_s": round(min(walls), 3), "median_s": round(statistics.median(walls), 3),
                        "peak_rss_mib": round(max(r for _, r, _, _ in samples) / 1024, 1),
                        "mib_per_s": round(size / (1 << 20) / min(walls), 1),
                        "cpu_s": round(statistics.median(c for _, _, c, _ in samples), 2),
                        "server_cpu_s": round(statistics.median(v for _, _, _, v in samples), 2),
                    })  # fmt: skip
                    if getattr(args, "echo", True):
                        print(json.dumps(rows[-1]), flush=True)
            finally:
                rclone.stop()
                server.stop()
    return rows


def sample(t: tuple[float, int, subprocess.CompletedProcess[bytes], float, float]) -> tuple[float, int, float, float]:
    return t[0], t[1], t[3], t[4]


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| data | snapshot | what | best s | median s | MiB/s | peak RSS MiB | CPU s | OpenBao's CPU s meanwhile |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['data_mib']} MiB | {r['snapshot_bytes'] / (1 << 20):.0f} MiB | {r['what']} | {r['best_s']} | "
            f"{r['median_s']} | {r['mib_per_s']} | {r['peak_rss_mib']} | {r['cpu_s']} | {r['server_cpu_s']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[256, 1024],
                        help="MiB of data to load, comma-separated [256,1024]")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="where the servers' data goes [$TMPDIR]")
    parser.add_argument("--baseline", default=None, help="another checkout whose `snapshot` runs beside this one")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # the servers are stopped by PID
    rows = measure(args)
    print(table(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
