"""examples/ansible/ with real ansible-core against localhost: install under a temporary root, twice."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from nomad_vault_token.core import config
from nomad_vault_token.setup import systemd_unit
from testbed.env import clean_env

PLAYBOOK = Path(__file__).resolve().parents[2] / "examples" / "ansible" / "playbook.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
VENV = Path(sys.executable).parent.parent  # not resolved: the venv, not the Python it links to
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs a venv: the playbook pip-installs into it"),
    pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="ansible-core is not installed in this venv"),
]


def playbook(tmp_path: Path, root: Path, *extra: str) -> tuple[int, int, str]:
    """Run the example playbook; (changed, failed) from its recap, and its output."""
    home = tmp_path / "ansible"
    for sub in ("local", "remote", "home"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    cfg = home / "ansible.cfg"
    cfg.write_text("")  # no ansible.cfg from the machine or the user
    variables = {
        "nvt_hosts": "localhost",
        "nvt_become": False,
        # The test venv already holds the package: pip runs and finds it there.
        "nvt_venv": str(VENV),
        "nvt_package": "nomad-vault-token",
        "nvt_root": str(root),
        "nvt_manage_service": False,
        "nvt_settings": {
            "vault_addr": "https://vault.example:8200",
            "policies": ["nomad_cluster", "extra"],
            "wait_timeout": "10m",
            "allow_insecure_http": False,
        },
        "ansible_python_interpreter": sys.executable,
    }
    varfile = home / "vars.json"
    varfile.write_text(json.dumps(variables))
    env = clean_env(
        ANSIBLE_CONFIG=str(cfg),
        ANSIBLE_HOME=str(home / "home"),
        ANSIBLE_LOCAL_TEMP=str(home / "local"),
        ANSIBLE_REMOTE_TEMP=str(home / "remote"),
        ANSIBLE_NOCOWS="1",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_HOST_KEY_CHECKING="0",
        PIP_NO_INDEX="1",  # the package is already there: never reach for an index
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", "-e", f"@{varfile}", *extra, str(PLAYBOOK)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    output = proc.stdout + proc.stderr
    match = RECAP.search(proc.stdout)
    assert match, output
    assert proc.returncode == 0, output
    return int(match.group(2)), int(match.group(4)), output


def test_playbook_installs_once_then_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()

    changed, failed, output = playbook(tmp_path, root)
    assert changed > 0 and failed == 0, output
    assert "Install nomad-vault-token into its virtualenv" in output  # the pip task ran
    unit_file = root / "etc/systemd/system/nomad.service"
    expected = systemd_unit.render(
        systemd_unit.shipped_template(), bin_path=VENV / "bin" / "nomad-vault-token", config=config.DEFAULT_CONFIG
    )
    assert unit_file.read_text() == expected
    assert tomllib.loads((root / "etc/nomad-vault-token/config.toml").read_text()) == {
        "vault_addr": "https://vault.example:8200",
        "allow_insecure_http": False,
        "policies": ["nomad_cluster", "extra"],
        "wait_timeout": "10m",
    }
    assert (root / "var/lib/nomad-vault-token").is_dir() and (root / "run/nomad-vault-token").is_dir()

    changed, failed, output = playbook(tmp_path, root)
    assert (changed, failed) == (0, 0), output

    # Ansible's check mode asks install --check: the drift is reported, not repaired.
    unit_file.write_text("edited\n")
    changed, failed, output = playbook(tmp_path, root, "--check")
    assert (changed, failed) == (1, 0), output
    assert unit_file.read_text() == "edited\n"
