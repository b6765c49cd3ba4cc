"""The tool's TOML config, pointing at a test OpenBao with the test client certificate."""

from __future__ import annotations

from pathlib import Path

from testbed.bao import Bao, Certs


def write_config(path: Path, server: Bao, certs: Certs, **overrides: object) -> Path:
    """A TOML config at `path` (its directory made) for `server`; state and hand-off file beside it.
    An override of None leaves the key out."""
    values: dict[str, object] = {
        "vault_addr": server.addr,
        "ca_cert": str(certs.ca_path),
        "client_cert": str(certs.client_cert),
        "client_key": str(certs.client_key),
        "state_dir": str(path.parent / "state"),
        "token_config": str(path.parent / "run" / "vault-token.hcl"),
    }
    values.update(overrides)
    lines = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, (list, tuple)):
            lines.append(f"{key} = [{', '.join(repr(str(v)).replace(chr(39), chr(34)) for v in value)}]")
        else:
            lines.append(f'{key} = "{value}"')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
