"""The stand-in Nomad's keyring: `keyring "transit"` blocks (Nomad 1.8.3+), root keys wrapped by Vault's transit
engine on disk, unwrapped at start, wrapped again at each rotation.

Each behaviour names what it copies (hashicorp/nomad at the tag named; ``encrypter.go`` is nomad/encrypter.go;
``transit_client.go`` / ``transit.go`` are go-kms-wrapping's wrappers/transit at v2.0.13):

* blocks: every key but ``active`` and ``name`` must be an HCL string ("failed to decode key %q to string",
  command/agent/config_parse.go v2.0.5:618-654); Community Edition refuses two active blocks ("only one
  server.keyring can be active in Nomad Community Edition", encrypter_ce.go v2.0.5:28-31);
* the token (``fallbackVaultConfig``, encrypter.go v2.0.5:117-147): the block's ``token``, else the
  default ``vault`` block's token (only up to 1.9: from 1.10.0 ``VaultConfig.Merge`` no longer copies it,
  so the merged block never has one), else ``VAULT_TOKEN`` as it was when the server started;
  ``tls_ca_cert`` falls back to the vault block's ``ca_path``, not ``ca_file`` (encrypter.go v2.0.5:136);
* a new wrapper at every use (``newKMSWrapper``, encrypter.go v2.0.5:1057-1098): a ``file://`` token is read
  again each time, without trimming (go-kms-wrapping options.go v2.0.19:168 ``WithNoTrimSpaces(true)``; Go's
  net/http then refuses to send a header value holding a newline); ``RenewTokenAsSelf`` at once
  (transit_client.go:141-181; a failure is silent, the wrapper has no logger) and a test ``Encrypt`` of "a"
  (transit.go:53): a wrapper that cannot encrypt is not built;
* at start, for each wrapped key: no wrapper, "root key cannot be decrypted" and no retry (encrypter.go
  v2.0.5:483-510); a wrapper whose Decrypt fails: retried for ever, 1-5 s back-off, with that same wrapper
  (and so the token it read) (:562-585); the server waits for its keyring: for ever up to 1.10.0
  (server.go v1.10.0:553), from 1.10.1 until ``start_timeout`` (30 s), then "failed to wait for keyring
  decryption to complete" and exit 1 (server.go v1.10.1:563-565, v2.0.5:579-582);
* rotation (a test creates the file named by FAKE_NOMAD_KEYRING_ROTATE): a new wrapper, the new key
  wrapped; a failure is logged "root key rotation failed" (core_sched.go v2.0.5:1217-1220) and the keys in
  memory stay as they were. SIGHUP does not reload keyring blocks (server.go v2.0.5:910-958).

Not modelled: the LifetimeWatcher each wrapper leaves running (it renews the token at about 2/3 of its TTL:
with the tests' 72 h period it never fires), aead blocks (an inactive aead block cannot decrypt keys wrapped
by transit anyway, encrypter.go v2.0.5:470-496), several servers, ``key_id_prefix``, ``namespace``,
``TRANSIT_WRAPPER_*`` variables.

Environment: FAKE_NOMAD_KEYRING_VERSION ("1.9", "1.10.0", "1.10.1"; default 1.10.1), FAKE_NOMAD_START_TIMEOUT
(seconds, default 30), FAKE_NOMAD_KEYRING_ROTATE (a file whose appearance triggers a rotation).
Events: keyring_wrapper (accessor, use), keyring_ready (keys), keyring_error (error, phase),
keyring_rotated (key_id, accessor), keyring_rotation_failed (error), keyring_waiting.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.nomad_standin.common import ConfigError
from testbed.nomad_standin.config import load_config_path, top_level_items
from testbed.nomad_standin.flags import parse_go_flags
from testbed.nomad_standin.report import Reporter
from testbed.nomad_standin.vault_api import TLSSettings, VaultHTTP, VaultUnreachable

VERSIONS = ("1.9", "1.10.0", "1.10.1")
TRANSIT_KEYS = {"mount_path", "key_name", "disable_renewal", "namespace", "address", "tls_ca_cert", "tls_ca_path",
                "tls_client_cert", "tls_client_key", "tls_server_name", "tls_skip_verify", "key_id_prefix", "token"}  # fmt: skip


class WrapperError(Exception):
    """The wrapper could not be built or could not encrypt / decrypt."""


@dataclass
class Block:
    provider: str
    name: str
    active: bool
    config: dict[str, str]


def read_blocks(args: Sequence[str]) -> tuple[list[Block], str, Any]:
    """The keyring blocks, data_dir and the merged default vault block's raw values, from the -config files."""
    blocks: list[Block] = []
    data_dir = ""
    vault: dict[str, Any] = {}
    for name, value in parse_go_flags(args):
        if name != "config":
            continue
        for f in load_config_path(value):
            for key, item in top_level_items(Path(f.path).read_text()):
                if key == "data_dir" and isinstance(item, str):
                    data_dir = item
                if key == "vault" and isinstance(item, dict):
                    vault.update({k: v for k, v in item.items() if v not in ("", None)})
                if key != "keyring" or not isinstance(item, dict):
                    continue
                for provider, body in item.items():
                    extra: dict[str, str] = {}
                    for k, v in body.items():
                        if k in ("active", "name"):
                            continue
                        if not isinstance(v, str):  # config_parse.go v2.0.5:637-640
                            raise ConfigError(f"Error loading {f.path}: failed to decode key {json.dumps(k)} to string")
                        extra[k] = v
                    blocks.append(Block(provider, str(body.get("name", "")), body.get("active") is True, extra))
    return blocks, data_dir, vault


