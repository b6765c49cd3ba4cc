"""The agent's ``keyring`` blocks (Nomad 1.8.3+), read from its ``-config`` files and merged as Nomad merges
them. What they mean for the keyring token is judged elsewhere; this module only reads.

Sources are Nomad's, cited as file:line at the tag named (the same at v1.8.3, v1.9.7, v1.10.0, v2.0.5
unless said):

* ``KEKProviderConfig`` (``nomad/structs/keyring.go`` v2.0.5:292-302): the block's label is the
  provider, ``name`` and ``active`` are fields, every other key is an "extra" key that must be an HCL
  **string** (``parseKeyringConfigs``, ``command/agent/config_parse.go`` v2.0.5:618-654: "failed to
  decode key %q to string"; ``tls_skip_verify = false`` is refused, ``"false"`` is read). A block
  with no extra keys keeps a nil ``Config`` map. Each file's blocks are sorted by ID
  (``provider`` or ``provider.name``, :649-651); blocks of one file are not merged with each other.
* Files merge in Nomad's order (``mergeKEKProviderConfigs``, ``command/agent/config.go``
  v2.0.5:2250-2282): when both sides have blocks, blocks with the same provider and name merge
  (``KEKProviderConfig.Merge``, ``keyring.go`` v2.0.5:331-336): **the later file's ``active`` wins
  even when that file does not set it** (false), extra keys merge key by key, later wins; and Go
  panics when the earlier block had no extra key (a nil map) and the later one has some.
* ``active`` is decoded by hcl v1's ``decodeBool`` (``decoder.go`` :137-162): a bool, or a string or
  number reading ``1``/``true``/``0``/``false`` in any case.

The ``token`` key's value is never kept: only its form (``file://`` path, ``env://`` variable, or a
literal written in the file), as the transit wrapper reads it (``ParsePaths``, go-kms-wrapping
``wrappers/transit`` ``transit_client.go``:47-93).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.nomad import agent_config, hcl_json

TOKEN_KEY: Final = "token"  # noqa: S105 - the HCL key's name
_NOMAD_SAYS: Final = "Nomad would refuse to start: error parsing 'keyring'"


@dataclass(frozen=True)
class TokenRef:
    """Where a keyring block's token comes from. A literal's value is never kept."""

    kind: Literal["file", "env", "literal"]
    target: str  # the path after file://, the variable after env://, "" for a literal
    where: str  # the file that set it


@dataclass(frozen=True)
class KeyringBlock:
    """One keyring provider after every -config file, as Nomad merged it."""

    provider: str
    name: str = ""
    active: bool = False
    config: Mapping[str, str] = field(default_factory=dict, hash=False)  # extra keys but the token
    token: TokenRef | None = None
    where: str = ""  # the file that set the block last
    active_where: str = ""  # the file whose block decided ``active`` (the last one merged)

    @property
    def id(self) -> str:
        """``KEKProviderConfig.ID``: ``provider`` or ``provider.name`` (keyring.go v2.0.5:338-343)."""
        return f"{self.provider}.{self.name}" if self.name else self.provider


@dataclass
class _Block:
    provider: str
    name: str
    active: bool
    where: str
    active_where: str
    config: dict[str, str] = field(default_factory=dict)
    token: TokenRef | None = None
    has_extra: bool = False  # Go's Config map is not nil: some key besides name and active

    def frozen(self) -> KeyringBlock:
        return KeyringBlock(
            provider=self.provider,
            name=self.name,
            active=self.active,
            config=MappingProxyType(dict(self.config)),
            token=self.token,
            where=self.where,
            active_where=self.active_where,
        )


def load_keyring_blocks(config_paths: Sequence[str | os.PathLike[str]]) -> list[KeyringBlock]:
    """Every keyring block of ``config_paths`` (-config values, in argv order), merged as Nomad merges them.

    ConfigError when Nomad could not read a file or its keyring blocks (the same wording as the vault block's)."""
    merged: list[_Block] = []
    for raw in config_paths:
        for path in agent_config.config_files(os.fspath(raw)):
            merged = _merge(merged, _file_blocks(agent_config.parse_file(path), path))
    return [block.frozen() for block in merged]


def _file_blocks(items: list[tuple[Any, Any]], path: str) -> list[_Block]:
    blocks = [
        _decode(label, body, path) for key, value in items if key == "keyring" for label, body in _labelled(value)
    ]
    return sorted(blocks, key=lambda b: f"{b.provider}.{b.name}" if b.name else b.provider)


def _labelled(value: Any) -> list[tuple[str, list[tuple[Any, Any]]]]:
    """The (label, body) pairs one ``keyring`` item stands for: HCL ``keyring "transit" { }``, JSON
    ``"keyring": {"transit": {...}}`` (repeated labels kept), or a JSON list of either."""
    if isinstance(value, dict):  # pyhcl: a labelled block
        return [(str(label), body) for label, inner in value.items() for body in agent_config.bodies(inner)]
    if isinstance(value, hcl_json.JsonObject) and value and all(hcl_json.is_object(v) for _, v in value):
        return [(str(label), body) for label, inner in value for body in agent_config.bodies(inner)]
    if isinstance(value, list) and not isinstance(value, hcl_json.Pairs):
        return [pair for element in value for pair in _labelled(element)]
    return [("", body) for body in agent_config.bodies(value)]


def _decode(provider: str, body: list[tuple[Any, Any]], path: str) -> _Block:
    block = _Block(provider, "", False, path, path)
    what = f'agent config {path}: keyring "{provider}"'
    for key, value in body:
        if key == "name":
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise ConfigError(f'{what}: name is not a string: write name = "..." ({_NOMAD_SAYS})')
            block.name = str(value)
        elif key == "active":
            block.active = _decode_bool(value, what)
        elif not isinstance(value, str):
            shown = f'{key} = "{str(value).lower()}"' if isinstance(value, (bool, int, float)) else f'{key} = "..."'
            raise ConfigError(
                f"{what}: {key} is {_kind(value)}, not a string: Nomad reads only strings here, "
                f'write {shown} ({_NOMAD_SAYS}: failed to decode key "{key}" to string)'
            )
        else:
            block.has_extra = True
            if key == TOKEN_KEY:
                block.token = _token_ref(value, path)
            else:
                block.config[key] = value
    return block


def _decode_bool(value: Any, what: str) -> bool:
    text = str(value).lower() if isinstance(value, (bool, int, str)) else None
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise ConfigError(f"{what}: active is not a boolean: write active = true or false ({_NOMAD_SAYS})")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list) and not isinstance(value, hcl_json.Pairs):
        return "a list"
    return "a block or object"


