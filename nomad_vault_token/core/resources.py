"""Files shipped in the wheel: `policies/` and `systemd/` (top-level folders in the source tree)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # nomad_vault_token/, where the wheel puts them


def data_path(folder: str, name: str) -> Path:
    """The shipped file `folder/name`: inside the installed package, else the source tree's top level."""
    for base in (_PACKAGE / folder, _PACKAGE.parent / folder):
        candidate = base / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{folder}/{name} is not shipped with this installation: reinstall nomad-vault-token")


def read_text(folder: str, name: str) -> str:
    return data_path(folder, name).read_text(encoding="utf-8")
