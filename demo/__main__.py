"""The newcomer's demo: a local OpenBao, bootstrap-roles, run with a stand-in Nomad, status, check;
the keyring token of Nomad 1.10+ (demo/keyring.py); then Vault's side (demo/vault.py): a raft cluster, the unsealer, a seal migration to auto-unseal.

Run it with `scripts/demo` (which sets up the virtualenv first), or `python -m demo` from the
repository root. Everything lives under .demo/ and is removed at the end; every process started is
stopped by PID. The OpenBao server, the stand-in agent and the process handling are the test bed's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from testbed import ROOT, procs
from testbed.agent import agent_config, run_argv
from testbed.bao import Bao, Certs
from testbed.cli import console_script
from testbed.env import clean_env
from testbed.jsonl import events
from testbed.procs import wait_for

WORK = ROOT / ".demo"
CLI = console_script()


def say(title: str, text: str = "") -> None:
    print(f"\n\033[1m== {title}\033[0m")
    if text:
        print(textwrap.fill(textwrap.dedent(text).strip(), 96))


def show(argv: list[str], env: dict[str, str] | None = None, hide: str = "") -> subprocess.CompletedProcess[str]:
    shown = " ".join("nomad-vault-token" if a == CLI[0] else a for a in argv)
    print(f"$ {shown}")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    for stream in (proc.stdout, proc.stderr):
        for line in stream.rstrip().splitlines():
            print("  " + (line.replace(hide, "<token>") if hide else line))
    if proc.returncode not in (0,):
        print(f"  (exit {proc.returncode})")
    return proc


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    server: Bao | None = None
    agents: list[subprocess.Popen[bytes]] = []
    try:
        say(
            "1. A Vault server",
            """
            Vault (here OpenBao, its open-source fork) holds secrets. A Nomad server needs a Vault token
            to hand out secrets to jobs. We start a real OpenBao on 127.0.0.1 with TLS, initialise and
            unseal it, as an operator would.""",
        )
        certs = Certs(WORK / "certs")
        server = Bao(WORK / "openbao", certs).start()
        print(f"  OpenBao is up at {server.addr} (pid {server.pid}), unsealed; we hold its root token.")

        say(
            "2. bootstrap-roles: the admin's one-time setup",
            """
            With an admin token, bootstrap-roles writes what Vault needs: the policy Nomad's token carries,
            a token role Nomad derives job tokens from, a 'mint' role that can only create Nomad's token,
            and certificate login for the servers. No sudo anywhere. Run twice, it changes nothing.""",
        )
        admin = clean_env(VAULT_TOKEN=server.root_token, VAULT_ADDR=server.addr, VAULT_CACERT=str(certs.ca_path))
        boot = [*CLI, "bootstrap-roles", "--client-ca", str(certs.ca_path), "--allowed-common-name", "nomad-startup"]
        show(boot, env=admin)
        show(boot, env=admin)

        say(
            "3. The server's configuration",
            """
            Each Nomad server has a client certificate (here issued by our demo CA) and this config file.""",
        )
        cfg = WORK / "config.toml"
        cfg.write_text(
            f'vault_addr = "{server.addr}"\nca_cert = "{certs.ca_path}"\n'
            f'client_cert = "{certs.client_cert}"\nclient_key = "{certs.client_key}"\n'
            f'state_dir = "{WORK / "state"}"\ntoken_config = "{WORK / "run" / "vault-token.hcl"}"\n'
            'check_interval = "2s"\n'
            "# The stand-in sets up its signal handling 2 s after it starts; Nomad takes longer: default 30s.\n"
            'sighup_grace = "4s"\n'
        )
        print(textwrap.indent(cfg.read_text(), "  "))

        say(
            "4. run: what systemd starts on every boot",
            """
            `nomad-vault-token run -- nomad agent ...` logs in with the certificate, mints Nomad's token,
            writes it to a private file Nomad reads, starts a small tracker, and replaces itself with the
            agent (same PID, so systemd sees Nomad directly). Nomad is not installed here: a stand-in
            agent does what Nomad's server does with its token (validate, renew) and tells us.""",
        )
        agent_hcl = agent_config(WORK / "agent.hcl", server)
        report = WORK / "agent.jsonl"
        # Nomad validates again every 30 s while its token does not work; the stand-in every 2 s here.
        env = clean_env(FAKE_NOMAD_REPORT=str(report), FAKE_NOMAD_RENEW_EVERY="2", FAKE_NOMAD_VALIDATE_RETRY="2")
        argv = run_argv(cfg, agent_hcl, cli=CLI)
        print("$ nomad-vault-token run --config .demo/config.toml -- <stand-in nomad> agent -config agent.hcl")
        first_log = WORK / "run-1.log"
        with open(first_log, "w") as err:
            agents.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=err))
        wait_for(lambda: events(report, "validated"), 30, "the agent to validate its token")
        print(textwrap.indent(first_log.read_text().rstrip(), "  "))
        v = events(report, "validated")[0]
        print(
            f"  agent (pid {agents[0].pid}) validated its token: ok={v['ok']}, accessor {v['accessor']}, "
            f"role {v['role']}"
        )
        wait_for(lambda: events(report, "renewed"), 30, "a renewal")
        print(f"  agent renewed it: ttl {events(report, 'renewed')[0]['ttl']}s (72h, a periodic token)")

        say(
            "5. status: what an operator looks at",
            """
            The token itself is never printed; the accessor names it. The tracker proves Nomad adopted the
            token: Nomad renews a token right after it validates it.""",
        )
        wait_for(lambda: adopted(cfg.parent / "state"), 30, "the tracker to see the agent adopt its token")
        show([*CLI, "status", "--config", str(cfg)])

        say(
            "6. check: everything Nomad will check, before Nomad does",
            """
            Given the agent's command line after --, as in the unit, it also reads the agent's config
            files the way Nomad merges them and checks their vault block.""",
        )
        show([*CLI, "check", "--config", str(cfg), "--", "nomad", "agent", "-config", str(agent_hcl)])

        say(
            "7. Restart: the token is reused, not piled up",
            """
            The old bash script minted a new 72-hour token on every restart. Here the next start finds the
            saved token still good and reuses it.""",
        )
        procs.stop(agents[0], timeout=15)
        report.unlink()
        log = WORK / "run-2.log"
        with open(log, "w") as err:
            agents.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=err))
        wait_for(lambda: events(report, "validated"), 30, "the restarted agent")
        for line in log.read_text().splitlines():
            if "reusing" in line:
                print("  " + line)
        print(f"  after restart the agent holds accessor {events(report, 'validated')[0]['accessor']}: the same one")

        say(
            "8. The token is revoked: the tracker recovers",
            """
            Nomad stops renewing for good when its token is revoked. The tracker notices, mints a new
            token, rewrites the agent's token file and sends it SIGHUP (once the agent can take one: a Go
            program dies of SIGHUP until it installs its handler): Nomad reloads and carries on.""",
        )
        old = str(events(report, "validated")[0]["accessor"])
        server.client().auth.token.revoke_accessor(old)
        print(f"  revoked accessor {old} with the root token ...")
        wait_for(lambda: [e for e in events(report, "reload") if e["token_changed"]], 30, "the agent to reload")
        wait_for(lambda: [e for e in events(report, "validated") if e["accessor"] != old], 30, "revalidation")
        new = [e for e in events(report, "validated") if e["accessor"] != old]
        print(f"  agent (same pid {agents[1].pid}) reloaded with accessor {new[0]['accessor']}: ok={new[0]['ok']}")
        for line in log.read_text().splitlines():
            if "tracker" in line or "recover" in line or "gone" in line or "SIGHUP" in line:
                print("  " + line)

        say(
            "9. Cold start: Vault is down when Nomad boots",
            """
            Vault often runs as a Nomad job: waiting for it before starting Nomad would wait for ever.
            After --degraded-start-after, run starts the agent with the saved token unverified, and the
            tracker brings it back to health once Vault is.""",
        )
        procs.stop(agents[1], timeout=15)
        report.unlink()
        server.seal()
        print("  sealed Vault, restarting the agent with --degraded-start-after 3s ...")
        log = WORK / "run-3.log"
        cold = run_argv(cfg, agent_hcl, "--degraded-start-after", "3s", cli=CLI)
        with open(log, "w") as err:
            agents.append(subprocess.Popen(cold, env=env, stdin=subprocess.DEVNULL, stderr=err))
        wait_for(lambda: events(report, "start"), 30, "the agent to start without Vault")
        wait_for(lambda: tracker_state(cfg.parent / "state") == "degraded", 30, "the tracker's degraded view")
        show([*CLI, "status", "--config", str(cfg)])
        server.unseal()
        print("  unsealed Vault ...")
        wait_for(lambda: adopted(cfg.parent / "state"), 60, "the agent to adopt its token again")
        show([*CLI, "status", "--config", str(cfg)])

        procs.stop_all(agents)
        from demo import keyring  # Nomad 1.10+: the keyring token, handed over and replaced

        keyring.run(server, certs, WORK / "keyring")

        from demo import vault  # the Vault side: a raft cluster, the unsealer, a seal migration

        vault.run(WORK / "vault")

        say(
            "Done",
            """
            That is the whole life of a Nomad server's token: minted once with least privilege, reused across
            restarts, watched, and replaced when it dies. Next: `scripts/test` runs the test suite.""",
        )
        return 0
    finally:
        procs.stop_all(agents)
        procs.stop_mentioning(str(WORK))  # the trackers
        if server is not None:
            server.stop()
        shutil.rmtree(WORK, ignore_errors=True)


def tracker_state(state_dir: Path) -> str:
    try:
        return str(json.loads((state_dir / "tracker.json").read_text())["state"])
    except (OSError, ValueError, KeyError):
        return ""


def adopted(state_dir: Path) -> bool:
    return tracker_state(state_dir) == "healthy"


if __name__ == "__main__":
    sys.exit(main())
