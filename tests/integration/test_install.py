"""`install`: the pure plan, then the command under `--root` as a real process (no Vault needed)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomad_vault_token.core import config
from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.setup import systemd_unit
from nomad_vault_token.setup.install_plan import (
    MISSING,
    Seen,
    Step,
    Want,
    parents_to_create,
    plan,
    render_toml,
    under_root,
    unit_changed,
)
from testbed.cli import Result, assert_one_line_error, run_cli
from testbed.env import clean_env

VENV_SCRIPT = Path(sys.executable).parent / "nomad-vault-token"
UNIT = Path("etc/systemd/system/nomad.service")
CONF = Path("etc/nomad-vault-token/config.toml")
CONF_DIR = Path("etc/nomad-vault-token")
STATE = Path("var/lib/nomad-vault-token")
RUNTIME = Path("run/nomad-vault-token")
FLAGS = ("--vault-addr", "https://vault.example:8200", "--policy", "nomad_cluster", "--policy", "extra")


# --- the pure plan -------------------------------------------------------------------------------

FILE = Want(Path("/r/f"), "file", 0o640, b"new")
DIR = Want(Path("/r/d"), "dir", 0o700)


def one(want: Want, seen: Seen) -> Step:
    [step] = plan([want], {want.path: seen})
    return step



def error_envelope(out: str, code: int) -> bool:
    """install always speaks JSON: an error is the one envelope too, for Ansible's from_json."""
    doc = json.loads(out)
    return doc["version"] == 1 and doc["ok"] is False and doc["error"]["exit_code"] == code

def test_missing_is_created() -> None:
    assert one(FILE, MISSING) == Step(FILE, "create", rewrite=True)
    assert one(DIR, MISSING) == Step(DIR, "create", rewrite=False)
    assert plan([FILE], {}) == [Step(FILE, "create", rewrite=True)]


def test_same_content_and_mode_is_unchanged() -> None:
    assert one(FILE, Seen("file", 0o640, b"new")).action == "unchanged"
    assert one(DIR, Seen("dir", 0o700)).action == "unchanged"


def test_other_content_is_rewritten_other_mode_only_chmodded() -> None:
    assert one(FILE, Seen("file", 0o640, b"old")) == Step(FILE, "update", rewrite=True)
    assert one(FILE, Seen("file", 0o644, b"new")) == Step(FILE, "update", rewrite=False)
    assert one(DIR, Seen("dir", 0o755)) == Step(DIR, "update", rewrite=False)


def test_keep_leaves_an_existing_path_alone() -> None:
    keep = Want(Path("/r/c"), "file", 0o640, b"", keep=True)
    assert one(keep, Seen("file", 0o600, b"mine")).action == "unchanged"
    assert one(keep, MISSING).action == "create"


def test_symlink_in_the_way_is_refused_with_a_hint_for_masked_units() -> None:
    masked = Want(Path("/etc/systemd/system/nomad.service"), "file", 0o644, b"x")
    with pytest.raises(ConfigError, match=r"symbolic link \(a masked unit\? `systemctl unmask` it\)"):
        one(masked, Seen("symlink"))
    with pytest.raises(ConfigError, match="symbolic link: install writes a real file"):
        one(FILE, Seen("symlink"))


def test_wrong_kind_in_the_way_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        one(FILE, Seen("dir", 0o755))
    with pytest.raises(ConfigError, match="not a directory"):
        one(DIR, Seen("file", 0o600, b""))
    with pytest.raises(ConfigError, match="not a directory"):
        one(DIR, Seen("other", 0o600))


def test_labels_and_listing() -> None:
    assert [Step(FILE, a).label(False) for a in ("create", "update", "unchanged")] == [
        "created",
        "updated",
        "unchanged",
    ]
    assert [Step(FILE, a).label(True) for a in ("create", "update", "unchanged")] == [
        "would create",
        "would update",
        "unchanged",
    ]
    quiet = Want(Path("/r"), "dir", 0o755, keep=True, quiet=True)
    assert not Step(quiet, "unchanged").listed and Step(quiet, "create").listed
    assert Step(FILE, "unchanged").listed


