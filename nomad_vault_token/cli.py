"""The typer app: parse, dispatch, map errors to exit codes; nothing else.

Command bodies live in `commands/` and are imported only when that command runs,
so `run` pays for no other command's imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nomad_vault_token import __version__
from nomad_vault_token.params import conn_flags, mint_flags

app = typer.Typer(
    name="nomad-vault-token",
    help=(
        "Give a Nomad server its Vault token, safely, every time it starts, and keep it alive.\n\n"
        "Logs in to Vault with a TLS client certificate, mints (or reuses) a periodic orphan "
        "token for Nomad, and hands it to the agent. Exit codes: 69 Vault unavailable, "
        "77 Vault refused, 78 configuration error."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

CONN = "Vault connection"
MINT = "Minting"

ConfigOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--config",
        "-c",
        help="TOML config file [default: /etc/nomad-vault-token/config.toml, if present]",
        rich_help_panel=CONN,
        show_default=False,
    ),
]
AddrOpt = Annotated[
    Optional[str], typer.Option("--vault-addr", help="Vault address ($VAULT_ADDR)", rich_help_panel=CONN)
]
CaOpt = Annotated[
    Optional[Path], typer.Option("--ca-cert", help="CA of Vault's certificate ($VAULT_CACERT)", rich_help_panel=CONN)
]
CertOpt = Annotated[
    Optional[Path],
    typer.Option("--client-cert", help="client certificate, PEM ($VAULT_CLIENT_CERT)", rich_help_panel=CONN),
]
KeyOpt = Annotated[
    Optional[Path],
    typer.Option("--client-key", help="client key, PEM, mode 0600 ($VAULT_CLIENT_KEY)", rich_help_panel=CONN),
]
ServerNameOpt = Annotated[
    Optional[str],
    typer.Option(
        "--tls-server-name", help="name to verify in Vault's certificate ($VAULT_TLS_SERVER_NAME)", rich_help_panel=CONN
    ),
]
NamespaceOpt = Annotated[
    Optional[str], typer.Option("--namespace", help="Vault namespace ($VAULT_NAMESPACE)", rich_help_panel=CONN)
]
InsecureOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--allow-insecure-http/--no-allow-insecure-http",
        help="allow http:// to a non-loopback host",
        rich_help_panel=CONN,
        show_default=False,
    ),
]
AuthMountOpt = Annotated[
    Optional[str],
    typer.Option("--auth-mount", help="cert auth mount [default: cert]", rich_help_panel=CONN, show_default=False),
]
CertRoleOpt = Annotated[
    Optional[str],
    typer.Option(
        "--cert-role",
        help="cert auth role to log in as [default: nomad_startup]",
        rich_help_panel=CONN,
        show_default=False,
    ),
]
ModeOpt = Annotated[
    Optional[str],
    typer.Option(
        "--mint-mode",
        help="role (least privilege) or create-orphan (the old script's way) [default: role]",
        rich_help_panel=MINT,
        show_default=False,
    ),
]
MintRoleOpt = Annotated[
    Optional[str],
    typer.Option(
        "--mint-role",
        help="token role to mint through [default: nomad-server-mint]",
        rich_help_panel=MINT,
        show_default=False,
    ),
]
PolicyOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--policy",
        metavar="POLICY",
        help="server token policy; repeat for more [default: nomad_cluster]",
        rich_help_panel=MINT,
        show_default=False,
    ),
]
PeriodOpt = Annotated[
    Optional[str],
    typer.Option("--period", help="token period, e.g. 72h [default: 72h]", rich_help_panel=MINT, show_default=False),
]
TaskRoleOpt = Annotated[
    Optional[str],
    typer.Option(
        "--task-role",
        help="Nomad's create_from_role [default: nomad-cluster]",
        rich_help_panel=MINT,
        show_default=False,
    ),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")]
StrictOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--strict/--no-strict",
        help="treat what Nomad only warns about (e.g. sys/capabilities-self refused) as failures [default: no]",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nomad-vault-token {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """Give a Nomad server its Vault token."""


@app.command()
def token(
    config: ConfigOpt = None,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="write the token to this file (0600, atomically) instead of stdout"),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="text: the token alone; json: its accessor, policies, ttl, orphan, period, renewable"
        ),
    ] = "text",
    include_token: Annotated[
        bool, typer.Option("--include-token", help="with --format json: add the token itself")
    ] = False,
    vault_addr: AddrOpt = None,
    ca_cert: CaOpt = None,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
    tls_server_name: ServerNameOpt = None,
    namespace: NamespaceOpt = None,
    allow_insecure_http: InsecureOpt = None,
    auth_mount: AuthMountOpt = None,
    cert_role: CertRoleOpt = None,
    mint_mode: ModeOpt = None,
    mint_role: MintRoleOpt = None,
    policy: PolicyOpt = None,
    period: PeriodOpt = None,
    task_role: TaskRoleOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Log in, mint a server token and print it: the drop-in for the old script's two `vault` lines.

    Example: NOMAD_TOKEN=$(nomad-vault-token token)
    """
    from nomad_vault_token.commands import token as cmd

    flags = conn_flags(
        vault_addr,
        ca_cert,
        client_cert,
        client_key,
        tls_server_name,
        namespace,
        allow_insecure_http,
        auth_mount,
        cert_role,
    )
    flags |= mint_flags(mint_mode, mint_role, policy, period, task_role)
    cmd.main(config, flags, output=output, fmt=fmt, include_token=include_token, verbose=verbose)


