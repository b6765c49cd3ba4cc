"""`token`: log in, mint, print (or write) the server token."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.files import write_private
from nomad_vault_token.core.results import Result
from nomad_vault_token.token.minting import login_and_mint
from nomad_vault_token.vault import tls
from nomad_vault_token.vault.client import Vault

logger = logging.getLogger(__name__)


def main(
    settings: Settings, *, output: Path | None, fmt: str, include_token: bool, keyring_token: bool = False
) -> Result:
    if include_token and fmt != "json":
        raise ConfigError("--include-token goes with --format json")
    if output is not None:
        check_output_path(output)
    cert, key = settings.client_tls()
    for warning in tls.preflight(cert, key, settings.ca_cert, settings.cert_warn_days).warnings:
        logger.warning("%s", warning)
    if keyring_token:  # the keyring token: written as Nomad reads file:// tokens, every byte is the token
        from nomad_vault_token.nomad.keyring_file import render
        from nomad_vault_token.token.minting import Login, mint_keyring

        vault = Vault(settings)
        login = Login(vault)
        try:
            secret, info = mint_keyring(vault, login)
        finally:
            login.drop()
        payload = render(secret)
    else:
        secret, info = login_and_mint(Vault(settings))
        payload = (secret.reveal() + "\n").encode()
    if output is not None:
        write_private(output.absolute(), payload, "--output")
    doc: dict[str, object] = {
        "accessor": info.accessor,
        "policies": list(info.policies),
        "ttl": info.ttl,
        "orphan": info.orphan,
        "period": info.effective_period,
        "renewable": info.renewable,
    }
    if include_token and output is None:
        doc["token"] = secret.reveal()
    return Result(doc, text="" if output is not None else secret.reveal())


def check_output_path(output: Path) -> None:
    """Before minting: the token must have somewhere to go, or it would be minted for nothing."""
    if output.is_dir():
        raise ConfigError(f"--output {output}: is a directory: give a file path")
    parent = output.absolute().parent
    if not parent.is_dir():
        raise ConfigError(f"--output {output}: directory {parent} does not exist: create it first")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"--output {output}: directory {parent} is not writable by this user")
