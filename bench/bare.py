"""1c. Bare start-ups: what no lazy import can remove, the budgets the targets imply, and what the
agent's checks would add to `run` (its argv before the exec; its config files, read after it)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BAO, Ctx, log

BASE = "python -c pass"
HVAC_FLOOR = "python -c 'import hvac'"
ARGV_FLOOR = "python: parse the agent's argv (agent_argv)"
HCL_FLOOR = "python: read the agent's 3 config files (agent_config, pyhcl)"
CONFIG_BUDGET_MS = 15.0  # what the agent's config check may add to run's start-up


@dataclass
class BareStartups:
    runs: int
    ms: dict[str, float]  # label -> median ms, process start to exit
    added: dict[str, float] = field(default_factory=dict)  # ARGV_FLOOR/HCL_FLOOR -> ms a check adds, in-process

    @property
    def argv_ms(self) -> float:
        return self.added[ARGV_FLOOR]

    @property
    def hcl_ms(self) -> float:
        return self.added[HCL_FLOOR]


# What a check adds to a process that has already imported what `run` imports before it (the package,
# its errors and config): timed inside the process, so the interpreter's own start-up noise stays out.
_ADDED = (
    "import time\n"
    "from nomad_vault_token.core import config, errors\n"
    "t = time.perf_counter()\n"
    "{body}\n"
    "print((time.perf_counter() - t) * 1000)\n"
)


def agent_config_dir(work: Path) -> Path:
    """A typical agent config: a directory of three files, one with the vault block."""
    d = work / "agent-config.d"
    d.mkdir(parents=True, exist_ok=True)
    (d / "10-base.hcl").write_text('data_dir = "/var/lib/nomad"\nbind_addr = "0.0.0.0"\n')
    (d / "20-server.hcl").write_text("server {\n  enabled = true\n  bootstrap_expect = 3\n}\n")
    (d / "30-vault.hcl").write_text(
        'vault {\n  enabled = true\n  address = "https://vault.example.com:8200"\n  ca_file = "/etc/ca.pem"\n}\n'
    )
    return d


def bare_startups(ctx: Ctx) -> BareStartups:
    log(f"1c. bare start-ups: {ctx.args.floor_runs} runs each")
    configs = agent_config_dir(ctx.work)
    cases = {
        BASE: [sys.executable, "-c", "pass"],
        "python -c 'import requests'": [sys.executable, "-c", "import requests"],
        HVAC_FLOOR: [sys.executable, "-c", "import hvac"],
        "python -c 'import cryptography.x509'": [sys.executable, "-c", "import cryptography.x509"],
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "nomad-vault-token --version": [*ctx.nvt, "--version"],
        "bao version (Go CLI start)": [BAO, "version"],
    }
    checks = {
        ARGV_FLOOR: "from nomad_vault_token.nomad import argv as agent_argv\n"
        "agent_argv.parse(['nomad', 'agent', '-config', '/etc/nomad.d'])",
        HCL_FLOOR: f"from nomad_vault_token.nomad import agent_config\nagent_config.load_vault_block([{str(configs)!r}])",
    }
    found = {}
    for label, argv in cases.items():
        values = []
        for i in range(ctx.args.floor_runs + 1):
            start = time.perf_counter()
            proc = ctx.procs.popen(argv, env=ctx.env, stderr=subprocess.DEVNULL)
            # wait() with a timeout polls, sleeping up to 50 ms between looks, which rounded every figure up to
            # the next step of 15, 64, 114 ms...; without one it blocks in waitpid. The timer is the timeout.
            timer = threading.Timer(60, proc.kill)
            timer.start()
            try:
                code = proc.wait()
            finally:
                timer.cancel()
            if code != 0:
                raise RuntimeError(f"{label} exited {code}")
            if i:  # the first one warms caches
                values.append((time.perf_counter() - start) * 1000)
        found[label] = statistics.median(values)
    added = {}
    for label, body in checks.items():
        samples = []
        for _ in range(ctx.args.floor_runs + 1):
            out = subprocess.run(
                [sys.executable, "-c", _ADDED.format(body=body)],
                env=ctx.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            samples.append(float(out.stdout.strip()))
        added[label] = statistics.median(samples[1:])
    return BareStartups(ctx.args.floor_runs, found, added)
