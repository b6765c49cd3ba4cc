"""The command table: one row per command, as pip's `commands/__init__.py` keeps it.

A row names the module that holds the command's `main` (imported only when the command runs), how its
settings are made, its default output format, its help and its positional arguments. The typer app
(`app`) is built from it and the dispatcher (`dispatch`) runs from it: adding a command is a row
here, its options in `core.options`, and its module in `commands/`. Stdlib only: `run`'s fast path
reads this table too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nomad_vault_token.core import options

# How a command gets its settings:
#   load     config file < environment < flags, validated (`core.config.load`): a bad config is an error
#   lenient  the same, but a config that does not load is handed over as a finding (`check` reports it)
#   flags    only the flags given, raw: the command writes a config and reads none (`install`)
SettingsFrom = Literal["load", "lenient", "flags"]


@dataclass(frozen=True)
class Positional:
    name: str
    help: str
    metavar: str
    path: bool = False


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # under nomad_vault_token.commands; its `main(settings, **own options)` runs the command
    help: str
    settings: SettingsFrom = "load"
    default_format: str = "text"
    passes_format: bool = False  # main gets `fmt` (it shapes its own output by it)
    agent: str | None = None  # the help of `-- AGENT_ARGV...`; None: the command takes no agent command line
    positionals: tuple[Positional, ...] = ()
    offline: tuple[str, ...] = ()  # values of the first positional that need no config (defaults only)

    @property
    def module_path(self) -> str:
        return f"nomad_vault_token.commands.{self.module}"


SNAPSHOT_POSITIONALS = (
    Positional("action", "verify, restore-test or restore; none: take a snapshot", "[verify|restore-test|restore]"),
    Positional(
        "file",
        "the snapshot file or s3://BUCKET/PREFIX/NAME.snap (verify, restore-test, restore); restore: also latest",
        "[FILE|URL|latest]",
    ),
)

TABLE: dict[str, Command] = {
    options.TOKEN: Command(
        options.TOKEN,
        "token",
        """Log in, mint a server token and print it: the drop-in for the old script's two `vault` lines.

    Example: NOMAD_TOKEN=$(nomad-vault-token token)
    """,
        passes_format=True,
    ),
    options.CHECK: Command(
        options.CHECK,
        "check",
        """Check now everything Nomad will check, with Nomad's own wording, plus config, key and certificate.

    Give the agent's command line after -- (check -- /usr/bin/nomad agent -config /etc/nomad.d) to check
    its argv and the vault block of its config files too. Exit 0 when all pass (warnings allowed), 78 on
    a local or agent-config failure, 77 on a Vault-side one, 69 if Vault is down.

    --workload-identity checks the JWT side instead (mount, config, role with an admin token; Nomad's
    JWKS; with --jwt-file a task's login and its paths). --workload-identity-readiness: is the cluster
    ready to drop the server token (exit 75 while not)?
    """,
        settings="lenient",
        agent="the agent's command line, after --, as in the unit's ExecStart: its -config files are checked too",
    ),
    options.CUTOVER: Command(
        options.CUTOVER,
        "cutover",
        """After the move to workload identity: revoke this host's legacy server token, once nothing needs it.

    Refused, saying why, until: the readiness checks pass (check --workload-identity-readiness: Vault side,
    vault.default_identity, nodes 1.7.2+, no job or allocation left on legacy tokens); legacy_token = false
    in the config and the agent restarted since (run then hands over no token; a SIGHUP cannot remove one);
    no agent config file sets vault.token. Then the saved server token is revoked and the state file removed.
    Exit codes: 0 done (or nothing to do, or --check), 75 not ready yet, 78 config, 77/69 Vault.
    """,
        agent="the agent's command line, after --, as in the unit's ExecStart: its -config files are read",
    ),
    options.STATUS: Command(
        options.STATUS,
        "status",
        """Show the server token run keeps: accessor, policies, role, TTL, expiry, last renewal; and the certificate.

    Never prints the token. Exit 1 if there is no saved token, 77 if Vault says it is no longer valid.
    """,
    ),
    options.RUN: Command(
        options.RUN,
        "run",
        """Get the server token (reused across restarts), hand it to the agent, and exec the agent.

    The systemd ExecStart wrapper: nomad-vault-token run -- /usr/bin/nomad agent -config /etc/nomad.d
    The agent keeps this process's PID; a tracker process beside it keeps the token alive.
    """,
        agent="the agent's command, after --: e.g. -- /usr/bin/nomad agent -config /etc/nomad.d",
    ),
    options.INSTALL: Command(
        options.INSTALL,
        "install",
        """Install the systemd unit, the config file and the service's directories; idempotent, for Ansible.

    Writes /etc/systemd/system/nomad.service (0644), /etc/nomad-vault-token/config.toml (0640, in a 0750
    directory), /var/lib/nomad-vault-token and /run/nomad-vault-token (0700), only where they differ.
    The config holds exactly the keys given by flags and --set (environment variables are not read), or a copy
    of --config-source; with neither, an existing config is left alone.

    Prints one JSON object: {"version": 1, "changed": ..., "changes": [{"path": ..., "action": ...}]},
    action one of created, updated, unchanged (or would create, would update with --check).

    Exit codes: 0 done (changed or not), 2 usage, 78 bad config or path (nothing in the way is replaced),
    1 systemctl daemon-reload failed (the unit file is put back, so the next install retries).
    """,
        settings="flags",
        default_format="json",
    ),
    options.BOOTSTRAP: Command(
        options.BOOTSTRAP,
        "bootstrap",
        """As an admin, once: write the policies, token roles, cert auth mount and cert role the other commands need.

    Idempotent: reads everything, writes only what differs, and prints one line per object (created, updated
    with the fields that differ, or unchanged). The admin token comes from $VAULT_TOKEN or --token-file; no
    client certificate is needed. Names, period and mint mode come from the same config as the other commands.

    --workload-identity writes the Vault side of Nomad's JWT integration instead (with --snapshot: the
    snapshot job's JWT role); --remove-legacy deletes the legacy objects it wrote, once nothing uses them.

    Exit codes: 0 done (or --check), 69 Vault unavailable, 77 the admin token may not do it, 78 bad input.
    """,
    ),
    options.SNAPSHOT: Command(
        options.SNAPSHOT,
        "snapshot",
        """Take a raft snapshot from the active node, verify it, keep it, apply retention; or check one.

    \b
    snapshot                    take one into --dir: streamed to a 0600 temp file, verified
                                (gzip, tar, SHA256SUMS, meta.json), renamed to
                                PREFIX-<UTC time>-<index>.snap with a manifest beside it;
                                then retention (--keep, --max-age), only after a success
    snapshot --copy-to s3://BUCKET/PREFIX   then copy it there (multipart, read back and
                                verified, manifest beside it), retention there too
    snapshot verify FILE|URL    check a snapshot file offline, or an object in a bucket
    snapshot restore-test FILE|URL  restore it into a throwaway local OpenBao, unseal it with
                                --keys-file (the source cluster's keys), read --canary back
    snapshot restore FILE|URL|latest  after a total loss: verify it, then restore it into the
                                (empty) cluster at --vault-addr; latest: the newest copy at
                                --copy-to that verifies; prints the steps left to the operator
                                (restart the node, the unsealer, the other nodes join).
                                An initialised cluster is refused unless --force (with a token)

    Exit codes: 0 done, 65 the snapshot failed verification, 69 Vault or the bucket unavailable,
    74 the disk is full or failing, 75 kept here but a copy failed, 77 Vault or the bucket refused,
    78 configuration error (restore: an initialised cluster without --force).
    """,
        positionals=SNAPSHOT_POSITIONALS,
        offline=("verify",),
    ),
    options.INIT: Command(
        options.INIT,
        "init",
        """Initialise a new cluster, its keys going straight into custody; never prints a key or the root token.

    \b
    --nomad-variable PATH[:I,J]  a Nomad Variable (items key_1, ...), created with check-and-set
    --credential-file PATH[:I,J] an encrypted systemd credential for this host (repeat: split custody)
    --pgp-key FILE               one share per person, encrypted by Vault to their key (repeat)

    Shamir shares, or recovery shares when the node has an auto-unseal seal. The root token is revoked at
    once (the node is unsealed with the new keys for that), used for bootstrap-roles first (--bootstrap),
    or kept encrypted to --root-token-pgp-key. Before any destination is written, every share is kept in a
    0600 rescue file in the state directory, encrypted with systemd-creds (with --pgp-key: as Vault
    encrypted them); it is removed once every destination holds its shares, else the error says where it is.

    Exit codes: 0 done, 75 initialised but a destination failed (the rescue file holds every share),
    78 already initialised (nothing sent) or bad flags, 69 Vault unavailable, 77 refused.
    """,
    ),
    options.UNSEAL: Command(
        options.UNSEAL,
        "unseal",
        """Unseal a Vault cluster's Shamir-sealed nodes: --once, or watching (for systemd or a Nomad job).

    Needs no token. Keys: --keys-file FILE (0600/0400, owned by this user) or --credential NAME (systemd
    LoadCredentialEncrypted=), one hex or base64 key per line; never on the command line or in the environment.
    Nodes: --node ADDR, repeated (config unseal_nodes) [default: vault_addr]. Success means a leader.
    Auto-unseal, uninitialised and sealed-on-purpose nodes are never given keys; a hold file stops all.

    Exit codes (--once): 0 a leader and every reachable Shamir node unsealed, 65 keys refused (or
    threshold/shares not as expected), 69 nodes unreachable and no quorum, 75 partial, 78 bad config.
    """,
    ),
}
