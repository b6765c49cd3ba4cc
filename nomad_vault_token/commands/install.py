"""`install`: the systemd unit, the config file and the service's directories, idempotently.

Run by Ansible on each Nomad server. Looks at what is there, asks `install_plan` what differs,
writes only that (atomically), runs `systemctl daemon-reload` only when the unit changed, and
prints one JSON object describing what it did.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from nomad_vault_token.core import config
from nomad_vault_token.core.errors import EX_FAILED, EX_USAGE, ConfigError, NvtError
from nomad_vault_token.core.files import write_atomic
from nomad_vault_token.core.results import Result
from nomad_vault_token.setup import systemd_unit
from nomad_vault_token.setup.install_plan import (
    CONFIG_DIR_MODE,
    CONFIG_MODE,
    MISSING,
    PARENT_DIR_MODE,
    PRIVATE_DIR_MODE,
    UNIT_MODE,
    Seen,
    Step,
    Want,
    parents_to_create,
    plan,
    render_toml,
    under_root,
    unit_changed,
)

UNIT_DIR = Path("/etc/systemd/system")
SCRIPT = "nomad-vault-token"
SYSTEMCTL_TIMEOUT = 120


class UsageError(NvtError):
    """Options that cannot go together (2, as typer's own usage errors)."""

    exit_code = EX_USAGE


class SystemctlError(NvtError):
    """`systemctl daemon-reload` failed after the unit was written (1)."""

    exit_code = EX_FAILED


def main(
    settings: dict[str, Any],
    *,
    root: Path | None,
    dry_run: bool,
    systemctl: bool | None,
    bin_path: Path | None,
    agent_line: str | None,
    config_path: Path | None,
    unit_name: str,
    start_timeout: str,
    config_source: Path | None,
    set_values: list[str] | None,
) -> Result:
    check, agent, set_values = dry_run, agent_line, set_values or []
    base = _root(root, create=not check)
    real_config = _absolute(config_path or config.DEFAULT_CONFIG, "--config-path")
    real_bin = _bin(bin_path)
    agent_argv = _agent(agent)
    name = _unit_name(unit_name)
    _systemd_time(start_timeout)
    for value, what in (
        (str(real_bin), "--bin"),
        (str(real_config), "--config-path"),
        *[(a, "--agent") for a in agent_argv],
    ):
        _one_line(value, what)

    unit_text = systemd_unit.render(
        systemd_unit.shipped_template(), bin_path=real_bin, config=real_config, agent=agent_argv, start_timeout=start_timeout
    )
    config_content, keep_config = _config_content(config_source, settings, set_values)

    unit_path = under_root(base, UNIT_DIR / name)
    config_file = under_root(base, real_config)
    config_dir = config_file.parent
    state_dir = under_root(base, config.DEFAULT_STATE_DIR)
    runtime_dir = under_root(base, config.DEFAULT_RUNTIME_DIR)
    if config_dir in (state_dir, runtime_dir):
        raise ConfigError(f"--config-path {real_config}: keep the config out of the state and runtime directories")

    owned_config_dir = real_config.parent == config.DEFAULT_CONFIG.parent
    wants = [
        Want(p, "dir", PARENT_DIR_MODE, keep=True, quiet=True)
        for p in parents_to_create([unit_path, config_dir, state_dir, runtime_dir], base)
        if p not in (config_dir, state_dir, runtime_dir)
    ]
    wants += [
        Want(config_dir, "dir", CONFIG_DIR_MODE, keep=not owned_config_dir, quiet=not owned_config_dir),
        Want(state_dir, "dir", PRIVATE_DIR_MODE),
        Want(runtime_dir, "dir", PRIVATE_DIR_MODE),
        Want(config_file, "file", CONFIG_MODE, config_content, keep=keep_config),
        Want(unit_path, "file", UNIT_MODE, unit_text.encode()),
    ]
    seen = {w.path: _look(w.path, w.kind) for w in wants}
    steps = plan(wants, seen)

    if not check:
        for step in steps:
            _apply(step)
        run_systemctl = systemctl if systemctl is not None else root is None
        if run_systemctl and unit_changed(steps, unit_path):
            _daemon_reload(unit_path, seen[unit_path])

    changes = [{"path": str(s.want.path), "action": s.label(check)} for s in steps if s.listed]
    return Result({"changed": any(s.action != "unchanged" for s in steps), "changes": changes})


# --- options -------------------------------------------------------------------------------------


def _root(root: Path | None, *, create: bool) -> Path:
    """The install root; created (like DESTDIR) when missing, except with --check, which writes nothing."""
    if root is None:
        return Path("/")
    base = root.absolute()
    if create and not base.exists():
        try:
            base.mkdir(mode=PARENT_DIR_MODE, parents=True)
        except OSError as exc:
            raise ConfigError(f"--root {root}: cannot create it: {exc.strerror}") from None
    if base.exists() and not base.is_dir():
        raise ConfigError(f"--root {root}: not a directory: give a directory (it is created if missing)")
    return base


def _absolute(path: Path, what: str) -> Path:
    if not path.is_absolute():
        raise ConfigError(f"{what} {path}: must be an absolute path (as the installed system sees it)")
    return path


def _bin(bin_path: Path | None) -> Path:
    if bin_path is not None:
        return _absolute(bin_path, "--bin")
    # Not resolved: a venv's python is a symlink, and its scripts sit beside the link.
    script = Path(sys.executable).parent / SCRIPT
    if not script.is_file():
        raise ConfigError(f"no {SCRIPT} script next to {sys.executable}: pass --bin /path/to/{SCRIPT}")
    return script.absolute()


def _agent(agent: str | None) -> list[str]:
    if agent is None:
        return list(systemd_unit.DEFAULT_AGENT)
    try:
        argv = shlex.split(agent)
    except ValueError as exc:
        raise ConfigError(f"--agent {agent!r}: {exc}: quote it as a shell would") from None
    if not argv:
        raise ConfigError(
            "--agent is empty: give the agent's command, e.g. '/usr/bin/nomad agent -config /etc/nomad.d'"
        )
    return argv


def _unit_name(name: str) -> str:
    if "/" in name or not name.endswith(".service") or name == ".service":
        raise ConfigError(f"--unit-name {name!r}: give a file name ending in .service, e.g. nomad.service")
    _one_line(name, "--unit-name")
    return name


def _systemd_time(text: str) -> None:
    """A systemd time span: `infinity`, or numbers with units (`5min`, `1h 30s`, `300`)."""
    if text != "infinity" and not re.fullmatch(r"[0-9]+(\.[0-9]+)? *[a-z]*( *[0-9]+(\.[0-9]+)? *[a-z]*)*", text):
        raise ConfigError(f"--start-timeout {text!r}: give a systemd time span, e.g. 5min, 90s or infinity")


def _one_line(value: str, what: str) -> None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError(f"{what} {value!r}: control characters cannot go into a systemd unit")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} {value!r}: not valid UTF-8") from None


