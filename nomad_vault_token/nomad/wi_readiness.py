"""Is this cluster ready to drop the legacy server token? Pure: observations in, verdicts out.

Nomad's documented order (`website/content/docs/integrations/vault/acl.mdx` v1.9.7:765-822): the
Vault side first; `vault { default_identity { ... } }` on the servers (then re-submit jobs); every
node on a Nomad with workload identity for Vault; no job still on the legacy flow and no legacy task
token left (`nomad setup vault -check`, `/v1/operator/upgrade-check/vault-workload-identity`,
`api/operator.go` v1.9.7:417-439: ready = all three lists empty). Nodes are held to 1.7.2, not the
endpoint's 1.7.0 (`nomad/structs/workload_id.go` v1.9.7:63): 1.7.0's keyring replication broke
identity verification after a leader election (fixed in 1.7.2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nomad_vault_token.nomad.agent_config import DefaultIdentity

MIN_NODE_VERSION = (1, 7, 2)
UNIQUE_CLAIM = "unique_id"
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Verdict:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def version_tuple(text: str) -> tuple[int, int, int] | None:
    m = _VERSION.match(text.strip().lstrip("v"))
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def server_config(identity: DefaultIdentity | None, *, user_claim: str, audience: str, line: str) -> Verdict:
    """This server's agent config: a default_identity with Vault's audience (and the unique ID the role uses)."""
    name = "server vault.default_identity"
    if identity is None:
        return Verdict(name, False, "no vault { default_identity { ... } } in the agent's config files",
                       f"add to every server's agent config, then restart or SIGHUP it: {line}")  # fmt: skip
    if audience not in identity.aud:
        return Verdict(name, False, f"{identity.where}: aud {list(identity.aud)} lacks {audience!r}, the role's "
                       "bound audience", f'aud = ["{audience}"] in default_identity')  # fmt: skip
    if user_claim == "unique-id" and UNIQUE_CLAIM not in identity.extra_claims:
        return Verdict(name, False, f"{identity.where}: no extra_claims.{UNIQUE_CLAIM}, which the workload role names "
                       "its entities by: logins fail with 'claim not found'", f"set it as in: {line}")  # fmt: skip
    return Verdict(name, True, f"{identity.where}: aud {', '.join(identity.aud)}"
                   + (f", extra_claims {', '.join(sorted(identity.extra_claims))}" if identity.extra_claims else ""))  # fmt: skip


def nodes(stubs: Sequence[Mapping[str, Any]]) -> Verdict:
    old = [n for n in stubs if (v := version_tuple(str(n.get("Version", "")))) is None or v < MIN_NODE_VERSION]
    if old:
        shown = ", ".join(f"{n.get('Name') or n.get('ID')} ({n.get('Version') or '?'})" for n in old[:5])
        more = f" and {len(old) - 5} more" if len(old) > 5 else ""
        return Verdict("nodes on Nomad 1.7.2+", False, f"{len(old)} of {len(stubs)} below 1.7.2: {shown}{more}",
                       "upgrade them (clients after the servers); 1.7.0-1.7.1 broke identities after a leader election")  # fmt: skip
    return Verdict("nodes on Nomad 1.7.2+", True, f"{len(stubs)} nodes")


def tracked_accessors(doc: Mapping[str, Any]) -> list[str]:
    """The accessors of the legacy task tokens of the upgrade check (`VaultAccessor.Accessor`, `api/operator.go`
    v1.9.7:443-455)."""
    return [str(t.get("Accessor") or "") for t in doc.get("VaultTokens") or [] if isinstance(t, Mapping)]


def orphan_verdict(role_orphan: bool, task_role: str, tokens: Mapping[str, bool | None]) -> Verdict:
    """Whether legacy task tokens Nomad still tracks outlive the server token (cutover's exception to waiting).

    `tokens`: accessor -> the token's own `orphan` (lookup-accessor), None when the token is gone. A role's
    `orphan` applies when a token is minted: a token minted through the role before it became orphan is a child
    of the server token that minted it, and revoking that token revokes it, whatever the role says now."""
    children = sorted(a for a, orphan in tokens.items() if orphan is False)
    if not role_orphan:
        return Verdict("no legacy task tokens", False, f"task role {task_role!r} is not orphan: its tokens are "
                       "children of the server token", "wait until those allocations are replaced or stopped, or "
                       "make the role orphan (bootstrap-roles) and wait for the tokens minted before")  # fmt: skip
    if children:
        shown = ", ".join(children[:3]) + (" ..." if len(children) > 3 else "")
        return Verdict("no legacy task tokens", False, f"{len(children)} tracked task token(s) not an orphan "
                       f"(minted before task role {task_role!r} became orphan; accessors {shown}): revoking the "
                       "server token would revoke them", "wait until those allocations are replaced (re-submitted "
                       "jobs) or stopped")  # fmt: skip
    alive = sum(1 for orphan in tokens.values() if orphan)
    return Verdict("no legacy task tokens", True, f"{alive} tracked task token(s), every one an orphan "
                   "(lookup-accessor): they outlive the server token and expire on their own; nothing of theirs "
                   "is revoked")  # fmt: skip


def upgrade_check(doc: Mapping[str, Any]) -> list[Verdict]:
    """The three lists of Nomad's upgrade check (`api/operator.go` v1.9.7:417-439)."""
    jobs = list(doc.get("JobsWithoutVaultIdentity") or [])
    outdated = list(doc.get("OutdatedNodes") or [])
    tokens = list(doc.get("VaultTokens") or [])
    out = []
    if jobs:
        shown = ", ".join(f"{j.get('Namespace', '?')}/{j.get('ID', '?')}" for j in jobs[:5])
        more = f" and {len(jobs) - 5} more" if len(jobs) > 5 else ""
        out.append(Verdict("jobs on workload identity", False, f"{len(jobs)} job(s) with a vault block and no vault "
                           f"identity: {shown}{more}", "re-submit them (nomad job run) now that the servers have "
                           "default_identity; stopped jobs count too: purge or re-submit them"))  # fmt: skip
    else:
        out.append(Verdict("jobs on workload identity", True, "no job on the legacy flow"))
    if outdated:
        out.append(Verdict("nodes Nomad reports outdated", False, f"{len(outdated)} node(s) below 1.7.0",
                           "upgrade them"))  # fmt: skip
    if tokens:
        allocs = sorted({str(t.get("AllocID", ""))[:8] for t in tokens})
        out.append(Verdict("no legacy task tokens", False, f"{len(tokens)} legacy Vault token(s) still tracked, for "
                           f"allocations {', '.join(allocs[:5])}{' ...' if len(allocs) > 5 else ''}",
                           "wait until those allocations are replaced (re-submitted jobs) or stopped: they are "
                           "children of the server token unless the task role was orphan when they were minted, "
                           "and revoking it would revoke them"))  # fmt: skip
    else:
        out.append(Verdict("no legacy task tokens", True, "Nomad tracks none"))
    return out
