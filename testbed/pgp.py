"""Real PGP keys for the `init --pgp-key` tests: GnuPG (Debian package `gnupg`) in a private GNUPGHOME.

Each holder is an RSA key with an encryption subkey (OpenBao refuses a key without one: NOMAD-FACTS.md,
"OpenBao facts measured here"), no passphrase, exported binary (`gpg --export`) as `pgp_keys` wants it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from testbed import procs


def available() -> bool:
    return shutil.which("gpg") is not None


class GnuPG:
    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _gpg(self, *args: str, data: bytes | None = None) -> bytes:
        env = {**os.environ, "GNUPGHOME": str(self.home)}
        done = subprocess.run(
            ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", *args],
            input=data,
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"gpg {args[0]}: {done.stderr.decode(errors='replace')}"
        return done.stdout

    def new_key(self, name: str, out: Path, armor: bool = False) -> Path:
        """An RSA key for `name` with an encryption subkey; its public part exported to `out`."""
        uid = f"{name} <{name}@example.test>"
        self._gpg("--quick-gen-key", uid, "rsa2048", "sign,cert", "never")
        fpr = self.fingerprint(uid)
        self._gpg("--quick-add-key", fpr, "rsa2048", "encr", "never")
        out.write_bytes(self._gpg(*(["--armor"] if armor else []), "--export", fpr))
        return out

    def fingerprint(self, uid: str) -> str:
        for line in self._gpg("--with-colons", "--list-keys", uid).decode().splitlines():
            if line.startswith("fpr:"):
                return line.split(":")[9]
        raise AssertionError(f"no key for {uid}")

    def decrypt(self, data: bytes) -> bytes:
        return self._gpg("--decrypt", data=data)

    def agent_pids(self) -> list[int]:
        """The gpg-agent that gpg started for this home (a daemon: it outlives every gpg call)."""
        mark = f" --homedir {self.home} "  # each argument is followed by one space: no other home's prefix
        return [p.pid for p in procs.mentioning(mark) if p.argv and os.path.basename(p.argv[0]) == "gpg-agent"]

    def close(self) -> None:
        """Stop this home's gpg-agent by its PID (gpg leaves it running): SIGTERM, then SIGKILL if it stays."""
        procs.stop_all(self.agent_pids())
