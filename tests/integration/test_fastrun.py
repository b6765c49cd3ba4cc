"""The fast command-line path agrees with typer's, option for option and call for call, for every command.

The fast path exists only for speed; these tests hold it to typer's meaning. Both paths end in
`dispatch.dispatch`, which is replaced here by a recorder: pure parsing, no Vault, no exec.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from hypothesis import given, settings
from hypothesis import strategies as st

from nomad_vault_token.cli import app as cli
from nomad_vault_token.cli import dispatch, fastrun
from nomad_vault_token.cli.table import TABLE
from nomad_vault_token.core import options
from testbed.cli import assert_one_line_error, run_cli

Call = dict[str, Any]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    calls: list[Call] = []
    monkeypatch.setattr(dispatch, "dispatch", lambda command, params: calls.append({"command": command, **params}))
    return calls


def via_typer(argv: list[str], calls: list[Call], command: str = options.RUN) -> Call | None:
    """What typer hands to dispatch, or None when typer refuses the command line."""
    before = len(calls)
    try:
        cli.app(args=[command, *argv], prog_name="nomad-vault-token", standalone_mode=False)
    except Exception:  # click's usage errors: the fast path must not have accepted these
        return None
    return calls[before] if len(calls) > before else None


def via_fast(argv: list[str], calls: list[Call], command: str = options.RUN) -> Call | None:
    parsed = fastrun.parse(argv, command)
    return None if parsed is None else {"command": command, **parsed}


@pytest.mark.parametrize("name", list(TABLE))
def test_typer_declares_exactly_the_tables_options(name: str) -> None:
    command = typer.main.get_command(cli.app)
    run = command.commands[name]  # type: ignore[attr-defined]
    declared: dict[str, tuple[str, object]] = {}
    for param in run.params:
        if param.param_type_name != "option" or param.name in ("help",):
            continue
        for flag in param.opts:
            declared[flag] = (param.name, True if param.is_flag else ("list" if param.multiple else "value"))
        for flag in param.secondary_opts:
            declared[flag] = (param.name, False)
    ours = {
        flag: (o.name, value if o.kind in ("bool", "switch") else ("list" if o.kind == "list" else "value"))
        for flag, o, value in options.flags_of(name)
    }
    assert ours == declared


PLAIN = ["--", "/usr/bin/nomad", "agent", "-config", "/etc/nomad.d"]

AGREE = [
    PLAIN,
    [],
    ["--"],
    ["/usr/bin/nomad", "agent", "-config", "/etc/nomad.d"],
    ["--config", "/etc/nvt.toml", *PLAIN],
    ["-c", "/etc/nvt.toml", "-v", *PLAIN],
    ["--config=/etc/nvt.toml", "--verbose", *PLAIN],
    ["--policy", "a", "--policy=b", "--period", "72h", "--mint-mode", "create-orphan", *PLAIN],
    ["--handoff", "env", "--no-check", "--wait-timeout", "30s", "--min-ttl", "1h", *PLAIN],
    ["--allow-insecure-http", "--no-allow-insecure-http", *PLAIN],
    ["--no-allow-insecure-http", "--allow-insecure-http", *PLAIN],
    ["--vault-addr", "https://v:8200", "--vault-addr", "https://w:8200", *PLAIN],
    ["--ca-cert", "ca.pem", "--client-cert", "c.pem", "--client-key", "k.pem", "--tls-server-name", "v", *PLAIN],
    ["--namespace", "ns", "--auth-mount", "cert2", "--cert-role", "r", "--mint-role", "m", "--task-role", "t", *PLAIN],
    ["--state-dir", "/s", "--token-config", "/r/t.hcl", "--check-interval", "5m", *PLAIN],
    ["--config", "", *PLAIN],
    ["--", "--config", "x"],
    ["--verbose", "--", "-v"],
]


@pytest.mark.parametrize("argv", AGREE, ids=lambda a: " ".join(a) or "(none)")
def test_both_paths_make_the_same_call(argv: list[str], recorder: list[Call]) -> None:
    fast = via_fast(argv, recorder)
    assert fast is not None, "the fast path should take this command line"
    assert via_typer(argv, recorder) == fast


DECLINED = [
    ["--help"],
    ["-h", *PLAIN],
    ["--bogus", *PLAIN],
    ["--conf", "x", *PLAIN],  # click would not guess either, but typer says so
    ["-vc", "x", *PLAIN],
    ["-cx", *PLAIN],
    ["--config"],
    ["--config", "--verbose", *PLAIN],
    ["--wait-timeout", "-1h", *PLAIN],
    ["--verbose=yes", *PLAIN],
    ["-c=x", *PLAIN],
]


@pytest.mark.parametrize("argv", DECLINED, ids=lambda a: " ".join(a))
def test_anything_unusual_is_left_to_typer(argv: list[str]) -> None:
    assert fastrun.parse(argv) is None


# snapshot: positionals (verify FILE) among options, as click reads them
SNAPSHOT_AGREE = [
    [],
    ["--config", "/etc/nvt.toml"],
    ["--dir", "/var/lib/snap", "--keep", "7", "--copy-to", "s3://b/p", "--copy-to=s3://c/q", "--format", "json"],
    ["verify", "/d/vault-20261203T120000Z-39.snap"],
    ["verify", "--format", "json", "s3://b/p/x.snap"],
    ["--verbose", "restore-test", "x.snap", "--keys-file", "/k", "--canary", "kv/data/canary"],
    ["verify"],
    ["--", "verify", "-odd-name.snap"],
    ["verify", "--", "--weird"],
    ["-", "x"],
    ["", ""],
]


@pytest.mark.parametrize("argv", SNAPSHOT_AGREE, ids=lambda a: " ".join(a) or "(none)")
def test_snapshot_both_paths_make_the_same_call(argv: list[str], recorder: list[Call]) -> None:
    fast = via_fast(argv, recorder, options.SNAPSHOT)
    assert fast is not None, "the fast path should take this command line"
    assert via_typer(argv, recorder, options.SNAPSHOT) == fast


@pytest.mark.parametrize(
    "argv",
    [["verify", "a", "b"], ["--help"], ["verify", "-h"], ["--dir"], ["--keep", "--dir", "x"], ["--bogus"]],
    ids=" ".join,
)
def test_snapshot_leaves_anything_unusual_to_typer(argv: list[str]) -> None:
    assert fastrun.parse(argv, options.SNAPSHOT) is None


def tokens(command: str) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            *(flag for flag, _, _ in options.flags_of(command)),
            *["--", "-", "--help", "--bogus", "x", "/bin/true", "72h", "", "-1h", "--config=y", "a=b", "verify"],
        ]
    )


@pytest.mark.parametrize("command", list(TABLE))
def test_whatever_the_fast_path_accepts_typer_reads_the_same(command: str) -> None:
    @settings(max_examples=150, deadline=None)
    @given(st.lists(tokens(command), max_size=8))
    def agree(argv: list[str]) -> None:
        calls: list[Call] = []
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(dispatch, "dispatch", lambda name, params: calls.append({"command": name, **params}))
            fast = via_fast(argv, calls, command)
            if fast is not None:
                assert via_typer(argv, calls, command) == fast

    agree()


@pytest.mark.parametrize(
    ("argv", "code", "named"),
    [
        (["run", "--config", "{tmp}/none.toml", "--", "/bin/true"], 78, "none.toml"),
        (["snapshot", "verify", "{tmp}/none.snap"], 65, "none.snap"),
    ],
    ids=["run", "snapshot"],
)
def test_entry_takes_the_fast_path_without_importing_typer(
    tmp_path: Path, argv: list[str], code: int, named: str
) -> None:
    # a fresh interpreter: the error (a missing file) is reported before anything else is imported
    args = [a.format(tmp=tmp_path) for a in argv]
    program = (
        "import sys\n"
        "from nomad_vault_token.cli import entry\n"
        "try:\n"
        f"    entry.main({args!r})\n"
        "except SystemExit as e:\n"
        "    print(e.code, sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'pydantic', 'rich')))\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert out.stdout.split(maxsplit=1) == [str(code), "[]\n"], out
    assert named in out.stderr


def test_a_refused_command_line_still_gets_typers_usage_error() -> None:
    result = run_cli("run", "--bogus", "--", "/bin/true")
    assert result.code == 2
    assert "No such option" in result.err and "--bogus" in result.err


def test_fast_path_errors_are_one_line_with_the_exit_code(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("run", "--config", str(tmp_path / "nope.toml"), "--", "/bin/true"), 78, "nope.toml")


def test_a_shared_option_is_declared_once() -> None:
    names = [o.name for o in options.OPTIONS]
    assert len(names) == len(set(names))
    flags = [f for o in options.OPTIONS for f in o.flags]
    assert len(flags) == len(set(flags))
    for o in options.OPTIONS:  # every setting is a config key
        from nomad_vault_token.core import config

        assert not o.setting or o.config_key in config.FIELDS, o


def test_entry_main_is_the_console_script() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["nomad-vault-token"] == "nomad_vault_token.cli.entry:main"