# --- the config file -----------------------------------------------------------------------------


def _config_content(source: Path | None, settings: dict[str, Any], set_values: list[str]) -> tuple[bytes, bool]:
    """The config file's bytes, and whether an existing file is to be kept as it is."""
    given = {k: v for k, v in settings.items() if v is not None}
    where = {k: f"--{k.replace('_', '-')}" for k in given}
    for item in set_values:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in config.FIELDS:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of: {', '.join(config.FIELDS)}")
        given[key] = value
        where[key] = f"--set {key}"
    for key, value in given.items():
        if config.FIELDS[key][0] == "path" and not Path(str(value).strip() or "/").is_absolute():
            raise ConfigError(f"{where[key]} {value}: give an absolute path: the service does not run from here")
    if source is not None:
        if given:
            raise UsageError("--config-source replaces the whole config file: give it or config flags, not both")
        return _copy_source(source), False
    if not given:
        return render_toml({}).encode(), True
    return _generate(given), False


def _copy_source(source: Path) -> bytes:
    if not source.is_file():
        raise ConfigError(f"--config-source {source}: file not found (or not a regular file)")
    config.load(source, environ={})  # the same checks `run` makes, naming the file and key
    try:
        return source.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--config-source {source}: cannot read: {exc.strerror}") from None


