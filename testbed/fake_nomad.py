#!/usr/bin/env python3
"""A stand-in for ``nomad agent`` (a server using the legacy, token-based Vault
integration of Nomad 1.6 - 1.9), for tests. Needs pyhcl (``import hcl``).

It does with its Vault token what Nomad does; each behaviour names the Nomad
source it copies (hashicorp/nomad at the tag named, e.g. ``command.go
v1.9.7:1010`` is command/agent/command.go; ``vault.go:N`` is nomad/vault.go,
the same in every tag from v1.6.0 to v1.9.7):

* command line: Go's flag package over the agent's flags; parsing stops at the
  first non-flag argument or ``--``; an unknown flag or a bad value is an
  error, exit 1;
* config: every ``-config`` (file: parsed as HCL whatever its name; directory:
  its ``*.hcl`` and ``*.json``, sorted), the ``vault`` blocks merged (only the
  default cluster's), the ``-vault-*`` flags over them, then ``VAULT_TOKEN`` and
  ``VAULT_NAMESPACE`` when still empty; a file that fails to load: exit 1;
* the Vault client: built from the merged block and the process's ``VAULT_*``
  environment like hashicorp/vault/api's DefaultConfig + NewClient; if it
  cannot be built the server does not start: exit 1; ``enabled`` not true: no
  client; from 1.7.3 no token: a client that does nothing;
* validation like ``parseSelfToken``, retried every 30 s while it fails; then
  renewal: at once, then at half the lease; 400/403/404 end it for good, other
  errors back off 5 s growing to 30-60 s; each request retried by the API
  client itself (VAULT_MAX_RETRIES, 2) on connection errors, 412, 429, 5xx;
* signal handling is installed late (FAKE_NOMAD_SIGNAL_DELAY): until then
  SIGHUP, SIGINT and SIGTERM kill the process, as Go's runtime does;
* SIGHUP: everything re-read from the original argv and environment; an equal
  vault config changes nothing; another one restarts the client;
* SIGTERM / SIGINT: exit 1, or 0 with leave_on_terminate / leave_on_interrupt;
* systemd (1.8+): READY=1 on NOTIFY_SOCKET once the handlers are installed,
  RELOADING=1 + MONOTONIC_USEC before a reload and READY=1 after it,
  STOPPING=1 before a graceful leave.

Known differences (not modelled): no Raft, RPC or HTTP API; any agent counts
as a server (Nomad wants ``server`` or ``client`` enabled); ``-dev*`` modes add
nothing; 1.7.0 - 1.7.2's ``default_identity`` rule; the sys/health probe after
a failed first validation; the ``vault`` block is read with pyhcl, which
accepts a little more than Go's HCL1 (e.g. bare words as strings).

Like Nomad's goroutines, the Vault loops run in a thread: a signal is handled
at once, but a reload that changes the vault config waits for a request under
way (SetConfig's tomb.Wait).

Usage::

    python fake_nomad.py agent [Nomad agent flags...]

Environment (besides Nomad's own ``VAULT_*``, read as Nomad reads them):

    FAKE_NOMAD_REPORT          file to append JSON lines to (default: stderr)
    FAKE_NOMAD_VERSION         "1.9" (default: the Vault rules of 1.7.3 - 1.9, the
                               sd_notify messages of 1.8 - 1.9) or "1.6"
    FAKE_NOMAD_SIGNAL_DELAY    seconds from start until signal handlers are
                               installed (default 2.0)
    FAKE_NOMAD_VALIDATE_RETRY  seconds between validation attempts (default 30)
    FAKE_NOMAD_RENEW_EVERY     seconds between healthy renewals, instead of
                               half the lease
    FAKE_NOMAD_BACKOFF_SCALE   factor on every back-off wait: the renewal's
                               (5 s ... 60 s) and the API client's retries
                               (1 - 1.5 s per attempt); default 1
    FAKE_NOMAD_EXIT_AFTER      exit 0 after this many seconds

Every report line is ``{"event", "pid", "time", ...}``; events and fields:

    config_error  error; at start only (bad flag or config file), then exit
    start         argv, version, token_source ("flag"|"config"|"env"|"none"),
                  token_accessor (null until looked up), config_files,
                  address (the one the client talks to; null without one),
                  client ("vault"|"noop"|"disabled"); emitted once the first
                  validation attempt is done (at once without a client)
    client_error  error, phase ("start"|"reload"): the Vault client could not
                  be built (at start: then exit 1)
    validated     ok, errors, warnings, accessor, role, policies, ttl, renewing
    renewed       accessor, ttl (the lease granted), increment
    renew_failed  status (int or null), stopped (bool: renewal ended for
                  good), error, accessor, retry_in (Nomad's back-off in
                  seconds before scaling; null when stopped)
    signals_ready (none): signal handlers are installed from now on
    reload        token_changed, config_changed, accessor, token_source, error:
                  null when applied; else "Failed to reload configs: ..." or a
                  1.7.3 guard (nothing changed), or why the new client could
                  not be built (the old one is gone: no client now). For a new
                  client it is emitted once its first validation attempt is done
    signal        signal ("SIGINT"|"SIGTERM"), code (the exit code)
    exit          reason ("signal"|"FAKE_NOMAD_EXIT_AFTER"|"config_error"|
                  "client_error"), code; the last line (none when a signal
                  kills it before signals_ready)

Exit codes: 1 on SIGINT/SIGTERM (0 after a graceful leave), on a bad flag,
config file or Vault client at start; 0 after FAKE_NOMAD_EXIT_AFTER; 2 on a
bad FAKE_NOMAD_* setting or a first argument other than ``agent``; killed by
SIGHUP/SIGINT/SIGTERM before ``signals_ready``. The token is never written.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import random
import re
import signal
import socket
import ssl
import stat
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

import hcl.parser  # pyhcl

VaultConfig = dict[str, Any]  # the default cluster's vault block: key -> str | bool

# nomad/structs/config/vault.go v1.9.7:128-136 (DefaultVaultConfig); v1.6.10 has no name or JWT path
DEFAULT_VAULT: dict[str, VaultConfig] = {
    "1.9": {
        "name": "default",
        "address": "https://vault.service.consul:8200",
        "jwt_auth_backend_path": "jwt-nomad",
        "allow_unauthenticated": True,
    },
    "1.6": {"address": "https://vault.service.consul:8200", "allow_unauthenticated": True},
}
CONNECTION_RETRY = 30.0  # DefaultVaultConnectRetryIntv, structs/config/vault.go v1.9.7:16
MINIMUM_TOKEN_TTL = 300.0  # minimumTokenTTL, vault.go:38
UNRECOVERABLE = re.compile(r"Code:\s+40(0|3|4)")  # VaultUnrecoverableError, nomad/structs/structs.go v1.9.7:10418
# hashicorp/vault/api DefaultConfig (client.go; api v1.15.0 per Nomad v1.9.7 go.mod:92)
REQUEST_TIMEOUT = 60.0
MIN_RETRY_WAIT, MAX_RETRY_WAIT, MAX_RETRIES = 1.0, 1.5, 2

# nomad/structs/config/vault.go v1.9.7:25-124: the block's keys (mapstructure tags) and their kinds
VAULT_KEYS = {
    "name": str,
    "enabled": bool,
    "create_from_role": str,
    "namespace": str,
    "address": str,
    "jwt_auth_backend_path": str,
    "ca_file": str,
    "ca_path": str,
    "cert_file": str,
    "key_file": str,
    "tls_skip_verify": bool,
    "tls_server_name": str,
    "token": str,
    "allow_unauthenticated": bool,
    "task_token_ttl": str,
}

# command/agent/command.go v1.9.7:87-205: every flag of `nomad agent`; True: a boolean flag (BoolVar, or
# FuncBoolVar whose IsBoolFlag is true, helper/flags/flag.go v1.9.7:47), which never takes the next argument.
_BOOL_FLAGS = (
    "dev dev-connect dev-consul dev-vault server client rejoin log-json log-include-location "
    "consul-auto-advertise consul-checks-use-advertise consul-client-auto-join consul-server-auto-join "
    "consul-ssl consul-verify-ssl consul-allow-unauthenticated "
    "vault-enabled vault-allow-unauthenticated vault-tls-skip-verify acl-enabled"
)
_VALUE_FLAGS = (
    "bootstrap-expect encrypt raft-protocol join retry-join retry-max retry-interval "
    "state-dir alloc-dir alloc-mounts-dir node-class node-pool servers meta network-interface "
    "preferred-address-family network-speed config bind region data-dir plugin-dir dc log-level node "
    "consul-auth consul-ca-file consul-cert-file consul-key-file consul-client-service-name "
    "consul-client-http-check-name consul-client-failures-before-critical consul-client-failures-before-warning "
    "consul-server-service-name consul-server-http-check-name consul-server-serf-check-name "
    "consul-server-rpc-check-name consul-server-failures-before-critical consul-server-failures-before-warning "
    "consul-token consul-address "
    "vault-token vault-address vault-namespace vault-create-from-role vault-ca-file vault-ca-path "
    "vault-cert-file vault-key-file vault-tls-server-name acl-replication-token"
)
AGENT_FLAGS: dict[str, bool] = {n: True for n in _BOOL_FLAGS.split()} | {n: False for n in _VALUE_FLAGS.split()}
# command.go v1.9.7:164-189: the -vault-* flags and the key each sets in the default vault block
VAULT_FLAGS = {
    "vault-enabled": "enabled",
    "vault-allow-unauthenticated": "allow_unauthenticated",
    "vault-token": "token",
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
USAGE = "Usage: nomad agent [options]"


class UsageError(Exception):
    """A bad FAKE_NOMAD_* setting or command (the harness's mistake, exit 2)."""


class ConfigError(Exception):
    """readConfig failed: a bad flag or a config file that does not load."""


class ClientError(Exception):
    """buildClient failed (vault.go:422-485)."""


def go_bool(text: str) -> bool | None:
    """strconv.ParseBool; None when Go would refuse it."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """time.ParseDuration, in seconds; ValueError with Go's message."""
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    while body and pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None or m.group(1) in ("", "."):
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    else:
        if body:
            return -total if text.startswith("-") else total
    raise ValueError(f"time: invalid duration {json.dumps(text)}")


# --------------------------------------------------------------------------
# Command line (Go's flag package)
# --------------------------------------------------------------------------


def parse_go_flags(args: Sequence[str]) -> list[tuple[str, str]]:
    """Go's FlagSet.Parse (flag.ContinueOnError, command.go v1.9.7:79) over the agent's flags.

    Returns (name, value) in order; a boolean flag's value is "true" or what
    followed ``=``. Stops at the first non-flag argument (everything after it
    is ignored, ``-config`` too) and after ``--``. Raises ConfigError with
    Go's message on an unknown flag (``-h`` included), a missing value, a bad
    boolean or bad syntax.
    """
    found: list[tuple[str, str]] = []
    rest = list(args)
    while rest:
        arg = rest[0]
        if len(arg) < 2 or arg[0] != "-":
            break
        if arg == "--":
            break
        name = arg[2:] if arg[1] == "-" else arg[1:]
        if not name or name[0] in "-=":
            raise ConfigError(f"bad flag syntax: {arg}")
        rest.pop(0)
        name, eq, value = name.partition("=")
        if name not in AGENT_FLAGS:
            if name in ("h", "help"):
                raise ConfigError("flag: help requested")
            raise ConfigError(f"flag provided but not defined: -{name}")
        if AGENT_FLAGS[name]:
            value = value if eq else "true"
            if go_bool(value) is None:
                raise ConfigError(
                    f"invalid boolean value {json.dumps(value)} for -{name}: "
                    f"strconv.ParseBool: parsing {json.dumps(value)}: invalid syntax"
                )
        elif not eq:
            if not rest:
                raise ConfigError(f"flag needs an argument: -{name}")
            value = rest.pop(0)
        found.append((name, value))
    return found


# --------------------------------------------------------------------------
# Config files (pyhcl)
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# The Vault API client (hashicorp/vault/api, as Nomad builds it)
# --------------------------------------------------------------------------


class VaultUnreachable(Exception):
    """No HTTP response (connection, TLS or timeout error)."""


class Response(NamedTuple):
    status: int
    body: Any


def api_error(resp: Response) -> str:
    """A Vault API error in the shape Nomad's messages carry (``Code: 403``)."""
    errs: list[str] = []
    if isinstance(resp.body, dict) and isinstance(resp.body.get("errors"), list):
        errs = [" ".join(str(e).split()) for e in resp.body["errors"]]
    return f"Code: {resp.status}. Errors: {'; '.join(errs) if errs else '(none)'}"


@dataclass(frozen=True)
class TLSSettings:
    """vault/api TLSConfig: CA file/path, client pair, server name, skip verify."""

    ca_file: str = ""
    ca_path: str = ""
    cert: str = ""
    key: str = ""
    server_name: str = ""
    insecure: bool = False


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """The TLS client config vault/api's configureTLS builds; ValueError with its message.

    A client cert needs its key and vice versa; a CA file wins over a CA
    directory, whose every file must hold PEM (go-rootcerts); no CA: the
    system's roots. TLS 1.2 at least (DefaultConfig).
    """
    if bool(tls.cert) != bool(tls.key):
        raise ValueError("both client cert and client key must be provided")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if tls.ca_file:
            ctx.load_verify_locations(cafile=tls.ca_file)
        elif tls.ca_path:  # filepath.Walk: the path itself when it is a file; a missing one is an error
            os.stat(tls.ca_path)
            files = [tls.ca_path] if not os.path.isdir(tls.ca_path) else []
            files += sorted(os.path.join(root, n) for root, _dirs, names in os.walk(tls.ca_path) for n in names)
            for name in files:
                try:
                    ctx.load_verify_locations(cadata=Path(name).read_bytes().decode("ascii", "ignore"))
                except ssl.SSLError:
                    raise ValueError(f"Error loading file from CAPath: Couldn't parse PEM in: {name}") from None
        else:
            ctx.load_default_certs()
        if tls.cert:
            ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{exc.__class__.__name__}: {exc}") from None
    if tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _env_settings(env: Mapping[str, str]) -> tuple[TLSSettings, str, int]:
    """vault/api Config.ReadEnvironment: (TLS settings, VAULT_AGENT_ADDR, max retries); ValueError on a bad one."""
    retries = MAX_RETRIES
    if env.get("VAULT_MAX_RETRIES"):
        raw = env["VAULT_MAX_RETRIES"]
        if not raw.isascii() or not raw.isdigit() or int(raw) >= 2**32:
            raise ValueError(f"strconv.ParseUint: parsing {json.dumps(raw)}: invalid syntax")
        retries = int(raw)
    insecure = False
    if env.get("VAULT_SKIP_VERIFY"):
        parsed = go_bool(env["VAULT_SKIP_VERIFY"])
        if parsed is None:
            raise ValueError("could not parse VAULT_SKIP_VERIFY")
        insecure = parsed
    tls = TLSSettings(
        ca_file=env.get("VAULT_CACERT", ""),
        ca_path=env.get("VAULT_CAPATH", ""),
        cert=env.get("VAULT_CLIENT_CERT", ""),
        key=env.get("VAULT_CLIENT_KEY", ""),
        server_name=env.get("VAULT_TLS_SERVER_NAME", ""),
        insecure=insecure,
    )
    ssl_context(tls)  # configureTLS runs inside ReadEnvironment: its errors are ReadEnvironment's
    return tls, env.get("VAULT_AGENT_ADDR", ""), retries


class VaultHTTP:
    """Just enough of a vault/api Client: one address, TLS, token, namespace, retries."""

    def __init__(
        self,
        address: str,
        token: str,
        *,
        tls: TLSSettings,
        namespace: str = "",
        max_retries: int = MAX_RETRIES,
        backoff_scale: float = 1.0,
    ) -> None:
        parts = urllib.parse.urlsplit(address)
        self.address = address
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port
        self.base = parts.path.rstrip("/")
        self.token = token
        self.namespace = namespace
        self.max_retries = max_retries
        self.backoff_scale = backoff_scale
        self.server_name = tls.server_name
        self.context = ssl_context(tls) if self.scheme == "https" else None

    def _connection(self) -> http.client.HTTPConnection:
        if self.context is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        ctx, name = self.context, self.server_name or self.host

        class Conn(http.client.HTTPSConnection):
            def connect(self) -> None:  # SNI and verification against tls_server_name
                http.client.HTTPConnection.connect(self)
                self.sock = ctx.wrap_socket(self.sock, server_hostname=name)

        return Conn(self.host, self.port, timeout=REQUEST_TIMEOUT, context=ctx)

    def _once(self, method: str, path: str, body: Any) -> tuple[Response, float | None]:
        """One HTTP request: (response, Retry-After seconds or None)."""
        if self.scheme not in ("http", "https"):  # not retried (go-retryablehttp's schemeErrorRe)
            raise VaultUnreachable(f"{method} {path}: unsupported protocol scheme {json.dumps(self.scheme)}")
        headers = {"X-Vault-Token": self.token, "X-Vault-Request": "true"}
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            conn.request(method, f"{self.base}/v1/{path}", body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            retry_after = resp.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as exc:
            raise VaultUnreachable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw) if raw.strip() else None
        except ValueError:
            parsed = None
        wait = float(retry_after) if retry_after and retry_after.isdigit() else None
        return Response(resp.status, parsed), wait

    def call(self, method: str, path: str, body: Any = None) -> Response:
        """One API call with the client's retries.

        go-retryablehttp's baseRetryPolicy (connection errors but not a
        certificate's, 429, 5xx but 501) plus 412 (vault/api
        DefaultRetryPolicy), at most VAULT_MAX_RETRIES (2) times, waiting
        RateLimitLinearJitterBackoff: Retry-After on 429/503, else 1-1.5 s
        times the attempt number. Raises VaultUnreachable.
        """
        attempt = 0
        while True:
            try:
                resp, retry_after = self._once(method, path, body)
            except VaultUnreachable as exc:
                cert_error = isinstance(exc.__cause__, ssl.SSLCertVerificationError)
                if cert_error or exc.__cause__ is None or attempt >= self.max_retries:
                    raise
                retry_after = None
            else:
                retryable = resp.status in (0, 412, 429) or (resp.status >= 500 and resp.status != 501)
                if not retryable or attempt >= self.max_retries:
                    return resp
                if resp.status not in (429, 503):
                    retry_after = None
            attempt += 1
            wait = retry_after if retry_after is not None else random.uniform(MIN_RETRY_WAIT, MAX_RETRY_WAIT) * attempt
            time.sleep(wait * self.backoff_scale)


def build_client(cfg: Mapping[str, Any], env: Mapping[str, str], backoff_scale: float = 1.0) -> VaultHTTP:
    """buildClient (vault.go:422-485): ApiConfig (structs/config/vault.go v1.9.7:219-240), then vault/api NewClient.

    ApiConfig starts from vault/api DefaultConfig, which reads the
    environment, and lays the block's TLS settings over it with
    ConfigureTLS: a block's CA (file or path) replaces the environment's, its
    cert+key pair replaces the environment's pair, its server name wins when
    set, and skip-verify is on when either turns it on. NewClient reads the
    environment again: if that fails (e.g. VAULT_CLIENT_KEY without
    VAULT_CLIENT_CERT) no client is built. VAULT_AGENT_ADDR replaces the
    address; VAULT_ADDR is never used (ApiConfig sets Address). Raises
    ClientError.
    """
    token, address = _str(cfg, "token"), _str(cfg, "address")
    if not token:
        raise ClientError("Vault token must be set")  # vault.go:424-425
    if not address:
        raise ClientError("Vault address must be set")  # vault.go:426-427
    ttl = _str(cfg, "task_token_ttl")
    if ttl:  # vault.go:431-442
        try:
            seconds = go_duration(ttl)
        except ValueError as exc:
            raise ClientError(f"failed to parse TaskTokenTTL {json.dumps(ttl)}: {exc}") from None
        if seconds < MINIMUM_TOKEN_TTL:
            raise ClientError("ChildTokenTTL is less than minimum allowed of 5m0s")
    try:
        env_tls, agent_addr, retries = _env_settings(env)
        env_error = None
    except ValueError as exc:
        env_tls, agent_addr, retries, env_error = TLSSettings(), "", MAX_RETRIES, str(exc)
    block_ca = _str(cfg, "ca_file") or _str(cfg, "ca_path")
    block_pair = _str(cfg, "cert_file") or _str(cfg, "key_file")
    tls = TLSSettings(
        ca_file=_str(cfg, "ca_file") if block_ca else env_tls.ca_file,
        ca_path=_str(cfg, "ca_path") if block_ca else env_tls.ca_path,
        cert=_str(cfg, "cert_file") if block_pair else env_tls.cert,
        key=_str(cfg, "key_file") if block_pair else env_tls.key,
        server_name=_str(cfg, "tls_server_name") or env_tls.server_name,
        insecure=cfg.get("tls_skip_verify") is True or env_tls.insecure,
    )
    try:  # ApiConfig's ConfigureTLS with the block's settings
        ssl_context(
            TLSSettings(
                _str(cfg, "ca_file"),
                _str(cfg, "ca_path"),
                _str(cfg, "cert_file"),
                _str(cfg, "key_file"),
            )
        )
    except ValueError as exc:
        raise ClientError(f"Failed to create Vault API config: {exc}") from None  # vault.go:448-451
    if env_error is not None:  # NewClient: DefaultConfig().Error
        raise ClientError(f"error encountered setting up default configuration: {env_error}")
    return VaultHTTP(
        agent_addr or address,
        token,
        tls=tls,
        namespace=_str(cfg, "namespace"),
        max_retries=retries,
        backoff_scale=backoff_scale,
    )


# --------------------------------------------------------------------------
# Nomad's rules (pure)
# --------------------------------------------------------------------------


def as_int(value: Any) -> int:
    """Weakly decode a number as Nomad's mapstructure.WeakDecode would."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return 0
    return 0


def go_quote_list(items: Sequence[str]) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(i) for i in items) + "]"


def go_list(items: Sequence[str]) -> str:
    """Go's %v of a []string: [a b]."""
    return "[" + " ".join(items) + "]"


def is_root(token_data: Mapping[str, Any]) -> bool:
    policies = token_data.get("policies") or []
    return isinstance(policies, list) and "root" in policies


def choose_role(cfg: Mapping[str, Any], token_data: Mapping[str, Any]) -> str:
    """create_from_role if set, else the token's own role (getRole, vault.go:822-828)."""
    role = _str(cfg, "create_from_role")
    if role:
        return role
    own = token_data.get("role")
    return own if isinstance(own, str) else ""


def token_errors(token_data: Mapping[str, Any], role: str) -> list[str]:
    """The token checks of parseSelfToken (vault.go:749-785), in its words."""
    errors: list[str] = []
    renewable = bool(token_data.get("renewable"))
    creation_ttl = as_int(token_data.get("creation_ttl"))
    ttl = as_int(token_data.get("ttl"))
    if not is_root(token_data):
        if not renewable:
            errors.append("Vault token is not renewable or root")
        if creation_ttl == 0:
            errors.append("invalid lease duration of zero")
        if ttl == 0:
            errors.append("token TTL is zero")
        if not role:
            errors.append("token role name must be set when not using a root token")
    elif creation_ttl != 0:
        if not renewable:
            errors.append("Vault token has a TTL but is not renewable")
        elif ttl == 0:
            errors.append("token TTL is zero")
    return errors


CAPABILITIES_SELF = "sys/capabilities-self"


def required_capabilities(role: str, allow_unauthenticated: bool) -> list[tuple[str, tuple[str, ...]]]:
    """Paths and the capabilities of which the token needs one (validateCapabilities, vault.go:850-887).

    auth/token/lookup only with ``allow_unauthenticated = false`` (Nomad's default is true).
    """
    req: list[tuple[str, tuple[str, ...]]] = []
    if not allow_unauthenticated:
        req.append(("auth/token/lookup", ("update", "root")))
    req.append(("auth/token/renew-self", ("update", "root")))
    req.append(("auth/token/revoke-accessor", ("update", "root")))
    if role:
        req.append((f"auth/token/roles/{role}", ("read", "root")))
        req.append((f"auth/token/create/{role}", ("update", "root")))
    return req


def capabilities_from_response(body: Any, path: str) -> list[str] | None:
    """vault/api Sys.CapabilitiesSelf's answer: data[path], else data["capabilities"]; None: no data."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return None
    caps = data.get(path)
    if not caps:
        caps = data.get("capabilities")
    return [str(c) for c in caps] if isinstance(caps, list) else []


def capability_error(path: str, wanted: Sequence[str], has: Sequence[str]) -> str | None:
    """Nomad's message for a path lacking every wanted capability (vault.go:842-848); exact match, no sudo."""
    if any(c in wanted for c in has):
        return None
    return (
        f"token must have one of the following capabilities {go_quote_list(wanted)} on {json.dumps(path)}; "
        f"has {go_list(has)}"
    )


def role_errors(role_data: Mapping[str, Any]) -> list[str]:
    """validateRole's checks on auth/token/roles/<role> (vault.go:928-942)."""
    errors: list[str] = []
    if not role_data.get("renewable"):
        errors.append("Role must allow tokens to be renewed")
    if as_int(role_data.get("explicit_max_ttl")) != 0 or as_int(role_data.get("token_explicit_max_ttl")) != 0:
        errors.append("Role can not use an explicit max ttl. Token must be periodic.")
    if as_int(role_data.get("period")) == 0 and as_int(role_data.get("token_period")) == 0:
        errors.append("Role must have a non-zero period to make tokens periodic.")
    return errors


def renew_is_fatal(error: str) -> bool:
    """Whether a renewal error ends renewal for good (vault.go:676-679, 592-594)."""
    return UNRECOVERABLE.search(error) is not None


def next_backoff(backoff: float, time_left: float) -> float:
    """nextBackoff (vault.go:635-662): seconds until the next renewal attempt after a recoverable error."""
    if time_left / 2 < 0:
        return 60 * (1.0 + random.random())
    backoff = 30 if backoff >= 24 else backoff * 1.25
    backoff *= 1.0 + random.random()
    backoff = min(backoff, time_left / 2)
    return max(backoff, 5.0)


def scrub(line: str, secrets: Sequence[str]) -> str:
    """Remove every secret from a line about to be written."""
    for s in secrets:
        if s:
            line = line.replace(s, "[REDACTED]")
    return line


def env_seconds(env: Mapping[str, str], name: str, default: float | None = None) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise UsageError(f"{name}={raw!r} is negative")
    return value


# --------------------------------------------------------------------------
# Validation (talks to Vault)
# --------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    accessor: str | None = None
    role: str | None = None
    policies: list[str] | None = None
    ttl: int = 0
    creation_ttl: int = 0
    renew: bool = False  # whether Nomad starts its renewal loop (vault.go:529-534)

    def report(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "accessor": self.accessor,
            "role": self.role,
            "policies": self.policies,
            "ttl": self.ttl,
            "renewing": self.ok and self.renew,
        }


def _error(resp: Response) -> str | None:
    """vault/api Response.Error: an error for any status >= 400."""
    return api_error(resp) if resp.status >= 400 else None


def lookup_self(client: VaultHTTP) -> dict[str, Any]:
    """lookupSelf (vault.go:799-819): lookup-self, falling back to auth/token/lookup. Raises ValueError."""
    try:
        resp = client.call("GET", "auth/token/lookup-self")
        data = resp.body.get("data") if isinstance(resp.body, dict) else None
        if _error(resp) is None and isinstance(data, dict):
            return data
    except VaultUnreachable:
        pass
    try:
        resp = client.call("POST", "auth/token/lookup", {"token": client.token})
    except VaultUnreachable as exc:
        raise ValueError(f"failed to lookup Vault periodic token: {exc}") from None
    err = _error(resp)
    if err:
        raise ValueError(f"failed to lookup Vault periodic token: {err}")
    data = resp.body.get("data") if isinstance(resp.body, dict) else None
    if not isinstance(data, dict):
        raise ValueError("failed to lookup Vault periodic token: got empty response")
    return data


def capabilities_self(client: VaultHTTP, path: str) -> list[str]:
    """vault/api Sys.CapabilitiesSelf(path), as hasCapability calls it (vault.go:891-905). Raises ValueError."""
    try:
        resp = client.call("POST", CAPABILITIES_SELF, {"token": client.token, "path": path})
    except VaultUnreachable as exc:
        raise ValueError(str(exc)) from None
    err = _error(resp)
    if err:
        raise ValueError(err)
    caps = capabilities_from_response(resp.body, path)
    if caps is None:
        raise ValueError("data from server response is empty")
    return caps


def parse_self_token(client: VaultHTTP, cfg: Mapping[str, Any]) -> Outcome:
    """parseSelfToken (vault.go:720-796), once: the token, its capabilities, its role."""
    try:
        data = lookup_self(client)
    except ValueError as exc:
        return Outcome(False, [str(exc)])
    policies = data.get("policies")
    out = Outcome(
        ok=False,
        accessor=data.get("accessor") if isinstance(data.get("accessor"), str) else None,
        policies=[str(p) for p in policies] if isinstance(policies, list) else None,
        ttl=as_int(data.get("ttl")),
        creation_ttl=as_int(data.get("creation_ttl")),
    )
    role = choose_role(cfg, data)
    out.role = role or None
    out.renew = not (is_root(data) and out.creation_ttl == 0)
    out.errors.extend(token_errors(data, role))

    # validateCapabilities (vault.go:832-889): first whether the token may look up its capabilities at all
    try:
        capabilities_self(client, CAPABILITIES_SELF)  # only an error counts here, not the answer
        refused = None
    except ValueError as exc:
        refused = str(exc)
    if refused is not None and UNRECOVERABLE.search(refused):
        out.warnings.append(  # vault.go:838-847: 400/403/404 → a warning, and no capability is checked
            "can not lookup token capabilities. As such certain operations may fail in the future. "
            'Please give Nomad a Vault token with one of the following capabilities ["update" "root"] on '
            f'"{CAPABILITIES_SELF}" so that the required capabilities can be verified ({refused})'
        )
    else:
        if refused is not None:
            out.errors.append(refused)
        for path, wanted in required_capabilities(role, cfg.get("allow_unauthenticated") is True):
            try:
                problem = capability_error(path, wanted, capabilities_self(client, path))
            except ValueError as exc:
                problem = str(exc)
            if problem:
                out.errors.append(problem)

    if role:  # validateRole (vault.go:908-944)
        quoted = json.dumps(role)
        try:
            rresp = client.call("GET", f"auth/token/roles/{urllib.parse.quote(role, safe='')}")
        except VaultUnreachable as exc:
            out.errors.append(f"failed to lookup role {quoted}: {exc}")
        else:
            rdata = rresp.body.get("data") if isinstance(rresp.body, dict) else None
            if rresp.status == 404 or (rresp.status < 400 and not isinstance(rdata, dict)):
                out.errors.append(f"Role {quoted} does not exist")  # Logical().Read: 404 is no secret
            elif rresp.status >= 400:
                out.errors.append(f"failed to lookup role {quoted}: {api_error(rresp)}")
            elif isinstance(rdata, dict):
                out.errors.extend(role_errors(rdata))

    out.ok = not out.errors
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


class Reporter:
    """JSON lines, one writer at a time; nothing after the ``exit`` line."""

    def __init__(self, path: str | None) -> None:
        if path:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        else:
            self._fd = sys.stderr.fileno()
        self._secrets: list[str] = []
        self._lock = threading.Lock()
        self._closed = False

    def secret(self, value: str) -> None:
        if value and value not in self._secrets:
            self._secrets.append(value)

    def emit(self, event: str, **fields: Any) -> None:
        record: dict[str, Any] = {"event": event, "pid": os.getpid(), "time": time.time()}
        record.update(fields)
        with self._lock:
            if self._closed:
                return
            self._closed = event == "exit"
            data = scrub(json.dumps(record) + "\n", self._secrets).encode()
            while data:
                data = data[os.write(self._fd, data) :]


# --------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------


@dataclass
class Settings:
    """The FAKE_NOMAD_* knobs; the defaults are Nomad's."""

    version: str = "1.9"
    signal_delay: float = 2.0
    validate_retry: float = CONNECTION_RETRY
    renew_every: float | None = None
    backoff_scale: float = 1.0
    exit_after: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        version = env.get("FAKE_NOMAD_VERSION", "").strip() or "1.9"
        if version not in DEFAULT_VAULT:
            raise UsageError(f"FAKE_NOMAD_VERSION={version!r}: use 1.9 or 1.6")
        return cls(
            version=version,
            signal_delay=env_seconds(env, "FAKE_NOMAD_SIGNAL_DELAY", 2.0) or 0.0,
            validate_retry=env_seconds(env, "FAKE_NOMAD_VALIDATE_RETRY", CONNECTION_RETRY) or 0.0,
            renew_every=env_seconds(env, "FAKE_NOMAD_RENEW_EVERY"),
            backoff_scale=env_seconds(env, "FAKE_NOMAD_BACKOFF_SCALE", 1.0) or 0.0,
            exit_after=env_seconds(env, "FAKE_NOMAD_EXIT_AFTER"),
        )


class Loops:
    """One vaultClient's establishConnection and renewalLoop goroutines (vault.go:488-631), in a thread.

    ``announce(accessor)`` is called once, after the first validation attempt.
    stop() is SetConfig's tomb.Kill + tomb.Wait (vault.go:385-396): it waits
    for a request under way.
    """

    def __init__(
        self,
        client: VaultHTTP,
        cfg: VaultConfig,
        settings: Settings,
        report: Reporter,
        announce: Callable[[str | None], None],
    ) -> None:
        self.client, self.cfg, self.settings, self.report, self.announce = client, cfg, settings, report, announce
        self.accessor: str | None = None
        self.dying = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vault", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.dying.set()
        self.thread.join()

    def _run(self) -> None:
        outcome = self._establish()
        if outcome is not None and outcome.renew:  # root without a TTL: no renewal (vault.go:529-534)
            self._renewal_loop(outcome)

    def _establish(self) -> Outcome | None:
        """Validate at once, then every 30 s until it passes (vault.go:491-522)."""
        first = True
        while True:
            outcome = parse_self_token(self.client, self.cfg)
            self.accessor = outcome.accessor or self.accessor
            if first:
                self.announce(outcome.accessor)
                first = False
            self.report.emit("validated", **outcome.report())
            if outcome.ok:
                return outcome
            if self.dying.wait(self.settings.validate_retry):
                return None

    def _renewal_loop(self, outcome: Outcome) -> None:
        """renewalLoop (vault.go:548-631): renew at once, then at half the lease; back off on errors."""
        expiry = time.monotonic() + outcome.ttl  # parseSelfToken's extendExpiration(data.TTL), vault.go:733
        backoff = 0.0
        wait = 0.0  # the timer starts at zero (vault.go:554)
        while not self.dying.wait(wait):
            lease, status, error = self._renew(outcome.creation_ttl)
            now = time.monotonic()
            if lease:
                expiry = now + lease  # extendExpiration
                self.report.emit("renewed", accessor=self.accessor, ttl=lease, increment=outcome.creation_ttl)
                backoff = 0.0
                wait = self.settings.renew_every if self.settings.renew_every is not None else lease / 2  # 574
                continue
            if renew_is_fatal(error):  # vault.go:592-594
                self.report.emit(
                    "renew_failed", status=status, stopped=True, error=error, accessor=self.accessor, retry_in=None
                )
                return
            backoff = next_backoff(backoff, expiry - now)  # vault.go:596-617
            self.report.emit(
                "renew_failed", status=status, stopped=False, error=error, accessor=self.accessor, retry_in=backoff
            )
            wait = backoff * self.settings.backoff_scale

    def _renew(self, increment: int) -> tuple[int, int | None, str]:
        """renew (vault.go:667-697): (lease or 0, HTTP status or None, error)."""
        try:
            resp = self.client.call("PUT", "auth/token/renew-self", {"increment": increment})
        except VaultUnreachable as exc:
            return 0, None, f"failed to renew the vault token: {exc}"
        err = _error(resp)
        if err:
            return 0, resp.status, f"failed to renew the vault token: {err}"
        if resp.body is None:
            return 0, resp.status, "renewal failed: empty response from vault"
        auth = resp.body.get("auth") if isinstance(resp.body, dict) else None
        if not isinstance(auth, dict):
            return 0, resp.status, "renewal successful but not auth information returned"
        lease = as_int(auth.get("lease_duration"))
        if lease == 0:
            return 0, resp.status, "renewal successful but no lease duration returned"
        if isinstance(auth.get("accessor"), str):
            self.accessor = auth["accessor"]
        return lease, resp.status, ""


class Agent:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], settings: Settings, report: Reporter) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.settings = settings
        self.report = report
        self.loaded: Loaded | None = None
        self.cfg: VaultConfig = {}
        self.token_source = "none"
        self.kind = "vault"  # "vault": a vaultClient; "noop": NoopVault (1.7.3+ without a token)
        self.loops: Loops | None = None
        self.last_accessor: str | None = None
        report.secret(self.env.get("VAULT_TOKEN", ""))

    @property
    def accessor(self) -> str | None:
        return (self.loops.accessor if self.loops else None) or self.last_accessor

    def _take(self, loaded: Loaded) -> None:
        self.cfg, self.token_source = loaded.vault, loaded.token_source
        self.report.secret(_str(self.cfg, "token"))

    def _launch(self, announce: Callable[[str | None], None], phase: str) -> str | None:
        """The part of NewVaultClient / SetConfig after the config is stored (vault.go:292-302, 406-415).

        Returns buildClient's error, or None. Without ``enabled = true`` nothing runs.
        """
        if self.cfg.get("enabled") is not True:
            announce(None)
            return None
        try:
            client = build_client(self.cfg, self.env, self.settings.backoff_scale)
        except ClientError as exc:
            self.report.emit("client_error", error=str(exc), phase=phase)
            return str(exc)
        self.loops = Loops(client, self.cfg, self.settings, self.report, announce)
        return None

    def start(self) -> int | None:
        """readConfig, then the server's setupVaultClient. Returns an exit code when Nomad would not start."""
        try:
            self.loaded = read_config(self.argv[2:], self.env, self.settings.version)
        except ConfigError as exc:  # command.go v1.9.7:206-208, 258-263: Run returns 1
            print(f"==> {exc}" if exc.args[0].startswith("Error") else f"{exc}\n{USAGE}", file=sys.stderr)
            self.report.emit("config_error", error=str(exc))
            return self.exit("config_error", 1)
        self._take(self.loaded)

        def started(accessor: str | None, client: str = "vault") -> None:
            address = None
            if client == "vault" and self.cfg.get("enabled") is True:
                address = self.env.get("VAULT_AGENT_ADDR") or _str(self.cfg, "address")
            self.report.emit(
                "start",
                argv=self.argv,
                version=self.settings.version,
                token_source=self.token_source,
                token_accessor=accessor,
                config_files=self.loaded.files if self.loaded else [],
                address=address,
                client=client if client == "noop" or self.cfg.get("enabled") is True else "disabled",
            )

        if self.settings.version != "1.6" and not _str(self.cfg, "token"):
            self.kind = "noop"  # server.go v1.9.7:1206-1211
            started(None, "noop")
            return None
        error = self._launch(started, "start")
        # server.go v1.9.7:409-412, agent.go v1.9.7:981, command.go v1.9.7:849-851: the agent exits 1. In 1.6
        # an enabled block without a token stops here too: NewVaultClient builds the client at once
        # (vault.go v1.6.10:292-295 → "Vault token must be set", 425), server.go v1.6.10:396-399, command.go 776-778.
        if error is not None:
            print(
                f"==> Error starting agent: server setup failed: Failed to setup Vault client: {error}", file=sys.stderr
            )
            return self.exit("client_error", 1)
        return None

    def reload(self) -> None:
        """handleReload (command.go v1.9.7:1107-1150), then Server.Reload's vault part (server.go v1.9.7:896-918)."""
        old_token = _str(self.cfg, "token")
        fields: dict[str, Any] = {"token_changed": False, "config_changed": False, "token_source": self.token_source}
        try:
            loaded = read_config(self.argv[2:], self.env, self.settings.version)
        except ConfigError as exc:  # command.go v1.9.7:1109-1113
            print(f"==> {exc}\n==> Failed to reload configs", file=sys.stderr)
            self.report.emit("reload", accessor=self.accessor, error=f"Failed to reload configs: {exc}", **fields)
            return
        new = loaded.vault
        fields = {
            "token_changed": _str(new, "token") != old_token,
            "config_changed": new != self.cfg,
            "token_source": loaded.token_source,
        }
        if self.settings.version != "1.6":  # server.go v1.9.7:902-912
            guard = None
            if self.kind == "noop" and _str(new, "token"):
                guard = "setting a Vault token requires restarting the Nomad agent"
            elif self.kind == "vault" and not _str(new, "token"):
                guard = "removing the Vault token requires restarting the Nomad agent"
            if guard:
                print(f"==> reloading server config failed: {guard}", file=sys.stderr)
                self.report.emit("reload", accessor=self.accessor, error=guard, **fields)
                return
        if self.kind == "noop":  # NoopVault.SetConfig only stores it (nomad/vault_noop.go v1.9.7:36-42)
            self._take(loaded)
            self.report.emit("reload", accessor=None, error=None, **fields)
            return
        if not fields["config_changed"]:  # SetConfig on an equal config: nothing (vault.go:380-383)
            self.report.emit("reload", accessor=self.accessor, error=None, **fields)
            return
        if self.loops is not None:  # vault.go:385-400
            self.last_accessor = self.accessor
            self.loops.stop()
            self.loops = None
        self._take(loaded)  # vault.go:403

        def reloaded(accessor: str | None) -> None:
            self.report.emit("reload", accessor=accessor, error=None, **fields)

        error = self._launch(reloaded, "reload")
        if error is not None:  # no client now, until a reload that builds one
            print(f"==> reloading server config failed: {error}", file=sys.stderr)
            self.report.emit("reload", accessor=None, error=error, **fields)

    def exit(self, reason: str, code: int) -> int:
        self.report.emit("exit", reason=reason, code=code)
        return code

    def run(self, started_at: float) -> int:
        """handleSignals (command.go v1.9.7:1008-1087), installed after setupAgent and startupJoin."""
        exit_at = None if self.settings.exit_after is None else started_at + self.settings.exit_after
        ready_at = started_at + self.settings.signal_delay
        while (now := time.monotonic()) < ready_at:  # SIGHUP, SIGINT, SIGTERM still kill the process
            if exit_at is not None and now >= exit_at:
                return self.exit("FAKE_NOMAD_EXIT_AFTER", 0)
            time.sleep(min(ready_at, exit_at if exit_at is not None else ready_at) - now)
        signals = notify()
        # command.go v1.9.7:1012-1020: READY=1 once the handlers exist (1.8+; 1.6 and 1.7 send nothing)
        sd = SdNotify(self.env.get("NOTIFY_SOCKET", "") if self.settings.version != "1.6" else "")
        sd.send("READY=1")
        self.report.emit("signals_ready")
        while True:
            timeout = 1.0 if exit_at is None else max(0.0, min(1.0, exit_at - time.monotonic()))
            try:
                signum = signals.get(timeout=timeout)
            except queue.Empty:
                if exit_at is not None and time.monotonic() >= exit_at:
                    return self.exit("FAKE_NOMAD_EXIT_AFTER", 0)
                continue
            name = signal.Signals(signum).name
            print(f"==> Caught signal: {name}", file=sys.stderr)
            if signum == signal.SIGHUP:  # command.go v1.9.7:1044-1050
                sd.send("RELOADING=1")
                sd.send(f"MONOTONIC_USEC={time.time_ns() // 1000}")  # time.Now().UnixMicro(): wall clock, as Nomad
                self.reload()
                sd.send("READY=1")
                continue
            # command.go v1.9.7:1052-1085: exit 1 unless leave_on_interrupt / leave_on_terminate (the config
            # read at start: agent.Reload does not change them, command/agent/agent.go v1.9.7:1397-1465)
            assert self.loaded is not None
            leave = self.loaded.leave_on_interrupt if signum == signal.SIGINT else self.loaded.leave_on_terminate
            code = 0 if leave else 1
            if leave:
                sd.send("STOPPING=1")  # command.go v1.9.7:1066
            self.report.emit("signal", signal=name, code=code)
            return self.exit("signal", code)


