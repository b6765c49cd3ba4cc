"""A stand-in Nomad that speaks workload identity: JWKS over TLS, signed identities, the upgrade check.

No Nomad binary can be installed here, so this serves what Vault's JWT auth method and an operator
read from a Nomad 1.7-1.9 server, each behaviour copied from Nomad's source (`hashicorp/nomad`,
tag v1.9.7 unless said; go-jose v3.0.4 is the JOSE library Nomad signs with, go.mod v1.9.7):

- `GET /.well-known/jwks.json`, unauthenticated (`nomad/structs/keyring.go`:39, `command/agent/http.go`:511,
  `nomad/keyring_endpoint.go`:384-386): one public key per root key that is not deprecated
  (`keyring_endpoint.go`:414-417), with `kid` = the root key ID, `use` = `sig` and `alg` RS256 when the
  key has an RSA part, else EdDSA (`nomad/encrypter.go`:873-885).
- Identities signed with the active root key, RS256 when it has an RSA part, else EdDSA, header `kid`
  and `typ: JWT` (`encrypter.go`:284-299); keyrings from before 1.7 have no RSA part.
- Claims (`nomad/structs/workload_id.go`:68-84, 188-221): `nomad_namespace`, `nomad_job_id`,
  `nomad_allocation_id` always; `nomad_task` for a task identity (203-205); `vault_role` when the job's
  vault block names one (209-212); `extra_claims` as a nested object with `${job.namespace}`-style
  interpolation (230-257); `nbf` = `iat` = now (191-200); `jti` random (218); `exp` only with a non-zero
  TTL (272-279); `sub` = `region:namespace:job:group:task:identity` (259-269); `aud` a plain string when
  there is one audience (214, go-jose `jwt/claims.go` v3.0.4:115-120); `iss` only with `oidc_issuer`
  (`encrypter.go`:279-282).
- `GET /v1/operator/upgrade-check/vault-workload-identity` (`command/agent/operator_endpoint.go`:531-558,
  `nomad/operator_endpoint.go`:790-880): needs `operator:read` (403 "Permission denied" otherwise);
  lists jobs with a task holding a `vault` block and no `vault_*` identity (819-844), nodes whose
  `nomad.version` is below 1.7.0 or unparsable (852-862) and the legacy Vault accessors in state (870-874);
  the field names are `api/operator.go`:417-430.
- `GET /v1/services` and `GET /v1/service/<name>` (Nomad's native service registry, `command/agent/http.go`
  v1.10.0:466-467; the fields are `api/services.go` v1.10.0:17-90): the registrations a test adds to `services`.
- `verify_https_client`: Nomad's HTTPS listener then demands a client certificate, which Vault's JWKS
  fetch does not present (hashicorp/vault#29435): `require_client_cert=True`.

The server is a thread in the test process (an `ssl`-wrapped `ThreadingHTTPServer` on 127.0.0.1),
stopped by `stop()`; it keeps its state in memory and takes changes (rotation, jobs, nodes) at any time.
"""

from __future__ import annotations

import ssl
import threading
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import OKPKey, RSAKey

from testbed.https_server import HTTPSServer, Replies

JWKS_PATH = "/.well-known/jwks.json"  # nomad/structs/keyring.go v1.9.7:39
UPGRADE_CHECK_PATH = "/v1/operator/upgrade-check/vault-workload-identity"  # api/operator.go v1.9.7:468
MIN_VERSION_VAULT_WID = (1, 7, 0)  # nomad/structs/workload_id.go v1.9.7:63 ("1.7.0-a")


@dataclass
class RootKey:
    """One root key of Nomad's keyring: its ID, its signing key, and its state."""

    key_id: str
    key: RSAKey | OKPKey
    state: str = "active"  # active | inactive | prepublished | deprecated (nomad/structs/keyring.go)

    @property
    def alg(self) -> str:
        return "RS256" if isinstance(self.key, RSAKey) else "EdDSA"

    def public_jwk(self) -> dict[str, Any]:
        # encrypter.go v1.9.7:873-885: kid, use=sig, alg; keyring_endpoint.go:50-54
        jwk = self.key.as_dict(private=False)
        jwk.update({"kid": self.key_id, "use": "sig", "alg": self.alg})
        return jwk


@dataclass
class Job:
    namespace: str
    job_id: str
    vault: bool = True  # a task with a vault block
    vault_identity: bool = False  # a vault_* identity on that task (operator_endpoint.go:830-836)

    def stub(self) -> dict[str, Any]:  # api JobListStub: the fields an operator reads
        return {"ID": self.job_id, "Name": self.job_id, "Namespace": self.namespace, "Status": "running"}


