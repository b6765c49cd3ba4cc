"""run's TLS preflight remembered by the files' digests: skipped only while nothing it judged has changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nomad_vault_token.core import config
from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.token import tls_verdict
from testbed.bao import Certs


def settings_for(tmp_path: Path, cert: Path, key: Path, ca: Path | None) -> config.Settings:
    return config.Settings(client_cert=cert, client_key=key, ca_cert=ca, state_dir=tmp_path / "state")


@pytest.fixture
def s(tmp_path: Path, certs: Certs) -> config.Settings:
    (tmp_path / "state").mkdir(mode=0o700)
    return settings_for(tmp_path, certs.client_cert, certs.client_key, certs.ca_path)


def test_a_full_check_leaves_a_private_verdict_without_secrets(s: config.Settings, certs: Certs) -> None:
    assert tls_verdict.preflight(s) == ()
    assert s.verdict_file.stat().st_mode & 0o777 == 0o600
    doc = json.loads(s.verdict_file.read_text())
    assert set(doc) == {"version", "digest", "not_before", "not_after"}
    assert certs.client_key.read_text().split("\n")[1] not in s.verdict_file.read_text()


def test_unchanged_files_skip_cryptography(s: config.Settings, tmp_path: Path) -> None:
    tls_verdict.preflight(s)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from nomad_vault_token.core import config\nfrom nomad_vault_token.token import tls_verdict\n"
        f"s = config.Settings(client_cert=Path({str(s.client_cert)!r}), client_key=Path({str(s.client_key)!r}), "
        f"ca_cert=Path({str(s.ca_cert)!r}), state_dir=Path({str(s.state_dir)!r}))\n"
        "tls_verdict.preflight(s)\n"
        "print(sorted(m for m in sys.modules if m.startswith('cryptography')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out


def test_the_key_mode_is_checked_every_time(s: config.Settings, tmp_path: Path) -> None:
    tls_verdict.preflight(s)
    key = tmp_path / "key.pem"
    key.write_bytes(Path(str(s.client_key)).read_bytes())
    key.chmod(0o600)
    same = settings_for(tmp_path, Path(str(s.client_cert)), key, s.ca_cert)
    tls_verdict.preflight(same)  # a new verdict for these paths
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="lets others read the key"):
        tls_verdict.preflight(same)


def test_a_changed_byte_means_a_full_check(s: config.Settings, tmp_path: Path, certs: Certs) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(Path(str(s.client_cert)).read_bytes())
    mine = settings_for(tmp_path, cert, Path(str(s.client_key)), s.ca_cert)
    tls_verdict.preflight(mine)
    other_cert, _ = certs.issue_client("someone-else")
    cert.write_bytes(other_cert.read_bytes())  # a certificate the key does not match
    with pytest.raises(ConfigError, match="does not match client_cert"):
        tls_verdict.preflight(mine)


def test_the_validity_window_is_judged_now_from_the_kept_dates(s: config.Settings) -> None:
    tls_verdict.preflight(s)
    doc = json.loads(s.verdict_file.read_text())
    not_after = datetime.fromisoformat(doc["not_after"])
    with pytest.raises(ConfigError, match="expired on"):
        tls_verdict.preflight(s, now=not_after + timedelta(seconds=1))
    (warning,) = tls_verdict.preflight(s, now=not_after - timedelta(days=3))
    assert "expires in 2 days" in warning or "expires in 3 days" in warning
    assert tls_verdict.preflight(s, now=datetime.now(UTC)) == ()


def test_a_corrupt_or_unwritable_verdict_is_only_a_cache(s: config.Settings) -> None:
    s.verdict_file.write_text("{not json")
    assert tls_verdict.preflight(s) == ()
    assert json.loads(s.verdict_file.read_text())["version"] == 1
    if os.geteuid() != 0:  # root writes anyway
        s.state_dir.chmod(0o500)
        assert tls_verdict.preflight(s) == ()
