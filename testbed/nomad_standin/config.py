"""The stand-in Nomad: Config files (pyhcl)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl.parser  # pyhcl

from testbed.nomad_standin.common import (
    AGENT_FLAGS,
    DEFAULT_VAULT,
    VAULT_FLAGS,
    VAULT_KEYS,
    ConfigError,
    VaultConfig,
    go_bool,
)
from testbed.nomad_standin.flags import parse_go_flags


class _TopLevel(hcl.parser.HclParser):  # type: ignore[misc]
    """pyhcl's parser, keeping the top level's items apart.

    pyhcl folds repeated top-level blocks into one dict (losing which keys
    came from which ``vault`` block); Nomad reads each block on its own
    (config_parse.go v1.9.7:73-88, parseVaults 396-454).
    """

    items: list[tuple[Any, Any]]

    def objectlist_flat(self, lt: list[tuple[Any, Any]], replace: bool) -> Any:
        if replace:  # only the top level is flattened with replace=True
            self.items = list(lt)
        return super().objectlist_flat(lt, replace)


def top_level_items(text: str) -> list[tuple[Any, Any]]:
    """The file's top-level (key, value) items, in order. HCL1 or JSON (first character ``{``)."""
    if text.lstrip().startswith("{"):
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("error parsing: root should be an object")
        return list(doc.items())
    parser = _TopLevel()
    parser.items = []
    parser.parse(text)
    return parser.items


def _go_type(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float64", str: "string", list: "[]interface {}"}.get(
        type(value), "map[string]interface {}"
    )


def weak_decode(key: str, value: Any, kind: type) -> str | bool:
    """mapstructure.WeakDecode of one vault key (config_parse.go v1.9.7:410)."""
    if kind is bool:
        if isinstance(value, (bool, int, float)):
            return bool(value)
        if isinstance(value, str):
            parsed = go_bool(value) if value else False
            if parsed is None:
                raise ValueError(
                    f"cannot parse '{key}' as bool: strconv.ParseBool: parsing {json.dumps(value)}: invalid syntax"
                )
            return parsed
    elif isinstance(value, bool):
        return "1" if value else "0"
    elif isinstance(value, (int, float, str)):
        return str(value)
    raise ValueError(f"'{key}' expected type '{'bool' if kind is bool else 'string'}', got {_go_type(value)}")


def vault_blocks(value: Any) -> list[VaultConfig]:
    """The decoded ``vault`` block(s) of one top-level item: known keys only, empty strings dropped.

    Keys match case-insensitively (mapstructure); ``default_identity`` is
    read apart (config_parse.go v1.9.7:407) and ignored here; an empty string
    never overrides in Merge (structs/config/vault.go v1.9.7:153-215), so it
    is dropped.
    """
    blocks = value if isinstance(value, list) else [value]
    decoded: list[VaultConfig] = []
    for block in blocks:
        if not isinstance(block, dict):
            raise ValueError(f"error parsing 'vault': expected a map, got '{_go_type(block)}'")
        out: VaultConfig = {}
        for raw_key, raw in block.items():
            key = str(raw_key).lower()
            if key in VAULT_KEYS:
                try:
                    val = weak_decode(key, raw, VAULT_KEYS[key])
                except ValueError as exc:
                    raise ValueError(f"error parsing 'vault': 1 error(s) decoding:\n\n* {exc}") from None
                if val != "":
                    out[key] = val
        decoded.append(out)
    return decoded


@dataclass
class FileConfig:
    """What one config file holds that the stand-in uses."""

    path: str
    vault: list[VaultConfig] = field(default_factory=list)  # every vault block, in order
    leave_on_interrupt: bool = False
    leave_on_terminate: bool = False


