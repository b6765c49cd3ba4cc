"""A stand-in for ``nomad agent`` (a server using the legacy, token-based Vault
integration of Nomad 1.6 - 1.9), for tests. Needs pyhcl (``import hcl``).

It does with its Vault token what Nomad does; each behaviour names the Nomad
source it copies (hashicorp/nomad at the tag named, e.g. ``command.go
v1.9.7:1010`` is command/agent/command.go; ``vault.go:N`` is nomad/vault.go,
the same in every tag from v1.6.0 to v1.9.7):

* command line: Go's flag package over the agent's flags; parsing stops at the
  first non-flag argument or ``--``; an unknown flag or a bad value is an
  error, exit 1;
* config: every ``-config`` (file: parsed as HCL whatever its name; directory:
  its ``*.hcl`` and ``*.json``, sorted), the ``vault`` blocks merged (only the
  default cluster's), the ``-vault-*`` flags over them, then ``VAULT_TOKEN`` and
  ``VAULT_NAMESPACE`` when still empty; a file that fails to load: exit 1;
* the Vault client: built from the merged block and the process's ``VAULT_*``
  environment like hashicorp/vault/api's DefaultConfig + NewClient; if it
  cannot be built the server does not start: exit 1; ``enabled`` not true: no
  client; from 1.7.3 no token: a client that does nothing;
* validation like ``parseSelfToken``, retried every 30 s while it fails; then
  renewal: at once, then at half the lease; 400/403/404 end it for good, other
  errors back off 5 s growing to 30-60 s; each request retried by the API
  client itself (VAULT_MAX_RETRIES, 2) on connection errors, 412, 429, 5xx;
* signal handling is installed late (FAKE_NOMAD_SIGNAL_DELAY): until then
  SIGHUP, SIGINT and SIGTERM kill the process, as Go's runtime does;
* SIGHUP: everything re-read from the original argv and environment; an equal
  vault config changes nothing; another one restarts the client;
* SIGTERM / SIGINT: exit 1, or 0 with leave_on_terminate / leave_on_interrupt;
* systemd (1.8+): READY=1 on NOTIFY_SOCKET once the handlers are installed,
  RELOADING=1 + MONOTONIC_USEC before a reload and READY=1 after it,
  STOPPING=1 before a graceful leave.

Known differences (not modelled): no Raft, RPC or HTTP API; any agent counts
as a server (Nomad wants ``server`` or ``client`` enabled); ``-dev*`` modes add
nothing; 1.7.0 - 1.7.2's ``default_identity`` rule; the sys/health probe after
a failed first validation; the ``vault`` block is read with pyhcl, which
accepts a little more than Go's HCL1 (e.g. bare words as strings).

Like Nomad's goroutines, the Vault loops run in a thread: a signal is handled
at once, but a reload that changes the vault config waits for a request under
way (SetConfig's tomb.Wait).

Usage::

    python testbed/fake_nomad.py agent [Nomad agent flags...]

Environment (besides Nomad's own ``VAULT_*``, read as Nomad reads them):

    FAKE_NOMAD_REPORT          file to append JSON lines to (default: stderr)
    FAKE_NOMAD_VERSION         "1.9" (default: the Vault rules of 1.7.3 - 1.9, the
                               sd_notify messages of 1.8 - 1.9) or "1.6"
    FAKE_NOMAD_SIGNAL_DELAY    seconds from start until signal handlers are
                               installed (default 2.0)
    FAKE_NOMAD_VALIDATE_RETRY  seconds between validation attempts (default 30)
    FAKE_NOMAD_RENEW_EVERY     seconds between healthy renewals, instead of
                               half the lease
    FAKE_NOMAD_BACKOFF_SCALE   factor on every back-off wait: the renewal's
                               (5 s ... 60 s) and the API client's retries
                               (1 - 1.5 s per attempt); default 1
    FAKE_NOMAD_EXIT_AFTER      exit 0 after this many seconds

Every report line is ``{"event", "pid", "time", ...}``; events and fields:

    config_error  error; at start only (bad flag or config file), then exit
    start         argv, version, token_source ("flag"|"config"|"env"|"none"),
                  token_accessor (null until looked up), config_files,
                  address (the one the client talks to; null without one),
                  client ("vault"|"noop"|"disabled"); emitted once the first
                  validation attempt is done (at once without a client)
    client_error  error, phase ("start"|"reload"): the Vault client could not
                  be built (at start: then exit 1)
    validated     ok, errors, warnings, accessor, role, policies, ttl, renewing
    renewed       accessor, ttl (the lease granted), increment
    renew_failed  status (int or null), stopped (bool: renewal ended for
                  good), error, accessor, retry_in (Nomad's back-off in
                  seconds before scaling; null when stopped)
    signals_ready (none): signal handlers are installed from now on
    reload        token_changed, config_changed, accessor, token_source, error:
                  null when applied; else "Failed to reload configs: ..." or a
                  1.7.3 guard (nothing changed), or why the new client could
                  not be built (the old one is gone: no client now). For a new
                  client it is emitted once its first validation attempt is done
    signal        signal ("SIGINT"|"SIGTERM"), code (the exit code)
    exit          reason ("signal"|"FAKE_NOMAD_EXIT_AFTER"|"config_error"|
                  "client_error"), code; the last line (none when a signal
                  kills it before signals_ready)

Exit codes: 1 on SIGINT/SIGTERM (0 after a graceful leave), on a bad flag,
config file or Vault client at start; 0 after FAKE_NOMAD_EXIT_AFTER; 2 on a
bad FAKE_NOMAD_* setting or a first argument other than ``agent``; killed by
SIGHUP/SIGINT/SIGTERM before ``signals_ready``. The token is never written.

One module a section: `common` (constants and errors), `flags` (Go's flag package), `config` (the
config files, pyhcl), `vault_api` (the Vault API client as Nomad builds it), `rules` (Nomad's rules,
pure), `validation` (talks to Vault), `report`, `agent` (the loops, signals and `main`), `keyring` (the
transit keyring of Nomad 1.8.3+: its blocks, the token by Nomad's precedence, a wrapper built at every use,
root keys unwrapped at start, rotations a test triggers; its own docstring lists what it copies, its
FAKE_NOMAD_KEYRING_* settings and its events).
"""
