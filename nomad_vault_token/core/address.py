"""The one reader of every address the tool dials: Vault's (`vault_addr`, `--node`, the nodes file,
`leader_address` answers), Nomad's (`--nomad-addr`) and the JWKS URL.

An address is read by the HTTP stack's own parser (urllib3's `parse_url`, what requests dials) and
rebuilt as `scheme://host:port`: what is checked is what will be dialled. Anything that parser and
another could read differently, or that carries more than a place to connect to, is refused with one
line naming the field (ConfigError, exit 78): a backslash, `@` (userinfo), `%` (percent-encoding),
whitespace or a control character, a path other than empty or `/`, a query, a fragment, a scheme
other than http/https, no port number where one is written. Plain `http://` only to a loopback host
(`localhost`, 127.0.0.0/8, ::1) unless `allow_insecure_http`. urllib3 is imported when an address is read.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from nomad_vault_token.core.errors import ConfigError

DEFAULT_PORTS = {"https": 443, "http": 80}
_FORBIDDEN = {"\\": "a backslash", "@": "'@' (user info)", "%": "'%' (percent-encoding)"}
EXPECTED = "expected https://HOST:PORT (with the scheme) and nothing else"


@dataclass(frozen=True)
class Address:
    """An address as it will be dialled: lower-case scheme and host (IPv6 in brackets), a port always."""

    scheme: str
    host: str
    port: int
    path: str = ""  # only for `read_url` (the JWKS URL): the path, "" otherwise

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + self.path

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """`localhost`, or an IP literal in 127.0.0.0/8 or ::1 (a name is never resolved to decide)."""
    host = host.lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def read_address(raw: str, what: str, allow_insecure_http: bool = False) -> Address:
    """`raw` as `scheme://host:port`, or ConfigError (78) naming `what` and the address."""
    return _read(raw, what, allow_insecure_http, with_path=False)


def canonical(raw: str, what: str, allow_insecure_http: bool = False) -> str:
    """`read_address(...).origin`: the string to dial."""
    return read_address(raw, what, allow_insecure_http).origin


def read_url(raw: str, what: str, allow_insecure_http: bool = False) -> Address:
    """A URL with a path (the JWKS URL): the same rules, but a path of plain characters is kept."""
    return _read(raw, what, allow_insecure_http, with_path=True)


def _read(raw: str, what: str, allow_insecure_http: bool, *, with_path: bool) -> Address:
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    text = raw.strip()

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"{what} {raw!r}: {why}: {EXPECTED}")

    if not text:
        raise refuse("is empty")
    for char, name in _FORBIDDEN.items():
        if char in text:
            raise refuse(f"holds {name}")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise refuse("holds whitespace or a control character")
    scheme_end = text.find("://")
    if scheme_end <= 0:
        raise refuse("no scheme")
    try:
        parts = parse_url(text)
    except LocationParseError:
        raise refuse("not a URL (the port must be a number up to 65535)") from None
    scheme = (parts.scheme or "").lower()
    if scheme not in DEFAULT_PORTS:
        raise refuse(f"scheme {parts.scheme!r} is not http or https")
    if parts.auth is not None:
        raise refuse("holds user info")
    if not parts.host:
        raise refuse("no host")
    if parts.query is not None:
        raise refuse("holds a query ('?')")
    if parts.fragment is not None:
        raise refuse("holds a fragment ('#')")
    path = parts.path or ""
    if with_path:
        if path and not path.startswith("/"):
            raise refuse("the path must start with '/'")
    elif path not in ("", "/"):
        raise refuse(f"holds a path ({path!r})")
    authority = text[scheme_end + 3 :].split("/", 1)[0]
    if authority.endswith(":") or (parts.port == 0):
        raise refuse("the port is missing or 0")
    host = parts.host.lower()
    address = Address(scheme, host, parts.port or DEFAULT_PORTS[scheme], path if with_path else "")
    if scheme == "http" and not allow_insecure_http and not address.loopback:
        raise ConfigError(
            f"{what} {raw!r}: plain http to a non-loopback host would send secrets (tokens, unseal keys) in clear: "
            "use https://, or --allow-insecure-http if you really mean it"
        )
    return address
