"""`token`: log in, mint, print (or write) the server token."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from nomad_vault_token import config, log, tls
from nomad_vault_token.errors import ConfigError
from nomad_vault_token.fsutil import write_private
from nomad_vault_token.minting import login_and_mint

logger = logging.getLogger(__name__)


def main(
    config_file: Path | None,
    flags: dict[str, Any],
    *,
    output: Path | None,
    fmt: str,
    include_token: bool,
    verbose: bool,
) -> None:
    log.setup(verbose)
    if fmt not in {"text", "json"}:
        raise ConfigError(f"--format {fmt!r}: use text or json")
    if include_token and fmt != "json":
        raise ConfigError("--include-token goes with --format json")
    settings = config.load(config_file, flags)
    if output is not None:
        check_output_path(output)
    cert, key = settings.client_tls()
    for warning in tls.preflight(cert, key, settings.ca_cert, settings.cert_warn_days).warnings:
        logger.warning("%s", warning)
    secret, info = login_and_mint(settings)
    if output is not None:
        payload = secret.reveal() + "\n"
        write_private(output.absolute(), payload.encode(), "--output")
    if fmt == "json":
        doc: dict[str, Any] = {
            "accessor": info.accessor,
            "policies": list(info.policies),
            "ttl": info.ttl,
            "orphan": info.orphan,
            "period": info.effective_period,
            "renewable": info.renewable,
        }
        if include_token and output is None:
            doc["token"] = secret.reveal()
        sys.stdout.write(json.dumps(doc) + "\n")
    elif output is None:
        sys.stdout.write(secret.reveal() + "\n")


def check_output_path(output: Path) -> None:
    """Before minting: the token must have somewhere to go, or it would be minted for nothing."""
    if output.is_dir():
        raise ConfigError(f"--output {output}: is a directory: give a file path")
    parent = output.absolute().parent
    if not parent.is_dir():
        raise ConfigError(f"--output {output}: directory {parent} does not exist: create it first")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"--output {output}: directory {parent} is not writable by this user")