def _token_ref(value: str, path: str) -> TokenRef:
    """ParsePaths: ``file://PATH`` is read at each use, ``env://NAME`` from the environment, else a literal."""
    text = value.strip()
    if text.startswith("file://"):
        return TokenRef("file", text.removeprefix("file://"), path)
    if text.startswith("env://"):
        return TokenRef("env", text.removeprefix("env://"), path)
    return TokenRef("literal", "", path)


def _merge(left: list[_Block], right: list[_Block]) -> list[_Block]:
    """``mergeKEKProviderConfigs``: one side empty, the other as it is; else merged by provider and name."""
    if not left:
        return right
    if not right:
        return left
    out: list[_Block] = []
    for src in [*left, *right]:
        dst = next((b for b in out if b.provider == src.provider and b.name == src.name), None)
        if dst is None:
            out.append(src)
            continue
        if not dst.has_extra and src.has_extra:
            raise ConfigError(
                f'agent config {src.where}: keyring "{src.provider}" adds keys to the block of the same name in '
                f"{dst.where}, which has none but name and active: Nomad panics merging them (a nil map in "
                "KEKProviderConfig.Merge): put the block's keys in one file, or give the first one a key of its own"
            )
        dst.active = src.active  # Merge: the later block's active, set or not
        dst.active_where = src.where
        dst.config.update(src.config)
        if src.token is not None:
            dst.token = src.token
        dst.where = src.where
    return sorted(out, key=lambda b: f"{b.provider}.{b.name}" if b.name else b.provider)
