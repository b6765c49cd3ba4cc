"""`unseal`: Shamir unsealing of a Vault cluster's nodes, `--once` or watching (the loop is `unseal.watcher`).

Needs no token: sys/seal-status, sys/health and sys/unseal are unauthenticated. Keys come from a
file or a systemd credential (`unseal.keys`), never from argv or the environment.
"""

from __future__ import annotations

import signal
from types import FrameType

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.durations import DurationError, parse_duration
from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.results import Result


def main(settings: Settings, *, once: bool = False, settle_timeout: str | None = "60s") -> Result:
    from nomad_vault_token.unseal.watcher import Unsealer, describe

    try:
        settle = parse_duration(settle_timeout or "60s", bare_seconds=True)
    except DurationError as exc:
        raise ConfigError(f"--settle-timeout: {exc}") from None
    unsealer = Unsealer(settings)

    def stop(signum: int, frame: FrameType | None) -> None:
        unsealer.stop.set()

    signal.signal(signal.SIGTERM, stop)
    try:
        if once:
            r = unsealer.once(float(settle))
            return Result(unsealer.view(r), describe(r), r.verdict.exit_code)
        unsealer.watch()
        return Result({"stopped": True})
    finally:
        unsealer.close()
