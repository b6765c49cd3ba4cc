"""Configuration: TOML file, then environment, then flags; the later wins.

Environment variables are read only when `load` is called, never at import time.
Every error names the key and where it came from (file, variable or flag).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from nomad_vault_token.core.durations import DurationError, parse_duration
from nomad_vault_token.core.errors import ConfigError, NvtError

DEFAULT_CONFIG = Path("/etc/nomad-vault-token/config.toml")
DEFAULT_STATE_DIR = Path("/var/lib/nomad-vault-token")
DEFAULT_RUNTIME_DIR = Path("/run/nomad-vault-token")
TOKEN_CONFIG_NAME = "vault-token.hcl"  # noqa: S105 - a file name
KEYRING_TOKEN_NAME = "keyring-token"  # noqa: S105 - a file name

# "duration": 0 allowed (it means none or for ever); "positive": a duration that must be more than 0
Kind = Literal["str", "int", "path", "bool", "duration", "positive", "list", "choice", "addresses"]


@dataclass(frozen=True)
class Settings:
    """Everything a command needs, validated. Durations are whole seconds."""

    vault_addr: str = "https://127.0.0.1:8200"
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    tls_server_name: str | None = None
    namespace: str | None = None
    allow_insecure_http: bool = False
    auth_mount: str = "cert"
    cert_role: str = "nomad_startup"
    mint_mode: str = "role"
    mint_role: str = "nomad-server-mint"
    policies: tuple[str, ...] = ("nomad_cluster",)
    period: int = 72 * 3600
    task_role: str = "nomad-cluster"
    handoff: str = "file"
    token_config: Path | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    min_ttl: int = 600
    wait_timeout: int = 0
    check_interval: int = 60  # a revoked token noticed within a minute: no task tokens until then (lookup-self: 1,440 a day)
    request_timeout: int = 10
    cert_warn_days: int = 30
    strict: bool = False
    adoption_timeout: int = 120
    on_not_adopted: str = "restart"
    stop_signal: str = "SIGINT"
    sighup_grace: int = 30
    degraded_start_after: int = 120
    snapshot_dir: Path | None = None
    snapshot_prefix: str = "vault"
    snapshot_keep: int = 0
    snapshot_max_age: int = 0
    snapshot_timeout: int = 600
    snapshot_auth: str | None = None  # None: chosen from the credentials given (snapshot.auth)
    snapshot_role: str = "nomad_snapshot"
    jwt_file: Path | None = None
    jwt_role: str = "nomad-snapshot"
    jwt_mount: str = "jwt-nomad"
    snapshot_copy_to: tuple[str, ...] = ()  # s3://BUCKET/PREFIX destinations
    # ---- workload identity (bootstrap-roles --workload-identity, check --workload-identity)
    workload_role: str = "nomad-workloads"
    workload_policy: str = "nomad-workloads"
    workload_user_claim: str = "unique-id"
    kv_mount: str = "secret"
    kv_version: int = 2
    allow_slashes_in_job_ids: bool = False
    # false after the cut-over to workload identity: `run` hands the agent no token at all
    legacy_token: bool = True
    # ---- the keyring token (Nomad 1.8.3+ `keyring "transit"`): a second periodic token, its own policy
    keyring: bool = False
    keyring_token_file: Path | None = None  # filled by load(): $RUNTIME_DIRECTORY/keyring-token
    keyring_mount: str = "transit"
    keyring_key: str = "nomad-keyring"
    keyring_policy: str = "nomad-keyring"
    keyring_role: str = "nomad-keyring-mint"
    # the Vault wrapping the keyring runs as a job of this same Nomad cluster (the cold-start trap)
    keyring_vault_in_cluster: bool = False
    # ---- unseal
    unseal_nodes: tuple[str, ...] = ()  # empty: vault_addr alone
    unseal_keys_file: Path | None = None
    unseal_credential: str | None = None
    unseal_interval: int = 10
    unseal_hold_file: Path | None = None
    unseal_stale_after: int = 600
    unseal_expect_threshold: int = 0  # 0: whatever the node says
    unseal_expect_shares: int = 0
    unseal_migrate: bool = False  # feed a node waiting for a seal migration (keys sent with migrate)
    unseal_nodes_file: Path | None = None  # the node list, one address a line, re-read when it changes
    metrics_dir: Path | None = None  # node_exporter's textfile directory; None: no metrics

    @property
    def state_file(self) -> Path:
        return self.state_dir / "token.json"

    @property
    def keyring_state_file(self) -> Path:
        """The keyring token kept across restarts (a second state, the same store)."""
        return self.state_dir / "keyring-token.json"

    @property
    def keyring_token_path(self) -> Path:
        assert self.keyring_token_file is not None  # filled by load()
        return self.keyring_token_file

    @property
    def verdict_file(self) -> Path:
        """The last full TLS preflight's verdict, by the files' digests (tls_verdict)."""
        return self.state_dir / "tls-verdict.json"

    @property
    def tracker_file(self) -> Path:
        """What the tracker last knew (no token in it), for `status`."""
        return self.state_dir / "tracker.json"

    @property
    def unseal_file(self) -> Path:
        """What the unsealer last knew (no keys in it), for `status`."""
        return self.state_dir / "unseal.json"

    @property
    def unseal_addresses(self) -> tuple[str, ...]:
        """The nodes `unseal` probes: unseal_nodes, or vault_addr alone."""
        return self.unseal_nodes or (self.vault_addr,)

    @property
    def token_config_path(self) -> Path:
        assert self.token_config is not None  # filled by load()
        return self.token_config

    def client_tls(self) -> tuple[Path, Path]:
        """The client certificate and key, or a ConfigError saying how to set them."""
        if self.client_cert is None or self.client_key is None:
            missing = "client_cert" if self.client_cert is None else "client_key"
            env = "VAULT_CLIENT_CERT" if missing == "client_cert" else "VAULT_CLIENT_KEY"
            raise ConfigError(
                f"{missing} is not set: set it in the config file, ${env} or --{missing.replace('_', '-')}"
            )
        return self.client_cert, self.client_key


# key -> (kind, allowed choices)
FIELDS: dict[str, tuple[Kind, tuple[str, ...]]] = {
    "vault_addr": ("str", ()),
    "ca_cert": ("path", ()),
    "client_cert": ("path", ()),
    "client_key": ("path", ()),
    "tls_server_name": ("str", ()),
    "namespace": ("str", ()),
    "allow_insecure_http": ("bool", ()),
    "auth_mount": ("str", ()),
    "cert_role": ("str", ()),
    "mint_mode": ("choice", ("role", "create-orphan")),
    "mint_role": ("str", ()),
    "policies": ("list", ()),
    "period": ("positive", ()),
    "task_role": ("str", ()),
    "handoff": ("choice", ("file", "env")),
    "token_config": ("path", ()),
    "state_dir": ("path", ()),
    "min_ttl": ("duration", ()),
    "wait_timeout": ("duration", ()),
    "check_interval": ("positive", ()),
    "request_timeout": ("positive", ()),
    "cert_warn_days": ("int", ()),
    "strict": ("bool", ()),
    "adoption_timeout": ("positive", ()),
    "on_not_adopted": ("choice", ("restart", "warn")),
    "stop_signal": ("choice", ("SIGINT", "SIGTERM")),
    "sighup_grace": ("duration", ()),
    "degraded_start_after": ("duration", ()),
    "snapshot_dir": ("path", ()),
    "snapshot_prefix": ("str", ()),
    "snapshot_keep": ("int", ()),
    "snapshot_max_age": ("duration", ()),
    "snapshot_timeout": ("positive", ()),
    "snapshot_auth": ("choice", ("cert", "token", "jwt")),
    "snapshot_role": ("str", ()),
    "jwt_file": ("path", ()),
    "jwt_role": ("str", ()),
    "jwt_mount": ("str", ()),
    "snapshot_copy_to": ("list", ()),
    # ---- workload identity
    "workload_role": ("str", ()),
    "workload_policy": ("str", ()),
    "workload_user_claim": ("choice", ("unique-id", "sub", "job-id")),
    "kv_mount": ("str", ()),
    "kv_version": ("int", ()),
    "allow_slashes_in_job_ids": ("bool", ()),
    "legacy_token": ("bool", ()),
    "keyring": ("bool", ()),
    "keyring_token_file": ("path", ()),
    "keyring_mount": ("str", ()),
    "keyring_key": ("str", ()),
    "keyring_policy": ("str", ()),
    "keyring_role": ("str", ()),
    "keyring_vault_in_cluster": ("bool", ()),
    # ---- unseal
    "unseal_nodes": ("addresses", ()),
    "unseal_keys_file": ("path", ()),
    "unseal_credential": ("str", ()),
    "unseal_interval": ("positive", ()),
    "unseal_hold_file": ("path", ()),
    "unseal_stale_after": ("positive", ()),
    "unseal_expect_threshold": ("int", ()),
    "unseal_expect_shares": ("int", ()),
    "unseal_migrate": ("bool", ()),
    "unseal_nodes_file": ("path", ()),
    "metrics_dir": ("path", ()),
}
assert set(FIELDS) == {f.name for f in fields(Settings)}

# A default that is not a plain value, as `--help` and docs/configuration.md say it (both are made from here)
DEFAULT_TEXT: dict[str, str] = {
    "ca_cert": "the system CAs",
    "token_config": f"$RUNTIME_DIRECTORY/{TOKEN_CONFIG_NAME} or {DEFAULT_RUNTIME_DIR / TOKEN_CONFIG_NAME}",
    "keyring_token_file": f"$RUNTIME_DIRECTORY/{KEYRING_TOKEN_NAME} or {DEFAULT_RUNTIME_DIR / KEYRING_TOKEN_NAME}",
    "state_dir": f"$STATE_DIRECTORY or {DEFAULT_STATE_DIR}",
    "snapshot_auth": "by what is given: a client certificate, else a token, else a JWT",
    "unseal_nodes": "vault_addr",
}
# What a default of 0 means for these keys
ZERO_MEANS: dict[str, str] = {
    "wait_timeout": "for ever",
    "snapshot_keep": "no limit",
    "snapshot_max_age": "no limit",
    "unseal_expect_threshold": "any",
    "unseal_expect_shares": "any",
}


def default_text(key: str) -> str | None:
    """`key`'s default as a user writes it (`72h`, `true`, `nomad_cluster`), or None when it has none."""
    if key in DEFAULT_TEXT:
        return DEFAULT_TEXT[key]
    value = getattr(Settings, key)
    kind = FIELDS[key][0]
    if value is None or value == ():
        return None
    if kind in ("duration", "positive"):
        text = duration_text(value)
    elif kind == "bool":
        text = "true" if value else "false"
    elif isinstance(value, tuple):
        text = ", ".join(value)
    else:
        text = str(value)
    return f"{text} ({ZERO_MEANS[key]})" if value == 0 and key in ZERO_MEANS else text


