#!/usr/bin/env python3
"""A stand-in for ``nomad agent`` (a server using the legacy, token-based Vault
integration of Nomad 1.6 - 1.9), for tests. Standard library only.

It does with its Vault token what the Nomad server does (nomad/vault.go):

* reads the ``vault { ... }`` blocks of its ``-config`` files (later files win,
  an empty string never overrides), then Nomad's ``-vault-*`` flags over them
  (e.g. ``-vault-create-from-role=R``); takes ``token`` from there or, only
  when none sets it, from ``VAULT_TOKEN``; ``VAULT_ADDR`` is ignored;
* validates the token like ``parseSelfToken`` (lookup-self, renewable, TTLs,
  the role, capabilities-self, the role's settings), with Nomad's wording;
* once valid, renews it at once and then at half the lease, with
  ``{"increment": creation_ttl}``; stops renewing for good on 400/403/404;
* on SIGHUP re-reads its config files; only when the effective vault config
  (token included) changed does it stop renewing, validate again and start
  renewing again (Nomad's ``SetConfig`` is a no-op on an equal config);
* exits 0 on SIGINT / SIGTERM.

Differences from Nomad: it validates once (Nomad retries every 30 s) unless
``FAKE_NOMAD_VALIDATE_RETRY`` is set; it only calls lookup-self (Nomad falls
back to ``auth/token/lookup``); it ignores the vault block's ``namespace``;
it exits 0 on SIGINT/SIGTERM (Nomad exits 1 unless leave_on_interrupt /
leave_on_terminate makes it leave gracefully); unknown flags are ignored.

Usage::

    python fake_nomad.py agent -config A.hcl -config=B.hcl -config DIR [-vault-create-from-role=R ...]

Environment:

    FAKE_NOMAD_REPORT          file to append JSON lines to (default: stderr)
    FAKE_NOMAD_RENEW_EVERY     seconds between renewals and between retries,
                               instead of half the lease / 1 s
    FAKE_NOMAD_VALIDATE_RETRY  seconds between validation attempts while the
                               token is invalid (default: validate once)
    FAKE_NOMAD_EXIT_AFTER      exit 0 after this many seconds
    VAULT_TOKEN                the token, when no config file sets one

Every report line is ``{"event", "pid", "time", ...}``; events and fields:

    start        argv, token_source ("config"|"env"|"flag"|"none"), token_accessor,
                 config_files, address
    validated    ok, errors, warnings, accessor, role, policies, ttl, renewing
    renewed      accessor, ttl (the new lease_duration), increment
    renew_failed status (int or null), stopped (bool), error
    reload       token_changed, config_changed, accessor, token_source,
                 error (null unless a config file failed to load)
    signal       signal ("SIGINT"|"SIGTERM"); then exit 0
    exit         reason ("FAKE_NOMAD_EXIT_AFTER"); then exit 0
    config_error error; at start only, then exit 1

Exit codes: 0 on a signal or FAKE_NOMAD_EXIT_AFTER, 1 when the config files
cannot be read at start, 2 on a usage error. The token is never written out.
"""

import http.client
import json
import os
import re
import select
import signal
import ssl
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

VaultValue = str | bool | int
VaultConfig = dict[str, VaultValue]

REQUEST_TIMEOUT = 5.0
DEFAULT_RETRY = 1.0
# Nomad's vaultUnrecoverableError: `Code:\s+40(0|3|4)`.
FATAL_RENEW_STATUSES = frozenset({400, 403, 404})


class UsageError(Exception):
    """Bad command line."""


class ConfigError(Exception):
    """A config file could not be read or parsed."""


# --------------------------------------------------------------------------
# HCL subset
# --------------------------------------------------------------------------


class _Tok(NamedTuple):
    kind: str  # ident | string | int | float | punct | eof
    value: str | int | float
    line: int


