"""The agent's own configuration, reviewed for this integration: shown by `check`, reported by the tracker.

Reading Nomad's HCL costs about 30 ms (pyhcl builds its parser tables in every process), more than
run's start-up budget allows, so `run` only refuses what the agent's argv alone shows (-vault-token,
a different -vault-create-from-role) before the exec, and the tracker reviews the files right after.
"""

from __future__ import annotations

from collections.abc import Mapping

from nomad_vault_token.core.config import Settings, consumed_env
from nomad_vault_token.core.errors import ConfigError
from nomad_vault_token.nomad import agent_config, agent_findings
from nomad_vault_token.nomad.agent_config import VaultBlock
from nomad_vault_token.nomad.agent_findings import Finding
from nomad_vault_token.nomad.argv import AgentArgv


def review(
    settings: Settings, parsed: AgentArgv, environ: Mapping[str, str]
) -> tuple[VaultBlock | None, list[Finding]]:
    """The agent's merged vault block (None when a file cannot be read) and what it means for the hand-off."""
    try:
        block = agent_config.load_vault_block(parsed.configs, parsed)
    except ConfigError as exc:
        return None, [Finding("config", "fail", exc.message, "fix it: Nomad will not start with it either", "")]
    consumed = {var: environ[var] for var in consumed_env(environ)}
    return block, agent_findings.findings(
        block,
        vault_addr=settings.vault_addr,
        namespace=settings.namespace,
        task_role=settings.task_role,
        handoff=settings.handoff,
        consumed_env=consumed,
    )