def duration_text(seconds: int) -> str:
    """Whole seconds as the config writes them, in the largest unit that divides them: 72h, 10m, 30s, 0."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s" if seconds else "0"


# Vault CLI's own variable names; every key also has NOMAD_VAULT_TOKEN_<KEY>.
VAULT_ENV = {
    "VAULT_ADDR": "vault_addr",
    "VAULT_CACERT": "ca_cert",
    "VAULT_CLIENT_CERT": "client_cert",
    "VAULT_CLIENT_KEY": "client_key",
    "VAULT_TLS_SERVER_NAME": "tls_server_name",
    "VAULT_NAMESPACE": "namespace",
}
ENV_PREFIX = "NOMAD_VAULT_TOKEN_"


def consumed_env(environ: Mapping[str, str]) -> list[str]:
    """The variables `load` takes from this environment: they are ours, not the agent's.

    Nomad's Vault client reads VAULT_CACERT, VAULT_CLIENT_KEY, ... too; passing on a client key
    without its certificate (or a CA meant for this tool) would change how Nomad talks to Vault.
    """
    return [var for var in VAULT_ENV if environ.get(var)] + [var for var in environ if var.startswith(ENV_PREFIX)]


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def load(
    config_file: Path | None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults < file < environment < flags; validate; return frozen Settings.

    `config_file` None means the default path, which may be missing. `flags` maps
    keys to values already typed by the CLI (None = not given).
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    state_directory = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state_directory:
        values["state_dir"] = Path(state_directory)

    path = config_file if config_file is not None else DEFAULT_CONFIG
    for key, raw in _read_file(path, explicit=config_file is not None).items():
        values[key] = _coerce(key, raw, f"config {path}: key '{key}'", from_file=True)

    for var, key in VAULT_ENV.items():
        if env.get(var):
            values[key] = _coerce(key, env[var], f"environment ${var}", from_file=False)
    for key in FIELDS:
        var = env_name(key)
        if var in env:
            values[key] = _coerce(key, env[var], f"environment ${var}", from_file=False)

    for key, raw in (flags or {}).items():
        if raw is None:
            continue
        if key not in FIELDS:
            raise AssertionError(f"unknown flag key {key}")  # programming error, not user's
        values[key] = _coerce(key, raw, f"flag {_flag_of(key)}", from_file=False)

    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if "token_config" not in values:
        values["token_config"] = Path(runtime or DEFAULT_RUNTIME_DIR) / TOKEN_CONFIG_NAME
    if "keyring_token_file" not in values:
        values["keyring_token_file"] = Path(runtime or DEFAULT_RUNTIME_DIR) / KEYRING_TOKEN_NAME
    settings = Settings(**values)
    return _validate(settings)


def _flag_of(key: str) -> str:
    """The command-line flag that sets config `key` (`policies` is `--policy`, `unseal_nodes` `--node`)."""
    from nomad_vault_token.core import options

    found = (o.flags[0] for o in options.OPTIONS if o.setting and o.config_key == key)
    return next(found, "--" + key.replace("_", "-"))


def _read_file(path: Path, explicit: bool) -> dict[str, Any]:
    import tomllib

    from nomad_vault_token.core.files import unreadable

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config {path}: file not found: create it or pass another --config") from None
        return {}
    except OSError as exc:
        raise unreadable("config", path, exc, "pass the TOML file itself") from None
    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config {path}: not UTF-8 text: save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: invalid TOML: {exc}") from None
    for key in parsed:
        if key not in FIELDS:
            import difflib  # only for a wrong key: not on every start

            close = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(FIELDS)}"
            raise ConfigError(f"config {path}: unknown key '{key}'{hint}")
    return parsed


def _coerce(key: str, raw: Any, where: str, from_file: bool) -> Any:
    kind, choices = FIELDS[key]
    if kind == "bool":
        return _to_bool(raw, where)
    if kind == "list":
        return _to_list(raw, where)
    if kind == "addresses":
        return _to_addresses(raw, where)
    if kind == "int":
        return _to_int(raw, where)
    if isinstance(raw, bool) or not isinstance(raw, (str, Path)):
        if kind in ("duration", "positive") and isinstance(raw, int):
            raise ConfigError(f'{where}: durations need a unit: write "{raw}s" or "{raw}h" (a string)')
        raise ConfigError(f"{where}: expected a string, got {type(raw).__name__}")
    text = str(raw).strip()
    if kind == "path":
        return _to_path(text, where, from_file)
    if kind in ("duration", "positive"):
        try:
            seconds = parse_duration(text, bare_seconds=key != "period")
        except DurationError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if kind == "positive" and seconds <= 0:
            raise ConfigError(f"{where}: must be more than 0 (e.g. {'72h' if key == 'period' else '30s'})")
        return seconds
    if kind == "choice" and text not in choices:
        raise ConfigError(f"{where}: {text!r} is not one of: {', '.join(choices)}")
    if not text:
        raise ConfigError(f"{where}: is empty: give a value or remove it")
    return text


def _to_bool(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    raise ConfigError(f"{where}: expected true or false, got {raw!r}")


def _to_int(raw: Any, where: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        return int(raw.strip())
    raise ConfigError(f"{where}: expected a whole number (0 or more), got {raw!r}")


def _to_list(raw: Any, where: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split(",")]
    elif isinstance(raw, (list, tuple)) and all(isinstance(i, str) for i in raw):
        items = [i.strip() for i in raw]
    else:
        raise ConfigError(f'{where}: expected a list of strings, e.g. ["nomad_cluster"]')
    items = [i for i in items if i]
    if not items:
        raise ConfigError(f"{where}: is empty: name at least one policy, e.g. nomad_cluster")
    if "root" in items:
        raise ConfigError(f"{where}: 'root' is not allowed: give Nomad its own policy")
    return tuple(dict.fromkeys(items))


def _to_addresses(raw: Any, where: str) -> tuple[str, ...]:
    """Vault node addresses (`https://HOST:PORT`): a list, or a comma-separated string."""
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split(",")]
    elif isinstance(raw, (list, tuple)) and all(isinstance(i, str) for i in raw):
        items = [i.strip() for i in raw]
    else:
        raise ConfigError(f'{where}: expected a list of addresses, e.g. ["https://vault-1.example.com:8200"]')
    items = [i.rstrip("/") for i in items if i]
    if not items:
        raise ConfigError(f"{where}: is empty: name at least one node, e.g. https://vault-1.example.com:8200")
    return tuple(dict.fromkeys(items))


def _to_path(text: str, where: str, from_file: bool) -> Path:
    if not text:
        raise ConfigError(f"{where}: is empty: give an absolute path or remove it")
    path = Path(text)
    if not path.is_absolute():
        if from_file:
            raise ConfigError(f"{where}: {text!r} is relative: use an absolute path")
        path = Path.cwd() / path
    return path


def _validate(s: Settings) -> Settings:
    """Check the settings; return them with every address as it will be dialled (`core.address`)."""
    if s.min_ttl >= s.period:
        raise ConfigError(f"min_ttl ({s.min_ttl}s) must be shorter than period ({s.period}s)")
    vault_addr = check_address(s.vault_addr, s.allow_insecure_http)
    nodes = tuple(dict.fromkeys(check_address(n, s.allow_insecure_http, what="unseal_nodes") for n in s.unseal_nodes))
    if s.keyring and s.keyring_policy in s.policies:
        raise ConfigError(
            f"keyring_policy {s.keyring_policy!r}: is the server token's policy too: the keyring token must "
            "have a policy of its own (encrypt/decrypt on one key): choose another keyring_policy"
        )
    if s.keyring and s.keyring_role in (s.mint_role, s.task_role):
        raise ConfigError(
            f"keyring_role {s.keyring_role!r}: is the mint or task role's name too: give it a name of its own"
        )
    if s.keyring and s.token_config is not None and s.keyring_token_file == s.token_config:
        raise ConfigError("keyring_token_file and token_config are the same file: give each token its own file")
    if s.unseal_keys_file is not None and s.unseal_credential is not None:
        raise ConfigError("unseal_keys_file and unseal_credential are both set: give the keys one way only")
    if s.unseal_nodes and s.unseal_nodes_file is not None:
        raise ConfigError("unseal_nodes and unseal_nodes_file are both set: give the nodes one way only")
    if (vault_addr, nodes) == (s.vault_addr, s.unseal_nodes):
        return s
    from dataclasses import replace

    return replace(s, vault_addr=vault_addr, unseal_nodes=nodes)


def parse_node_list(text: str, source: Path, allow_insecure_http: bool) -> tuple[str, ...]:
    """A node-list file (`unseal_nodes_file`): one address a line, `#` comments and blank lines
    ignored, duplicates dropped; at least one node; each as it will be dialled (`core.address`).
    The watcher re-reads it when it changes."""
    items = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    nodes = tuple(dict.fromkeys(check_address(i, allow_insecure_http, what=str(source)) for i in items if i))
    if not nodes:
        raise ConfigError(f"{source}: names no node: one address a line, e.g. https://vault-1.example.com:8200")
    return nodes


def check_address(addr: str, allow_insecure_http: bool, what: str = "vault_addr") -> str:
    """`addr` as it will be dialled (`scheme://host:port`), or ConfigError (78): the one URL reader,
    `core.address.read_address` (anything but scheme, host and port refused; http only to loopback)."""
    from nomad_vault_token.core.address import canonical

    return canonical(addr, what, allow_insecure_http)


@dataclass(frozen=True)
class Loaded:
    """What `load_lenient` found: the settings, or the one-line error that kept them from loading."""

    settings: Settings | None
    error: str | None
    source: str  # the config file read (or the default path)


def load_lenient(config_file: Path | None, flags: Mapping[str, Any] | None = None) -> Loaded:
    """`load`, with its error handed back instead of raised (for `check`, which reports it as a finding)."""
    source = str(config_file or DEFAULT_CONFIG)
    try:
        return Loaded(load(config_file, flags), None, source)
    except NvtError as exc:
        return Loaded(None, exc.message, source)