class SdNotify:
    """openNotify / sdNotify (command/agent/sdnotify_linux.go v1.9.7): datagrams to NOTIFY_SOCKET, if set."""

    def __init__(self, path: str) -> None:
        self.sock: socket.socket | None = None
        if path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.connect("\0" + path[1:] if path.startswith("@") else path)
                self.sock = sock
            except OSError:  # Nomad logs it at debug level and carries on
                sock.close()

    def send(self, message: str) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.send(message.encode())


def go_runtime_signals() -> None:
    """Go's runtime before signal.Notify: SIGHUP, SIGINT and SIGTERM end the process.

    Except that SIGHUP and SIGINT stay ignored when the process started with
    them ignored (runtime/signal_unix.go sigInstallGoHandler; golang/go#9896).
    """
    for sig in (signal.SIGHUP, signal.SIGINT):
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def notify() -> queue.SimpleQueue[int]:
    """signal.Notify(SIGINT, SIGTERM, SIGHUP, SIGPIPE) (command.go v1.9.7:1010); SIGPIPE stays ignored (1037)."""
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()

    def handler(signum: int, frame: FrameType | None) -> None:
        signals.put(signum)  # SimpleQueue.put is reentrant: safe in a handler

    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return signals


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    started_at = time.monotonic()
    go_runtime_signals()
    argv = list(sys.argv if argv is None else argv)
    env = dict(os.environ if env is None else env)
    if len(argv) < 2 or argv[1] != "agent":
        print("usage: fake_nomad.py agent [nomad agent flags...]", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env(env)
        reporter = Reporter(env.get("FAKE_NOMAD_REPORT") or None)
    except UsageError as exc:
        print(f"fake_nomad: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fake_nomad: cannot open FAKE_NOMAD_REPORT: {exc}", file=sys.stderr)
        return 2
    agent = Agent(argv, env, settings, reporter)
    code = agent.start()
    if code is not None:
        return code
    return agent.run(started_at)


if __name__ == "__main__":
    sys.exit(main())
