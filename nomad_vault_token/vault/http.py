"""The one HTTP policy of every client the tool has, decided here and applied by each of them.

- **No proxy.** Nothing from the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, either
  case), and no proxy setting of the tool's own: it talks to Vault and Nomad on their own network,
  and a proxy would see every unseal key and token of a plain-http loopback address. (Vault's Go
  client reads `HTTP_PROXY` for remote addresses but never for loopback.)
- **No redirect followed.** A 3xx answer is refused (`Redirected`): a credential or a body never goes
  to an address the user did not give, and never over a weaker scheme. The raft snapshot stream
  follows a standby's 307 to the active node itself, under the same rules (`vault/raft.py`).
- **The CA pinned on every request**: the configured CA (`ca_cert`), else the default bundle; never
  `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE`; the client certificate only where a login asks for it (never
  hvac's `VAULT_CLIENT_CERT` fallback).
- **No ambient token**: hvac's `Client(token=None)` reads `VAULT_TOKEN` and `~/.vault-token`; `hvac_token`
  gives it "" instead, so a request without a token carries none.

requests' `Session` (hvac's and the prober's) gets it from `PolicySession`; stdlib urllib (Nomad's API,
the JWKS fetch) from `opener`; boto3 from `BOTO_PROXIES` (`snapshot/remote.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import urllib.request

    import requests

    from nomad_vault_token.core.address import Address

# botocore reads the environment's proxies when its Config has `proxies=None`; an empty dict is "none".
BOTO_PROXIES: dict[str, str] = {}
NO_PROXIES: dict[str, str | None] = {}


def hvac_token(token: str | None) -> str:
    """What to give hvac as the token: "" for none (hvac's None means `VAULT_TOKEN`/`~/.vault-token`)."""
    return token or ""


class Redirected(Exception):
    """A server answered a redirect, which is never followed. Holds no request (its body may hold a key)."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(f"HTTP {status} to {location or '(no Location)'}")
        self.status = status
        self.location = location

    def active_node(self, asked: str, allow_insecure_http: bool = False) -> str | None:
        """The node a Vault standby sends us to (its active node, what a standby answers when it does not
        forward), as `scheme://host:port`; None for any other redirect (`standby_target` says why) and for
        one to the node asked itself. Either way nothing follows it."""
        from nomad_vault_token.core.address import read_url

        target = standby_target(asked, self.location, allow_insecure_http)
        if isinstance(target, str) or target.origin == read_url(asked, "the address asked", True).origin:
            return None  # (`asked` is known to parse: standby_target has read it)
        return target.origin

    def line(self, what: str) -> str:
        """One line for `what` (a path, an address): what happened and what to do."""
        return (
            f"{what}: answered HTTP {self.status}, a redirect to {self.location or '(no Location)'!r}: not followed "
            "(no token, key or body goes to an address you did not give): give the address of the server itself"
        )


def standby_target(asked: str, location: str, allow_insecure_http: bool) -> Address | str:
    """Where a standby's redirect of the request for `asked` points, read by the one URL reader: the same
    `/v1/` path on another node, https (http only from an http address, to loopback or with
    --allow-insecure-http). The address, or why it is not a standby's redirect (for a refusal's message)."""
    from nomad_vault_token.core.address import read_url
    from nomad_vault_token.core.errors import ConfigError

    try:
        here = read_url(asked, "the address asked", True)
        there = read_url(location.partition("?")[0], "the redirect", allow_insecure_http)
    except ConfigError as exc:
        return exc.message
    if there.scheme != "https" and here.scheme != "http":
        return f"not https (a downgrade from {here.origin})"
    if there.path != here.path or not here.path.startswith("/v1/"):
        return "not the same path on another node"
    return there


def policy_session() -> requests.Session:
    """A requests Session under the policy: set `verify` (and `cert`) on it; every request uses them."""
    import requests

    class PolicySession(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            self.trust_env = False  # no proxy, no CA bundle, no .netrc from the environment
            self.proxies = {}

        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
            # Whatever the caller (hvac) passes: its cert/verify come from VAULT_* variables when empty.
            own_redirects = kwargs.pop("own_redirects", False)
            kwargs["allow_redirects"] = False
            kwargs["proxies"] = {}
            kwargs["verify"] = self.verify
            kwargs["cert"] = self.cert
            resp = super().request(method, url, *args, **kwargs)
            if resp.is_redirect and not own_redirects:
                status, location = resp.status_code, resp.headers.get("Location", "")
                resp.close()
                raise Redirected(status, location)
            return resp

    return PolicySession()


def request_own_redirects(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """A request under the policy whose 3xx comes back to the caller instead of raising `Redirected`: the
    raft stream follows a standby's 307 itself (`vault/raft.py`). `session` is a `policy_session()`."""
    request: Any = session.request  # PolicySession.request takes own_redirects; requests' own signature does not
    response: requests.Response = request(method, url, own_redirects=True, **kwargs)
    return response


def opener(ca_pem: str) -> urllib.request.OpenerDirector:
    """A urllib opener under the policy: no proxy handler (none from the environment), no redirect
    handler (a 3xx is an HTTPError the caller refuses), TLS trusting `ca_pem` only (the system CAs when
    it is empty)."""
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    director = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=ctx),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.HTTPDefaultErrorHandler(),
    ):
        director.add_handler(handler)
    return director
