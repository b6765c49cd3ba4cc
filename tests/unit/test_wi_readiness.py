"""nomad.wi_readiness and agent_config.load_default_identity without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomad_vault_token.nomad import wi_readiness as ready
from nomad_vault_token.nomad.agent_config import DefaultIdentity, load_default_identity

LINE = "vault { default_identity { ... } }"


def verdict(identity: DefaultIdentity | None, claim: str = "unique-id") -> ready.Verdict:
    return ready.server_config(identity, user_claim=claim, audience="vault.io", line=LINE)


def test_server_config_verdicts() -> None:
    assert not verdict(None).ok and LINE in verdict(None).fix
    assert not verdict(DefaultIdentity(aud=("other",))).ok
    no_claim = verdict(DefaultIdentity(aud=("vault.io",)))
    assert not no_claim.ok and "unique_id" in no_claim.detail
    assert verdict(DefaultIdentity(aud=("vault.io",)), claim="sub").ok
    assert verdict(DefaultIdentity(aud=("vault.io",), extra_claims={"unique_id": "x"})).ok


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        ("1.7.2", True),
        ("1.9.7+ent", True),
        ("1.8.0-beta.1", True),
        ("1.7.1", False),
        ("1.6.10", False),
        ("", False),
        ("x", False),
    ],
)
def test_nodes_need_1_7_2(version: str, ok: bool) -> None:
    assert ready.nodes([{"ID": "n", "Version": version}]).ok is ok


def test_upgrade_check_lists() -> None:
    clean = ready.upgrade_check({"JobsWithoutVaultIdentity": [], "OutdatedNodes": [], "VaultTokens": []})
    assert all(v.ok for v in clean)
    dirty = ready.upgrade_check({
        "JobsWithoutVaultIdentity": [{"ID": f"j{i}", "Namespace": "default"} for i in range(7)],
        "OutdatedNodes": [{"ID": "n"}],
        "VaultTokens": [{"AllocID": "abcdef0123", "Accessor": "a"}],
    })  # fmt: skip
    by = {v.check: v for v in dirty}
    assert "and 2 more" in by["jobs on workload identity"].detail
    assert not by["nodes Nomad reports outdated"].ok
    assert (
        "abcdef01" in by["no legacy task tokens"].detail
        and "children of the server token" in by["no legacy task tokens"].fix
    )
    assert ready.upgrade_check({})[0].ok  # null lists (Go's nil slices) are empty


def test_default_identity_merges_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.hcl").write_text('vault {\n  enabled = true\n  default_identity {\n    aud = ["vault.io"]\n'
                                    '    extra_claims {\n      unique_id = "${job.id}"\n    }\n  }\n}\n')  # fmt: skip
    (tmp_path / "b.hcl").write_text('vault {\n  default_identity {\n    ttl = "2h"\n    extra_claims {\n'
                                    '      team = "x"\n    }\n  }\n}\n')  # fmt: skip
    (tmp_path / "c.hcl").write_text(
        'vault {\n  name = "other"\n  default_identity {\n    aud = ["elsewhere"]\n  }\n}\n'
    )
    got = load_default_identity([tmp_path])
    assert got is not None
    assert got.aud == ("vault.io",) and got.ttl == "2h"
    assert dict(got.extra_claims) == {"unique_id": "${job.id}", "team": "x"}
    assert got.where.endswith("b.hcl")
    (tmp_path / "none.hcl").write_text("vault {\n  enabled = true\n}\n")
    assert load_default_identity([tmp_path / "none.hcl"]) is None


@pytest.mark.parametrize(
    ("role_orphan", "tokens", "ok", "words"),
    [
        (True, {}, True, "0 tracked"),
        (True, {"a1": True, "gone": None}, True, "1 tracked task token(s), every one an orphan"),
        (True, {"a1": True, "old": False}, False, "1 tracked task token(s) not an orphan"),  # minted before the flip
        (False, {"a1": True}, False, "is not orphan"),
        (False, {}, False, "is not orphan"),
    ],
)
def test_tracked_task_tokens_are_judged_by_their_own_orphan_flag(
    role_orphan: bool, tokens: dict[str, bool | None], ok: bool, words: str
) -> None:
    v = ready.orphan_verdict(role_orphan, "nomad-cluster", tokens)
    assert v.ok is ok and words in v.detail, v


def test_tracked_accessors_read_from_the_upgrade_check() -> None:
    doc = {"VaultTokens": [{"AllocID": "a", "Accessor": "acc1"}, {"AllocID": "b"}, "junk"]}
    assert ready.tracked_accessors(doc) == ["acc1", ""]
    assert ready.tracked_accessors({}) == []