def _generate(given: dict[str, Any]) -> bytes:
    # Flags first: an error then names the flag, not a temporary file.
    settings = config.load(Path(os.devnull), given, environ={})
    values: dict[str, Any] = {}
    for key, (kind, _choices) in config.FIELDS.items():
        if key not in given:
            continue
        typed = getattr(settings, key)
        if kind == "path":
            values[key] = str(typed)
        elif kind in ("list", "bool", "int"):
            values[key] = list(typed) if kind == "list" else typed
        else:  # str, choice, duration: as given, so "72h" stays "72h"
            values[key] = str(given[key]).strip()
    for key, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                _one_line(item, f"config key {key}")
    text = render_toml(values)
    with tempfile.TemporaryDirectory(prefix="nvt-install-") as tmp:
        generated = Path(tmp) / "config.toml"
        generated.write_text(text, encoding="utf-8")
        try:
            config.load(generated, environ={})
        except ConfigError as exc:  # pragma: no cover - render_toml and load disagree: a bug
            raise ConfigError(f"the generated config does not load back ({exc.message}): please report this") from None
    return text.encode("utf-8")


# --- the disk ------------------------------------------------------------------------------------


def _look(path: Path, kind: str) -> Seen:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return MISSING
    except NotADirectoryError:
        raise ConfigError(f"{path}: a parent of it is not a directory: move it away or choose another path") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied: run install as root (or use --root)") from None
    seen = Seen.from_stat(st.st_mode)
    if seen.found == "symlink" and kind == "dir" and path.is_dir():
        return Seen.from_stat(path.stat().st_mode)  # a state directory on another disk is fine
    if seen.found == "file" and kind == "file":
        try:
            return Seen.from_stat(st.st_mode, path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}: run install as root (or use --root)") from None
    return seen


def _apply(step: Step) -> None:
    want = step.want
    if step.action == "unchanged":
        return
    try:
        if want.kind == "dir":
            if step.action == "create":
                want.path.mkdir(mode=want.mode)
            os.chmod(want.path, want.mode)  # mkdir's mode is cut by the umask
        elif step.rewrite:
            write_atomic(want.path, want.content, want.mode)
        else:
            os.chmod(want.path, want.mode)
    except PermissionError:
        raise ConfigError(f"{want.path}: permission denied: run install as root (or use --root)") from None
    except OSError as exc:
        raise ConfigError(f"{want.path}: cannot write: {exc.strerror}") from None


def _daemon_reload(unit_path: Path, before: Seen) -> None:
    """`systemctl daemon-reload`; on failure put the unit back as it was, so the next install tries again."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        problem = "systemctl not found"
    else:
        try:
            proc = subprocess.run(
                [systemctl, "daemon-reload"],
                capture_output=True,
                text=True,
                timeout=SYSTEMCTL_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            problem = f"systemctl daemon-reload did not finish in {SYSTEMCTL_TIMEOUT}s"
        except OSError as exc:
            problem = f"systemctl daemon-reload could not start: {exc.strerror}"
        else:
            if proc.returncode == 0:
                return
            detail = " ".join((proc.stderr or proc.stdout).split())
            problem = f"systemctl daemon-reload failed (exit {proc.returncode}{': ' + detail if detail else ''})"
    try:
        if before.content is None:
            unit_path.unlink()
        else:
            write_atomic(unit_path, before.content, before.mode if before.mode is not None else UNIT_MODE)
        undone = f"{unit_path} was put back as it was"
    except OSError as exc:
        undone = f"{unit_path} could not be put back ({exc.strerror}): run `systemctl daemon-reload` by hand"
    raise SystemctlError(f"{problem}: {undone}; fix systemd and run install again, or pass --no-systemctl")
