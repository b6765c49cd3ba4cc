"""The keyring token's pure parts: the file's bytes, its states, what STATUS and tracker.json say, its schedule."""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from nomad_vault_token.core.config import Settings, load
from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.nomad import keyring_file
from nomad_vault_token.token import lease
from nomad_vault_token.token import tracker_state as t
from nomad_vault_token.token.tracker_report import RingView, ring_document, ring_status


def test_the_file_holds_the_token_and_nothing_else(tmp_path: Path) -> None:
    settings = Settings(keyring=True, keyring_token_file=tmp_path / "run" / "keyring-token")
    path = keyring_file.write(settings, Secret("s.abc123"))
    assert path.read_bytes() == b"s.abc123"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert keyring_file.stanza(path) == f'token = "file://{path}"'


@pytest.mark.parametrize("bad", ["s.abc\n", "s.abc\r\n", " s.abc", "s.a bc", "", "s.abc\x00"])
def test_a_token_nomad_would_send_with_whitespace_is_never_written(tmp_path: Path, bad: str) -> None:
    settings = Settings(keyring=True, keyring_token_file=tmp_path / "keyring-token")
    with pytest.raises(ConfigError, match="without trimming") as exc:
        keyring_file.write(settings, Secret(bad))
    assert not (tmp_path / "keyring-token").exists()
    assert "s.abc" not in str(exc.value) or bad == ""


def test_defaults_and_refusals(tmp_path: Path) -> None:
    s = load(None, environ={"RUNTIME_DIRECTORY": str(tmp_path)})
    assert s.keyring is False and s.keyring_token_path == tmp_path / "keyring-token"
    assert (s.keyring_mount, s.keyring_key, s.keyring_policy, s.keyring_role) == (
        "transit", "nomad-keyring", "nomad-keyring", "nomad-keyring-mint")  # fmt: skip
    assert s.keyring_state_file != s.state_file
    with pytest.raises(ConfigError, match="keyring_policy 'nomad_cluster'"):
        load(None, {"keyring": True, "keyring_policy": "nomad_cluster"}, environ={})
    with pytest.raises(ConfigError, match="same file"):
        load(None, {"keyring": True, "keyring_token_file": "/run/x", "token_config": "/run/x"}, environ={})


# ---- states -------------------------------------------------------------------------------------------


def test_nomad_renewing_the_token_is_its_use_and_our_renewal_is_not() -> None:
    r = t.ring_start("r0", has_token=True, degraded=False)
    assert r.state == "written"
    assert t.ring_looked(r, "r0").state == "written"
    ours = t.ring_renewed_by_us(r, "r1")
    assert t.ring_looked(ours, "r1").state == "written"
    used = t.ring_looked(ours, "r2")
    assert (used.state, used.used, used.used_once) == ("in_use", True, True)
    # a replacement: written again, not used yet, but Nomad did read its keyring since it started
    new = t.ring_replaced(t.ring_gone(used), "n0")
    assert (new.state, new.used, new.used_once) == ("written", False, True)


@pytest.mark.parametrize(
    ("ring", "waiting"),
    [
        (t.ring_start(None, has_token=True, degraded=True), True),  # agent started while Vault was away
        (t.ring_start(None, has_token=False, degraded=True), True),
        (t.ring_unreachable(t.ring_start("r0", has_token=True, degraded=False)), True),
        (t.ring_unreachable(t.ring_looked(t.ring_start("r0", has_token=True, degraded=False), "r1")), False),
        (t.ring_start("r0", has_token=True, degraded=False), False),
    ],
)
def test_waiting_for_vault_means_nomad_has_not_read_its_keyring_and_vault_cannot_be_asked(
    ring: t.Ring, waiting: bool
) -> None:
    assert t.ring_waiting_for_vault(ring) is waiting


def test_vault_back_returns_to_the_state_before_the_outage() -> None:
    used = t.ring_looked(t.ring_start("r0", has_token=True, degraded=False), "r1")
    away = t.ring_unreachable(used)
    assert away.state == "unreachable"
    assert t.ring_looked(away, "r1").state == "in_use"
    degraded = t.ring_start(None, has_token=True, degraded=True)
    # renewed before this start (by the agent's previous run): not a sign of this start's use
    back = t.ring_looked(degraded, "earlier")
    assert (back.state, back.used_once) == ("written", False)
    assert t.ring_looked(back, "now").state == "in_use"


