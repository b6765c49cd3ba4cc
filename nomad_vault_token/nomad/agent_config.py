"""The agent's merged default ``vault`` block, read from its ``-config`` files as Nomad reads them.

``load_vault_block`` reads files (pyhcl is imported only when a file is parsed); what the block
means for the hand-off is ``agent_findings``. Sources are Nomad's, cited as file:line at the tag named:

* ``-config`` values merge in argv order (``command/agent/command.go`` v1.9.7:257-277), then the
  command line's ``-vault-*`` flags over them (288).
* A file path is parsed as HCL whatever its extension (``command/agent/config.go``
  v1.9.7:2681-2699). A directory contributes the ``*.hcl`` and ``*.json`` entries directly in it
  (no recursion; a sub-directory is skipped, a symlink is not), hidden files included, emacs lock
  files (``.#name``) excluded, sorted by path (2703-2770, ``isTemporaryFile`` 2790-2794).
* Nomad's agent config is HCL1; a file whose first non-blank character is ``{`` is JSON.
* From 1.7 each ``vault`` block is decoded with ``mapstructure.WeakDecode`` (``config_parse.go``
  v1.9.7:396-428): an unnamed block is ``"default"``, the one the legacy token integration uses;
  blocks with the same name merge. In 1.6 there is one ``vault`` struct (``config.go`` v1.6.0:141)
  and a ``name`` is ignored; named blocks only make sense from 1.7, so they are skipped here.
* Merging (``nomad/structs/config/vault.go`` v1.9.7:153-215; v1.6.0:109-155): a later non-empty
  string wins, a later boolean wins whenever it is set (``enabled = false`` overrides ``true``),
  an empty string never overrides.

No token value is ever kept: only whether one is set, and where.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.nomad import hcl_json
from nomad_vault_token.nomad.hcl_json import JsonObject as _JsonObject
from nomad_vault_token.nomad.hcl_json import Pairs as _Pairs

if TYPE_CHECKING:
    from nomad_vault_token.nomad.argv import AgentArgv

DEFAULT_ADDRESS: Final = "https://vault.service.consul:8200"  # structs/config/vault.go v1.9.7:131, v1.6.0:91
DEV_VAULT_ADDRESS: Final = "http://localhost:8200"  # -dev-vault: command/agent/config.go v1.9.7:1371
DEFAULT_CLUSTER: Final = "default"  # structs.VaultDefaultCluster; config_parse.go v1.9.7:414-416
DEFAULT_TASK_TOKEN_TTL: Final = "72h"  # noqa: S105 - a TTL; nomad/vault.go:43 (defaultTokenTTL)
MIN_TASK_TOKEN_TTL_NS: Final = 5 * 60 * 10**9  # nomad/vault.go:38 (minimumTokenTTL)

TOKEN_KEY: Final = "token"  # noqa: S105 - the HCL key's name
_STRING_KEYS: Final = (
    "address",
    "namespace",
    "create_from_role",
    "task_token_ttl",
    "ca_file",
    "ca_path",
    "cert_file",
    "key_file",
    "tls_server_name",
)
_BOOL_KEYS: Final = ("enabled", "allow_unauthenticated", "tls_skip_verify")
# The agent's -vault-* flags and the key each sets (command/agent/command.go v1.9.7:177-200).
FLAG_KEYS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "vault-enabled": "enabled",
        "vault-allow-unauthenticated": "allow_unauthenticated",
        "vault-token": TOKEN_KEY,
        "vault-address": "address",
        "vault-namespace": "namespace",
        "vault-create-from-role": "create_from_role",
        "vault-ca-file": "ca_file",
        "vault-ca-path": "ca_path",
        "vault-cert-file": "cert_file",
        "vault-key-file": "key_file",
        "vault-tls-skip-verify": "tls_skip_verify",
        "vault-tls-server-name": "tls_server_name",
    }
)
_DIR_SUFFIXES: Final = (".hcl", ".json")  # config.go v1.9.7:2737-2741, case-sensitive
_GO_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # strconv.ParseBool
_GO_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass(frozen=True)
class Note:
    """A file Nomad reads, but not as it seems to say: a warning, with what to change."""

    message: str  # names the file, line and column where known
    fix: str


_READ_PAST_FIX: Final = "fix the file: Nomad starts without the part it did not read"
# Nomad before 1.11.3 / 2.0.0: hcl.Decode leaks a JSON vault object's default_identity key into the
# top-level unknown keys, and extraKeys refuses the file (command/agent/config_parse.go v1.9.7:277-360;
# fixed by hashicorp/nomad#27595, v1.11.3:385-390). A "vault": [ {...} ] list does not leak it
# (v1.9.7 testdata/basic.json:398-423 parses).
_DEFAULT_IDENTITY_LEAK: Final = (
    'vault.default_identity inside a JSON "vault": {...} object: Nomad before 1.11.3 refuses to start '
    'with this file ("unexpected keys default_identity", hashicorp/nomad#27595)'
)


@dataclass(frozen=True)
class VaultBlock:
    """The default vault block after every -config file and -vault-* flag. None = nobody set it.

    ``origin`` maps each key someone set (HCL names: ``enabled``, ``token``, ...) to the file
    that set it last, or ``flag -vault-xxx`` / ``flag -dev-vault``. The token's value is never
    kept: ``token_set`` says whether a file or ``-vault-token`` gives a non-empty one.
    """

    enabled: bool | None = None
    address: str | None = None
    namespace: str | None = None
    create_from_role: str | None = None
    token_set: bool = False
    allow_unauthenticated_setting: bool | None = None
    task_token_ttl: str | None = None
    ca_file: str | None = None
    ca_path: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_skip_verify: bool | None = None
    tls_server_name: str | None = None
    origin: Mapping[str, str] = field(default_factory=dict, hash=False)
    files: tuple[str, ...] = ()  # every file parsed, in Nomad's order
    notes: tuple[Note, ...] = ()  # what Nomad reads otherwise than the file seems to say

    @property
    def is_enabled(self) -> bool:
        """Nomad's IsEnabled: unset is false (structs/config/vault.go v1.9.7:139-144)."""
        return self.enabled is True

    @property
    def effective_address(self) -> str:
        return self.address or DEFAULT_ADDRESS

    @property
    def allow_unauthenticated(self) -> bool:
        """Unset is true: DefaultVaultConfig (structs/config/vault.go v1.9.7:134) is merged under the files."""
        return self.allow_unauthenticated_setting is not False

    def where(self, key: str) -> str:
        return self.origin.get(key, "")