_SCAN = re.compile(
    r"""
      (?P<space>[ \t\r\f\v]+)
    | (?P<newline>\n)
    | (?P<comment>(?:\#|//)[^\n]*)
    | (?P<block>/\*)
    | (?P<heredoc><<(?P<indent>-?)(?P<marker>[A-Za-z_][A-Za-z0-9_]*)[ \t]*\r?\n)
    | (?P<string>")
    | (?P<float>-?[0-9]+(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+))
    | (?P<int>-?(?:0[xX][0-9a-fA-F]+|[0-9]+))
    | (?P<ident>[A-Za-z_][A-Za-z0-9_.\-]*)
    | (?P<punct>[{}\[\]=,:])
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _scan_string(text: str, pos: int, line: int) -> tuple[str, int]:
    """Read a quoted string whose opening quote is at pos - 1.

    Returns the decoded value and the position after the closing quote.
    Quotes inside ``${ ... }`` do not end the string (as in HCL1).
    """
    out: list[str] = []
    depth = 0
    i = pos
    n = len(text)
    while True:
        if i >= n or text[i] == "\n":
            raise ValueError(f"line {line}: unterminated string")
        c = text[i]
        if c == "\\" and i + 1 < n:
            e = text[i + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
                continue
            width = {"u": 4, "U": 8}.get(e, 0)
            digits = text[i + 2 : i + 2 + width]
            if width and re.fullmatch(r"[0-9a-fA-F]+", digits) and len(digits) == width:
                out.append(chr(int(digits, 16)))
                i += 2 + width
                continue
            out.append(c + e)
            i += 2
            continue
        if c == "$" and text.startswith("${", i):
            depth += 1
            out.append("${")
            i += 2
            continue
        if c == "}" and depth:
            depth -= 1
        elif c == '"' and not depth:
            return "".join(out), i + 1
        out.append(c)
        i += 1


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    line = 1
    n = len(text)
    while pos < n:
        m = _SCAN.match(text, pos)
        if m is None:
            raise ValueError(f"line {line}: unexpected character {text[pos]!r}")
        kind = m.lastgroup
        end = m.end()
        if kind == "newline":
            line += 1
        elif kind == "block":
            close = text.find("*/", end)
            if close < 0:
                raise ValueError(f"line {line}: unterminated /* comment")
            line += text.count("\n", pos, close)
            end = close + 2
        elif kind == "heredoc":
            marker = m.group("marker")
            start_line = line
            line += 1  # the newline ending the <<MARKER line
            body: list[str] = []
            cursor = end
            while True:
                if cursor >= n:
                    raise ValueError(f"line {start_line}: unterminated heredoc <<{marker}")
                nl = text.find("\n", cursor)
                stop = n if nl < 0 else nl
                current = text[cursor:stop]
                if current.strip() == marker:
                    end = stop  # the newline after the marker is scanned as usual
                    break
                body.append(current + "\n")
                line += 1
                cursor = stop + 1
            toks.append(_Tok("string", "".join(body), start_line))
        elif kind == "string":
            value, end = _scan_string(text, end, line)
            toks.append(_Tok("string", value, line))
        elif kind == "int":
            toks.append(_Tok("int", int(m.group(), 0), line))
        elif kind == "float":
            toks.append(_Tok("float", float(m.group()), line))
        elif kind in ("ident", "punct"):
            toks.append(_Tok(kind, m.group(), line))
        pos = end
    toks.append(_Tok("eof", "", line))
    return toks


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self._toks = toks
        self._i = 0

    def _peek(self) -> _Tok:
        return self._toks[self._i]

    def _take(self) -> _Tok:
        tok = self._toks[self._i]
        if tok.kind != "eof":
            self._i += 1
        return tok

    @staticmethod
    def _is(tok: _Tok, punct: str) -> bool:
        return tok.kind == "punct" and tok.value == punct

    def body(self, *, braced: bool, sink: VaultConfig | None, top: bool, found: list[VaultConfig]) -> None:
        """Parse entries until ``}`` (braced) or end of input.

        Entries are stored in sink (None: checked and dropped). At top level,
        ``vault`` blocks are parsed into a new dict appended to found.
        """
        while True:
            tok = self._take()
            if self._is(tok, ","):
                continue
            if tok.kind == "eof":
                if braced:
                    raise ValueError(f"line {tok.line}: missing closing brace")
                return
            if self._is(tok, "}"):
                if braced:
                    return
                raise ValueError(f"line {tok.line}: unexpected '}}'")
            if tok.kind not in ("ident", "string"):
                raise ValueError(f"line {tok.line}: expected a key, found {tok.value!r}")
            key = str(tok.value)
            labels = 0
            while self._peek().kind in ("ident", "string"):
                self._take()
                labels += 1
            nxt = self._take()
            is_vault = top and key == "vault"
            if self._is(nxt, "=") or self._is(nxt, ":"):
                if labels:
                    raise ValueError(f"line {nxt.line}: unexpected {nxt.value!r} after block labels")
                if self._is(self._peek(), "{") and is_vault:
                    self._take()
                    self._block(found)
                    continue
                value = self.value()
                if sink is not None and isinstance(value, (str, bool, int)):
                    sink[key] = value
            elif self._is(nxt, "{"):
                if is_vault:
                    self._block(found)
                else:
                    self.body(braced=True, sink=None, top=False, found=found)
            else:
                raise ValueError(f"line {nxt.line}: expected '=' or '{{' after {key!r}")

    def _block(self, found: list[VaultConfig]) -> None:
        block: VaultConfig = {}
        self.body(braced=True, sink=block, top=False, found=found)
        found.append(block)

    def value(self) -> VaultValue | float | None:
        """Parse one value; lists and objects are checked and return None."""
        tok = self._take()
        if tok.kind in ("string", "int", "float"):
            return tok.value
        if tok.kind == "ident":
            if tok.value == "true":
                return True
            if tok.value == "false":
                return False
            raise ValueError(f"line {tok.line}: unexpected bare word {tok.value!r} (strings need quotes)")
        if self._is(tok, "["):
            while True:
                if self._is(self._peek(), ","):
                    self._take()
                    continue
                if self._is(self._peek(), "]"):
                    self._take()
                    return None
                if self._peek().kind == "eof":
                    raise ValueError(f"line {tok.line}: missing closing ']'")
                self.value()
        if self._is(tok, "{"):
            self.body(braced=True, sink=None, top=False, found=[])
            return None
        raise ValueError(f"line {tok.line}: expected a value, found {tok.value or 'end of input'!r}")


def parse_vault_block(text: str) -> VaultConfig:
    """Return the attributes of the top-level ``vault`` blocks of an HCL text.

    Scalars only (strings, true/false, integers); lists, objects, floats and
    nested blocks inside ``vault`` are dropped. Several vault blocks in one
    text merge, the later key winning. Every other top-level attribute or
    block is parsed for syntax and ignored. Raises ValueError on bad syntax.
    """
    found: list[VaultConfig] = []
    _Parser(_tokenize(text)).body(braced=False, sink=None, top=True, found=found)
    merged: VaultConfig = {}
    for block in found:
        merged.update(block)
    return merged


def merge_vault_configs(configs: Sequence[Mapping[str, VaultValue]]) -> VaultConfig:
    """Merge vault blocks file by file like Nomad's VaultConfig.Merge.

    A later file's key wins, except that an empty string never overrides.
    """
    merged: VaultConfig = {}
    for cfg in configs:
        for key, value in cfg.items():
            if value == "" and isinstance(value, str):
                continue
            merged[key] = value
    return merged


# --------------------------------------------------------------------------
# Command line, files, token source
# --------------------------------------------------------------------------


# Nomad's `agent` command-line vault flags and the vault block key each sets.
VAULT_STRING_FLAGS = {
    "vault-token": "token",
    "vault-address": "address",
    "vault-namespace": "namespace",
    "vault-create-from-role": "create_from_role",
    "vault-ca-file": "ca_file",
    "vault-ca-path": "ca_path",
    "vault-cert-file": "cert_file",
    "vault-key-file": "key_file",
    "vault-tls-server-name": "tls_server_name",
}
VAULT_BOOL_FLAGS = {
    "vault-enabled": "enabled",
    "vault-allow-unauthenticated": "allow_unauthenticated",
    "vault-tls-skip-verify": "tls_skip_verify",
}
_GO_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


def parse_agent_args(args: Sequence[str]) -> tuple[list[str], VaultConfig]:
    """Split ``nomad agent`` arguments (after ``agent``) like Go's flag package.

    Returns the -config values, in order, and the vault block keys set by
    Nomad's ``-vault-*`` flags (``-name value``, ``-name=value``, one or two
    dashes; boolean flags take no separate value). Other arguments are
    ignored; ``--`` ends the flags. Raises UsageError on a missing value.
    """
    paths: list[str] = []
    flags: VaultConfig = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            continue
        name, eq, val = arg.lstrip("-").partition("=")
        if name == "config" or name in VAULT_STRING_FLAGS:
            if not eq:
                if i >= len(args):
                    raise UsageError(f"flag needs an argument: -{name}")
                val = args[i]
                i += 1
            if name == "config":
                paths.append(val)
            else:
                flags[VAULT_STRING_FLAGS[name]] = val
        elif name in VAULT_BOOL_FLAGS:
            parsed = _GO_BOOLS.get(val.lower()) if eq else True
            if parsed is None:
                raise UsageError(f"invalid boolean value {val!r} for -{name}")
            flags[VAULT_BOOL_FLAGS[name]] = parsed
    return paths, flags


def expand_config_paths(paths: Sequence[str]) -> list[Path]:
    """Files to read: each file as given, each directory's ``*.hcl`` sorted."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(
                sorted(f for f in p.iterdir() if f.suffix == ".hcl" and not f.name.startswith(".") and f.is_file())
            )
        elif p.exists():
            files.append(p)
        else:
            raise ConfigError(f"{raw}: no such file or directory")
    return files


