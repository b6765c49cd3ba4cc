"""The one URL reader (`core.address`), as a table: what is dialled, and what is refused (78, one line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomad_vault_token.core import config
from nomad_vault_token.core.address import canonical, is_loopback, read_url
from nomad_vault_token.core.errors import EX_CONFIG, ConfigError

ACCEPTED = [
    ("https://vault.example.com:8200", "https://vault.example.com:8200"),
    ("https://vault.example.com:8200/", "https://vault.example.com:8200"),
    ("https://vault.example.com", "https://vault.example.com:443"),
    ("https://vault.example.com/", "https://vault.example.com:443"),
    ("http://127.0.0.1", "http://127.0.0.1:80"),
    ("HTTPS://Vault.Example.COM:8200", "https://vault.example.com:8200"),
    ("HtTp://LOCALHOST:8200", "http://localhost:8200"),
    ("http://localhost:8200", "http://localhost:8200"),
    ("http://127.0.0.2:8200", "http://127.0.0.2:8200"),
    ("http://[::1]:8200", "http://[::1]:8200"),
    ("https://[2001:db8::1]:8200/", "https://[2001:db8::1]:8200"),
    ("https://[2001:DB8::1]", "https://[2001:db8::1]:443"),
    ("  https://vault:8200  ", "https://vault:8200"),
    ("https://vault:08200", "https://vault:8200"),
]


@pytest.mark.parametrize(("raw", "dialled"), ACCEPTED)
def test_an_address_is_rebuilt_as_what_is_dialled(raw: str, dialled: str) -> None:
    assert canonical(raw, "vault_addr") == dialled


REFUSED = [
    # the finding: urlsplit reads the host after `\@`, urllib3 (what requests dials) before it
    ("http://evil.example:9999\\@127.0.0.1:8200", "backslash"),
    ("https://evil.example\\@127.0.0.1:8200", "backslash"),
    ("http://127.0.0.1:8200\\", "backslash"),
    ("https://user@vault:8200", "'@'"),
    ("https://user:pass@vault:8200", "'@'"),
    ("http://evil.example@127.0.0.1:8200", "'@'"),
    ("http://127.0.0.1:8200@evil.example", "'@'"),
    ("http://127%2e0.0.1:8200", "percent"),
    ("http://evil%2eexample:8200", "percent"),
    ("https://[fe80::1%25eth0]:8200", "percent"),
    ("https://vault:8200/v1", "path"),
    ("https://vault:8200/ui/", "path"),
    ("https://vault:8200//", "path"),
    ("https://vault:8200?x=1", "query"),
    ("https://vault:8200/?", "query"),
    ("https://vault:8200#frag", "fragment"),
    ("https://vault:8200/#", "fragment"),
    ("ftp://vault:8200", "scheme"),
    ("unix:///run/vault.sock", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("vault:8200", "no scheme"),
    ("//vault:8200", "no scheme"),
    ("127.0.0.1:8200", "no scheme"),
    ("", "empty"),
    ("   ", "empty"),
    ("https://", "no host"),
    ("https://:8200", "no host"),
    ("https://vault:", "port"),
    ("https://vault:0", "port"),
    ("https://vault:65536", "port"),
    ("https://vault:-1", "port"),
    ("https://vault:+1", "port"),
    ("https://vault:x", "port"),
    ("https://vault:8200:1", "port"),
    ("https://va ult:8200", "whitespace"),
    ("https://vault\n.example:8200", "whitespace"),
    ("https://vault\x00:8200", "control"),
    ("http://vault.example:8200", "plain http"),
    ("http://10.0.0.1:8200", "plain http"),
    ("http://127.1:8200", "plain http"),  # not an IP literal Python reads as loopback: refused, never guessed
    ("http://0x7f.0.0.1:8200", "plain http"),
    ("http://localhost.evil.example:8200", "plain http"),
    ("http://[::ffff:10.0.0.1]:8200", "plain http"),
]


@pytest.mark.parametrize(("raw", "why"), REFUSED)
def test_anything_else_is_refused_with_one_line_naming_the_field(raw: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        canonical(raw, "vault_addr")
    message = caught.value.message
    assert caught.value.exit_code == EX_CONFIG
    assert message.startswith(f"vault_addr {raw!r}: ")
    assert "\n" not in message
    assert why in message


def test_trailing_whitespace_is_stripped_not_dialled() -> None:
    assert canonical("https://vault:8200\t", "vault_addr") == "https://vault:8200"


@pytest.mark.parametrize("raw", ["http://vault.example:8200", "http://10.0.0.1", "http://[2001:db8::1]:8200"])
def test_allow_insecure_http_lets_plain_http_go_off_loopback(raw: str) -> None:
    assert canonical(raw, "vault_addr", allow_insecure_http=True).startswith("http://")


def test_allow_insecure_http_does_not_relax_the_shape() -> None:
    with pytest.raises(ConfigError, match="backslash"):
        canonical("http://evil.example:9999\\@127.0.0.1:8200", "vault_addr", allow_insecure_http=True)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.255.255.254", True), ("[::1]", True),
     ("::1", True), ("localhost.", False), ("127.1", False), ("10.0.0.1", False), ("evil.example", False),
     ("[::ffff:127.0.0.1]", False), ("0.0.0.0", False)],
)
def test_loopback_is_decided_on_the_literal_never_a_lookup(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_jwks_url_keeps_its_path_and_nothing_else() -> None:
    assert read_url("https://Nomad:4646/.well-known/jwks.json", "jwks_url").url == (
        "https://nomad:4646/.well-known/jwks.json"
    )
    for bad in ("https://a@nomad:4646/.well-known/jwks.json", "https://nomad:4646/x?y", "https://n\\@h/x"):
        with pytest.raises(ConfigError):
            read_url(bad, "jwks_url")


def test_config_keeps_the_canonical_address(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('vault_addr = "HTTPS://Vault.Example:8200/"\nunseal_nodes = ["https://A:1/", "https://a:1"]\n')
    settings = config.load(file, environ={})
    assert settings.vault_addr == "https://vault.example:8200"
    assert settings.unseal_nodes == ("https://a:1",)


@pytest.mark.parametrize(
    "line", ["vault_addr = 'http://evil.example:9999\\@127.0.0.1:8200'", "unseal_nodes = ['https://u@vault:1']"]
)
def test_config_refuses_through_the_reader(tmp_path: Path, line: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(line + "\n")  # TOML literal strings: the backslash is a backslash
    with pytest.raises(ConfigError, match=r"backslash|'@'"):
        config.load(file, environ={})


def test_the_nodes_file_is_read_by_the_same_reader(tmp_path: Path) -> None:
    source = tmp_path / "nodes"
    assert config.parse_node_list("https://A:1/\nhttps://a:1 # same\n", source, False) == ("https://a:1",)
    with pytest.raises(ConfigError, match="backslash"):
        config.parse_node_list("http://evil.example:9\\@127.0.0.1:8200\n", source, False)


HTTPS_ASKED = "https://vault.example:8200/v1/auth/token/lookup-self"
HTTP_ASKED = "http://127.0.0.1:8200/v1/auth/token/lookup-self"  # a plain-http loopback vault_addr


@pytest.mark.parametrize(
    ("asked", "location", "active"),
    [
        (HTTPS_ASKED, "https://10.0.0.2:8200/v1/auth/token/lookup-self", "https://10.0.0.2:8200"),  # same path
        (HTTPS_ASKED, "https://10.0.0.2:8200/v1/auth/token/lookup-self?x=1", "https://10.0.0.2:8200"),  # query apart
        (HTTPS_ASKED, "http://10.0.0.2:8200/v1/auth/token/lookup-self", None),  # a downgrade
        (HTTPS_ASKED, "http://127.0.0.2:8200/v1/auth/token/lookup-self", None),  # a downgrade, even to loopback
        (HTTPS_ASKED, "https://10.0.0.2:8200/v1/sys/health", None),  # another path
        (HTTPS_ASKED, "https://vault.example:8200/v1/auth/token/lookup-self", None),  # the address asked itself
        (HTTPS_ASKED, "https://evil@10.0.0.2:8200/v1/auth/token/lookup-self", None),  # what the one reader refuses
        (HTTPS_ASKED, "", None),
        # the standby of a plain-http loopback cluster: the same rule as the snapshot stream's (vault/raft.py)
        (HTTP_ASKED, "http://127.0.0.2:8200/v1/auth/token/lookup-self", "http://127.0.0.2:8200"),
        (HTTP_ASKED, "https://127.0.0.2:8200/v1/auth/token/lookup-self", "https://127.0.0.2:8200"),
        (HTTP_ASKED, "http://10.0.0.2:8200/v1/auth/token/lookup-self", None),  # plain http off this host
        (HTTP_ASKED, "http://127.0.0.1:8200/v1/auth/token/lookup-self", None),  # itself
        (HTTP_ASKED, "http://127.0.0.2:8200/v1/sys/health", None),
    ],
)
def test_a_redirect_is_a_standby_only_when_it_names_the_same_path_on_another_node_no_weaker(
    asked: str, location: str, active: str | None
) -> None:
    from nomad_vault_token.vault.http import Redirected

    assert Redirected(307, location).active_node(asked) == active


@pytest.mark.parametrize(
    ("location", "allow", "why"),
    [
        ("https://10.0.0.2:8200/v1/sys/storage/raft/snapshot", False, ""),
        ("http://10.0.0.2:8200/v1/sys/storage/raft/snapshot", True, "not https (a downgrade from https://"),
        ("https://10.0.0.2:8200/v1/sys/seal", False, "not the same path on another node"),
        ("https://evil@10.0.0.2:8200/v1/sys/storage/raft/snapshot", False, "the redirect"),
    ],
)
def test_the_snapshot_stream_and_the_error_mapping_read_a_standby_s_redirect_by_one_rule(
    location: str, allow: bool, why: str
) -> None:
    from nomad_vault_token.vault.http import Redirected, standby_target

    asked = "https://vault.example:8200/v1/sys/storage/raft/snapshot"
    target = standby_target(asked, location, allow)
    if why:
        assert isinstance(target, str) and target.startswith(why)
        assert Redirected(307, location).active_node(asked, allow) is None
    else:
        assert not isinstance(target, str) and target.url == location
        assert Redirected(307, location).active_node(asked, allow) == target.origin
