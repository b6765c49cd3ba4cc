"""The environments the tool's processes get."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# What the tool, Nomad's Vault client or systemd would read from the environment of the test process.
_TOOL_PREFIXES = (
    "VAULT_",
    "NOMAD_VAULT_TOKEN_",
    "NOTIFY_SOCKET",
    "JOURNAL_STREAM",
    "STATE_DIRECTORY",
    "RUNTIME_DIRECTORY",
    "WATCHDOG_",
)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything Vault-, tool- or systemd-related, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_TOOL_PREFIXES)}
    env.update(extra)
    return env


def service_env(home: Path, **extra: str) -> dict[str, str]:
    """What systemd gives a service, roughly: PATH (this venv's bin first), LANG, a HOME. Nothing
    Vault- or Python-specific: the bench measures start-ups the way a unit would see them."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        **extra,
    }