def load_config(paths: Sequence[str]) -> tuple[VaultConfig, list[str]]:
    """Read and merge the vault blocks of all config files."""
    blocks: list[VaultConfig] = []
    names: list[str] = []
    for f in expand_config_paths(paths):
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{f}: {exc.__class__.__name__}: {exc}") from None
        try:
            blocks.append(parse_vault_block(text))
        except ValueError as exc:
            raise ConfigError(f"{f}: {exc}") from None
        names.append(str(f))
    return merge_vault_configs(blocks), names


def resolve_token(cfg: Mapping[str, VaultValue], env: Mapping[str, str]) -> tuple[str, str]:
    """(token, source): the config's token, else VAULT_TOKEN, else none."""
    token = cfg.get("token")
    if isinstance(token, str) and token:
        return token, "config"
    env_token = env.get("VAULT_TOKEN", "")
    if env_token:
        return env_token, "env"
    return "", "none"


def agent_vault_config(
    file_cfg: Mapping[str, VaultValue], flags: Mapping[str, VaultValue], env: Mapping[str, str]
) -> tuple[VaultConfig, str, str]:
    """Nomad's readConfig: flags merged over the files, then the token.

    Returns (config, token, token_source) with token_source one of
    "flag" (-vault-token), "config", "env" (VAULT_TOKEN) or "none".
    """
    cfg = merge_vault_configs([file_cfg, flags])
    token, source = resolve_token(cfg, env)
    if source == "config" and flags.get("token"):
        source = "flag"
    return cfg, token, source


