"""The demo's keyring part: Nomad 1.10+ keeps one Vault token on a server, the one for its transit keyring.

bootstrap-roles --keyring, run with keyring = true and legacy_token = false, the stand-in Nomad reading its
keyring through the file run writes, the keyring token revoked and replaced in the file with no signal, and
Nomad's next key rotation using the new one. `python -m demo.keyring` runs it alone (with its own OpenBao).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from testbed import ROOT, procs
from testbed.agent import agent_config, keyring_block, run_argv
from testbed.bao import Bao, Certs
from testbed.cli import console_script
from testbed.env import clean_env
from testbed.jsonl import events
from testbed.procs import wait_for

CLI = console_script()


def say(title: str, text: str = "") -> None:
    print(f"\n\033[1m== {title}\033[0m")
    if text:
        print(textwrap.fill(textwrap.dedent(text).strip(), 96))


def show(argv: list[str], env: dict[str, str] | None = None) -> None:
    print("$ " + " ".join("nomad-vault-token" if a == CLI[0] else a for a in argv))
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    for line in (proc.stdout + proc.stderr).rstrip().splitlines():
        print("  " + line)


def run(server: Bao, certs: Certs, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    agents: list[subprocess.Popen[bytes]] = []
    try:
        say(
            "K1. Nomad 1.10+: the keyring token",
            """
            Nomad 1.10 removed the token-based Vault integration, but a server can still wrap its root keyring
            (the keys behind Variables and every workload identity) with Vault's transit engine: that takes one
            Vault token, read from a file at every use. bootstrap-roles --keyring writes the transit key, a
            policy that can only encrypt and decrypt with it, and a role the server's certificate mints through.""",
        )
        token_file = work / "run" / "keyring-token"
        cfg = work / "config.toml"
        cfg.write_text(
            f'vault_addr = "{server.addr}"\nca_cert = "{certs.ca_path}"\n'
            f'client_cert = "{certs.client_cert}"\nclient_key = "{certs.client_key}"\n'
            f'state_dir = "{work / "state"}"\ntoken_config = "{work / "run" / "vault-token.hcl"}"\n'
            f'keyring = true\nlegacy_token = false\nkeyring_token_file = "{token_file}"\ncheck_interval = "2s"\n'
        )
        admin = clean_env(VAULT_TOKEN=server.root_token)
        show([*CLI, "bootstrap-roles", "--config", str(cfg), "--client-ca", str(certs.ca_path),
              "--allowed-common-name", "nomad-startup"], env=admin)  # fmt: skip

        say(
            "K2. run --keyring: the token in the file Nomad reads",
            """
            The agent's config names the file (token = "file://..."). run mints the keyring token, writes it
            there (0600, no trailing newline: Nomad reads the file without trimming) and starts the agent with
            no other Vault token at all. The stand-in Nomad builds its keyring wrapper from the file.""",
        )
        agent_hcl = agent_config(work / "agent.hcl", server)
        with agent_hcl.open("a") as f:
            f.write(keyring_block(server.addr, certs.ca_path, f"file://{token_file}"))
        text = agent_hcl.read_text()
        print(textwrap.indent(text[text.index('keyring "transit"') :], "  "))
        report = work / "agent.jsonl"
        rotate = work / "rotate"
        env = clean_env(FAKE_NOMAD_REPORT=str(report), FAKE_NOMAD_KEYRING_ROTATE=str(rotate))
        log = work / "run.log"
        with open(log, "w") as err:
            agents.append(subprocess.Popen(run_argv(cfg, agent_hcl, cli=CLI), env=env, stdin=subprocess.DEVNULL,
                                           stderr=err))  # fmt: skip
        wait_for(lambda: events(report, "keyring_ready"), 30, "the agent to read its keyring")
        first = events(report, "keyring_wrapper")[0]["accessor"]
        print(f"  the agent built its keyring wrapper with accessor {first} and read its keyring")
        wait_for(lambda: "in use by Nomad" in status(cfg), 30, "the tracker to see Nomad use it")
        show([*CLI, "status", "--config", str(cfg)])

        say(
            "K3. The keyring token is revoked: replaced in the file, no signal",
            """
            Nomad never logs in again and says nothing when its renewal fails: a dead keyring token shows at the
            next key rotation or restart. The tracker notices, mints a new token into the file, and sends the
            agent nothing: Nomad reads the file at its next use.""",
        )
        server.client().auth.token.revoke_accessor(first)
        print(f"  revoked accessor {first} ...")
        wait_for(lambda: "replaced by" in log.read_text(), 30, "the replacement")
        for line in log.read_text().splitlines():
            if "keyring token accessor" in line and ("gone" in line or "replaced" in line):
                print("  " + line)
        print(f"  signals the agent received: {len(events(report, 'reload'))}")
        rotate.touch()
        wait_for(lambda: [e for e in events(report, "keyring_rotated") if e["phase"] == "rotation"], 30, "a rotation")
        print(f"  Nomad's next key rotation built its wrapper with accessor {events(report, 'keyring_wrapper')[-1]['accessor']}")
        wait_for(lambda: "in use by Nomad" in status(cfg), 30, "the tracker to see Nomad use the new token")
        show([*CLI, "check", "--config", str(cfg), "--", "nomad", "agent", "-config", str(agent_hcl)])
    finally:
        procs.stop_all(agents)
        procs.stop_mentioning(str(work))


def status(cfg: Path) -> str:
    proc = subprocess.run([*CLI, "status", "--config", str(cfg)], capture_output=True, text=True, check=False)
    return proc.stdout


def main() -> int:
    work = ROOT / ".demo-keyring"
    shutil.rmtree(work, ignore_errors=True)
    server: Bao | None = None
    try:
        certs = Certs(work / "certs")
        server = Bao(work / "openbao", certs).start()
        run(server, certs, work / "keyring")
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
