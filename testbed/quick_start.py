"""The README's Quick start as data: its numbered steps, each the shell commands of its code block.

`tests/unit/test_docs.py` checks that every `nomad-vault-token` command and flag in it exists;
`tests/system/test_systemd.py` walks the steps against OpenBao and a real systemd. Both read the
README itself, so a Quick start that changes is what they check.
"""

from __future__ import annotations

import re
import shlex

from testbed import ROOT

README = ROOT / "README.md"
HEADING = "## Quick start"


def steps(text: str | None = None) -> list[list[str]]:
    """Each step's commands, in order: continuation lines joined, comments and blank lines dropped."""
    text = README.read_text() if text is None else text
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    out: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines = [line.strip() for line in joined.splitlines()]
        out.append([line for line in lines if line and not line.startswith("#")])
    return out


def tool_commands(text: str | None = None) -> list[list[str]]:
    """The words after `nomad-vault-token` of every command of the steps that runs it."""
    return [
        shlex.split(line.split("nomad-vault-token ", 1)[1], comments=True)
        for step in steps(text)
        for line in step
        if "nomad-vault-token " in line and not line.startswith(("install -d", "ln ", "python"))
    ]
