"""Configuration loading: precedence, types, validation (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nomad_vault_token.core import config
from nomad_vault_token.core.durations import DurationError, format_duration, parse_duration
from nomad_vault_token.core.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = config.load(None, environ={})
    assert s.policies == ("nomad_cluster",) and s.period == 259200 and s.mint_mode == "role"
    assert s.token_config == Path("/run/nomad-vault-token/vault-token.hcl")


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = write(tmp_path, 'vault_addr = "https://file:8200"\nperiod = "24h"\n')
    assert config.load(path, environ={}).vault_addr == "https://file:8200"
    env = {"VAULT_ADDR": "https://vaultenv:8200"}
    assert config.load(path, environ=env).vault_addr == "https://vaultenv:8200"
    env["NOMAD_VAULT_TOKEN_VAULT_ADDR"] = "https://ownenv:8200"
    assert config.load(path, environ=env).vault_addr == "https://ownenv:8200"
    s = config.load(path, {"vault_addr": "https://flag:8200", "period": None}, environ=env)
    assert s.vault_addr == "https://flag:8200" and s.period == 86400


def test_systemd_directories_are_defaults(tmp_path: Path) -> None:
    s = config.load(None, environ={"STATE_DIRECTORY": "/var/lib/x:/var/lib/y", "RUNTIME_DIRECTORY": "/run/x"})
    assert s.state_dir == Path("/var/lib/x") and s.token_config == Path("/run/x/vault-token.hcl")


def test_env_list_and_bool(tmp_path: Path) -> None:
    s = config.load(
        None,
        environ={
            "NOMAD_VAULT_TOKEN_POLICIES": "a, b,a",
            "NOMAD_VAULT_TOKEN_ALLOW_INSECURE_HTTP": "yes",
            "VAULT_ADDR": "http://10.0.0.1:8200",
        },
    )
    assert s.policies == ("a", "b") and s.allow_insecure_http


def test_env_is_read_at_load_not_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_ADDR", "https://late:8200")
    assert config.load(None).vault_addr == "https://late:8200"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('vault_adress = "x"', "did you mean 'vault_addr'"),
        ("period = 72", "need a unit"),
        ('period = "72"', "no unit"),
        ('period = "-1h"', "not a duration"),
        ('period = "0"', "key 'period': must be more than 0"),
        ("policies = []", "empty"),
        ('policies = ["root"]', "root"),
        ("policies = [1]", "list of strings"),
        ('mint_mode = "x"', "role, create-orphan"),
        ('handoff = "pipe"', "file, env"),
        ('client_key = ""', "empty"),
        ('client_key = "key.pem"', "relative"),
        ('vault_addr = "vault:8200"', "scheme"),
        ('vault_addr = "http://vault.example:8200"', "non-loopback"),
        ('vault_addr = "https://vault:port"', "port"),
        ("allow_insecure_http = 1", "true or false"),
        ('min_ttl = "100h"', "shorter than period"),
        ("cert_warn_days = -3", "whole number"),
        ("[vault]\naddr = 1", "unknown key 'vault'"),
        ("vault_addr = ", "invalid TOML"),
    ],
)
def test_bad_file_names_key_and_file(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as err:
        config.load(path, environ={})
    assert needle in err.value.message
    assert "\n" not in err.value.message


def test_bad_env_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"\$NOMAD_VAULT_TOKEN_PERIOD"):
        config.load(None, environ={"NOMAD_VAULT_TOKEN_PERIOD": "soon"})


def test_http_loopback_is_allowed() -> None:
    assert config.load(None, environ={"VAULT_ADDR": "http://127.0.0.1:8200"}).vault_addr.startswith("http://")


def test_missing_default_file_is_fine_missing_explicit_is_not(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="is a directory"):
        config.load(tmp_path, environ={})


@pytest.mark.parametrize(
    ("text", "seconds"), [("72h", 259200), ("1h30m", 5400), ("45s", 45), ("2d", 172800), ("0", 0), ("90", 90)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_period_needs_a_unit() -> None:
    with pytest.raises(DurationError, match="no unit"):
        parse_duration("72", bare_seconds=False)


@pytest.mark.parametrize(("seconds", "text"), [(259080, "71h58m"), (250, "4m10s"), (12, "12s"), (-5, "0s")])
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.text(max_size=30))
def test_duration_parser_raises_only_its_own_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        assert "\n" not in str(exc)
    else:
        assert seconds >= 0


@given(
    st.dictionaries(
        st.sampled_from([*config.FIELDS, "bogus"]),
        st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.lists(st.text(max_size=5)), st.none()),
    )
)
def test_config_loader_raises_only_config_error(values: dict[str, object]) -> None:
    try:
        config.load(None, {k: v for k, v in values.items() if k in config.FIELDS}, environ={})
    except ConfigError as exc:
        assert "\n" not in exc.message


# Every setting that makes no sense at 0 (a timeout, an interval, the period): refused from any source,
# naming what the user typed (the flag, the variable, the file's key), before anything is contacted.
POSITIVE = {
    "period": "--period",
    "request_timeout": None,  # no flag: config file and environment only
    "check_interval": "--check-interval",
    "adoption_timeout": None,
    "snapshot_timeout": "--snapshot-timeout",
    "unseal_interval": "--interval",
    "unseal_stale_after": "--stale-after",
}


@pytest.mark.parametrize("key", sorted(POSITIVE))
@pytest.mark.parametrize("zero", ["0", "0s", "0h"])
def test_zero_is_refused_naming_what_was_typed(tmp_path: Path, key: str, zero: str) -> None:
    flag = POSITIVE[key]
    if flag is not None:
        with pytest.raises(ConfigError) as err:
            config.load(None, {key: zero}, environ={})
        assert err.value.message.startswith(f"flag {flag}: must be more than 0"), err.value.message
    var = config.env_name(key)
    with pytest.raises(ConfigError) as err:
        config.load(None, environ={var: zero})
    assert err.value.message.startswith(f"environment ${var}: must be more than 0"), err.value.message
    path = write(tmp_path, f'{key} = "{zero}"\n')
    with pytest.raises(ConfigError) as err:
        config.load(path, environ={})
    assert err.value.message.startswith(f"config {path}: key '{key}': must be more than 0"), err.value.message


def test_a_negative_duration_is_refused_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^flag --snapshot-timeout: '-5s' is not a duration"):
        config.load(None, {"snapshot_timeout": "-5s"}, environ={})


def test_the_settings_that_may_be_0_still_may() -> None:
    flags = {"wait_timeout": "0", "degraded_start_after": "0", "snapshot_max_age": "0", "snapshot_keep": "0"}
    s = config.load(None, flags, environ={})
    assert (s.wait_timeout, s.degraded_start_after, s.snapshot_max_age, s.snapshot_keep) == (0, 0, 0, 0)


def test_node_list_file_parsing(tmp_path: Path) -> None:
    from nomad_vault_token.core.config import parse_node_list

    source = tmp_path / "nodes"
    text = "# rendered from nomadService\nhttps://10.0.0.1:8200/\n\nhttps://10.0.0.2:8200  # a comment\nhttps://10.0.0.1:8200\n"
    assert parse_node_list(text, source, False) == ("https://10.0.0.1:8200", "https://10.0.0.2:8200")
    with pytest.raises(ConfigError, match="names no node"):
        parse_node_list("# nothing rendered\n\n", source, False)
    with pytest.raises(ConfigError, match=str(source)):
        parse_node_list("vault-1:8200\n", source, False)
    with pytest.raises(ConfigError, match="plain http"):
        parse_node_list("http://10.0.0.1:8200\n", source, False)
    assert parse_node_list("http://10.0.0.1:8200\n", source, True) == ("http://10.0.0.1:8200",)


def test_nodes_given_two_ways_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="one way only"):
        config.load(
            None, {"unseal_nodes": ["https://127.0.0.1:8200"], "unseal_nodes_file": str(tmp_path / "n")}, environ={}
        )