# --- loading -----------------------------------------------------------------------------------


def load_vault_block(config_paths: Sequence[str | os.PathLike[str]], flags: AgentArgv | None = None) -> VaultBlock:
    """The merged default vault block of ``config_paths`` (-config values, in argv order), with
    the argv's -vault-* flags over it. ConfigError when Nomad could not load a path either."""
    merged = _Merged()
    if flags is not None and flags.dev_vault:
        # -dev-vault starts from DevConfig (command/agent/config.go v1.9.7:1369-1371), under the files.
        merged.set("enabled", True, "flag -dev-vault")
        merged.set("address", DEV_VAULT_ADDRESS, "flag -dev-vault")
    files: list[str] = []
    notes: list[Note] = []
    for raw in config_paths:
        for path in config_files(os.fspath(raw)):
            files.append(path)
            for block in _default_blocks(parse_file(path, notes), path):
                merged.merge(block, path)
    if flags is not None:
        for name, value in flags.vault_flags.items():
            key = FLAG_KEYS.get(name)
            if key is not None and key != TOKEN_KEY:
                merged.set(key, value, f"flag -{name}")
        if flags.vault_token_set:
            merged.token("flag -vault-token")
    return merged.block(tuple(files), tuple(notes))


class _Merged:
    """VaultConfig.Merge applied layer by layer, remembering who set each key."""

    def __init__(self) -> None:
        self.values: dict[str, str | bool] = {}
        self.origin: dict[str, str] = {}
        self.token_set = False

    def set(self, key: str, value: str | bool, origin: str) -> None:
        if value == "" and isinstance(value, str):  # an empty string never overrides (vault.go:153-215)
            return
        self.values[key] = value
        self.origin[key] = origin

    def token(self, origin: str) -> None:
        self.token_set = True
        self.origin[TOKEN_KEY] = origin

    def merge(self, block: Mapping[str, str | bool], origin: str) -> None:
        for key, value in block.items():
            if key == TOKEN_KEY:
                if value:
                    self.token(origin)
            else:
                self.set(key, value, origin)

    def block(self, files: tuple[str, ...], notes: tuple[Note, ...]) -> VaultBlock:
        v = self.values
        return VaultBlock(
            enabled=_opt_bool(v.get("enabled")),
            address=_opt_str(v.get("address")),
            namespace=_opt_str(v.get("namespace")),
            create_from_role=_opt_str(v.get("create_from_role")),
            token_set=self.token_set,
            allow_unauthenticated_setting=_opt_bool(v.get("allow_unauthenticated")),
            task_token_ttl=_opt_str(v.get("task_token_ttl")),
            ca_file=_opt_str(v.get("ca_file")),
            ca_path=_opt_str(v.get("ca_path")),
            cert_file=_opt_str(v.get("cert_file")),
            key_file=_opt_str(v.get("key_file")),
            tls_skip_verify=_opt_bool(v.get("tls_skip_verify")),
            tls_server_name=_opt_str(v.get("tls_server_name")),
            origin=MappingProxyType(dict(self.origin)),
            files=files,
            notes=notes,
        )


