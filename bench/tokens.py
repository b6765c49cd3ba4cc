"""5. Live server tokens after N service restarts, on a second OpenBao: N x (`run` + the stand-in Nomad
validates its token + stop), then the same with the bash script; live tokens with the server policy
counted with the root token."""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import Ctx, log, old_script, start_server
from testbed import jsonl, procs
from testbed.agent import agent_config, fake_nomad, run_argv
from testbed.bao import TASK_ROLE
from testbed.config import write_config
from testbed.procs import wait_for


@dataclass
class Tokens:
    restarts: int
    run: int
    bash: int
    all: int


def tokens(ctx: Ctx) -> Tokens:
    n = ctx.args.restarts
    log(f"5. live server tokens after {n} restarts (a second OpenBao), run and the bash script")
    server = start_server(ctx.work / "bao5", ctx.certs, audit=None)
    try:
        cfg = write_config(ctx.work / "s5" / "config.toml", server, ctx.certs)
        ctx.procs.markers.append(str(cfg))
        hcl = agent_config(cfg.parent / "agent.hcl", server, create_from_role=TASK_ROLE)
        script = old_script(cfg.parent / "old-script.sh", ctx.certs)
        bash_env = {**ctx.env, "VAULT_ADDR": server.addr, "VAULT_CACERT": str(ctx.certs.ca_path)}
        errors = cfg.parent / "stderr.log"
        for who in ("run", "bash"):
            for i in range(n):
                report = cfg.parent / f"report-{who}-{i}.jsonl"
                env = {**(ctx.env if who == "run" else bash_env), "FAKE_NOMAD_REPORT": str(report)}
                argv = run_argv(cfg, hcl, cli=ctx.nvt) if who == "run" else [str(script), *fake_nomad(hcl)]
                with open(errors, "wb") as err:
                    proc = ctx.procs.popen(argv, env=env, stderr=err)
                validated = lambda r=report: jsonl.events(r, "validated")  # noqa: E731
                wait_for(validated, 60, f"{who}'s agent to validate", proc=proc, detail=errors.read_text)
                procs.stop(proc)  # systemctl stop / restart: SIGTERM to the main PID, the agent
                procs.stop_mentioning(str(cfg), None)  # its tracker exits with it
        live = server.live_server_tokens()
        by_run = [t for t in live if str(t.get("path", "")).startswith("auth/token/create/")]
        by_bash = [t for t in live if t.get("path") == "auth/token/create-orphan"]
        return Tokens(restarts=n, run=len(by_run), bash=len(by_bash), all=len(live))
    finally:
        server.stop()
