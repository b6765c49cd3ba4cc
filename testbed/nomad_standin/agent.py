"""The stand-in Nomad: The agent."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from testbed.nomad_standin.common import (
    CONNECTION_RETRY,
    DEFAULT_VAULT,
    USAGE,
    ClientError,
    ConfigError,
    UsageError,
    VaultConfig,
)
from testbed.nomad_standin.config import Loaded, _str, read_config
from testbed.nomad_standin.report import Reporter
from testbed.nomad_standin.rules import as_int, env_seconds, next_backoff, renew_is_fatal
from testbed.nomad_standin.validation import Outcome, _error, parse_self_token
from testbed.nomad_standin.vault_api import VaultHTTP, VaultUnreachable, build_client


@dataclass
class Settings:
    """The FAKE_NOMAD_* knobs; the defaults are Nomad's."""

    version: str = "1.9"
    signal_delay: float = 2.0
    validate_retry: float = CONNECTION_RETRY
    renew_every: float | None = None
    backoff_scale: float = 1.0
    exit_after: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        version = env.get("FAKE_NOMAD_VERSION", "").strip() or "1.9"
        if version not in DEFAULT_VAULT:
            raise UsageError(f"FAKE_NOMAD_VERSION={version!r}: use 1.9 or 1.6")
        return cls(
            version=version,
            signal_delay=env_seconds(env, "FAKE_NOMAD_SIGNAL_DELAY", 2.0) or 0.0,
            validate_retry=env_seconds(env, "FAKE_NOMAD_VALIDATE_RETRY", CONNECTION_RETRY) or 0.0,
            renew_every=env_seconds(env, "FAKE_NOMAD_RENEW_EVERY"),
            backoff_scale=env_seconds(env, "FAKE_NOMAD_BACKOFF_SCALE", 1.0) or 0.0,
            exit_after=env_seconds(env, "FAKE_NOMAD_EXIT_AFTER"),
        )


class Loops:
    """One vaultClient's establishConnection and renewalLoop goroutines (vault.go:488-631), in a thread.

    ``announce(accessor)`` is called once, after the first validation attempt.
    stop() is SetConfig's tomb.Kill + tomb.Wait (vault.go:385-396): it waits
    for a request under way.
    """

    def __init__(
        self,
        client: VaultHTTP,
        cfg: VaultConfig,
        settings: Settings,
        report: Reporter,
        announce: Callable[[str | None], None],
    ) -> None:
        self.client, self.cfg, self.settings, self.report, self.announce = client, cfg, settings, report, announce
        self.accessor: str | None = None
        self.dying = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vault", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.dying.set()
        self.thread.join()

    def _run(self) -> None:
        outcome = self._establish()
        if outcome is not None and outcome.renew:  # root without a TTL: no renewal (vault.go:529-534)
            self._renewal_loop(outcome)

    def _establish(self) -> Outcome | None:
        """Validate at once, then every 30 s until it passes (vault.go:491-522)."""
        first = True
        while True:
            outcome = parse_self_token(self.client, self.cfg)
            self.accessor = outcome.accessor or self.accessor
            if first:
                self.announce(outcome.accessor)
                first = False
            self.report.emit("validated", **outcome.report())
            if outcome.ok:
                return outcome
            if self.dying.wait(self.settings.validate_retry):
                return None

    def _renewal_loop(self, outcome: Outcome) -> None:
        """renewalLoop (vault.go:548-631): renew at once, then at half the lease; back off on errors."""
        expiry = time.monotonic() + outcome.ttl  # parseSelfToken's extendExpiration(data.TTL), vault.go:733
        backoff = 0.0
        wait = 0.0  # the timer starts at zero (vault.go:554)
        while not self.dying.wait(wait):
            lease, status, error = self._renew(outcome.creation_ttl)
            now = time.monotonic()
            if lease:
                expiry = now + lease  # extendExpiration
                self.report.emit("renewed", accessor=self.accessor, ttl=lease, increment=outcome.creation_ttl)
                backoff = 0.0
                wait = self.settings.renew_every if self.settings.renew_every is not None else lease / 2  # 574
                continue
            if renew_is_fatal(error):  # vault.go:592-594
                self.report.emit(
                    "renew_failed", status=status, stopped=True, error=error, accessor=self.accessor, retry_in=None
                )
                return
            backoff = next_backoff(backoff, expiry - now)  # vault.go:596-617
            self.report.emit(
                "renew_failed", status=status, stopped=False, error=error, accessor=self.accessor, retry_in=backoff
            )
            wait = backoff * self.settings.backoff_scale

    def _renew(self, increment: int) -> tuple[int, int | None, str]:
        """renew (vault.go:667-697): (lease or 0, HTTP status or None, error)."""
        try:
            resp = self.client.call("PUT", "auth/token/renew-self", {"increment": increment})
        except VaultUnreachable as exc:
            return 0, None, f"failed to renew the vault token: {exc}"
        err = _error(resp)
        if err:
            return 0, resp.status, f"failed to renew the vault token: {err}"
        if resp.body is None:
            return 0, resp.status, "renewal failed: empty response from vault"
        auth = resp.body.get("auth") if isinstance(resp.body, dict) else None
        if not isinstance(auth, dict):
            return 0, resp.status, "renewal successful but not auth information returned"
        lease = as_int(auth.get("lease_duration"))
        if lease == 0:
            return 0, resp.status, "renewal successful but no lease duration returned"
        if isinstance(auth.get("accessor"), str):
            self.accessor = auth["accessor"]
        return lease, resp.status, ""