def _opt_str(value: str | bool | None) -> str | None:
    return value if isinstance(value, str) else None


def _opt_bool(value: str | bool | None) -> bool | None:
    return value if isinstance(value, bool) else None


def config_files(path: str) -> list[str]:
    """The files one -config value stands for (LoadConfig / LoadConfigDir, config.go v1.9.7:2681-2770)."""
    shown = path or '""'
    nomad_says = f'Nomad would refuse to start: "Error loading configuration from {shown}"'
    try:
        mode = os.stat(path).st_mode  # os.Stat follows symlinks, as here
    except FileNotFoundError:
        raise ConfigError(
            f"agent -config {shown}: no such file or directory: fix the -config after -- ({nomad_says})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"agent -config {shown}: {exc.strerror}: fix the -config after -- ({nomad_says})") from None
    if not stat.S_ISDIR(mode):
        return [path]
    try:
        with os.scandir(path) as entries:
            names = [
                e.name
                for e in entries
                if not e.is_dir(follow_symlinks=False)  # Readdir is lstat: a symlink to a dir is kept
                and e.name.endswith(_DIR_SUFFIXES)
                and not e.name.startswith(".#")  # isTemporaryFile; "~" and "#...#" never end in .hcl/.json
            ]
    except PermissionError:
        raise ConfigError(
            f"agent -config {path}: permission denied listing the directory: "
            f"make it readable by the user that runs Nomad ({nomad_says})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"agent -config {path}: cannot list the directory: {exc.strerror} ({nomad_says})") from None
    names.sort(key=os.fsencode)  # sort.Strings on the joined paths: byte order
    return [os.path.join(path, name) for name in names]


def parse_file(path: str, notes: list[Note] | None = None) -> list[tuple[Any, Any]]:
    """The file's top-level items in source order, repeated keys kept. ConfigError on any failure.

    What Nomad's JSON reader goes past without reading (a missing comma: the rest of the file) is
    added to ``notes``, one line each: Nomad starts with such a file, without that part."""
    nomad_says = "Nomad would refuse to start with it"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except PermissionError:
        raise ConfigError(
            f"agent config {path}: permission denied: make it readable by the user that runs Nomad ({nomad_says})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"agent config {path}: cannot read: {exc.strerror} ({nomad_says})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"agent config {path}: not UTF-8 text: save it as UTF-8 ({nomad_says})") from None
    if not text.strip():
        return []
    if hcl_json.is_json(text):  # HCL1's lexMode
        try:
            top, ignored = hcl_json.parse(text)
        except hcl_json.HclJsonError as exc:
            raise ConfigError(
                f"agent config {path}: not valid JSON to Nomad ({exc}): fix the file ({nomad_says})"
            ) from None
        if notes is not None:
            notes.extend(
                Note(
                    f"agent config {path}: line {p.line}, column {p.column}: Nomad reads past {p.what}", _READ_PAST_FIX
                )
                for p in ignored
            )
            notes.extend(_leaks(top, path))
        return list(top)
    try:
        top = _hcl_parser().parse(text)
    except Exception as exc:  # pyhcl raises ValueError; PLY internals may raise others
        raise ConfigError(
            f"agent config {path}: not valid HCL ({_hcl_reason(exc, text)}): fix the file ({nomad_says})"
        ) from None
    if isinstance(top, _Pairs):
        return list(top)
    return list(top.items()) if isinstance(top, dict) else []  # pyhcl without our hook: merged dict


@lru_cache(maxsize=1)
def _hcl_parser() -> Any:
    """One pyhcl parser for the process: building it costs ~25 ms (PLY builds its tables).

    pyhcl's ``objectlist_flat`` folds an object's items into a dict, merging repeated blocks
    into one another (``vault { name = "x" }`` followed by ``vault { address = ... }`` becomes
    one block named "x"). Replaced on this instance, every object keeps its items in order, as
    Nomad's own HCL parser does; the grammar is untouched.
    """
    from hcl.parser import HclParser  # pyhcl: imported only when a file is parsed

    parser = HclParser()
    parser.objectlist_flat = lambda items, replace: _Pairs(items)
    return parser


_PYHCL_POS = re.compile(r"^Line (\d+), column (\d+)(?:, index (\d+))?: (.*)$", re.S)
_PYHCL_REDACT: Final = (
    ("Illegal character", "illegal character"),
    ("Expected '//' for comment", "a lone '/' (comments start with // or #)"),
    ("Heredoc must start with '<<'", "a lone '<' (heredocs start with <<)"),
)


def _hcl_reason(exc: Exception, text: str) -> str:
    """pyhcl's message as one line, with a real column and no character of the file echoed."""
    message = " ".join(str(exc).split())
    match = _PYHCL_POS.match(message)
    if not match:
        return message if isinstance(exc, ValueError) else f"pyhcl failed: {type(exc).__name__}"
    line, column, index, reason = match.groups()
    if index is None:  # parser errors put the absolute offset where the column belongs
        offset = int(column)
        column = str(offset - text.rfind("\n", 0, offset))
    for prefix, replacement in _PYHCL_REDACT:
        if reason.startswith(prefix):
            reason = replacement
    return f"line {line}, column {column}: {reason}"


def _leaks(top: _JsonObject, path: str) -> list[Note]:
    """A JSON file's vault objects (not lists) holding default_identity: refused before Nomad 1.11.3."""
    return [
        Note(
            f"agent config {path}: {_DEFAULT_IDENTITY_LEAK}",
            'write the block as a list, "vault": [ { ... } ], which every Nomad reads',
        )
        for key, value in top
        if key == "vault"
        and isinstance(value, _JsonObject)
        and not all(hcl_json.is_object(v) for _, v in value)
        and any(k == "default_identity" for k, _ in value)
    ]


def _default_blocks(items: list[tuple[Any, Any]], path: str) -> list[dict[str, str | bool]]:
    """The file's vault blocks of the default cluster, each weakly decoded, in order."""
    blocks: list[dict[str, str | bool]] = []
    for key, value in items:
        if key != "vault":
            continue
        for body in bodies(value):
            decoded = _decode(body, path)
            if decoded.pop("name", "") in ("", DEFAULT_CLUSTER):
                blocks.append(decoded)
    return blocks


def bodies(value: Any) -> list[list[tuple[Any, Any]]]:
    """The bodies of the blocks one ``vault`` item stands for.

    HCL: ``vault { ... }`` is one body; ``vault "label" { ... }`` a dict {label: body}, and Nomad
    ignores the label (parseVaults reads only the value). JSON: a list whose elements are all
    objects is repeated blocks, an object whose values are all objects is labels
    (hashicorp/hcl json/parser/flatten.go, flattenListType / flattenObjectType).
    """
    if isinstance(value, _JsonObject):
        if value and all(hcl_json.is_object(v) for _, v in value):
            return [b for _, v in value for b in bodies(v)]
        return [list(value)]
    if isinstance(value, _Pairs):
        return [list(value)]
    if isinstance(value, list):
        if value and all(isinstance(v, (_Pairs, dict)) for v in value):
            return [b for v in value for b in bodies(v)]
        return [[("", value)]]  # not a block: _decode reports it
    if isinstance(value, dict):
        if value and all(isinstance(v, (_Pairs, dict)) for v in value.values()) and not _is_body(value):
            return [b for v in value.values() for b in bodies(v)]
        return [list(value.items())]
    return [[("", value)]]


def _is_body(value: Mapping[str, Any]) -> bool:
    """A pyhcl dict (hook not applied) that holds Vault keys is a body, not labels."""
    return any(k in _STRING_KEYS or k in _BOOL_KEYS or k in (TOKEN_KEY, "name") for k in value)


def _decode(body: list[tuple[Any, Any]], path: str) -> dict[str, str | bool]:
    """mapstructure.WeakDecode of one block (config_parse.go v1.9.7:402-413): a later repeated key wins."""
    out: dict[str, str | bool] = {}
    for key, value in body:
        if key == "":
            raise ConfigError(
                f"agent config {path}: vault is not a block: write vault {{ ... }} "
                f"(Nomad would refuse to start: error parsing 'vault')"
            )
        if key in _BOOL_KEYS:
            out[key] = _weak_bool(key, value, path)
        elif key in _STRING_KEYS or key in (TOKEN_KEY, "name"):
            out[key] = _weak_str(key, value, path)
    return out


def _weak_bool(key: str, value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        if value in _GO_TRUE:
            return True
        if value in _GO_FALSE or value == "":
            return False
        shown = json.dumps(value[:40])
        raise ConfigError(
            f"agent config {path}: vault.{key} = {shown} is not a boolean: write {key} = true or false "
            f"(Nomad would refuse to start: error parsing 'vault')"
        )
    raise ConfigError(
        f"agent config {path}: vault.{key} is {_kind(value)}, not a boolean: write {key} = true or false "
        f"(Nomad would refuse to start: error parsing 'vault')"
    )


def _weak_str(key: str, value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        from decimal import Decimal  # strconv.FormatFloat(f, 'f', -1, 64): no exponent

        return format(Decimal(repr(value)), "f")
    if isinstance(value, str):
        return value
    # The value is never shown: this may be the token.
    raise ConfigError(
        f'agent config {path}: vault.{key} is {_kind(value)}, not a string: write {key} = "..." '
        f"(Nomad would refuse to start: error parsing 'vault')"
    )


def _kind(value: Any) -> str:
    return "a block or object" if isinstance(value, (dict, _Pairs)) else "a list"


# --- vault.default_identity (workload identity, Nomad 1.7+) ------------------------------------


@dataclass(frozen=True)
class DefaultIdentity:
    """The default vault block's ``default_identity`` after every -config file: what the servers give jobs
    registered from then on (``nomad/structs/config/vault.go`` v1.9.7:93-96; merged 197-202)."""

    aud: tuple[str, ...] = ()
    ttl: str = ""
    extra_claims: Mapping[str, str] = field(default_factory=dict, hash=False)
    where: str = ""  # the file that set it last


def load_default_identity(config_paths: Sequence[str | os.PathLike[str]]) -> DefaultIdentity | None:
    """The merged ``vault { default_identity { ... } }`` of the default cluster, or None when no file sets one.

    A later file's ``aud``/``ttl`` win when set; ``extra_claims`` merge key by key, later wins
    (``WorkloadIdentityConfig.Merge``, ``nomad/structs/config/workload_id.go`` v1.9.7)."""
    found: DefaultIdentity | None = None
    for raw in config_paths:
        for path in config_files(os.fspath(raw)):
            for key, value in parse_file(path):
                if key != "vault":
                    continue
                for body in bodies(value):
                    if str(dict(body).get("name", "") or "") not in ("", DEFAULT_CLUSTER):
                        continue
                    for k, v in body:
                        if k == "default_identity":
                            for ident in bodies(v):
                                found = _merge_identity(found, ident, path)
    return found


def _merge_identity(base: DefaultIdentity | None, body: list[tuple[Any, Any]], path: str) -> DefaultIdentity:
    aud, ttl = (base.aud, base.ttl) if base else ((), "")
    claims = dict(base.extra_claims) if base else {}
    for key, value in body:
        if key == "aud" and value:
            aud = tuple(str(a) for a in (value if isinstance(value, list) else [value]))
        elif key == "ttl" and value:
            ttl = str(value)
        elif key == "extra_claims":
            for claims_body in bodies(value):
                for ck, cv in claims_body:
                    claims[str(ck)] = str(cv)
    return DefaultIdentity(aud=aud, ttl=ttl, extra_claims=MappingProxyType(claims), where=path)