def config_flag(cfg: Mapping[str, VaultValue], key: str, default: bool) -> bool:
    """A boolean vault key; Nomad decodes "true"/"false" strings weakly too."""
    value = cfg.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
        return value.strip().lower() in ("true", "1")
    return default


def _config_str(cfg: Mapping[str, VaultValue], key: str) -> str:
    value = cfg.get(key)
    return value if isinstance(value, str) else ""


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


def choose_role(cfg: Mapping[str, VaultValue], token_data: Mapping[str, Any]) -> str:
    """create_from_role if set, else the token's own role (Nomad's getRole)."""
    role = _config_str(cfg, "create_from_role")
    if role:
        return role
    own = token_data.get("role")
    return own if isinstance(own, str) else ""


def token_errors(token_data: Mapping[str, Any], role: str) -> list[str]:
    """The token checks of Nomad's parseSelfToken, in its words."""
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
    """Paths and the capabilities of which the token needs one (Nomad's order).

    Like Nomad, auth/token/lookup is only required when the config sets
    ``allow_unauthenticated = false`` (Nomad's default is true).
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


def capabilities_from_response(body: Any) -> dict[str, list[str]]:
    """path -> capabilities from a sys/capabilities-self response."""
    source: Any = body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), dict) else body
    result: dict[str, list[str]] = {}
    if isinstance(source, dict):
        for path, caps in source.items():
            if isinstance(caps, list):
                result[str(path)] = [str(c) for c in caps]
    return result


def capability_errors(caps: Mapping[str, Sequence[str]], required: Sequence[tuple[str, tuple[str, ...]]]) -> list[str]:
    """Nomad's validateCapabilities message for each path lacking every wanted capability."""
    errors: list[str] = []
    for path, wanted in required:
        has = list(caps.get(path, []))
        if not any(c in wanted for c in has):
            errors.append(
                f"token must have one of the following capabilities {go_quote_list(wanted)} on {json.dumps(path)}; "
                f"has {go_list(has)}"
            )
    return errors