def view(ring: t.Ring, **kw: object) -> RingView:
    base = RingView(
        accessor="abcdefgh1234",
        ring=ring,
        ttl=3600.0,
        last_renewal=None,
        renewed_by="",
        dead_since=None,
        unreachable_since=None,
        vault_state="",
        problem="",
        last_lookup=None,
        last_mint=None,
        path="/run/nomad-vault-token/keyring-token",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_status_never_hides_that_nomad_cannot_read_its_keyring() -> None:
    sealed = view(t.ring_start(None, has_token=True, degraded=True), vault_state="sealed")
    assert ring_status(sealed, 0) == "waiting for Vault to unwrap Nomad's keyring: sealed"
    dead = view(t.ring_gone(t.ring_looked(t.ring_start("a", has_token=True, degraded=False), "b")), dead_since=1.0)
    assert "DEAD" in ring_status(dead, 2) and "cannot read its keyring" in ring_status(dead, 2)
    missing = view(t.Ring("missing", None, used_once=True))
    assert ring_status(missing, 0).startswith("NO keyring token: Nomad cannot read its keyring")
    used = view(t.ring_looked(t.ring_start("a", has_token=True, degraded=False), "b"), last_renewal=90.0,
                renewed_by="Nomad")  # fmt: skip
    assert ring_status(used, 100) == "keyring token abcdefgh... ttl 1h00m, in use by Nomad, renewed 10s ago by Nomad"
    doc = ring_document(sealed, 0)
    assert doc["waiting_for_vault"] is True and doc["ttl"] is None and doc["accessor"] == "abcdefgh1234"


def test_a_dead_token_is_seen_within_90_seconds_with_the_default_settings() -> None:
    s = Settings()
    assert s.check_interval == 60
    # the longest wait between two looks at a healthy keyring token, for any TTL left
    longest = max(lease.check_delay(ttl, s.period, s.check_interval) for ttl in range(0, s.period + 1, 997))
    assert longest <= s.check_interval
    # and while the agent starts, it is looked at more often still
    start = t.ring_start("r0", has_token=True, degraded=False)
    assert t.ring_poll_delay(start, 0, s.adoption_timeout) == t.POLL_MIN
    assert t.ring_poll_delay(start, s.adoption_timeout + 1, s.adoption_timeout) == float("inf")


def test_a_token_nomad_never_read_after_its_start_is_said_out_loud() -> None:
    written = t.ring_looked(t.ring_start("r0", has_token=True, degraded=True), "r0")  # Vault back, no renewal
    assert "not used by Nomad yet" in ring_status(view(written, agent_age=5), 0)
    late = ring_status(view(written, agent_age=300), 0)
    assert "NOT read by Nomad 5m00s after its start: Nomad has not read its keyring" in late


# ---- the agent's keyring blocks, judged (pure) ---------------------------------------------------------

from nomad_vault_token.nomad.agent_config import VaultBlock  # noqa: E402
from nomad_vault_token.nomad.agent_findings import keyring_findings  # noqa: E402
from nomad_vault_token.nomad.keyring_config import KeyringBlock, TokenRef  # noqa: E402

RUN_WRITES = "/run/nomad-vault-token/keyring-token"
VAULT = "https://vault.example.com:8200"
GOOD = {"mount_path": "transit", "key_name": "nomad-keyring", "address": VAULT, "tls_ca_cert": "/etc/ca.pem"}


RUNS_FILE = TokenRef("file", RUN_WRITES, "a.hcl")


def transit(token: TokenRef | None = RUNS_FILE, **config: str) -> KeyringBlock:
    return KeyringBlock("transit", active=True, config={**GOOD, **config}, token=token, where="a.hcl",
                        active_where="a.hcl")  # fmt: skip


def judged(blocks: list[KeyringBlock], vault: VaultBlock | None = None, keyring: bool = True) -> dict[str, str]:
    found = keyring_findings(blocks, vault, keyring=keyring, token_path=RUN_WRITES, vault_addr=VAULT)
    return {f.key: f"{f.severity}: {f.message} | {f.fix}" for f in found}


@pytest.mark.parametrize(
    ("blocks", "vault", "key", "expect"),
    [
        ([transit()], None, "keyring.transit.token", "pass: a.hcl: token read from file://" + RUN_WRITES),
        ([], None, "keyring", "warn: no keyring block"),
        ([transit(TokenRef("file", "/etc/nomad.d/token", "a.hcl"))], None, "keyring.transit.token",
         "fail: a.hcl: Nomad reads the keyring token from /etc/nomad.d/token, but run writes it to " + RUN_WRITES),
        ([transit(TokenRef("literal", "", "a.hcl"))], None, "keyring.transit.token", "warn: a.hcl: the keyring token is "
         "written in the config file as plain text"),
        ([transit(None)], VaultBlock(token_set=True), "keyring.transit.token", "fail: a.hcl: keyring \"transit\" has no "
         "token: Nomad falls back to the vault block's token up to 1.9 (set here: the legacy server token"),
        ([transit(tls_ca_cert="")], None, "keyring.transit.mount_path", None),
        ([transit(address="https://other:8200")], None, "keyring.transit.address", "fail: a.hcl: keyring \"transit\": "
         "address https://other:8200 is not vault_addr"),
        ([transit(tls_skip_verify="true")], None, "keyring.transit.tls_skip_verify", "warn: a.hcl"),
        ([transit(), KeyringBlock("aead", active=True, where="b.hcl", active_where="b.hcl")], None, "keyring",
         "fail: 2 keyring blocks are active (transit, aead)"),
        ([transit(), KeyringBlock("aead", where="b.hcl"), KeyringBlock("awskms", where="c.hcl")], None, "keyring",
         "warn: 3 keyring blocks: Nomad before 1.11.3 fails to parse more than two"),
    ],
)  # fmt: skip
def test_keyring_blocks_are_judged_as_nomad_reads_them(
    blocks: list[KeyringBlock], vault: VaultBlock | None, key: str, expect: str | None
) -> None:
    found = judged(blocks, vault)
    if expect is None:
        assert key not in found
    else:
        assert found[key].startswith(expect), found[key]


def test_the_ca_path_fallback_quirk_is_named() -> None:
    block = KeyringBlock("transit", active=True, config={"mount_path": "t", "key_name": "k"},
                         token=TokenRef("file", RUN_WRITES, "a.hcl"), where="a.hcl")  # fmt: skip
    found = judged([block], VaultBlock(ca_file="/etc/vault-ca.pem", address=VAULT))
    quirk = found["keyring.transit.tls_ca_cert"]
    assert quirk.startswith("warn: a.hcl: keyring \"transit\" has no tls_ca_cert: Nomad fills it from the vault "
                            "block's ca_path, not its ca_file /etc/vault-ca.pem")  # fmt: skip
    assert 'tls_ca_cert = "/etc/vault-ca.pem"' in quirk


def test_without_keyring_true_the_blocks_are_still_read_but_not_held_to_runs_file() -> None:
    found = judged([transit(TokenRef("file", "/etc/other", "a.hcl"))], keyring=False)
    assert found["keyring.transit.token"].startswith("pass")
    assert judged([], keyring=False) == {}


def test_metrics_say_which_keyring_state_and_never_an_unknown_ttl_as_zero() -> None:
    from nomad_vault_token.core import metrics
    from nomad_vault_token.token.tracker_report import ring_gauges

    used = view(t.ring_looked(t.ring_start("a", has_token=True, degraded=False), "b"), last_mint=5.0)
    text = metrics.render(ring_gauges(used, 0)).decode()
    assert 'nomad_vault_token_keyring_state{state="in_use"} 1' in text
    assert 'nomad_vault_token_keyring_state{state="dead"} 0' in text
    assert "nomad_vault_token_keyring_token_in_use 1" in text and "nomad_vault_token_keyring_token_ttl_seconds 3600" in text
    assert "# HELP nomad_vault_token_keyring_token_last_mint_timestamp_seconds" in text
    degraded = metrics.render(ring_gauges(view(t.ring_start(None, has_token=True, degraded=True)), 0)).decode()
    assert "keyring_token_ttl_seconds" not in degraded and "nomad_vault_token_keyring_waiting_for_vault 1" in degraded
    dead = metrics.render(ring_gauges(view(t.ring_gone(t.ring_start("a", has_token=True, degraded=False))), 0)).decode()
    assert "nomad_vault_token_keyring_token_ttl_seconds 0" in dead