def test_unit_changed_only_for_the_unit() -> None:
    unit_want = Want(Path("/u.service"), "file", 0o644, b"u")
    assert unit_changed([Step(FILE, "update"), Step(unit_want, "create")], unit_want.path)
    assert not unit_changed([Step(FILE, "update"), Step(unit_want, "unchanged")], unit_want.path)


def test_under_root_and_parents() -> None:
    assert under_root(Path("/img"), Path("/etc/x")) == Path("/img/etc/x")
    assert under_root(Path("/"), Path("/etc/x")) == Path("/etc/x")
    with pytest.raises(ConfigError, match="absolute"):
        under_root(Path("/img"), Path("etc/x"))
    got = parents_to_create(
        [Path("/img/etc/systemd/system/u"), Path("/img/etc/nvt"), Path("/img/run/nvt")], Path("/img")
    )
    assert got == [Path("/img/etc"), Path("/img/etc/systemd"), Path("/img/etc/systemd/system"), Path("/img/run")]
    assert parents_to_create([Path("/etc/nvt")], Path("/")) == [Path("/etc")]


toml_values = st.dictionaries(
    st.sampled_from(sorted(config.FIELDS)),
    st.one_of(st.text(), st.booleans(), st.integers(min_value=0), st.lists(st.text(), max_size=3)),
)


@given(toml_values)
def test_render_toml_reads_back_exactly(values: dict[str, Any]) -> None:
    text = render_toml(values)
    assert tomllib.loads(text) == values
    assert text.startswith("# Written by `nomad-vault-token install`")


# --- the command under --root --------------------------------------------------------------------


