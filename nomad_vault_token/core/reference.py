"""The reference tables the docs show, made from the code that they describe: pure, stdlib only.

`docs/configuration.md` (every key: flag, environment variable, default, meaning) comes from
`options.OPTIONS` and `config.Settings`, `docs/exit-codes.md` from `errors.EXIT_CODES`, `docs/metrics.md`
from `metrics.CATALOG`, `LABELS` and `FILES`. Each page holds its table between two markers:

    <!-- BEGIN GENERATED: NAME (scripts/gen-docs writes this table from the code: do not edit it here) -->
    <!-- END GENERATED: NAME -->

`scripts/gen-docs` (`python -m nomad_vault_token.core.reference DIR`) rewrites them; `tests/unit/test_docs.py`
fails when a committed page differs from what this module makes of the code.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from nomad_vault_token.core import config, errors, metrics, options

BEGIN = "<!-- BEGIN GENERATED: {name} (scripts/gen-docs writes this table from the code: do not edit it here) -->"
END = "<!-- END GENERATED: {name} -->"

# What the keys no flag sets mean (every other key's meaning is its option's help)
FILE_ONLY = {
    "request_timeout": "timeout of each Vault request",
    "cert_warn_days": "warn when the client certificate expires within this many days",
    "adoption_timeout": "how long Nomad has to adopt a token handed over (plus up to half as jitter); see "
    "[the tracker](run.md#the-tracker)",
    "on_not_adopted": "`restart`: stop the agent with `stop_signal` so systemd restarts it; `warn`: STATUS and "
    "the log only",
    "stop_signal": "how the tracker stops the agent (escalation, env hand-off): the unit's `KillSignal`",
    "sighup_grace": "no SIGHUP until this long after Nomad first renewed a token (4x that after start if it never did)",
    "keyring_vault_in_cluster": "`true` when the Vault that wraps Nomad's keyring runs as a job of this same Nomad "
    "cluster: `check` then fails with the cold-start trap (see [the keyring token](keyring.md#the-cold-start-trap))",
    "legacy_token": "`false` after the cut-over to workload identity: `run` starts the agent with no Vault token "
    "(see [workload identity](workload-identity.md#off-the-server-token-readiness-cutover-and-the-migration-"
    "procedure))",
}


def _cell(text: str) -> str:
    """Text for a table cell: `|` escaped, `<...>` kept visible outside code spans."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") else p.replace("<", "&lt;").replace(">", "&gt;") for p in parts).replace(
        "|", "\\|"
    )


def configuration_table() -> str:
    """Every config key: its flag and the commands that take it, its variables, default and meaning."""
    by_key = {o.config_key: o for o in options.OPTIONS if o.setting}
    vault_env = {key: var for var, key in config.VAULT_ENV.items()}
    rows = ["| key | flag | environment | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for key in config.FIELDS:
        o = by_key.get(key)
        if o is None and key not in FILE_ONLY:
            raise ValueError(f"config key {key}: no option and no FILE_ONLY meaning in core/reference.py")
        flag = "—"
        if o is not None:
            flags = ", ".join(f"`{f}`" for f in o.flags)
            flag = f"{flags} ({', '.join(c for c in options.COMMANDS if c in o.commands)})"
        env = ([f"`{vault_env[key]}`"] if key in vault_env else []) + [f"`{config.env_name(key)}`"]
        default = config.default_text(key)
        meaning = _cell(o.help) if o else FILE_ONLY[key]
        rows.append(f"| `{key}` | {flag} | {', '.join(env)} | {_cell(default) if default else '—'} | {meaning} |")
    return "\n".join(rows)


def exit_code_table() -> str:
    """Every exit code: its sysexits name, what it means, what systemd does."""
    names = {value: name for name, value in vars(errors).items() if name.startswith("EX_") and isinstance(value, int)}
    documented = [c.code for c in errors.EXIT_CODES]
    if sorted(documented) != sorted(names) or len(set(documented)) != len(documented):
        raise ValueError(f"errors.EXIT_CODES {documented} and the EX_* constants {sorted(names)} differ")
    rows = ["| code | name | meaning | under systemd |", "| --- | --- | --- | --- |"]
    rows += [f"| {c.code} | `{names[c.code]}` | {_cell(c.meaning)} | {_cell(c.systemd)} |" for c in errors.EXIT_CODES]
    return "\n".join(rows)


def metrics_table() -> str:
    """Every metric, by the file (component) that holds it: its labels and its HELP."""
    out: list[str] = []
    for component in metrics.FILES:
        names = [n for n in metrics.CATALOG if metrics.component_of(n) == component]
        out += [
            f"`{metrics.textfile_path(Path(), component)}`:",
            "",
            "| metric | labels | meaning (its HELP) |",
            "| --- | --- | --- |",
        ]
        for name in names:
            labels = ", ".join(f"`{label}`" for label in metrics.LABELS.get(name, ())) or "—"
            out.append(f"| `{name}` | {labels} | {_cell(metrics.CATALOG[name])} |")
        out.append("")
    unknown = set(metrics.LABELS) - set(metrics.CATALOG)
    if unknown:
        raise ValueError(f"metrics.LABELS names metrics CATALOG does not: {sorted(unknown)}")
    return "\n".join(out).rstrip("\n")


TABLES: dict[str, tuple[str, Callable[[], str]]] = {
    "configuration": ("configuration.md", configuration_table),
    "exit-codes": ("exit-codes.md", exit_code_table),
    "metrics": ("metrics.md", metrics_table),
}


def fill(text: str, name: str) -> str:
    """`text` (a page) with table `name` between its markers made anew; ValueError when the markers are missing."""
    begin, end = BEGIN.format(name=name), END.format(name=name)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"table {name}: the page needs its two markers once: {begin} ... {end}")
    return pattern.sub(lambda _: f"{begin}\n{TABLES[name][1]()}\n{end}", text)


def main(argv: list[str]) -> int:
    """Rewrite every generated table under the docs directory argv[0] (default: docs); print what changed."""
    docs = Path(argv[0] if argv else "docs")
    for name, (page, _) in TABLES.items():
        path = docs / page
        old = path.read_text()
        new = fill(old, name)
        if new != old:
            path.write_text(new)
            print(f"{path}: table {name} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