@app.command(context_settings={"allow_interspersed_args": False})
def check(
    agent: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="the agent's command line, after --, as in the unit's ExecStart: its -config files are checked too",
            show_default=False,
            metavar="[-- AGENT_ARGV...]",
        ),
    ] = None,
    config: ConfigOpt = None,
    mint: Annotated[
        bool,
        typer.Option(
            "--mint", help="actually mint a token to test minting (revoked afterwards); default: check the saved token"
        ),
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    vault_addr: AddrOpt = None,
    ca_cert: CaOpt = None,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
    tls_server_name: ServerNameOpt = None,
    namespace: NamespaceOpt = None,
    allow_insecure_http: InsecureOpt = None,
    auth_mount: AuthMountOpt = None,
    cert_role: CertRoleOpt = None,
    mint_mode: ModeOpt = None,
    mint_role: MintRoleOpt = None,
    policy: PolicyOpt = None,
    period: PeriodOpt = None,
    task_role: TaskRoleOpt = None,
    state_dir: Annotated[
        Optional[Path], typer.Option("--state-dir", help="where run keeps the token", show_default=False)
    ] = None,
    strict: StrictOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Check now everything Nomad will check, with Nomad's own wording, plus config, key and certificate.

    Give the agent's command line after -- (check -- /usr/bin/nomad agent -config /etc/nomad.d) to check
    its argv and the vault block of its config files too. Exit 0 when all pass (warnings allowed), 78 on
    a local or agent-config failure, 77 on a Vault-side one, 69 if Vault is down.
    """
    from nomad_vault_token.commands import check as cmd

    flags = conn_flags(
        vault_addr,
        ca_cert,
        client_cert,
        client_key,
        tls_server_name,
        namespace,
        allow_insecure_http,
        auth_mount,
        cert_role,
    )
    flags |= mint_flags(mint_mode, mint_role, policy, period, task_role) | {"state_dir": state_dir, "strict": strict}
    cmd.main(config, flags, mint=mint, fmt=fmt, verbose=verbose, agent=agent or [])


@app.command()
def status(
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json")] = "text",
    vault_addr: AddrOpt = None,
    ca_cert: CaOpt = None,
    tls_server_name: ServerNameOpt = None,
    namespace: NamespaceOpt = None,
    allow_insecure_http: InsecureOpt = None,
    state_dir: Annotated[
        Optional[Path], typer.Option("--state-dir", help="where run keeps the token", show_default=False)
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Show the server token run keeps: accessor, policies, role, TTL, expiry, last renewal; and the certificate.

    Never prints the token. Exit 1 if there is no saved token, 77 if Vault says it is no longer valid.
    """
    from nomad_vault_token.commands import status as cmd

    flags = {
        "vault_addr": vault_addr,
        "ca_cert": ca_cert,
        "tls_server_name": tls_server_name,
        "namespace": namespace,
        "allow_insecure_http": allow_insecure_http,
        "state_dir": state_dir,
    }
    cmd.main(config, flags, fmt=fmt, verbose=verbose)


RUN = "Running"


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    agent: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="the agent's command, after --: e.g. -- /usr/bin/nomad agent -config /etc/nomad.d",
            show_default=False,
            metavar="-- AGENT_ARGV...",
        ),
    ] = None,
    config: ConfigOpt = None,
    handoff: Annotated[
        Optional[str],
        typer.Option(
            "--handoff",
            help="file: a 0600 HCL file added as -config (default); env: VAULT_TOKEN",
            rich_help_panel=RUN,
            show_default=False,
        ),
    ] = None,
    token_config: Annotated[
        Optional[Path],
        typer.Option(
            "--token-config",
            help="the hand-off HCL file [default: $RUNTIME_DIRECTORY/vault-token.hcl]",
            rich_help_panel=RUN,
            show_default=False,
        ),
    ] = None,
    state_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--state-dir",
            help="where the token is kept for reuse [default: $STATE_DIRECTORY or /var/lib/nomad-vault-token]",
            rich_help_panel=RUN,
            show_default=False,
        ),
    ] = None,
    min_ttl: Annotated[
        Optional[str],
        typer.Option(
            "--min-ttl",
            help="reuse a saved token only with at least this TTL left [default: 10m]",
            rich_help_panel=RUN,
            show_default=False,
        ),
    ] = None,
    wait_timeout: Annotated[
        Optional[str],
        typer.Option(
            "--wait-timeout",
            help="give up (exit 69) if Vault is not usable by then; 0 waits for ever [default: 0]",
            rich_help_panel=RUN,
            show_default=False,
        ),
    ] = None,
    check_interval: Annotated[
        Optional[str],
        typer.Option(
            "--check-interval",
            help="longest time between the tracker's token checks [default: 20m]",
            rich_help_panel=RUN,
            show_default=False,
        ),
    ] = None,
    degraded_start_after: Annotated[
        Optional[str],
        typer.Option(
            "--degraded-start-after",
            help="start the agent anyway when Vault has not been usable this long (saved token unverified, "
            "or Vault disabled until a token can be minted); 0 waits as --wait-timeout says [default: 2m]",
            rich_help_panel=RUN,
            show_default=False,
        ),
    ] = None,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="skip Nomad's own token and role checks before exec", rich_help_panel=RUN)
    ] = False,
    vault_addr: AddrOpt = None,
    ca_cert: CaOpt = None,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
    tls_server_name: ServerNameOpt = None,
    namespace: NamespaceOpt = None,
    allow_insecure_http: InsecureOpt = None,
    auth_mount: AuthMountOpt = None,
    cert_role: CertRoleOpt = None,
    mint_mode: ModeOpt = None,
    mint_role: MintRoleOpt = None,
    policy: PolicyOpt = None,
    period: PeriodOpt = None,
    task_role: TaskRoleOpt = None,
    strict: StrictOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Get the server token (reused across restarts), hand it to the agent, and exec the agent.

    The systemd ExecStart wrapper: nomad-vault-token run -- /usr/bin/nomad agent -config /etc/nomad.d
    The agent keeps this process's PID; a tracker process beside it keeps the token alive.
    """
    params = {name: value for name, value in locals().items() if name != "agent"}
    from nomad_vault_token import fastrun  # the one mapping to commands.run, shared with the fast path

    fastrun.dispatch(fastrun.RunArgs(params, agent or []))


INSTALL = "Install"


@app.command()
def install(
    root: Annotated[
        Optional[Path],
        typer.Option(
            "--root",
            metavar="DIR",
            help="install under this directory (image builds, tests); the unit still names the real paths; "
            "implies --no-systemctl unless --systemctl is given",
            rich_help_panel=INSTALL,
            show_default=False,
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="report what would change; write nothing", rich_help_panel=INSTALL)
    ] = False,
    systemctl: Annotated[
        Optional[bool],
        typer.Option(
            "--systemctl/--no-systemctl",
            help="run `systemctl daemon-reload` when the unit changed [default: yes, no with --root]",
            rich_help_panel=INSTALL,
            show_default=False,
        ),
    ] = None,
    bin_path: Annotated[
        Optional[Path],
        typer.Option(
            "--bin",
            help="nomad-vault-token as the unit's ExecStart names it [default: the script beside this Python]",
            rich_help_panel=INSTALL,
            show_default=False,
        ),
    ] = None,
    agent: Annotated[
        Optional[str],
        typer.Option(
            "--agent",
            help="the agent's command line [default: /usr/bin/nomad agent -config /etc/nomad.d]",
            rich_help_panel=INSTALL,
            show_default=False,
        ),
    ] = None,
    config_path: Annotated[
        Optional[Path],
        typer.Option(
            "--config-path",
            help="where the config file goes, as the unit names it [default: /etc/nomad-vault-token/config.toml]",
            rich_help_panel=INSTALL,
            show_default=False,
        ),
    ] = None,
    unit_name: Annotated[
        str, typer.Option("--unit-name", help="unit file in /etc/systemd/system", rich_help_panel=INSTALL)
    ] = "nomad.service",
    start_timeout: Annotated[
        str,
        typer.Option(
            "--start-timeout",
            help="the unit's TimeoutStartSec (how long Vault may stay sealed)",
            rich_help_panel=INSTALL,
        ),
    ] = "5min",
    config_source: Annotated[
        Optional[Path],
        typer.Option(
            "--config-source",
            help="copy this TOML file as the config (checked first); instead of config flags",
            rich_help_panel=INSTALL,
            show_default=False,
        ),
    ] = None,
    set_values: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            help="any other config key, KEY=VALUE (e.g. wait_timeout=10m); repeat for more",
            rich_help_panel=INSTALL,
            show_default=False,
            metavar="KEY=VALUE",
        ),
    ] = None,
    vault_addr: AddrOpt = None,
    ca_cert: CaOpt = None,
    client_cert: CertOpt = None,
    client_key: KeyOpt = None,
    tls_server_name: ServerNameOpt = None,
    namespace: NamespaceOpt = None,
    allow_insecure_http: InsecureOpt = None,
    auth_mount: AuthMountOpt = None,
    cert_role: CertRoleOpt = None,
    mint_mode: ModeOpt = None,
    mint_role: MintRoleOpt = None,
    policy: PolicyOpt = None,
    period: PeriodOpt = None,
    task_role: TaskRoleOpt = None,
) -> None:
    """Install the systemd unit, the config file and the service's directories; idempotent, for Ansible.

    Writes /etc/systemd/system/nomad.service (0644), /etc/nomad-vault-token/config.toml (0640, in a 0750
    directory), /var/lib/nomad-vault-token and /run/nomad-vault-token (0700), only where they differ.
    The config holds exactly the keys given by flags and --set (environment variables are not read), or a copy
    of --config-source; with neither, an existing config is left alone.

    Prints one JSON object: {"version": 1, "changed": ..., "changes": [{"path": ..., "action": ...}]},
    action one of created, updated, unchanged (or would create, would update with --check).

    Exit codes: 0 done (changed or not), 2 usage, 78 bad config or path (nothing in the way is replaced),
    1 systemctl daemon-reload failed (the unit file is put back, so the next install retries).
    """
    from nomad_vault_token.commands import install as cmd

    flags = conn_flags(
        vault_addr,
        ca_cert,
        client_cert,
        client_key,
        tls_server_name,
        namespace,
        allow_insecure_http,
        auth_mount,
        cert_role,
    )
    flags |= mint_flags(mint_mode, mint_role, policy, period, task_role)
    cmd.main(
        root=root,
        check=check,
        systemctl=systemctl,
        bin_path=bin_path,
        agent=agent,
        config_path=config_path,
        unit_name=unit_name,
        start_timeout=start_timeout,
        config_source=config_source,
        settings=flags,
        set_values=set_values or [],
    )


BOOTSTRAP = "Bootstrap"


@app.command("bootstrap-roles")
def bootstrap_roles(
    client_ca: Annotated[
        Path,
        typer.Option(
            "--client-ca",
            help="PEM: the CA (or the certificate itself) the cert role trusts for the startup identity",
            rich_help_panel=BOOTSTRAP,
            show_default=False,
        ),
    ],
    config: ConfigOpt = None,
    token_file: Annotated[
        Optional[Path],
        typer.Option(
            "--token-file",
            help="file holding the admin token [default: $VAULT_TOKEN]",
            rich_help_panel=BOOTSTRAP,
            show_default=False,
        ),
    ] = None,
    allowed_common_name: Annotated[
        Optional[list[str]],
        typer.Option(
            "--allowed-common-name",
            metavar="NAME",
            help="common name (or glob) the startup certificate must have; repeat for more [default: any]",
            rich_help_panel=BOOTSTRAP,
            show_default=False,
        ),
    ] = None,
    task_allowed_policy: Annotated[
        Optional[list[str]],
        typer.Option(
            "--task-allowed-policy",
            metavar="POLICY",
            help="a policy jobs may ask for (the task role's allowed_policies); repeat for more "
            "[default: any except the server policy]",
            rich_help_panel=BOOTSTRAP,
            show_default=False,
        ),
    ] = None,
    login_ttl: Annotated[
        str,
        typer.Option("--login-ttl", help="TTL (and max TTL) of the cert login token", rich_help_panel=BOOTSTRAP),
    ] = "5m",
    mode: Annotated[
        Optional[str],
        typer.Option(
            "--mode",
            "--mint-mode",
            help="role (least privilege) or create-orphan (the old script's setup, with sudo) [default: role]",
            rich_help_panel=BOOTSTRAP,
            show_default=False,
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="report what would change; write nothing", rich_help_panel=BOOTSTRAP)
    ] = False,
    diff: Annotated[
        bool, typer.Option("--diff", help="also show each field's change (old -> new)", rich_help_panel=BOOTSTRAP)
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="text or json", rich_help_panel=BOOTSTRAP)] = "text",
    vault_addr: AddrOpt = None,
    ca_cert: CaOpt = None,
    tls_server_name: ServerNameOpt = None,
    namespace: NamespaceOpt = None,
    allow_insecure_http: InsecureOpt = None,
    auth_mount: AuthMountOpt = None,
    cert_role: Annotated[
        Optional[str],
        typer.Option(
            "--cert-role",
            help="cert auth role of the startup identity, and its policy's name [default: nomad_startup]",
            rich_help_panel=CONN,
            show_default=False,
        ),
    ] = None,
    mint_role: MintRoleOpt = None,
    policy: PolicyOpt = None,
    period: PeriodOpt = None,
    task_role: TaskRoleOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """As an admin, once: write the policies, token roles, cert auth mount and cert role the other commands need.

    Idempotent: reads everything, writes only what differs, and prints one line per object (created, updated
    with the fields that differ, or unchanged). The admin token comes from $VAULT_TOKEN or --token-file; no
    client certificate is needed. Names, period and mint mode come from the same config as the other commands.

    Exit codes: 0 done (or --check), 69 Vault unavailable, 77 the admin token may not do it, 78 bad input.
    """
    from nomad_vault_token.commands import bootstrap as cmd

    flags: dict[str, Any] = {
        "vault_addr": vault_addr,
        "ca_cert": ca_cert,
        "tls_server_name": tls_server_name,
        "namespace": namespace,
        "allow_insecure_http": allow_insecure_http,
        "auth_mount": auth_mount,
        "cert_role": cert_role,
    }
    flags |= mint_flags(mode, mint_role, policy, period, task_role)
    cmd.main(
        config,
        flags,
        token_file=token_file,
        client_ca=client_ca,
        allowed_common_names=allowed_common_name or [],
        task_allowed_policies=task_allowed_policy or [],
        login_ttl=login_ttl,
        check=check,
        diff=diff,
        fmt=fmt,
        verbose=verbose,
    )


def main() -> None:
    """The console script's entry point (kept here for callers of `cli.main`)."""
    from nomad_vault_token.entry import main as entry_main

    entry_main()