def install(root: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return run_cli("install", "--root", str(root), *args, env=env)


def doc(result: Result) -> dict[str, Any]:
    assert result.code == 0, result.err
    assert result.out.count("\n") == 1, result.out  # one JSON object, one line
    parsed: dict[str, Any] = json.loads(result.out)
    assert set(parsed) == {"version", "changed", "changes"} and parsed["version"] == 1
    return parsed


def actions(parsed: dict[str, Any], root: Path) -> dict[Path, str]:
    return {Path(c["path"]).relative_to(root): c["action"] for c in parsed["changes"]}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under root with its mode, inode and mtime: any write shows."""
    out = {}
    for path in [root, *root.rglob("*")]:
        st_ = path.lstat()
        out[str(path)] = (st_.st_mode, st_.st_ino, st_.st_mtime_ns)
    return out


def test_installs_unit_config_and_directories_with_their_modes(tmp_path: Path) -> None:
    parsed = doc(install(tmp_path, *FLAGS))
    assert parsed["changed"] is True
    got = actions(parsed, tmp_path)
    for path in (UNIT, CONF, CONF_DIR, STATE, RUNTIME, Path("etc"), Path("var/lib")):
        assert got[path] == "created", got
    assert (mode(tmp_path / UNIT), mode(tmp_path / CONF)) == (0o644, 0o640)
    assert (mode(tmp_path / CONF_DIR), mode(tmp_path / STATE), mode(tmp_path / RUNTIME)) == (0o750, 0o700, 0o700)
    assert mode(tmp_path / "etc/systemd/system") == 0o755
    assert not [p for p in tmp_path.rglob("*.tmp")]

    expected = systemd_unit.render(systemd_unit.shipped_template(), bin_path=VENV_SCRIPT, config=config.DEFAULT_CONFIG)
    assert (tmp_path / UNIT).read_text() == expected
    # the unit names the real paths, not the --root ones
    assert (
        f"ExecStart={VENV_SCRIPT} run --config /etc/nomad-vault-token/config.toml -- /usr/bin/nomad agent" in expected
    )
    assert str(tmp_path) not in expected

    written = tomllib.loads((tmp_path / CONF).read_text())
    assert written == {"vault_addr": "https://vault.example:8200", "policies": ["nomad_cluster", "extra"]}
    loaded = config.load(tmp_path / CONF, environ={})
    assert loaded.policies == ("nomad_cluster", "extra") and loaded.mint_mode == "role"


def test_second_run_changes_nothing_and_writes_nothing(tmp_path: Path) -> None:
    doc(install(tmp_path, *FLAGS))
    before = snapshot(tmp_path)
    parsed = doc(install(tmp_path, *FLAGS))
    assert parsed["changed"] is False
    assert set(actions(parsed, tmp_path).values()) == {"unchanged"}
    # owned paths are listed even when unchanged; existing parents (not ours) are not
    assert set(actions(parsed, tmp_path)) == {UNIT, CONF, CONF_DIR, STATE, RUNTIME}
    assert snapshot(tmp_path) == before


def test_check_writes_nothing(tmp_path: Path) -> None:
    parsed = doc(install(tmp_path, "--check", *FLAGS))
    assert parsed["changed"] is True and actions(parsed, tmp_path)[UNIT] == "would create"
    assert list(tmp_path.iterdir()) == []

    doc(install(tmp_path, *FLAGS))
    (tmp_path / UNIT).write_text("edited\n")
    os.chmod(tmp_path / STATE, 0o755)  # noqa: S103 - drift on purpose
    before = snapshot(tmp_path)
    parsed = doc(install(tmp_path, "--check", *FLAGS))
    assert parsed["changed"] is True
    got = actions(parsed, tmp_path)
    assert (got[UNIT], got[STATE], got[CONF]) == ("would update", "would update", "unchanged")
    assert snapshot(tmp_path) == before


def test_drift_is_repaired_and_reported(tmp_path: Path) -> None:
    doc(install(tmp_path, *FLAGS))
    rendered = (tmp_path / UNIT).read_bytes()
    config_text = (tmp_path / CONF).read_bytes()
    (tmp_path / UNIT).write_text("edited\n")
    os.chmod(tmp_path / CONF, 0o644)
    os.chmod(tmp_path / CONF_DIR, 0o755)  # noqa: S103 - drift on purpose
    parsed = doc(install(tmp_path, *FLAGS))
    assert parsed["changed"] is True
    got = actions(parsed, tmp_path)
    assert (got[UNIT], got[CONF], got[CONF_DIR], got[STATE]) == ("updated", "updated", "updated", "unchanged")
    assert (tmp_path / UNIT).read_bytes() == rendered and mode(tmp_path / UNIT) == 0o644
    assert (tmp_path / CONF).read_bytes() == config_text and mode(tmp_path / CONF) == 0o640
    assert mode(tmp_path / CONF_DIR) == 0o750


def test_changed_flags_rewrite_the_config(tmp_path: Path) -> None:
    doc(install(tmp_path, *FLAGS))
    parsed = doc(install(tmp_path, *FLAGS, "--mint-mode", "create-orphan", "--set", "wait_timeout=10m"))
    assert actions(parsed, tmp_path)[CONF] == "updated" and actions(parsed, tmp_path)[UNIT] == "unchanged"
    written = tomllib.loads((tmp_path / CONF).read_text())
    assert written["mint_mode"] == "create-orphan" and written["wait_timeout"] == "10m"


def test_without_config_flags_an_existing_config_is_kept(tmp_path: Path) -> None:
    (tmp_path / CONF_DIR).mkdir(parents=True, mode=0o750)
    (tmp_path / CONF).write_text('vault_addr = "https://mine:8200"\n')
    parsed = doc(install(tmp_path))
    assert actions(parsed, tmp_path)[CONF] == "unchanged"
    assert (tmp_path / CONF).read_text() == 'vault_addr = "https://mine:8200"\n'

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    doc(install(fresh))
    assert tomllib.loads((fresh / CONF).read_text()) == {}  # all defaults


def test_config_source_is_checked_then_copied_verbatim(tmp_path: Path) -> None:
    source = tmp_path / "src.toml"
    source.write_text('# ours\nvault_addr = "https://vault.example:8200"\nperiod = "24h"\n')
    root = tmp_path / "root"
    root.mkdir()
    parsed = doc(install(root, "--config-source", str(source)))
    assert actions(parsed, root)[CONF] == "created"
    assert (root / CONF).read_bytes() == source.read_bytes() and mode(root / CONF) == 0o640
    assert doc(install(root, "--config-source", str(source)))["changed"] is False


def test_bad_config_source_is_78_on_one_line_and_writes_nothing(tmp_path: Path) -> None:
    source = tmp_path / "bad.toml"
    source.write_text('vault_adr = "https://vault.example:8200"\n')
    root = tmp_path / "root"
    root.mkdir()
    result = install(root, "--config-source", str(source))
    assert_one_line_error(result, 78, str(source), "unknown key 'vault_adr'", "did you mean 'vault_addr'")
    assert error_envelope(result.out, 78) and list(root.iterdir()) == []

    source.write_text("period = 72\n")
    assert_one_line_error(install(root, "--config-source", str(source)), 78, "period", "durations need a unit")
    missing = tmp_path / "nope.toml"
    assert_one_line_error(install(root, "--config-source", str(missing)), 78, str(missing), "not found")


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (("--vault-addr", "http://vault.example:8200"), 78, ("plain http",)),
        (("--period", "72"), 78, ("--period", "no unit")),
        (("--ca-cert", "relative/ca.pem"), 78, ("--ca-cert", "absolute path")),
        (("--set", "client_key=key.pem"), 78, ("--set client_key", "absolute path")),
        (("--set", "bogus=1"), 78, ("--set 'bogus=1'", "KEY=VALUE")),
        (("--set", "policies=root"), 78, ("'root' is not allowed",)),
        (("--config-source", "/etc/hostname", "--vault-addr", "https://v:8200"), 2, ("not both",)),
        (("--config-path", "relative.toml"), 78, ("--config-path", "absolute")),
        (("--bin", "bin/nvt"), 78, ("--bin", "absolute")),
        (("--unit-name", "nomad"), 78, ("--unit-name", ".service")),
        (("--agent", "nomad 'agent"), 78, ("--agent", "quote")),
        (("--agent", ""), 78, ("--agent is empty",)),
        (("--start-timeout", "5min\nExecStartPre=/bin/true"), 78, ("--start-timeout", "time span")),
        (("--config-path", "/etc/nomad\nx.toml"), 78, ("--config-path", "control characters")),
    ],
)
def test_bad_options_are_one_line_errors_and_write_nothing(
    tmp_path: Path, args: tuple[str, ...], code: int, needles: tuple[str, ...]
) -> None:
    result = install(tmp_path, *args)
    assert_one_line_error(result, code, *needles)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_root_is_created_like_destdir(tmp_path: Path) -> None:
    root = tmp_path / "image" / "rootfs"
    check = install(root, "--check", *FLAGS)
    assert check.code == 0 and not root.exists(), check.err  # --check writes nothing, the root included
    result = install(root, *FLAGS)
    assert result.code == 0, result.err
    assert (root / UNIT).is_file() and json.loads(result.out)["changed"] is True


def test_a_root_that_is_a_file_is_78(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert_one_line_error(install(tmp_path / "file"), 78, "--root", "not a directory")


def test_a_masked_unit_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / UNIT).parent.mkdir(parents=True)
    (tmp_path / UNIT).symlink_to("/dev/null")
    result = install(tmp_path, *FLAGS)
    assert_one_line_error(result, 78, str(tmp_path / UNIT), "symbolic link", "systemctl unmask")
    assert (tmp_path / UNIT).is_symlink() and not (tmp_path / "var").exists()


def test_custom_paths_go_into_the_unit(tmp_path: Path) -> None:
    parsed = doc(
        install(
            tmp_path,
            "--bin",
            "/opt/nvt/bin/nomad-vault-token",
            "--config-path",
            "/etc/nomad.d/token.toml",
            "--agent",
            "/usr/local/bin/nomad agent -config '/etc/nomad d'",
            "--unit-name",
            "nomad-server.service",
            "--start-timeout",
            "15min",
        )
    )
    text = (tmp_path / "etc/systemd/system/nomad-server.service").read_text()
    assert (
        "ExecStart=/opt/nvt/bin/nomad-vault-token run --config /etc/nomad.d/token.toml -- "
        "/usr/local/bin/nomad agent -config '/etc/nomad d'\n" in text
    )
    assert "TimeoutStartSec=15min\n" in text
    # /etc/nomad.d is not ours: created (it was missing) but its mode is never managed afterwards
    assert actions(parsed, tmp_path)[Path("etc/nomad.d")] == "created"
    os.chmod(tmp_path / "etc/nomad.d", 0o755)  # noqa: S103 - not ours: must stay
    again = doc(
        install(tmp_path, "--bin", "/opt/nvt/bin/nomad-vault-token", "--config-path", "/etc/nomad.d/token.toml")
    )
    assert Path("etc/nomad.d") not in actions(again, tmp_path)
    assert mode(tmp_path / "etc/nomad.d") == 0o755


def fake_systemctl(tmp_path: Path, exit_code: int = 0) -> tuple[dict[str, str], Path]:
    """A `systemctl` first on PATH that logs its arguments: the real one is never called."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    calls = tmp_path / "systemctl.calls"
    script = bindir / "systemctl"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\necho "Failed to reload daemon: Access denied" >&2\nexit {exit_code}\n'
    )
    script.chmod(0o755)
    return clean_env(PATH=f"{bindir}:{os.environ['PATH']}"), calls


