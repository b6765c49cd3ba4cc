"""The floor under `run` minting: a Python process that imports hvac, makes the Vault requests `run`
makes for a mint with Nomad's checks, on one kept-alive session (one TLS connection), then execs the
agent. What no change to `run` can go below while hvac stays its Vault client.

    python bench/floor.py CONFIG.toml -- AGENT...

Run as a script (not imported): nothing but hvac (and what it imports) is loaded. Not product code
and not a test: only the bench calls it.
"""

import os
import sys

import hvac

# The Nomad checks' capabilities, as `run` asks for them (token/nomad_check.py, allow_unauthenticated = true).
CHECKED = ("auth/token/renew-self", "auth/token/revoke-accessor", "auth/token/create/{task}", "auth/token/roles/{task}")


def _toml(path: str) -> dict[str, str]:
    """The string keys of the bench's flat config (tomllib would cost an import run does not pay here)."""
    found = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.partition(" = ")
            if sep and value.strip().startswith('"'):
                found[key.strip()] = value.strip().strip('"')
    return found


def main(argv: list[str]) -> None:
    config = _toml(argv[0])
    agent = argv[argv.index("--") + 1 :]
    cert_role = config.get("cert_role", "nomad_startup")
    mint_role = config.get("mint_role", "nomad-server-mint")
    task_role = config.get("task_role", "nomad-cluster")
    client = hvac.Client(
        url=config["vault_addr"], verify=config["ca_cert"], cert=(config["client_cert"], config["client_key"])
    )
    client.sys.read_health_status(method="GET", standby_ok=True)
    login = client.auth.cert.login(name=cert_role)["auth"]["client_token"]  # sets client.token
    minted = client.auth.token.create(
        role_name=mint_role,
        policies=["nomad_cluster"],
        meta={"host": os.uname().nodename, "minted_by": "bench floor"},
        display_name=f"nomad-server-{os.uname().nodename}",
    )["auth"]["client_token"]
    client.token = minted
    client.auth.token.lookup_self()
    client.token = login
    client.auth.token.revoke_self()
    client.token = minted
    client.sys.read_health_status(method="GET", standby_ok=True)
    client.read(f"auth/token/roles/{task_role}")
    client.write_data("sys/capabilities-self", data={"paths": [p.format(task=task_role) for p in CHECKED]})
    client.adapter.close()
    os.execv(agent[0], agent)


if __name__ == "__main__":
    main(sys.argv[1:])
