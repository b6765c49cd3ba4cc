"""Every command-line option, declared once: its flags, kind, help, config key and the commands that take it.

`cli` builds the typer commands from this table and `fastrun` parses plain command lines from it
(no typer, no pydantic: `run` is on every Nomad start's critical path). Adding an option shared by
several commands is one entry here (plus the config key in `config`, for a setting). Stdlib only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

DEFAULT_NOMAD_ADDR = "https://127.0.0.1:4646"  # --nomad-addr: the local agent, over TLS (Nomad's CLI says http)

# str/path/int: one value; list: repeatable; bool: --x/--no-x, None when absent; switch: --x, False when absent
Kind = Literal["str", "path", "list", "bool", "switch"]

TOKEN, CHECK, STATUS, RUN, INSTALL, BOOTSTRAP = "token", "check", "status", "run", "install", "bootstrap-roles"
SNAPSHOT, UNSEAL, CUTOVER, INIT = "snapshot", "unseal", "cutover", "init"
COMMANDS = (TOKEN, CHECK, STATUS, RUN, INSTALL, BOOTSTRAP, SNAPSHOT, UNSEAL, CUTOVER, INIT)

_ALL = frozenset(COMMANDS)
_MINTING = frozenset({TOKEN, CHECK, RUN, INSTALL, BOOTSTRAP})  # commands that know how the token is minted
_LOGIN = frozenset({TOKEN, CHECK, RUN, INSTALL})  # commands that log in with the client certificate
_READING = frozenset({TOKEN, CHECK, STATUS, RUN, BOOTSTRAP, SNAPSHOT, UNSEAL, CUTOVER, INIT})  # commands that read the config

SNAPSHOTTING, UNSEALING, WORKLOAD, INITIALISING, KEYRING = "Snapshot", "Unseal", "Workload identity", "Init", "Keyring"
CONN, MINT, RUNNING, INSTALLING, BOOTSTRAPPING, OUTPUT = (
    "Vault connection",
    "Minting",
    "Running",
    "Install",
    "Bootstrap",
    "Output",
)


@dataclass(frozen=True)
class Option:
    name: str  # the Python parameter; for a setting also the config key, unless `key` says otherwise
    flags: tuple[str, ...]  # a bool's "--no-" form is derived from its first flag
    kind: Kind
    help: str
    commands: frozenset[str]
    panel: str = CONN
    setting: bool = True  # a config key: goes to config.load with the file and the environment
    key: str = ""
    metavar: str | None = None
    default: str | None = None  # the default of a command's own option (a setting's is in config.Settings, and
    # its help gets it from there, with its $VAULT_* variable: never write "[default: ...]" into a setting's help)
    required: bool = False

    @property
    def config_key(self) -> str:
        return self.key or self.name

    @property
    def negation(self) -> str | None:
        return "--no-" + self.flags[0].removeprefix("--") if self.kind == "bool" else None


OPTIONS: tuple[Option, ...] = (
    # ---- read by most commands, not settings
    Option("config", ("--config", "-c"), "path", "TOML config file [default: /etc/nomad-vault-token/config.toml, "
           "if present]", _READING, setting=False),
    Option("verbose", ("--verbose", "-v"), "switch", "debug logging", _READING, OUTPUT, setting=False),
    Option("fmt", ("--format",), "str", "text or json", _READING - {RUN}, OUTPUT, setting=False, default="text"),
    # ---- the Vault connection
    Option("vault_addr", ("--vault-addr",), "str", "Vault address; http:// only to a loopback address unless --allow-insecure-http",
           _ALL),
    Option("ca_cert", ("--ca-cert",), "path", "CA of Vault's certificate, used on every request (REQUESTS_CA_BUNDLE cannot "
           "override it)", _ALL),
    Option("client_cert", ("--client-cert",), "path", "client certificate, PEM",
           _LOGIN | {SNAPSHOT, UNSEAL}),
    Option("client_key", ("--client-key",), "path", "client key, PEM, unencrypted, mode 0600 (a key others can read is refused)",
           _LOGIN | {SNAPSHOT, UNSEAL}),
    Option("tls_server_name", ("--tls-server-name",), "str",
           "name to verify in Vault's certificate", _ALL),
    Option("namespace", ("--namespace",), "str", "Vault namespace", _ALL),
    Option("allow_insecure_http", ("--allow-insecure-http",), "bool", "allow http:// to a non-loopback host", _ALL),
    Option("auth_mount", ("--auth-mount",), "str", "cert auth mount", _MINTING | {SNAPSHOT}),
    Option("cert_role", ("--cert-role",), "str", "cert auth role the startup identity logs in as (bootstrap-roles: "
           "also its policy's name)", _MINTING),
    # ---- minting
    Option("mint_mode", ("--mint-mode", "--mode"), "str",
           "role (least privilege) or create-orphan (the old script's way, needs sudo)", _MINTING,
           MINT),
    Option("mint_role", ("--mint-role",), "str", "token role to mint through", _MINTING,
           MINT),
    Option("policy", ("--policy",), "list", "server token policy; repeat for more", _MINTING,
           MINT, key="policies", metavar="POLICY"),
    Option("period", ("--period",), "str", "token period, e.g. 72h (create-orphan mode; in role mode the mint "
           "role's token_period, which bootstrap-roles writes from it)", _MINTING, MINT),
    Option("task_role", ("--task-role",), "str", "Nomad's create_from_role", _MINTING, MINT),
    Option("state_dir", ("--state-dir",), "path",
           "where the token is kept for reuse",
           frozenset({CHECK, STATUS, RUN, UNSEAL, CUTOVER, INIT}), RUNNING),
    Option("strict", ("--strict",), "bool",
           "treat what Nomad only warns about (e.g. sys/capabilities-self refused) as failures",
           frozenset({CHECK, RUN}), RUNNING),
    # ---- run
    Option("handoff", ("--handoff",), "str", "file: a 0600 HCL file added as -config; env: VAULT_TOKEN",
           frozenset({RUN}), RUNNING),
    Option("token_config", ("--token-config",), "path",
           "the hand-off HCL file", frozenset({RUN, CUTOVER}), RUNNING),
    Option("min_ttl", ("--min-ttl",), "str", "reuse a saved token only with at least this TTL left",
           frozenset({RUN}), RUNNING),
    Option("wait_timeout", ("--wait-timeout",), "str",
           "give up (exit 69) if Vault is not usable by then; 0 waits for ever", frozenset({RUN}),
           RUNNING),
    Option("degraded_start_after", ("--degraded-start-after",), "str",
           "start the agent anyway when Vault has not been usable this long (saved token unverified, or Vault "
           "disabled until a token can be minted); 0 waits as --wait-timeout says", frozenset({RUN}),
           RUNNING),
    Option("check_interval", ("--check-interval",), "str",
           "longest time between the tracker's token checks; a revoked token is noticed within it", frozenset({RUN}), RUNNING),
    Option("no_check", ("--no-check",), "switch", "skip Nomad's own token and role checks before exec",
           frozenset({RUN}), RUNNING, setting=False),
    # ---- the keyring token (Nomad 1.8.3+ keyring "transit")
    Option("keyring", ("--keyring",), "bool", "the Vault token for Nomad's transit keyring: run keeps it in "
           "keyring_token_file (for keyring \"transit\" { token = \"file://...\" }); bootstrap-roles writes its "
           "transit key, policy and role; check and status look at it (see docs/keyring.md)",
           frozenset({CHECK, STATUS, RUN, BOOTSTRAP}), KEYRING),
    Option("keyring_token_file", ("--keyring-token-file",), "path", "where run writes the keyring token (0600, "
           "no trailing newline)", frozenset({RUN, CHECK, STATUS}),
           KEYRING),
    Option("keyring_mount", ("--keyring-mount",), "str", "the transit mount of the keyring's key",
           frozenset({CHECK, RUN, BOOTSTRAP}), KEYRING),
    Option("keyring_key", ("--keyring-key",), "str", "the transit key wrapping Nomad's keyring", frozenset({CHECK, RUN, BOOTSTRAP}), KEYRING),
    Option("keyring_policy", ("--keyring-policy",), "str", "the keyring token's policy",
           frozenset({TOKEN, CHECK, RUN, BOOTSTRAP}), KEYRING),
    Option("keyring_role", ("--keyring-role",), "str", "token role the keyring token is minted through", frozenset({TOKEN, CHECK, RUN, BOOTSTRAP}), KEYRING),
    # ---- token
    Option("output", ("--output", "-o"), "path", "write the token to this file (0600, atomically) instead of stdout",
           frozenset({TOKEN}), OUTPUT, setting=False),
    Option("include_token", ("--include-token",), "switch", "with --format json: add the token itself",
           frozenset({TOKEN}), OUTPUT, setting=False),
    Option("keyring_token", ("--keyring-token",), "switch", "mint a keyring token instead (keyring role, keyring policy): "
           "--output writes it with no trailing newline, for keyring \"transit\" { token = \"file://...\" }",
           frozenset({TOKEN}), OUTPUT, setting=False),
    # ---- check
    Option("mint", ("--mint",), "switch",
           "actually mint a token to test minting (revoked afterwards); default: check the saved token",
           frozenset({CHECK}), RUNNING, setting=False),
    # ---- install and bootstrap-roles
    Option("dry_run", ("--check",), "switch", "report what would change; write nothing",
           frozenset({INSTALL, BOOTSTRAP, CUTOVER}), INSTALLING, setting=False),
    Option("root", ("--root",), "path", "install under this directory (image builds, tests; created if missing); "
           "the unit still names the real paths; implies --no-systemctl unless --systemctl is given",
           frozenset({INSTALL}), INSTALLING, setting=False, metavar="DIR"),
    Option("systemctl", ("--systemctl",), "bool",
           "run `systemctl daemon-reload` when the unit changed [default: yes, no with --root]",
           frozenset({INSTALL}), INSTALLING, setting=False),
    Option("bin_path", ("--bin",), "path",
           "nomad-vault-token as the unit's ExecStart names it [default: the script beside this Python]",
           frozenset({INSTALL}), INSTALLING, setting=False),
    Option("agent_line", ("--agent",), "str",
           "the agent's command line [default: /usr/bin/nomad agent -config /etc/nomad.d]", frozenset({INSTALL}),
           INSTALLING, setting=False),
    Option("config_path", ("--config-path",), "path",
           "where the config file goes, as the unit names it [default: /etc/nomad-vault-token/config.toml]",
           frozenset({INSTALL}), INSTALLING, setting=False),
    Option("unit_name", ("--unit-name",), "str", "unit file in /etc/systemd/system", frozenset({INSTALL}),
           INSTALLING, setting=False, default="nomad.service"),
    Option("start_timeout", ("--start-timeout",), "str",
           "the unit's TimeoutStartSec: above degraded_start_after (how long run waits for Vault)",
           frozenset({INSTALL}), INSTALLING, setting=False, default="5min"),
    Option("config_source", ("--config-source",), "path",
           "copy this TOML file as the config (checked first); instead of config flags", frozenset({INSTALL}),
           INSTALLING, setting=False),
    Option("set_values", ("--set",), "list", "any other config key, KEY=VALUE (e.g. wait_timeout=10m); repeat for "
           "more", frozenset({INSTALL}), INSTALLING, setting=False, metavar="KEY=VALUE"),
    Option("client_ca", ("--client-ca",), "path",
           "PEM: the CA (or the certificate itself) the cert role trusts for the startup identity (not needed "
           "with --workload-identity)", frozenset({BOOTSTRAP, INIT}), BOOTSTRAPPING, setting=False),
    Option("token_file", ("--token-file",), "path", "file holding the token (bootstrap-roles: an admin token; "
           "snapshot --auth token: one allowed to read sys/storage/raft/snapshot) [default: $VAULT_TOKEN]",
           frozenset({BOOTSTRAP, SNAPSHOT, CHECK, CUTOVER}), BOOTSTRAPPING, setting=False),
    Option("allowed_common_name", ("--allowed-common-name",), "list",
           "common name (or glob) the startup certificate must have; repeat for more [default: any]",
           frozenset({BOOTSTRAP, INIT}), BOOTSTRAPPING, setting=False, metavar="NAME"),
    Option("task_allowed_policy", ("--task-allowed-policy",), "list",
           "a policy jobs may ask for (the task role's allowed_policies); repeat for more "
           "[default: any except the server policy]", frozenset({BOOTSTRAP, INIT}), BOOTSTRAPPING, setting=False,
           metavar="POLICY"),
    Option("login_ttl", ("--login-ttl",), "str", "TTL (and max TTL) of the cert login token", frozenset({BOOTSTRAP, INIT}),
           BOOTSTRAPPING, setting=False, default="5m"),
    Option("diff", ("--diff",), "switch", "also show each field's change (old -> new)", frozenset({BOOTSTRAP}),
           BOOTSTRAPPING, setting=False),
    Option("remove_legacy", ("--remove-legacy",), "switch", "after the cut-over to workload identity: delete "
           "the legacy policies and roles (not the cert mount) this command wrote, each only if its content is what "
           "it writes with these flags; refused while a live token still holds the server policy or comes from the "
           "mint or task role", frozenset({BOOTSTRAP}), BOOTSTRAPPING, setting=False),
    Option("snapshot", ("--snapshot",), "switch", "write the snapshot identity instead: a policy with read on "
           "sys/storage/raft/snapshot only, and a cert role (--snapshot-role) holding it",
           frozenset({BOOTSTRAP}), BOOTSTRAPPING, setting=False),
    Option("snapshot_role", ("--snapshot-role",), "str", "cert role (and its policy) the snapshot identity logs in "
           "as", frozenset({BOOTSTRAP, SNAPSHOT}), SNAPSHOTTING),
    # ---- snapshot
    Option("snapshot_dir", ("--dir",), "path", "where snapshots are kept (created 0700 if missing)",
           frozenset({SNAPSHOT}), SNAPSHOTTING, metavar="DIR"),
    Option("snapshot_keep", ("--keep",), "str", "keep at most N verified snapshots; 0: no count limit",
           frozenset({SNAPSHOT}), SNAPSHOTTING, metavar="N"),
    Option("snapshot_max_age", ("--max-age",), "str", "delete verified snapshots older than this, e.g. 30d; "
           "0: no age limit (the newest verified one always stays)", frozenset({SNAPSHOT}),
           SNAPSHOTTING),
    Option("snapshot_prefix", ("--prefix",), "str", "file names: PREFIX-<UTC time>-<raft index>.snap",
           frozenset({SNAPSHOT}), SNAPSHOTTING),
    Option("snapshot_timeout", ("--snapshot-timeout",), "str", "how long the whole download may take",
           frozenset({SNAPSHOT}), SNAPSHOTTING),
    Option("snapshot_auth", ("--auth",), "str", "cert (client certificate, --snapshot-role), token ($VAULT_TOKEN "
           "or --token-file) or jwt (--jwt-file, --jwt-role)", frozenset({SNAPSHOT}), SNAPSHOTTING),
    Option("jwt_file", ("--jwt-file",), "path", "file holding a JWT (a Nomad workload identity) for --auth jwt; "
           "check --workload-identity: a task's JWT to log in with", frozenset({SNAPSHOT, CHECK}), SNAPSHOTTING),
    Option("jwt_role", ("--jwt-role",), "str", "JWT auth role the snapshot job logs in as (bootstrap-roles "
           "--snapshot --workload-identity writes it)", frozenset({SNAPSHOT, BOOTSTRAP}),
           SNAPSHOTTING),
    Option("jwt_mount", ("--jwt-mount",), "str", "JWT auth mount trusting Nomad's workload identities",
           frozenset({SNAPSHOT, BOOTSTRAP, CHECK, CUTOVER}), WORKLOAD),
    # ---- workload identity
    Option("workload_identity", ("--workload-identity",), "switch", "bootstrap-roles: write the Vault side of "
           "Nomad's workload identity instead (JWT auth mount and config, the workload role and policy; with "
           "--snapshot: the snapshot job's JWT role); check: check that side live (JWKS, keys, a task's login "
           "with --jwt-file)", frozenset({BOOTSTRAP, CHECK}), WORKLOAD, setting=False),
    Option("readiness", ("--workload-identity-readiness",), "switch", "check: is this cluster ready to drop the "
           "legacy server token? Vault side, this server's vault.default_identity (give the agent's command line "
           "after --), nodes on 1.7.2+, no job or allocation left on legacy tokens (Nomad's upgrade check); exit 75 "
           "while not", frozenset({CHECK}), WORKLOAD, setting=False),
    Option("nomad_addr", ("--nomad-addr",), "str", "Nomad's HTTP API for the readiness checks [default: "
           f"{DEFAULT_NOMAD_ADDR}]", frozenset({CHECK, CUTOVER, INIT}), WORKLOAD, setting=False, metavar="URL"),
    Option("nomad_token_file", ("--nomad-token-file",), "path", "file holding a Nomad ACL token with operator:read "
           "and node:read (readiness) [default: none, for a cluster without ACLs]", frozenset({CHECK, CUTOVER, INIT}), WORKLOAD,
           setting=False, metavar="FILE"),
    Option("nomad_ca", ("--nomad-ca",), "path", "PEM: the CA of Nomad's HTTPS certificate (readiness) [default: "
           "the system CAs]", frozenset({CHECK, CUTOVER, INIT}), WORKLOAD, setting=False, metavar="FILE"),
    Option("nomad_jwks_url", ("--nomad-jwks-url",), "str", "where Vault fetches Nomad's keys: "
           "https://NOMAD:4646/.well-known/jwks.json (check: instead of the one Vault's config names)",
           frozenset({BOOTSTRAP, CHECK, CUTOVER}), WORKLOAD, setting=False,
           metavar="URL"),
    Option("nomad_jwks_ca", ("--nomad-jwks-ca",), "path", "PEM: the CA of Nomad's HTTPS certificate, for Vault "
           "[default: Vault's system CAs]", frozenset({BOOTSTRAP}), WORKLOAD, setting=False, metavar="FILE"),
    Option("workload_role", ("--workload-role",), "str", "JWT role every task logs in as (the mount's "
           "default_role)", frozenset({BOOTSTRAP, CHECK, CUTOVER}), WORKLOAD),
    Option("workload_policy", ("--workload-policy",), "str", "the tasks' templated policy", frozenset({BOOTSTRAP, CHECK, CUTOVER}), WORKLOAD),
    Option("workload_user_claim", ("--workload-user-claim",), "str", "what names a task's Vault entity: "
           "unique-id (an extra_claims ID the servers' vault.default_identity sets, Nomad 1.8.3+), sub (one per "
           "task, Nomad 1.7+) or job-id (nomad setup vault's: collides across namespaces)",
           frozenset({BOOTSTRAP, CUTOVER}), WORKLOAD),
    Option("kv_mount", ("--kv-mount",), "str", "KV mount the tasks read <namespace>/<job>/... from", frozenset({BOOTSTRAP, CHECK}), WORKLOAD),
    Option("kv_version", ("--kv-version",), "str", "that KV mount's version, 1 or 2",
           frozenset({BOOTSTRAP, CHECK}), WORKLOAD),
    Option("allow_slashes_in_job_ids", ("--allow-slashes-in-job-ids",), "bool", "OpenBao 2.6+: let job IDs "
           "holding '/' reach their paths (allow_slashes_in_identity_templates); the cost: job a then reads job "
           "a/b's secrets",
           frozenset({BOOTSTRAP}), WORKLOAD),
    Option("snapshot_job", ("--snapshot-job",), "str", "the snapshot job's ID, bound in its JWT role",
           frozenset({BOOTSTRAP}), WORKLOAD, setting=False, default="vault-snapshot"),
    Option("snapshot_job_namespace", ("--snapshot-job-namespace",), "str", "the snapshot job's Nomad namespace",
           frozenset({BOOTSTRAP}), WORKLOAD, setting=False, default="default"),
    Option("snapshot_task", ("--snapshot-task",), "str", "the snapshot job's task name",
           frozenset({BOOTSTRAP}), WORKLOAD, setting=False, default="snapshot"),
    Option("snapshot_copy_to", ("--copy-to",), "list", "after the snapshot is kept, copy it and its manifest to "
           "s3://BUCKET/PREFIX (verified by reading it back; retention as --keep/--max-age); repeat for more. "
           "Credentials, region, endpoint: the AWS variables and files (AWS_ACCESS_KEY_ID, AWS_REGION, "
           "AWS_ENDPOINT_URL_S3, ...)", frozenset({SNAPSHOT}), SNAPSHOTTING, metavar="URL"),
    Option("canary", ("--canary",), "str", "restore-test: a KV v1 path to read back from the restored data "
           "(with the token of --token-file / $VAULT_TOKEN, of the source cluster)", frozenset({SNAPSHOT}),
           SNAPSHOTTING, setting=False),
    Option("force", ("--force",), "switch", "restore: into a cluster that is initialised (its data is replaced; "
           "needs a token with sudo on sys/storage/raft/snapshot-force)", frozenset({SNAPSHOT}), SNAPSHOTTING,
           setting=False),
    # ---- unseal
    Option("once", ("--once",), "switch", "check every node, unseal the sealed ones, exit (0 leader and all "
           "unsealed, 65 keys refused, 69 unreachable, 75 partial or a seal migration waiting); default: watch for ever",
           frozenset({UNSEAL}), UNSEALING, setting=False),
    Option("unseal_nodes", ("--node",), "list", "a node's address, https://HOST:PORT; repeat for each node "
           "(init: the one node to initialise; snapshot restore: the cluster's nodes, for the steps)",
           frozenset({UNSEAL, SNAPSHOT, INIT}), UNSEALING, metavar="ADDR"),
    Option("unseal_nodes_file", ("--nodes-file",), "path", "instead of --node: a file naming the nodes, one "
           "address a line (a Nomad template from nomadService); read again when it changes, no restart",
           frozenset({UNSEAL}), UNSEALING, metavar="FILE"),
    Option("unseal_keys_file", ("--keys-file",), "path", "unseal keys, one per line, hex or base64, or "
           "operator init's JSON (mode 0600/0400, owned by this user); never on the command line (snapshot "
           "restore-test: the source cluster's keys)", frozenset({UNSEAL, SNAPSHOT}), UNSEALING),
    Option("unseal_credential", ("--credential",), "str", "instead of --keys-file: the systemd credential "
           "(LoadCredentialEncrypted=NAME:...) holding the keys", frozenset({UNSEAL}), UNSEALING, metavar="NAME"),
    Option("unseal_interval", ("--interval",), "str", "time between probes in watch mode, less up to 20% "
           "jitter; keep it well under the nodes' http_idle_timeout (5 min)", frozenset({UNSEAL}), UNSEALING),
    Option("unseal_hold_file", ("--hold-file",), "path", "while this file exists, send no key (maintenance)",
           frozenset({UNSEAL}), UNSEALING),
    Option("unseal_stale_after", ("--stale-after",), "str", "reset someone else's unseal progress unchanged "
           "this long", frozenset({UNSEAL}), UNSEALING),
    Option("unseal_expect_threshold", ("--expect-threshold",), "str", "send keys only to nodes with this "
           "threshold", frozenset({UNSEAL}), UNSEALING, metavar="T"),
    Option("unseal_expect_shares", ("--expect-shares",), "str", "send keys only to nodes with this many "
           "shares", frozenset({UNSEAL}), UNSEALING, metavar="N"),
    Option("unseal_migrate", ("--migrate",), "bool", "feed a node waiting for a seal migration (restarted "
           "with a new seal stanza) the keys with migrate; without it such a node gets no key, only a report",
           frozenset({UNSEAL}), UNSEALING),
    Option("metrics_dir", ("--metrics-dir",), "path", "node_exporter textfile directory (*.prom) for the "
           "metrics; the tracker reads it from the config", frozenset({SNAPSHOT, UNSEAL}), OUTPUT,
           metavar="DIR"),
    # ---- init
    Option("shares", ("--shares",), "str", "how many key shares [default: 5, or one per --pgp-key]",
           frozenset({INIT}), INITIALISING, setting=False, metavar="N"),
    Option("threshold", ("--threshold",), "str", "how many shares unseal [default: 3]", frozenset({INIT}),
           INITIALISING, setting=False, metavar="T"),
    Option("nomad_variable", ("--nomad-variable",), "str", "write the shares to this Nomad Variable, items key_1, "
           "key_2, ... (created with check-and-set: an existing one is never overwritten); PATH:1,2 for some "
           "shares only (e.g. nomad/jobs/vault-unseal)", frozenset({INIT}), INITIALISING, setting=False,
           metavar="PATH[:I,J]"),
    Option("credential_file", ("--credential-file",), "list", "write shares to this file as an encrypted systemd "
           "credential (LoadCredentialEncrypted=NAME:PATH, NAME the file name without .cred); PATH:1,2 for some "
           "shares only (split custody: a:1,2 b:2,3 c:1,3); repeat for more", frozenset({INIT}), INITIALISING,
           setting=False, metavar="PATH[:I,J]"),
    Option("credential_key", ("--credential-key",), "str", "systemd-creds --with-key for the credentials and the "
           "rescue file: auto, host, tpm2, host+tpm2", frozenset({INIT}), INITIALISING, setting=False,
           default="auto"),
    Option("pgp_key", ("--pgp-key",), "list", "a person's PGP public key (gpg --export, binary or armored): "
           "Vault encrypts one share to it (pgp_keys); repeat, one per share", frozenset({INIT}), INITIALISING,
           setting=False, metavar="FILE"),
    Option("root_token_pgp_key", ("--root-token-pgp-key",), "path", "keep the root token, encrypted by Vault to "
           "this PGP public key (root-token.gpg in --share-dir); default: revoke it at once", frozenset({INIT}),
           INITIALISING, setting=False, metavar="FILE"),
    Option("share_dir", ("--share-dir",), "path", "where the PGP-encrypted shares and root token are written "
           "(0600, one file per holder) [default: the current directory]", frozenset({INIT}), INITIALISING,
           setting=False, metavar="DIR"),
    Option("bootstrap", ("--bootstrap",), "switch", "use the root token for bootstrap-roles (with --client-ca "
           "and its other flags), then revoke it", frozenset({INIT}), INITIALISING, setting=False),
    Option("settle_timeout", ("--settle-timeout",), "str", "with --once: how long to keep checking until "
           "the outcome is settled", frozenset({UNSEAL}), UNSEALING, setting=False, default="60s"),
)  # fmt: skip


def of(command: str) -> list[Option]:
    """The options `command` takes, in table order."""
    return [o for o in OPTIONS if command in o.commands]


def flags_of(command: str) -> Iterator[tuple[str, Option, bool]]:
    """Every flag `command` accepts: (flag, option, the value a bool/switch flag sets)."""
    for o in of(command):
        for flag in o.flags:
            yield flag, o, True
        if o.negation:
            yield o.negation, o, False


def split(command: str, params: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """A command's parameters as (settings for config.load, by config key; the command's own)."""
    settings, own = {}, {}
    for o in of(command):
        value = params.get(o.name)
        if o.setting:
            settings[o.config_key] = value if value != [] else None
        else:
            own[o.name] = value
    return settings, own
