"""`snapshot restore`'s steps left to the operator: one line each, with the exact command (pure, table-tested)."""

from __future__ import annotations

from nomad_vault_token.snapshot.restore import steps

A, B, C = "https://10.0.0.1:8200", "https://10.0.0.2:8200", "https://10.0.0.3:8200"


def test_one_node() -> None:
    got = steps(A, [], "--keys-file /root/keys", force=False)
    assert [s.command for s in got] == [
        "systemctl restart openbao (as a Nomad job: nomad alloc restart <alloc id>)",
        f"nomad-vault-token unseal --once --node {A} --keys-file /root/keys",
    ]
    assert got[0].line(1).startswith(f"1. restart the OpenBao server at {A}: ")


def test_three_nodes_join_then_unseal() -> None:
    got = steps(A, [B, C], "--keys-file K", force=False)
    assert len(got) == 5
    assert got[2].command == f"bao operator raft join -address={B} -leader-ca-cert=@/path/to/ca.pem {A}"
    assert got[4].command == f"nomad-vault-token unseal --once --node {A} --node {B} --node {C} --keys-file K"
    assert all("\n" not in s.line(i) for i, s in enumerate(got, start=1))


def test_force_says_that_newer_tokens_are_gone() -> None:
    assert steps(A, [], "--keys-file K", force=True)[-1].command == "nomad-vault-token check --mint"