class Agent:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], settings: Settings, report: Reporter) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.settings = settings
        self.report = report
        self.loaded: Loaded | None = None
        self.cfg: VaultConfig = {}
        self.token_source = "none"
        self.kind = "vault"  # "vault": a vaultClient; "noop": NoopVault (1.7.3+ without a token)
        self.loops: Loops | None = None
        self.last_accessor: str | None = None
        self.keyring: Any = None
        report.secret(self.env.get("VAULT_TOKEN", ""))

    @property
    def accessor(self) -> str | None:
        return (self.loops.accessor if self.loops else None) or self.last_accessor

    def _take(self, loaded: Loaded) -> None:
        self.cfg, self.token_source = loaded.vault, loaded.token_source
        self.report.secret(_str(self.cfg, "token"))

    def _launch(self, announce: Callable[[str | None], None], phase: str) -> str | None:
        """The part of NewVaultClient / SetConfig after the config is stored (vault.go:292-302, 406-415).

        Returns buildClient's error, or None. Without ``enabled = true`` nothing runs.
        """
        if self.cfg.get("enabled") is not True:
            announce(None)
            return None
        try:
            client = build_client(self.cfg, self.env, self.settings.backoff_scale)
        except ClientError as exc:
            self.report.emit("client_error", error=str(exc), phase=phase)
            return str(exc)
        self.loops = Loops(client, self.cfg, self.settings, self.report, announce)
        return None

    def start(self) -> int | None:
        """readConfig, then the server's setupVaultClient. Returns an exit code when Nomad would not start."""
        try:
            self.loaded = read_config(self.argv[2:], self.env, self.settings.version)
        except ConfigError as exc:  # command.go v1.9.7:206-208, 258-263: Run returns 1
            print(f"==> {exc}" if exc.args[0].startswith("Error") else f"{exc}\n{USAGE}", file=sys.stderr)
            self.report.emit("config_error", error=str(exc))
            return self.exit("config_error", 1)
        self._take(self.loaded)
        from testbed.nomad_standin import keyring

        try:  # NewServer: the encrypter, then IsReady blocks until the keyring is unwrapped (keyring.py)
            self.keyring = keyring.setup(self.argv[2:], self.env, self.report)
        except ConfigError as exc:
            print(f"==> {exc}", file=sys.stderr)
            self.report.emit("config_error", error=str(exc))
            return self.exit("config_error", 1)
        if self.keyring is not None:
            code = self.keyring.start()
            if code is not None:
                print("==> Error starting agent: server setup failed: failed to wait for keyring decryption to "
                      "complete", file=sys.stderr)  # fmt: skip
                return self.exit("keyring", code)
            self.keyring.watch_rotations()

        def started(accessor: str | None, client: str = "vault") -> None:
            address = None
            if client == "vault" and self.cfg.get("enabled") is True:
                address = self.env.get("VAULT_AGENT_ADDR") or _str(self.cfg, "address")
            self.report.emit(
                "start",
                argv=self.argv,
                version=self.settings.version,
                token_source=self.token_source,
                token_accessor=accessor,
                config_files=self.loaded.files if self.loaded else [],
                address=address,
                client=client if client == "noop" or self.cfg.get("enabled") is True else "disabled",
            )

        if self.settings.version != "1.6" and not _str(self.cfg, "token"):
            self.kind = "noop"  # server.go v1.9.7:1206-1211
            started(None, "noop")
            return None
        error = self._launch(started, "start")
        # server.go v1.9.7:409-412, agent.go v1.9.7:981, command.go v1.9.7:849-851: the agent exits 1. In 1.6
        # an enabled block without a token stops here too: NewVaultClient builds the client at once
        # (vault.go v1.6.10:292-295 → "Vault token must be set", 425), server.go v1.6.10:396-399, command.go 776-778.
        if error is not None:
            print(
                f"==> Error starting agent: server setup failed: Failed to setup Vault client: {error}", file=sys.stderr
            )
            return self.exit("client_error", 1)
        return None

    def reload(self) -> None:
        """handleReload (command.go v1.9.7:1107-1150), then Server.Reload's vault part (server.go v1.9.7:896-918)."""
        old_token = _str(self.cfg, "token")
        fields: dict[str, Any] = {"token_changed": False, "config_changed": False, "token_source": self.token_source}
        try:
            loaded = read_config(self.argv[2:], self.env, self.settings.version)
        except ConfigError as exc:  # command.go v1.9.7:1109-1113
            print(f"==> {exc}\n==> Failed to reload configs", file=sys.stderr)
            self.report.emit("reload", accessor=self.accessor, error=f"Failed to reload configs: {exc}", **fields)
            return
        new = loaded.vault
        fields = {
            "token_changed": _str(new, "token") != old_token,
            "config_changed": new != self.cfg,
            "token_source": loaded.token_source,
        }
        if self.settings.version != "1.6":  # server.go v1.9.7:902-912
            guard = None
            if self.kind == "noop" and _str(new, "token"):
                guard = "setting a Vault token requires restarting the Nomad agent"
            elif self.kind == "vault" and not _str(new, "token"):
                guard = "removing the Vault token requires restarting the Nomad agent"
            if guard:
                print(f"==> reloading server config failed: {guard}", file=sys.stderr)
                self.report.emit("reload", accessor=self.accessor, error=guard, **fields)
                return
        if self.kind == "noop":  # NoopVault.SetConfig only stores it (nomad/vault_noop.go v1.9.7:36-42)
            self._take(loaded)
            self.report.emit("reload", accessor=None, error=None, **fields)
            return
        if not fields["config_changed"]:  # SetConfig on an equal config: nothing (vault.go:380-383)
            self.report.emit("reload", accessor=self.accessor, error=None, **fields)
            return
        if self.loops is not None:  # vault.go:385-400
            self.last_accessor = self.accessor
            self.loops.stop()
            self.loops = None
        self._take(loaded)  # vault.go:403

        def reloaded(accessor: str | None) -> None:
            self.report.emit("reload", accessor=accessor, error=None, **fields)

        error = self._launch(reloaded, "reload")
        if error is not None:  # no client now, until a reload that builds one
            print(f"==> reloading server config failed: {error}", file=sys.stderr)
            self.report.emit("reload", accessor=None, error=error, **fields)

    def exit(self, reason: str, code: int) -> int:
        self.report.emit("exit", reason=reason, code=code)
        return code

    def run(self, started_at: float) -> int:
        """handleSignals (command.go v1.9.7:1008-1087), installed after setupAgent and startupJoin."""
        exit_at = None if self.settings.exit_after is None else started_at + self.settings.exit_after
        ready_at = started_at + self.settings.signal_delay
        while (now := time.monotonic()) < ready_at:  # SIGHUP, SIGINT, SIGTERM still kill the process
            if exit_at is not None and now >= exit_at:
                return self.exit("FAKE_NOMAD_EXIT_AFTER", 0)
            time.sleep(min(ready_at, exit_at if exit_at is not None else ready_at) - now)
        signals = notify()
        # command.go v1.9.7:1012-1020: READY=1 once the handlers exist (1.8+; 1.6 and 1.7 send nothing)
        sd = SdNotify(self.env.get("NOTIFY_SOCKET", "") if self.settings.version != "1.6" else "")
        sd.send("READY=1")
        self.report.emit("signals_ready")
        while True:
            timeout = 1.0 if exit_at is None else max(0.0, min(1.0, exit_at - time.monotonic()))
            try:
                signum = signals.get(timeout=timeout)
            except queue.Empty:
                if exit_at is not None and time.monotonic() >= exit_at:
                    return self.exit("FAKE_NOMAD_EXIT_AFTER", 0)
                continue
            name = signal.Signals(signum).name
            print(f"==> Caught signal: {name}", file=sys.stderr)
            if signum == signal.SIGHUP:  # command.go v1.9.7:1044-1050
                sd.send("RELOADING=1")
                sd.send(f"MONOTONIC_USEC={time.time_ns() // 1000}")  # time.Now().UnixMicro(): wall clock, as Nomad
                self.reload()
                sd.send("READY=1")
                continue
            # command.go v1.9.7:1052-1085: exit 1 unless leave_on_interrupt / leave_on_terminate (the config
            # read at start: agent.Reload does not change them, command/agent/agent.go v1.9.7:1397-1465)
            assert self.loaded is not None
            leave = self.loaded.leave_on_interrupt if signum == signal.SIGINT else self.loaded.leave_on_terminate
            code = 0 if leave else 1
            if leave:
                sd.send("STOPPING=1")  # command.go v1.9.7:1066
            self.report.emit("signal", signal=name, code=code)
            return self.exit("signal", code)