@dataclass
class Node:
    node_id: str
    version: str

    def stub(self) -> dict[str, Any]:
        return {"ID": self.node_id, "Name": self.node_id, "Version": self.version}


@dataclass
class NomadIdentity:
    """The stand-in server. `start()` serves over TLS with `server_pem` (key and chain)."""

    server_pem: Path
    region: str = "global"
    acl_token: str = ""  # "" : ACLs off (every request may read the upgrade check)
    require_client_cert: bool = False
    client_ca: Path | None = None
    keys: list[RootKey] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    vault_accessors: list[dict[str, Any]] = field(default_factory=list)
    jwks_requests: int = 0
    # Nomad's native service registry: (namespace, name, address, port) of each registration
    services: list[tuple[str, str, str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = HTTPSServer("nomad-identity")
        if not self.keys:
            self.rotate("RS256")

    # ---- the keyring ---------------------------------------------------------------------------

    def rotate(self, alg: str = "RS256", *, prepublish: bool = False) -> RootKey:
        """A new root key: active at once (the old one turns inactive and stays in the JWKS), or with
        `prepublish` published before it signs (Nomad 1.8.3+). EdDSA-only mimics a pre-1.7 keyring."""
        key_id = str(uuid.uuid4())
        params = {"kid": key_id, "use": "sig", "alg": alg}
        key: RSAKey | OKPKey
        key = (
            RSAKey.generate_key(2048, parameters=params)
            if alg == "RS256"
            else OKPKey.generate_key("Ed25519", parameters=params)
        )
        root = RootKey(key_id, key, "prepublished" if prepublish else "active")
        with self._lock:
            if not prepublish:
                for old in self.keys:
                    if old.state == "active":
                        old.state = "inactive"
            self.keys.append(root)
        return root

    def activate(self, key_id: str) -> None:
        with self._lock:
            for k in self.keys:
                if k.state == "active":
                    k.state = "inactive"
            next(k for k in self.keys if k.key_id == key_id).state = "active"

    def deprecate(self, key_id: str) -> None:
        with self._lock:
            next(k for k in self.keys if k.key_id == key_id).state = "deprecated"

    @property
    def active_key(self) -> RootKey:
        return next(k for k in self.keys if k.state == "active")

    def jwks(self) -> dict[str, Any]:
        with self._lock:  # keyring_endpoint.go v1.9.7:414-417: deprecated keys left out
            return {"keys": [k.public_jwk() for k in self.keys if k.state != "deprecated"]}

    # ---- identities ----------------------------------------------------------------------------

    def claims(
        self,
        namespace: str,
        job_id: str,
        *,
        group: str = "group",
        task: str = "task",
        identity: str = "vault_default",
        aud: Sequence[str] = ("vault.io",),
        ttl: int = 3600,
        extra_claims: Mapping[str, str] | None = None,
        vault_role: str = "",
        alloc_id: str | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The claims Nomad puts in a task's identity (workload_id.go v1.9.7:188-221)."""
        at = int(time.time() if now is None else now)
        alloc = alloc_id or str(uuid.uuid4())
        claims: dict[str, Any] = {
            "nomad_namespace": namespace,
            "nomad_job_id": job_id,
            "nomad_allocation_id": alloc,
            "nbf": at,  # 197-200
            "iat": at,
            "jti": str(uuid.uuid4()),  # 218
            "sub": ":".join([self.region, namespace, job_id, group, task, identity]),  # 260-268
        }
        if task:
            claims["nomad_task"] = task  # 203-205
        if vault_role:
            claims["vault_role"] = vault_role  # 209-212 (omitempty, 77)
        if extra_claims:  # 230-257: interpolated, then a nested object (81)
            subst = {
                "${job.region}": self.region,
                "${job.namespace}": namespace,
                "${job.id}": job_id,
                "${group.name}": group,
                "${alloc.id}": alloc,
                "${task.name}": task,
                "${vault.role}": vault_role,
            }
            out = {}
            for k, v in extra_claims.items():
                for a, b in subst.items():
                    v = v.replace(a, b)
                out[k] = v
            claims["extra_claims"] = out
        # 214 + go-jose jwt/claims.go v3.0.4:115-120: one audience is a plain string
        claims["aud"] = aud[0] if len(aud) == 1 else list(aud)
        if ttl:
            claims["exp"] = at + ttl  # 272-279: no exp without a TTL
        return claims

    def sign(self, claims: Mapping[str, Any], key: RootKey | None = None) -> str:
        """`claims` signed as Nomad signs (encrypter.go v1.9.7:284-301)."""
        root = key or self.active_key
        header = {"alg": root.alg, "kid": root.key_id, "typ": "JWT"}
        with warnings.catch_warnings():  # joserfc calls EdDSA deprecated (RFC 9864); Nomad still signs with it
            warnings.simplefilter("ignore")
            return jwt.encode(header, dict(claims), root.key, algorithms=[root.alg])

    def identity(self, namespace: str, job_id: str, **kw: Any) -> str:
        key = kw.pop("key", None)
        return self.sign(self.claims(namespace, job_id, **kw), key)

    # ---- the upgrade check ---------------------------------------------------------------------

    def upgrade_check(self) -> dict[str, Any]:
        """What `/v1/operator/upgrade-check/vault-workload-identity` answers (operator_endpoint.go:790-880)."""
        with self._lock:
            jobs = [j.stub() for j in self.jobs if j.vault and not j.vault_identity]
            nodes = [n.stub() for n in self.nodes if _version_below(n.version, MIN_VERSION_VAULT_WID)]
            return {
                "JobsWithoutVaultIdentity": jobs,
                "OutdatedNodes": nodes,
                "VaultTokens": list(self.vault_accessors),
                "Index": 1,
                "LastContact": 0,
                "KnownLeader": True,
            }

    # ---- serving -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def address(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return self.address + JWKS_PATH

    def start(self) -> NomadIdentity:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.server_pem))
        if self.require_client_cert:  # verify_https_client = true
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(str(self.client_ca))
        owner = self

        class Handler(Replies):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == JWKS_PATH:
                    with owner._lock:
                        owner.jwks_requests += 1
                    self._json(200, owner.jwks())
                elif path == "/v1/nodes":  # node:read; NodeListStub fields an operator reads
                    if owner.acl_token and self.headers.get("X-Nomad-Token", "") != owner.acl_token:
                        self._text(403, "Permission denied")
                    else:
                        with owner._lock:
                            self._json(200, [n.stub() for n in owner.nodes])
                elif path == "/v1/services":  # api/services.go v1.10.0:68-90: ServiceRegistrationListStub
                    with owner._lock:
                        spaces = sorted({ns for ns, _, _, _ in owner.services})
                        listing = [
                            {"Namespace": ns, "Services": [{"ServiceName": n, "Tags": []}
                                                           for n in sorted({n for s, n, _, _ in owner.services if s == ns})]}
                            for ns in spaces
                        ]  # fmt: skip
                    self._json(200, listing)
                elif path.startswith("/v1/service/"):  # api/services.go v1.10.0:17-66: ServiceRegistration
                    name = path.removeprefix("/v1/service/")
                    query = dict(p.split("=", 1) for p in self.path.partition("?")[2].split("&") if "=" in p)
                    ns = query.get("namespace", "default")
                    with owner._lock:
                        regs = [{"ID": f"_nomad-task-{i}", "ServiceName": n, "Namespace": s, "Address": a, "Port": p}
                                for i, (s, n, a, p) in enumerate(owner.services) if n == name and s == ns]  # fmt: skip
                    self._json(200, regs)
                elif path == UPGRADE_CHECK_PATH:
                    if owner.acl_token and self.headers.get("X-Nomad-Token", "") != owner.acl_token:
                        self._text(403, "Permission denied")  # structs.ErrPermissionDenied
                    else:
                        self._json(200, owner.upgrade_check())
                else:
                    self._text(404, f"Path {path} not found")

        self._server.start(Handler, ctx)
        return self

    def stop(self) -> None:
        self._server.stop()


def _version_below(text: str, minimum: tuple[int, int, int]) -> bool:
    """go-version's LessThan for the forms Nomad reports (`1.6.10`, `1.7.0-beta.1`); unparsable counts as old
    (operator_endpoint.go v1.9.7:856-858)."""
    core, _, _pre = text.partition("-")
    try:
        parts = tuple(int(p) for p in core.split("."))
    except ValueError:
        return True
    if len(parts) != 3:
        return True
    if parts != minimum:
        return parts < minimum
    return False  # 1.7.0-<pre> is not below "1.7.0-a" for the releases Nomad made (beta, rc)