def calls_of(calls: Path) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


def test_daemon_reload_only_when_the_unit_changed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    env, calls = fake_systemctl(tmp_path)
    doc(install(root, *FLAGS, env=env))
    assert calls_of(calls) == []  # --root: systemctl only when asked
    (root / UNIT).unlink()
    doc(install(root, "--systemctl", *FLAGS, env=env))
    assert calls_of(calls) == ["daemon-reload"]
    doc(install(root, "--systemctl", *FLAGS, env=env))
    doc(install(root, "--systemctl", *FLAGS, "--period", "24h", env=env))  # config only
    doc(install(root, "--systemctl", "--check", "--agent", "/bin/nomad agent", *FLAGS, env=env))
    assert calls_of(calls) == ["daemon-reload"]
    doc(install(root, "--no-systemctl", "--agent", "/bin/nomad agent", *FLAGS, env=env))
    assert calls_of(calls) == ["daemon-reload"]


def test_failed_daemon_reload_puts_the_unit_back_and_is_retried(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    env, calls = fake_systemctl(tmp_path, exit_code=1)
    result = install(root, "--systemctl", *FLAGS, env=env)
    assert_one_line_error(result, 1, "systemctl daemon-reload failed (exit 1: Failed to reload daemon", "put back")
    assert error_envelope(result.out, 1) and not (root / UNIT).exists() and (root / CONF).exists()

    doc(install(root, *FLAGS))
    original = (root / UNIT).read_bytes()
    result = install(root, "--systemctl", "--agent", "/bin/nomad agent", *FLAGS, env=env)
    assert_one_line_error(result, 1, "daemon-reload failed")
    assert (root / UNIT).read_bytes() == original  # the old unit, so the next run sees the change again

    env, calls = fake_systemctl(tmp_path, exit_code=0)
    parsed = doc(install(root, "--systemctl", "--agent", "/bin/nomad agent", *FLAGS, env=env))
    assert actions(parsed, root)[UNIT] == "updated" and calls_of(calls)[-1] == "daemon-reload"


def test_help_documents_the_result_and_exit_codes() -> None:
    result = run_cli("install", "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    for needle in ('"changed"', "would update", "78 bad config", "1 systemctl daemon-reload failed", "--root"):
        assert needle in text, needle


@pytest.mark.skipif(not Path("/usr/bin/systemd-analyze").exists(), reason="systemd-analyze is not installed")
def test_installed_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # ExecStart's binary must exist for verify: the venv's real script; the agent is an argument to it.
    doc(install(tmp_path, "--agent", f"{shutil.which('sleep') or '/bin/sleep'} infinity", *FLAGS))
    proc = subprocess.run(
        ["/usr/bin/systemd-analyze", "verify", str(tmp_path / UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_env(SYSTEMD_LOG_COLOR="0"),
        check=False,
    )
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if "nomad.service" in line]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr
