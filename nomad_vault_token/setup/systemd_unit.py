"""The systemd unit shipped in `systemd/nomad.service`, with its placeholders filled in. Pure."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from nomad_vault_token.core.resources import read_text

UNIT_NAME = "nomad.service"
DEFAULT_AGENT = ("/usr/bin/nomad", "agent", "-config", "/etc/nomad.d")


def render(
    template: str, *, bin_path: Path, config: Path, agent: Sequence[str] = DEFAULT_AGENT, start_timeout: str = "5min"
) -> str:
    """Fill @@BIN@@, @@CONFIG@@, @@AGENT@@ and @@START_TIMEOUT@@ (arguments quoted for systemd)."""
    values = {
        "@@BIN@@": _quote(str(bin_path)),
        "@@CONFIG@@": _quote(str(config)),
        "@@AGENT@@": " ".join(_quote(a) for a in agent),
        "@@START_TIMEOUT@@": start_timeout,
    }
    text = template
    for key, value in values.items():
        text = text.replace(key, value)
    if "@@" in text:
        raise ValueError("unit template has an unknown @@placeholder@@")
    return text


def shipped_template() -> str:
    return read_text("systemd", UNIT_NAME)


def _quote(arg: str) -> str:
    """systemd's ExecStart quoting is close to the shell's for plain words; '%' and '$' must be escaped."""
    quoted = shlex.quote(arg) if any(c.isspace() or c in "\"'\\;" for c in arg) else arg
    return quoted.replace("%", "%%").replace("$", "$$")