def parse_config_file(path: str) -> FileConfig:
    """ParseConfigFile (config_parse.go v1.9.7:26-88), as far as the stand-in needs it.

    Raises ValueError worded as LoadConfig reports it ("Error loading <file>: ...", config.go v1.9.7:2692).
    """
    where = f"failed to decode HCL file {os.path.abspath(path)}"
    try:
        try:
            items = top_level_items(Path(path).read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        cfg = FileConfig(path)
        for key, value in items:
            if key == "vault":
                cfg.vault.extend(vault_blocks(value))
            elif key in ("leave_on_interrupt", "leave_on_terminate"):
                if not isinstance(value, bool):  # HCL1's decodeBool takes only a boolean literal
                    raise ValueError(f"{where}: {key}: unknown type for bool")
                setattr(cfg, key, value)
        return cfg
    except ValueError as exc:
        raise ValueError(f"Error loading {path}: {exc}") from None


def _is_temporary(name: str) -> bool:
    """isTemporaryFile, command/agent/config.go v1.9.7:2787-2794 (vim and emacs)."""
    return name.endswith("~") or name.startswith(".#") or (name.startswith("#") and name.endswith("#"))


def load_config_path(path: str) -> list[FileConfig]:
    """LoadConfig / LoadConfigDir (command/agent/config.go v1.9.7:2677-2770).

    A file is parsed whatever its name; a directory gives its ``*.hcl`` and
    ``*.json`` files (not subdirectories nor editors' temporary files; hidden
    files count), sorted. Raises ConfigError as readConfig reports it
    (command.go v1.9.7:258-263).
    """
    try:
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError as exc:
            raise ValueError(f"stat {path}: {(exc.strerror or str(exc)).lower()}") from None
        if not is_dir:
            return [parse_config_file(os.path.normpath(path))]
        names = sorted(
            os.path.join(path, e.name)
            for e in os.scandir(path)
            if not e.is_dir(follow_symlinks=False) and e.name.endswith((".hcl", ".json")) and not _is_temporary(e.name)
        )
        return [parse_config_file(name) for name in names]
    except ValueError as exc:
        raise ConfigError(f"Error loading configuration from {path}: {exc}") from None


def merge_vault(configs: Sequence[Mapping[str, Any]]) -> VaultConfig:
    """VaultConfig.Merge in order (structs/config/vault.go v1.9.7:153-215): every key set overrides."""
    merged: VaultConfig = {}
    for cfg in configs:
        merged.update({k: v for k, v in cfg.items() if v != "" and v is not None})
    return merged


@dataclass
class Loaded:
    """readConfig's result, as far as the stand-in needs it."""

    vault: VaultConfig  # the default cluster's block, token and namespace resolved
    token_source: str  # "flag" | "config" | "env" | "none"
    files: list[str]
    leave_on_interrupt: bool
    leave_on_terminate: bool


def read_config(args: Sequence[str], env: Mapping[str, str], version: str = "1.9") -> Loaded:
    """Nomad's readConfig (command.go v1.9.7:60-331) for the default vault cluster. Raises ConfigError."""
    flags = parse_go_flags(args)
    flag_vault: VaultConfig = {}
    for name, value in flags:
        if name in VAULT_FLAGS:
            flag_vault[VAULT_FLAGS[name]] = go_bool(value) if AGENT_FLAGS[name] else value
    files: list[FileConfig] = []
    for name, value in flags:
        if name == "config":  # in argv order, command.go v1.9.7:257-276
            files.extend(load_config_path(value))
    blocks = [b for f in files for b in f.vault]
    if version == "1.6":  # one vault block, without name or JWT path (structs/config/vault.go v1.6.10)
        blocks = [{k: v for k, v in b.items() if k not in ("name", "jwt_auth_backend_path")} for b in blocks]
    else:  # from 1.7 only the "default" (or unnamed) block is the legacy integration's
        blocks = [b for b in blocks if b.get("name", "default") == "default"]
    from_files = merge_vault(blocks)
    # the files over DefaultConfig, then the flags over the files: command.go v1.9.7:245-288
    vault = merge_vault([DEFAULT_VAULT[version], from_files, flag_vault])
    if flag_vault.get("token"):
        source = "flag"
    elif from_files.get("token"):
        source = "config"
    elif env.get("VAULT_TOKEN"):
        source = "env"
    else:
        source = "none"
    if not vault.get("token") and env.get("VAULT_TOKEN"):  # command.go v1.9.7:303-306
        vault["token"] = env["VAULT_TOKEN"]
    if not vault.get("namespace") and env.get("VAULT_NAMESPACE"):  # command.go v1.9.7:308-311
        vault["namespace"] = env["VAULT_NAMESPACE"]
    return Loaded(
        vault=vault,
        token_source=source,
        files=[f.path for f in files],
        # Config.Merge sets these only to true (command/agent/config.go v1.9.7:1553-1558)
        leave_on_interrupt=any(f.leave_on_interrupt for f in files),
        leave_on_terminate=any(f.leave_on_terminate for f in files),
    )


def _str(cfg: Mapping[str, Any], key: str) -> str:
    value = cfg.get(key, "")
    return value if isinstance(value, str) else ""