def role_errors(role_data: Mapping[str, Any]) -> list[str]:
    """Nomad's validateRole checks on the data of auth/token/roles/<role>."""
    errors: list[str] = []
    if not role_data.get("renewable"):
        errors.append("Role must allow tokens to be renewed")
    if as_int(role_data.get("explicit_max_ttl")) != 0 or as_int(role_data.get("token_explicit_max_ttl")) != 0:
        errors.append("Role can not use an explicit max ttl. Token must be periodic.")
    if as_int(role_data.get("period")) == 0 and as_int(role_data.get("token_period")) == 0:
        errors.append("Role must have a non-zero period to make tokens periodic.")
    return errors


def renew_is_fatal(status: int | None) -> bool:
    """Whether a renew-self failure stops renewal for good (400/403/404)."""
    return status in FATAL_RENEW_STATUSES


def next_renew_delay(lease_duration: int, override: float | None) -> float:
    """Nomad renews at half the lease; tests may override the interval."""
    if override is not None:
        return override
    return max(lease_duration / 2.0, 0.0)


def retry_delay(override: float | None) -> float:
    return override if override is not None else DEFAULT_RETRY


def scrub(line: str, secrets: Sequence[str]) -> str:
    """Remove every secret from a line about to be written."""
    for s in secrets:
        if s:
            line = line.replace(s, "[REDACTED]")
    return line