class Keyring:
    def __init__(self, blocks: list[Block], data_dir: str, vault: Mapping[str, Any], env: Mapping[str, str],
                 report: Reporter) -> None:  # fmt: skip
        self.env = env
        self.report = report
        self.version = env.get("FAKE_NOMAD_KEYRING_VERSION", "1.10.1")
        if self.version not in VERSIONS:
            raise ConfigError(f"FAKE_NOMAD_KEYRING_VERSION={self.version!r}: use one of {', '.join(VERSIONS)}")
        if sum(b.active for b in blocks) > 1:  # encrypter_ce.go v2.0.5:28-31
            raise ConfigError("only one server.keyring can be active in Nomad Community Edition")
        transit = [b for b in blocks if b.provider == "transit"]
        if not transit:
            raise ConfigError("stand-in: only keyring \"transit\" blocks are modelled")
        self.block = next((b for b in transit if b.active), transit[0])
        self.config = dict(self.block.config)
        self._fallback(vault, env)
        self.store = Path(data_dir or ".") / "server" / "keystore" / "keyring.json"
        self.keys: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def _fallback(self, vault: Mapping[str, Any], env: Mapping[str, str]) -> None:
        """fallbackVaultConfig (encrypter.go v2.0.5:117-147), once, when the server starts."""
        vault_token = str(vault.get("token") or "") if self.version == "1.9" else ""  # vault.go v1.9.7:204-206
        for key, cfg, var in (
            ("address", vault.get("address"), "VAULT_ADDR"),
            ("token", vault_token, "VAULT_TOKEN"),
            ("tls_ca_cert", vault.get("ca_path"), "VAULT_CACERT"),  # ca_path, not ca_file: encrypter.go:136
            ("tls_client_cert", vault.get("cert_file"), "VAULT_CLIENT_CERT"),
            ("tls_client_key", vault.get("key_file"), "VAULT_CLIENT_KEY"),
            ("tls_server_name", vault.get("tls_server_name"), "VAULT_TLS_SERVER_NAME"),
        ):
            if key not in self.config:
                self.config[key] = str(cfg or "") or env.get(var, "")
        self.config.setdefault("tls_skip_verify", env.get("VAULT_SKIP_VERIFY", "") or "false")

    # ---- the wrapper (go-kms-wrapping transit) ------------------------------------------------------

    def _token(self) -> str:
        """ParsePaths: file:// read now, not trimmed; env://NAME; else the value itself."""
        raw = self.config.get("token", "")
        if raw.startswith("file://"):
            try:
                return Path(raw[len("file://"):]).read_text()
            except OSError as exc:
                raise WrapperError(f"error reading file at {raw}: {exc.strerror}") from None
        if raw.startswith("env://"):
            return self.env.get(raw[len("env://"):], "")
        return raw

    def wrapper(self, use: str) -> VaultHTTP:
        """newKMSWrapper + SetConfig: read the token, renew it as itself, test-encrypt "a"."""
        token = self._token()
        self.report.secret(token)
        self.report.secret(token.strip())
        ca = self.config.get("tls_ca_cert", "")
        tls = TLSSettings(
            ca_file=ca,
            server_name=self.config.get("tls_server_name", ""),
            insecure=self.config.get("tls_skip_verify") == "true",
        )
        client = VaultHTTP(self.config.get("address", ""), token, tls=tls)
        accessor = None
        if self.config.get("disable_renewal", "") != "true" and token:
            renewed = self._call(client, "PUT", "auth/token/renew-self", {"increment": 0})
            if renewed.status == 200:  # a failure only disables renewal, silently (transit_client.go:176-180)
                accessor = (renewed.body or {}).get("auth", {}).get("accessor")
        self.encrypt(client, b"a")  # transit.go:53
        self.report.emit("keyring_wrapper", accessor=accessor, use=use)
        return client

    def _call(self, client: VaultHTTP, method: str, path: str, body: Any) -> Any:
        try:
            return client.call(method, path, body)
        except ValueError:  # http.client, like Go's net/http, will not send a header value with a newline
            raise WrapperError('net/http: invalid header field value for "X-Vault-Token"') from None
        except VaultUnreachable as exc:
            raise WrapperError(str(exc)) from None

    def _path(self, op: str) -> str:
        return f"{self.config.get('mount_path', '')}/{op}/{self.config.get('key_name', '')}"

    def encrypt(self, client: VaultHTTP, plain: bytes) -> str:
        resp = self._call(client, "PUT", self._path("encrypt"), {"plaintext": base64.b64encode(plain).decode()})
        if resp.status != 200:
            raise WrapperError(f"error encrypting data: Error making API request. Code: {resp.status}")
        return str(resp.body["data"]["ciphertext"])

    def decrypt(self, client: VaultHTTP, ciphertext: str) -> bytes:
        resp = self._call(client, "PUT", self._path("decrypt"), {"ciphertext": ciphertext})
        if resp.status != 200:
            raise WrapperError(f"error decrypting data: Error making API request. Code: {resp.status}")
        return base64.b64decode(resp.body["data"]["plaintext"])

    # ---- start, rotation ------------------------------------------------------------------------------

    def _stored(self) -> list[dict[str, str]]:
        try:
            return list(json.loads(self.store.read_text()))
        except FileNotFoundError:
            return []

    def _save(self, key_id: str, wrapped: str) -> None:
        entries = [e for e in self._stored() if e["key_id"] != key_id] + [{"key_id": key_id, "wrapped": wrapped}]
        self.store.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.store.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, self.store)

    def start(self) -> int | None:
        """Unwrap every key on disk before the server goes on; the exit code when Nomad would give up."""
        timeout = float(self.env.get("FAKE_NOMAD_START_TIMEOUT", "30"))
        bounded = self.version == "1.10.1"
        deadline = time.monotonic() + timeout
        stored = self._stored()
        if not stored:  # a new cluster: the leader makes the first root key (wrapped by the active block)
            self.rotate("initialize")
            self.report.emit("keyring_ready", keys=len(self.keys))
            return None
        for entry in stored:
            try:
                client = self.wrapper("decrypt")
            except WrapperError as exc:  # encrypter.go v2.0.5:483-510: no retry
                self.report.emit("keyring_error", phase="start", error=f"root key cannot be decrypted: {exc}")
                return self._wait(bounded, deadline)
            delay = 1.0
            while True:  # encrypter.go v2.0.5:562-585: the same wrapper, for ever
                try:
                    self.keys[entry["key_id"]] = self.decrypt(client, entry["wrapped"])
                    break
                except WrapperError as exc:
                    self.report.emit("keyring_error", phase="decrypt", error=str(exc))
                    if bounded and time.monotonic() + delay > deadline:
                        return self._wait(bounded, deadline)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
        self.report.emit("keyring_ready", keys=len(self.keys))
        return None

    def _wait(self, bounded: bool, deadline: float) -> int:
        """The server blocks on IsReady: for ever (<= 1.10.0), or until start_timeout (1.10.1+)."""
        self.report.emit("keyring_waiting", bounded=bounded)
        if not bounded:
            while True:
                time.sleep(3600)
        time.sleep(max(deadline - time.monotonic(), 0))
        self.report.emit("keyring_error", phase="start", error="failed to wait for keyring decryption to complete: "
                         "context deadline exceeded")  # fmt: skip
        return 1

    def rotate(self, why: str = "rotation") -> bool:
        """Keyring.Rotate: a new root key wrapped by the active block, through a new wrapper."""
        key_id, key = secrets.token_hex(8), secrets.token_bytes(32)
        try:
            client = self.wrapper(why)
            wrapped = self.encrypt(client, key)
        except WrapperError as exc:  # core_sched.go v2.0.5:1217-1220
            self.report.emit("keyring_rotation_failed", error=f"root key rotation failed: {exc}", phase=why)
            return False
        with self.lock:
            self._save(key_id, wrapped)
            self.keys[key_id] = key
        self.report.emit("keyring_rotated", key_id=key_id, phase=why)
        return True

    def watch_rotations(self) -> None:
        """A test triggers a rotation by creating the file FAKE_NOMAD_KEYRING_ROTATE names."""
        trigger = self.env.get("FAKE_NOMAD_KEYRING_ROTATE", "")
        if not trigger:
            return

        def loop() -> None:
            path = Path(trigger)
            while True:
                if path.exists():
                    path.unlink()
                    self.rotate()
                time.sleep(0.1)

        threading.Thread(target=loop, daemon=True).start()


def setup(args: Sequence[str], env: Mapping[str, str], report: Reporter) -> Keyring | None:
    """The keyring part of NewServer: None without keyring blocks. Raises ConfigError."""
    blocks, data_dir, vault = read_blocks(args)
    if not blocks:
        return None
    if not vault.get("token") and env.get("VAULT_TOKEN"):  # command.go v1.9.7:303-306, read once at start
        vault["token"] = env["VAULT_TOKEN"]
    return Keyring(blocks, data_dir, vault, env, report)
