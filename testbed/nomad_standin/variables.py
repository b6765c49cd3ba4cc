"""The stand-in Nomad's Variables API: `GET` and `PUT`/`POST /v1/var/<path>`, with check-and-set, as Nomad serves
them. Read from `hashicorp/nomad` v1.9.7:

- `command/agent/variable_endpoint.go`:47-83: the path is what follows `/v1/var/` (400 `missing variable path`
  when empty); GET reads, PUT and POST upsert (lock operations aside), DELETE deletes.
- `variableUpsert` (166-219): the body decodes into `structs.VariableDecrypted` (400 on a bad body); no items is
  400 `variable missing required Items object` (175-177); `?cas=N` (`parseCAS`, 271-280: 400 `can not parse cas`
  when N is not a number) turns the write into a check-and-set with `ModifyIndex = N`; a conflict answers
  409 with the conflicting variable's metadata (211-215) and `X-Nomad-Index`; a success answers the variable
  written (218).
- `nomad/state/state_store_variables.go`:160-193 (`varSetCASTxn`): `cas=0` is set-if-not-exists: a variable
  already there is a conflict; a non-zero index on a missing variable is a conflict with a zero value; an index
  that differs from the variable's ModifyIndex is a conflict; nothing is written on a conflict.
- `nomad/variables_endpoint.go`:255-326 (`makeVariablesApplyResponse`): the conflict carries metadata only,
  `Items` nil (297-300), so a 409 never shows the existing secrets.
- `variableQuery` (145-164): a missing variable is 404 `variable not found`.
- ACLs: a request without a token allowed on the path gets `structs.ErrPermissionDenied` (`variables_endpoint.go`
  :99-101, :333-348), answered 403 `Permission denied` (`command/agent/http.go`:690-700).

The server is a thread in the test process (TLS from the test CA, 127.0.0.1 only), stopped by `stop()`;
`variables` is its state, readable by the test.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.https_server import HTTPSServer, Replies

PREFIX = "/v1/var/"


@dataclass
class NomadVariables:
    server_pem: Path
    acl_token: str = ""  # "": ACLs off
    namespace: str = "default"
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    writes: int = 0  # PUT/POST requests that reached the handler

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._index = 100
        self._server = HTTPSServer("nomad-variables")
        self.port = 0

    @property
    def addr(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def items(self, path: str) -> dict[str, str]:
        with self._lock:
            return dict(self.variables[path]["Items"])

    def put(self, path: str, body: dict[str, Any], cas: int | None) -> tuple[int, dict[str, Any]]:
        """One upsert, as `variableUpsert` + `varSetCASTxn` do it: (status, answer)."""
        with self._lock:
            existing = self.variables.get(path)
            meta = {"Namespace": self.namespace, "Path": path}
            if cas is not None:
                if cas == 0 and existing is not None:  # state_store_variables.go:168-171
                    return 409, _metadata(existing)
                if cas != 0 and existing is None:  # 175-183: a plausible zero value
                    return 409, {**meta, "CreateIndex": 0, "ModifyIndex": 0, "Items": None}
                if existing is not None and cas != existing["ModifyIndex"]:  # 186-190
                    return 409, _metadata(existing)
            self._index += 1
            created = existing["CreateIndex"] if existing else self._index
            var = {**meta, "Items": dict(body["Items"]), "CreateIndex": created, "ModifyIndex": self._index}
            self.variables[path] = var
            return 200, dict(var)

    def start(self) -> NomadVariables:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.server_pem))
        owner = self

        class Handler(Replies):
            def _allowed(self) -> bool:
                if owner.acl_token and self.headers.get("X-Nomad-Token", "") != owner.acl_token:
                    self._text(403, "Permission denied")  # http.go:690-700
                    return False
                return True

            def _path(self) -> tuple[str, dict[str, str]] | None:
                raw, _, query = self.path.partition("?")
                if not raw.startswith(PREFIX):
                    self._text(404, f"Path {raw} not found")
                    return None
                path = raw[len(PREFIX) :]
                if not path:
                    self._text(400, "missing variable path")  # variable_endpoint.go:49-51
                    return None
                params = dict(p.partition("=")[::2] for p in query.split("&") if p)
                return path, params

            def do_GET(self) -> None:
                found = self._path()
                if found is None or not self._allowed():
                    return
                with owner._lock:
                    var = owner.variables.get(found[0])
                if var is None:
                    self._text(404, "variable not found")  # variable_endpoint.go:160-162
                else:
                    self._json(200, var, **{"X-Nomad-Index": str(var["ModifyIndex"])})

            def do_PUT(self) -> None:
                found = self._path()
                if found is None:
                    return
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with owner._lock:
                    owner.writes += 1
                if not self._allowed():
                    return
                path, params = found
                try:
                    body = json.loads(raw or b"{}")
                except ValueError as exc:
                    self._text(400, str(exc))  # decodeBody (171-173)
                    return
                if not isinstance(body, dict) or not body.get("Items"):
                    self._text(400, "variable missing required Items object")  # 175-177
                    return
                cas: int | None = None
                if params.get("cas", "") != "":
                    try:
                        cas = int(params["cas"])
                    except ValueError:
                        self._text(400, f"can not parse cas: {params['cas']}")  # parseCAS 271-280
                        return
                code, answer = owner.put(path, body, cas)
                self._json(code, answer, **{"X-Nomad-Index": str(answer.get("ModifyIndex") or 0)})

            do_POST = do_PUT

        self._server.start(Handler, ctx, self.port)
        self.port = self._server.port
        return self

    def stop(self) -> None:
        self._server.stop()


def _metadata(var: dict[str, Any]) -> dict[str, Any]:
    """A conflict's answer: the metadata, `Items` nil (variables_endpoint.go:297-300)."""
    return {k: v for k, v in var.items() if k != "Items"} | {"Items": None}
