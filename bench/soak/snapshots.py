"""`snapshot --copy-to` on a short timer, one run at a time, and the snapshot invariants after each run.

After every run (nothing is being written then): every final name in the directory verifies
(`snapshot verify`, once per file) and has its manifest; every `.snap` object in the bucket has its
manifest object. A run under the "directory full" fault runs in a mount namespace of its own with a
tmpfs of the fault's size on the directory (`unshare --mount`, as testbed/s3.py mounts its volume);
what it leaves there under a final name is copied out before the namespace goes, and verified too.
The run's exit code must be one DESIGN.md documents for what the soak does (0, 65, 69, 74, 75; no
77: nothing the soak does is a refusal).
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.soak.stack import BUCKET, SNAPSHOT_EVERY, Stack
from testbed import procs
from testbed.cli import CLI

# DESIGN.md's exit codes as `snapshot` uses them: done, failed verification, unavailable, disk full or
# failing, kept here but a copy failed. Not 77 (refused): the soak never changes a token, a key or a
# certificate, so a refusal would be a fault misnamed.
DOCUMENTED = {0, 65, 69, 74, 75}
SNAP, MANIFEST = ".snap", ".json"  # nomad_vault_token/snapshot/retention.py: PREFIX-TIME-INDEX.snap, .json


class SnapshotTimer:
    def __init__(self, stack: Stack, monitor: Any) -> None:
        self.stack, self.monitor = stack, monitor
        self.full_size = 0  # > 0: the next run gets a tmpfs of that many bytes
        self.runs: list[tuple[float, int, bool]] = []  # (started, exit code, under a full directory)
        self.verified: dict[tuple[str, int], bool] = {}
        self.quarantine = stack.work / "full-leftovers"
        self.quarantine.mkdir(exist_ok=True)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="snapshot timer", daemon=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.stack.snap_dir.mkdir(mode=0o700, exist_ok=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.proc is not None and self.proc.poll() is None:
            procs.stop(self.proc)
        self.thread.join(60)

    def _loop(self) -> None:
        n = 0
        while not self.stop_event.wait(SNAPSHOT_EVERY):
            n += 1
            self.run_once(n)

    def run_once(self, n: int) -> None:
        size, self.full_size = self.full_size, 0
        argv = self.stack.snapshot_argv()
        listing = self.quarantine / f"run-{n}"
        if size:
            listing.mkdir()
            script = (
                f'mount -t tmpfs -o size={size},mode=0700 nvt-soak-full "$0" || exit 70; "$@"; rc=$?; '
                f'ls -A "$0" > {shlex.quote(str(listing / "listing"))}; '
                f'for f in "$0"/*; do case "$f" in *{SNAP}|*{MANIFEST}) cp -p "$f" {shlex.quote(str(listing))}/;; '
                "esac; done; exit $rc"
            )
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(self.stack.snap_dir),
                    *argv]  # fmt: skip
        started = time.monotonic()
        log = self.stack.logs / "snapshot.log"
        with open(log, "ab") as out:
            out.write(f"---- run {n}{f' (directory full: {size} bytes)' if size else ''}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(argv, env=self.stack.s3_env(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)  # fmt: skip
            try:
                code = self.proc.wait(120)
            except subprocess.TimeoutExpired:
                procs.stop(self.proc)
                code = -1
        if self.stop_event.is_set():
            return  # stopped by the soak itself at the end
        self.runs.append((started, code, bool(size)))
        if code == 70 and size:
            self.monitor.violate("soak", f"snapshot run {n}: could not mount the tmpfs (needs root)")
        elif code not in DOCUMENTED:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            self.monitor.violate("snapshot-exit", f"snapshot run {n} exited {code}, not a documented code: {tail}")
        if code == 0:
            self.monitor.snapshot_ok_at.append(started)
        self.check_directory(self.stack.snap_dir, f"run {n}")
        if size:
            self.check_directory(listing, f"run {n} in the full directory")
        self.check_bucket(n)

    def check_directory(self, directory: Path, when: str) -> None:
        names = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
        for name in names:
            path = directory / name
            if name.endswith(SNAP):
                if name.removesuffix(SNAP) + MANIFEST not in names:
                    self.monitor.violate("snapshot-manifest", f"{when}: {name} kept without its manifest")
                key = (str(path), path.stat().st_size)
                if key not in self.verified:
                    done = subprocess.run([*CLI, "snapshot", "verify", str(path)], capture_output=True, timeout=120,
                                          env=self.stack.s3_env(), check=False)  # fmt: skip
                    self.verified[key] = done.returncode == 0
                    if done.returncode != 0:
                        why = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
                        self.monitor.violate("snapshot-verifies", f"{when}: {name} kept but fails verify: {why}")

    def check_bucket(self, n: int) -> None:
        if self.stack.s3.proc is None:
            return
        try:
            with self.stack.s3_lock:
                pages = self.stack.s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
                keys = {o["Key"] for page in pages for o in page.get("Contents", [])}
        except Exception:  # the server stopped meanwhile: nothing to say this time
            return
        for key in sorted(keys):
            if key.endswith(SNAP) and key.removesuffix(SNAP) + MANIFEST not in keys:
                self.monitor.violate("copy-manifest", f"after run {n}: s3://{BUCKET}/{key} has no manifest")