class SdNotify:
    """openNotify / sdNotify (command/agent/sdnotify_linux.go v1.9.7): datagrams to NOTIFY_SOCKET, if set."""

    def __init__(self, path: str) -> None:
        self.sock: socket.socket | None = None
        if path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.connect("\0" + path[1:] if path.startswith("@") else path)
                self.sock = sock
            except OSError:  # Nomad logs it at debug level and carries on
                sock.close()

    def send(self, message: str) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.send(message.encode())


def go_runtime_signals() -> None:
    """Go's runtime before signal.Notify: SIGHUP, SIGINT and SIGTERM end the process.

    Except that SIGHUP and SIGINT stay ignored when the process started with
    them ignored (runtime/signal_unix.go sigInstallGoHandler; golang/go#9896).
    """
    for sig in (signal.SIGHUP, signal.SIGINT):
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def notify() -> queue.SimpleQueue[int]:
    """signal.Notify(SIGINT, SIGTERM, SIGHUP, SIGPIPE) (command.go v1.9.7:1010); SIGPIPE stays ignored (1037)."""
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()

    def handler(signum: int, frame: FrameType | None) -> None:
        signals.put(signum)  # SimpleQueue.put is reentrant: safe in a handler

    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return signals


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    started_at = time.monotonic()
    go_runtime_signals()
    argv = list(sys.argv if argv is None else argv)
    env = dict(os.environ if env is None else env)
    if len(argv) < 2 or argv[1] != "agent":
        print("usage: fake_nomad.py agent [nomad agent flags...]", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env(env)
        reporter = Reporter(env.get("FAKE_NOMAD_REPORT") or None)
    except UsageError as exc:
        print(f"fake_nomad: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fake_nomad: cannot open FAKE_NOMAD_REPORT: {exc}", file=sys.stderr)
        return 2
    agent = Agent(argv, env, settings, reporter)
    code = agent.start()
    if code is not None:
        return code
    return agent.run(started_at)


if __name__ == "__main__":
    sys.exit(main())