def env_seconds(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise UsageError(f"{name}={raw!r} is negative")
    return value


# --------------------------------------------------------------------------
# Vault over HTTP (stdlib)
# --------------------------------------------------------------------------


class VaultUnreachable(Exception):
    """No HTTP response (connection, TLS or timeout error)."""


class Response(NamedTuple):
    status: int
    body: Any


def api_error(resp: Response) -> str:
    """Vault API error in the shape Nomad's messages carry (``Code: 403``)."""
    errs: list[str] = []
    if isinstance(resp.body, dict) and isinstance(resp.body.get("errors"), list):
        errs = [" ".join(str(e).split()) for e in resp.body["errors"]]
    return f"Code: {resp.status}. Errors: {'; '.join(errs) if errs else '(none)'}"


class _NamedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to host:port, verifying the certificate against another name."""

    def __init__(self, host: str, port: int | None, *, timeout: float, context: ssl.SSLContext, server_name: str):
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls_context = context
        self._server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls_context.wrap_socket(self.sock, server_hostname=self._server_name)


class VaultHTTP:
    """Just enough of a Vault client: address, TLS settings, one token."""

    def __init__(self, cfg: Mapping[str, VaultValue]) -> None:
        address = _config_str(cfg, "address")
        parts = urllib.parse.urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid vault address {address!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.base = parts.path.rstrip("/")
        self.server_name = _config_str(cfg, "tls_server_name")
        self.context: ssl.SSLContext | None = None
        if self.scheme == "https":
            ca_file = _config_str(cfg, "ca_file") or None
            ca_path = _config_str(cfg, "ca_path") or None
            ctx = ssl.create_default_context(cafile=ca_file, capath=ca_path)
            cert_file = _config_str(cfg, "cert_file")
            key_file = _config_str(cfg, "key_file")
            if cert_file:
                ctx.load_cert_chain(cert_file, key_file or None)
            if config_flag(cfg, "tls_skip_verify", False):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self.context = ctx

    def _connection(self) -> http.client.HTTPConnection:
        if self.context is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        if self.server_name:
            return _NamedHTTPSConnection(
                self.host, self.port, timeout=REQUEST_TIMEOUT, context=self.context, server_name=self.server_name
            )
        return http.client.HTTPSConnection(self.host, self.port, timeout=REQUEST_TIMEOUT, context=self.context)

    def call(self, method: str, path: str, token: str, body: Any = None) -> Response:
        headers = {"X-Vault-Token": token, "X-Vault-Request": "true"}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            conn.request(method, f"{self.base}/v1/{path}", body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            raise VaultUnreachable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from None
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw) if raw.strip() else None
        except ValueError:
            parsed = None
        return Response(status, parsed)


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
    ttl: int | None = None
    creation_ttl: int = 0
    renew: bool = False  # whether Nomad would start its renewal loop

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


def validate(cfg: Mapping[str, VaultValue], token: str) -> tuple[Outcome, VaultHTTP | None]:
    """Nomad's buildClient + parseSelfToken, once."""
    if not config_flag(cfg, "enabled", False):
        return Outcome(False, ["vault integration is not enabled: no vault { enabled = true } in the config"]), None
    if not token:
        return Outcome(False, ["Vault token must be set"]), None
    if not _config_str(cfg, "address"):
        return Outcome(False, ["Vault address must be set"]), None
    try:
        client = VaultHTTP(cfg)
    except (ValueError, OSError) as exc:
        return Outcome(False, [f"Failed to create Vault API config: {exc}"]), None

    try:
        resp = client.call("GET", "auth/token/lookup-self", token)
    except VaultUnreachable as exc:
        return Outcome(False, [f"failed to lookup Vault periodic token: {exc}"]), client
    data = resp.body.get("data") if isinstance(resp.body, dict) else None
    if resp.status != 200 or not isinstance(data, dict):
        return Outcome(False, [f"failed to lookup Vault periodic token: {api_error(resp)}"]), client

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

    required = required_capabilities(role, config_flag(cfg, "allow_unauthenticated", True))
    paths = [CAPABILITIES_SELF] + [p for p, _ in required]
    try:
        cresp = client.call("POST", "sys/capabilities-self", token, {"paths": paths})
    except VaultUnreachable as exc:
        out.errors.append(str(exc))
    else:
        if cresp.status == 200:
            out.errors.extend(capability_errors(capabilities_from_response(cresp.body), required))
        elif cresp.status in FATAL_RENEW_STATUSES:
            out.warnings.append(
                "can not lookup token capabilities. As such certain operations may fail in the future. "
                f"({api_error(cresp)})"
            )
        else:
            out.errors.append(f"sys/capabilities-self: {api_error(cresp)}")

    if role:
        try:
            rresp = client.call("GET", f"auth/token/roles/{urllib.parse.quote(role, safe='')}", token)
        except VaultUnreachable as exc:
            out.errors.append(f"failed to lookup role {json.dumps(role)}: {exc}")
        else:
            rdata = rresp.body.get("data") if isinstance(rresp.body, dict) else None
            if rresp.status == 404:
                out.errors.append(f"Role {json.dumps(role)} does not exist")
            elif rresp.status != 200:
                out.errors.append(f"failed to lookup role {json.dumps(role)}: {api_error(rresp)}")
            elif not isinstance(rdata, dict):
                out.errors.append(f"Role {json.dumps(role)} does not exist")
            else:
                out.errors.extend(role_errors(rdata))

    out.ok = not out.errors
    return out, client


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


class Reporter:
    def __init__(self, path: str | None) -> None:
        if path:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        else:
            self._fd = sys.stderr.fileno()
        self._secrets: list[str] = []

    def secret(self, value: str) -> None:
        if value and value not in self._secrets:
            self._secrets.append(value)

    def emit(self, event: str, **fields: Any) -> None:
        record: dict[str, Any] = {"event": event, "pid": os.getpid(), "time": time.time()}
        record.update(fields)
        data = scrub(json.dumps(record) + "\n", self._secrets).encode()
        while data:
            written = os.write(self._fd, data)
            data = data[written:]


# --------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------


def effective(cfg: Mapping[str, VaultValue], token: str) -> VaultConfig:
    """The vault config Nomad compares on reload: the files' keys plus the resolved token."""
    eff = dict(cfg)
    eff["token"] = token
    return eff


class Agent:
    def __init__(
        self,
        argv: Sequence[str],
        config_paths: Sequence[str],
        flags: Mapping[str, VaultValue],
        env: Mapping[str, str],
        reporter: Reporter,
    ) -> None:
        self.argv = list(argv)
        self.paths = list(config_paths)
        self.flags = dict(flags)
        self.env = env
        self.report = reporter
        self.renew_every = env_seconds(env, "FAKE_NOMAD_RENEW_EVERY")
        self.validate_retry = env_seconds(env, "FAKE_NOMAD_VALIDATE_RETRY")
        exit_after = env_seconds(env, "FAKE_NOMAD_EXIT_AFTER")
        self.exit_at = None if exit_after is None else time.monotonic() + exit_after
        self.cfg: VaultConfig = {}
        self.token = ""
        self.token_source = "none"
        self.client: VaultHTTP | None = None
        self.outcome = Outcome(False)
        self.renew_at: float | None = None
        self.validate_at: float | None = None
        self.renew_stopped = False

    def _take_config(self, file_cfg: VaultConfig) -> None:
        self.cfg, self.token, self.token_source = agent_vault_config(file_cfg, self.flags, self.env)
        self.report.secret(self.token)

    def _establish(self) -> Outcome:
        """Stop any renewal, validate, and schedule what Nomad would do next."""
        self.renew_at = None
        self.validate_at = None
        self.renew_stopped = False
        self.outcome, self.client = validate(self.cfg, self.token)
        if self.outcome.ok:
            if self.outcome.renew:
                self.renew_at = time.monotonic()  # Nomad's renewal timer starts at zero
        elif self.validate_retry is not None:
            self.validate_at = time.monotonic() + self.validate_retry
        return self.outcome

    def start(self, cfg: VaultConfig, files: list[str]) -> None:
        self._take_config(cfg)
        outcome = self._establish()
        self.report.emit(
            "start",
            argv=self.argv,
            token_source=self.token_source,
            token_accessor=outcome.accessor,
            config_files=files,
            address=_config_str(self.cfg, "address") or None,
        )
        self.report.emit("validated", **outcome.report())

    def reload(self) -> None:
        try:
            cfg, _files = load_config(self.paths)
        except ConfigError as exc:
            self.report.emit(
                "reload",
                token_changed=False,
                config_changed=False,
                accessor=self.outcome.accessor,
                token_source=self.token_source,
                error=str(exc),
            )
            return
        new_cfg, new_token, _source = agent_vault_config(cfg, self.flags, self.env)
        token_changed = new_token != self.token
        config_changed = effective(new_cfg, new_token) != effective(self.cfg, self.token)
        if not config_changed:
            self.report.emit(
                "reload",
                token_changed=False,
                config_changed=False,
                accessor=self.outcome.accessor,
                token_source=self.token_source,
                error=None,
            )
            return
        self._take_config(cfg)
        outcome = self._establish()
        self.report.emit(
            "reload",
            token_changed=token_changed,
            config_changed=True,
            accessor=outcome.accessor,
            token_source=self.token_source,
            error=None,
        )
        self.report.emit("validated", **outcome.report())

    def revalidate(self) -> None:
        self.report.emit("validated", **self._establish().report())

    def renew(self) -> None:
        client = self.client
        if client is None:
            return
        increment = self.outcome.creation_ttl
        try:
            resp = client.call("POST", "auth/token/renew-self", self.token, {"increment": increment})
        except VaultUnreachable as exc:
            self._renew_failed(None, str(exc))
            return
        auth = resp.body.get("auth") if isinstance(resp.body, dict) else None
        if resp.status == 200 and isinstance(auth, dict) and as_int(auth.get("lease_duration")) > 0:
            lease = as_int(auth.get("lease_duration"))
            accessor = auth.get("accessor") if isinstance(auth.get("accessor"), str) else self.outcome.accessor
            self.report.emit("renewed", accessor=accessor, ttl=lease, increment=increment)
            self.renew_at = time.monotonic() + next_renew_delay(lease, self.renew_every)
            return
        if resp.status == 200:
            self._renew_failed(200, "renewal successful but no lease duration returned")
        else:
            self._renew_failed(resp.status, f"failed to renew the vault token: {api_error(resp)}")

    def _renew_failed(self, status: int | None, error: str) -> None:
        stopped = renew_is_fatal(status)
        self.report.emit("renew_failed", status=status, stopped=stopped, error=error, accessor=self.outcome.accessor)
        if stopped:
            self.renew_stopped = True
            self.renew_at = None
        else:
            self.renew_at = time.monotonic() + retry_delay(self.renew_every)

    def run(self, wake_fd: int) -> int:
        """Main loop: sleep in select() until a signal or the next deadline."""
        while True:
            deadlines = [d for d in (self.renew_at, self.validate_at, self.exit_at) if d is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            readable, _, _ = select.select([wake_fd], [], [], timeout)
            if readable:
                for signum in _drain(wake_fd):
                    if signum == signal.SIGHUP:
                        self.reload()
                    elif signum in (signal.SIGINT, signal.SIGTERM):
                        self.report.emit("signal", signal=signal.Signals(signum).name)
                        return 0
            now = time.monotonic()
            if self.exit_at is not None and now >= self.exit_at:
                self.report.emit("exit", reason="FAKE_NOMAD_EXIT_AFTER")
                return 0
            if self.validate_at is not None and now >= self.validate_at:
                self.revalidate()
            if self.renew_at is not None and now >= self.renew_at:
                self.renew_at = None
                self.renew()


def _drain(fd: int) -> list[int]:
    signums: list[int] = []
    while True:
        try:
            chunk = os.read(fd, 256)
        except BlockingIOError:
            return signums
        if not chunk:
            return signums
        signums.extend(chunk)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Python-level handler; the wakeup fd carries the signal number."""


def _install_signals() -> int:
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore)
    return rfd


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    env = dict(os.environ if env is None else env)
    wake_fd = _install_signals()  # first, so an early SIGHUP is queued, not fatal
    if len(argv) < 2 or argv[1] != "agent":
        print("usage: fake_nomad.py agent -config FILE [-config FILE|DIR ...]", file=sys.stderr)
        return 2
    try:
        paths, flags = parse_agent_args(argv[2:])
        reporter = Reporter(env.get("FAKE_NOMAD_REPORT") or None)
        agent = Agent(argv, paths, flags, env, reporter)
    except UsageError as exc:
        print(f"fake_nomad: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fake_nomad: cannot open FAKE_NOMAD_REPORT: {exc}", file=sys.stderr)
        return 1
    try:
        cfg, files = load_config(paths)
    except ConfigError as exc:
        reporter.emit("config_error", error=str(exc))
        print(f"fake_nomad: error loading configuration: {exc}", file=sys.stderr)
        return 1
    agent.start(cfg, files)
    return agent.run(wake_fd)


if __name__ == "__main__":
    sys.exit(main())
