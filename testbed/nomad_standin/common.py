"""What every section of the stand-in shares: Nomad's defaults and flag tables, and its errors."""

from __future__ import annotations

import json
import re
from typing import Any

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
