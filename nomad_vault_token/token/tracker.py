"""The tracker's check loop: a detached process beside the agent that keeps the token alive.

`spawn` starts it beside the agent (`agent_process`: fork, pidfd, signals). It holds the token in
memory only, exits when the agent does, checks the token with lookup-self on the schedule of `lease`,
renews only below the threshold the agent should never reach, proves the agent adopted its token
(`tracker_state`: Nomad renews a token it took), recovers a dead token (mint, rewrite, SIGHUP once that
is safe; or the stop signal in env mode) and escalates a hand-over the agent does not take. What it
says (READY / STATUS / WATCHDOG, `tracker.json`, metrics) is made by `tracker_report`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import time
from typing import TYPE_CHECKING

from nomad_vault_token.core.config import Settings
from nomad_vault_token.core.durations import format_duration
from nomad_vault_token.core.errors import NvtError, TokenInvalid, VaultUnavailable
from nomad_vault_token.core.notify import Notifier, Watchdog
from nomad_vault_token.core.secret import Secret
from nomad_vault_token.nomad.argv import AgentArgv
from nomad_vault_token.token import lease, store, tracker_state
from nomad_vault_token.token import tracker_report as report
from nomad_vault_token.token.agent_process import AgentProcess, fork_beside
from nomad_vault_token.token.tracker_report import Health, View
from nomad_vault_token.vault import tls
from nomad_vault_token.vault.client import TokenInfo, Vault

if TYPE_CHECKING:
    from nomad_vault_token.token.keyring_watch import KeyringWatch

log = logging.getLogger(__name__)


def spawn(
    settings: Settings,
    token: Secret | None,
    info: TokenInfo,
    notifier: Notifier,
    agent_args: AgentArgv | None = None,
    *,
    degraded: bool = False,
    ring: tuple[Secret | None, TokenInfo] | None = None,
) -> None:
    """Start the tracker detached; it begins once this process has exec'd the agent.

    `degraded`: the agent starts without Vault's word on `token` (None: no token at all).
    `ring`: the keyring token written for the agent (`keyring = true`), and what Vault said of it."""

    def body(agent: AgentProcess, ready_fd: int) -> int:
        return Tracker(settings, token, info, agent, agent_args, degraded=degraded, ring=ring).main(ready_fd)

    fork_beside(signal.Signals[settings.stop_signal], body)


class Tracker:
    def __init__(
        self,
        settings: Settings,
        token: Secret | None,
        info: TokenInfo,
        agent: AgentProcess,
        agent_args: AgentArgv | None = None,
        *,
        degraded: bool = False,
        ring: tuple[Secret | None, TokenInfo] | None = None,
    ) -> None:
        self.settings = settings
        self.vault = Vault(settings)  # made in the forked tracker: no connection shared with `run`
        self.legacy = settings.legacy_token  # false: the agent has no server token, only the keyring's
        self.keyring: KeyringWatch | None = None
        if ring is not None:
            from nomad_vault_token.token.keyring_watch import KeyringWatch

            self.keyring = KeyringWatch(settings, self.vault, ring[0], ring[1], degraded=degraded)
        self.token = token
        self.info = info
        self.agent = agent
        self.agent_pid = agent.pid
        self.notifier = Notifier()
        self.health = Health(ttl=info.ttl, checked_at=time.monotonic(), last_renewal=_last_renewal(info))
        self.policy = tracker_state.Policy(
            adoption_timeout=settings.adoption_timeout,
            sighup_grace=settings.sighup_grace,
            escalate=settings.on_not_adopted == "restart",
        )
        self.stop_signal = agent.stop_signal
        self.agent_args = agent_args
        self.config_problem = ""
        self.track = tracker_state.start(time.monotonic(), _renewal_mark(info), random.random(), degraded=degraded)  # noqa: S311
        self.failures = 0
        self.cert_days: int | None = None
        self.cert_not_after: float | None = None  # wall clock, for metrics
        self.last_lookup: float | None = None  # wall clock of the last successful lookup-self
        self.last_mint: float | None = None  # wall clock of the last replacement token
        self.cert_warning = ""
        self.pacer = Watchdog(self.notifier)
        self.ready_sent = False

    # ---- process plumbing -------------------------------------------------------

    def main(self, ready_fd: int) -> int:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, _exit_quietly)
        signal.signal(signal.SIGTERM, _exit_quietly)
        if not self.agent.wait_for_exec(ready_fd):
            return 0
        self.track = tracker_state.start(
            time.monotonic(), self.track.baseline, self.track.jitter, degraded=self.track.state == "degraded"
        )
        if self.keyring is not None:
            self.keyring.started()
        self._refresh_cert()
        self.notifier.status(self.status_line())
        if self.legacy:
            self.review_agent_config()
        if self.keyring is not None:
            self.review_keyring_config()
        self.publish()
        if self.legacy:
            log.info("tracker watching token accessor %s for agent pid %d", self.info.accessor, self.agent_pid)
        if self.keyring is not None:
            log.info(
                "tracker watching keyring token accessor %s for agent pid %d",
                self.keyring.info.accessor or "(none)",
                self.agent_pid,
            )
        self.loop()
        return 0

    def review_agent_config(self) -> None:
        """The agent's config files, read right after the exec (too slow for run's start-up)."""
        if self.agent_args is None or not self.agent_args.found:
            return
        from nomad_vault_token.nomad import review

        try:
            block, found = review.review(self.settings, self.agent_args, os.environ)
        except Exception:  # a review must never take the tracker down
            log.exception("could not review the agent's config")
            return
        for f in found:
            if f.severity != "pass":
                log.log(logging.ERROR if f.severity == "fail" else logging.WARNING, "agent config: %s", f.message)
        failed = [f for f in found if f.severity == "fail"]
        self.config_problem = failed[0].message if failed else ""
        if block is not None and not block.allow_unauthenticated and self.token is not None:
            self._check_lookup_capability(self.token)
        if failed:
            self.notifier.status(self.status_line())

    def review_keyring_config(self) -> None:
        """The agent's keyring blocks, judged for the keyring token this tracker keeps (as `check` does)."""
        if self.agent_args is None or not self.agent_args.found:
            return
        from nomad_vault_token.core.errors import ConfigError
        from nomad_vault_token.nomad import agent_config, agent_findings, keyring_config

        try:
            blocks = keyring_config.load_keyring_blocks(self.agent_args.configs)
            vault_block = agent_config.load_vault_block(self.agent_args.configs, self.agent_args)
            found = agent_findings.keyring_findings(
                blocks,
                vault_block,
                keyring=True,
                token_path=str(self.settings.keyring_token_path),
                vault_addr=self.settings.vault_addr,
            )
        except ConfigError as exc:
            found = [agent_findings.Finding("keyring", "fail", exc.message, "", "")]
        except Exception:  # a review must never take the tracker down
            log.exception("could not review the agent's keyring blocks")
            return
        for f in found:
            if f.severity != "pass":
                log.log(logging.ERROR if f.severity == "fail" else logging.WARNING, "agent config: %s", f.message)
        failed = [f for f in found if f.severity == "fail"]
        if failed and not self.config_problem:
            self.config_problem = failed[0].message
            self.notifier.status(self.status_line())

    def _check_lookup_capability(self, token: Secret) -> None:
        """allow_unauthenticated = false: Nomad also needs update on auth/token/lookup (vault.go:866)."""
        from nomad_vault_token.nomad import token_rules
        from nomad_vault_token.token import nomad_check

        try:
            results = nomad_check.nomad_rules_for(self.vault, token, self.info, allow_unauthenticated=False)
        except NvtError as exc:
            log.debug("could not check auth/token/lookup: %s", exc.message)
            return
        for r in token_rules.failures(results):
            log.error("Nomad will refuse the token: %s (%s)", r.message, r.fix)
            self.config_problem = self.config_problem or f"Nomad will refuse the token: {r.message}"

    def loop(self) -> None:
        next_check = time.monotonic() + self.check_delay() if self.legacy else float("inf")
        while True:
            now = time.monotonic()
            wake = self.pacer.wake_at(min(next_check, self.keyring.next_at if self.keyring else next_check))
            if not self.ready_sent:
                wake = min(wake, tracker_state.sighup_safe_at(self.track, self.policy))
            if self.agent.gone(wake - now):
                log.info("agent pid %d exited: tracker stops", self.agent_pid)
                return
            now = time.monotonic()
            if self.keyring is not None and now >= self.keyring.next_at:
                try:
                    self.keyring.tick()
                except Exception:  # never crash beside the agent
                    log.exception("keyring token check failed")
                    self.keyring.next_at = time.monotonic() + self.settings.check_interval
                self.report()
            if now >= next_check:
                try:
                    next_check = time.monotonic() + self.tick()
                    if self.act_on_time():  # a new hand-over or state: look again on its schedule
                        next_check = min(next_check, time.monotonic() + self.check_delay())
                except Exception:  # never crash beside the agent
                    log.exception("tracker check failed")
                    next_check = time.monotonic() + lease.retry_delay(self.failures + 1, self.settings.check_interval)
            self.ready()
            self.watchdog()

    # ---- one check -----------------------------------------------------------------

    def check_delay(self) -> float:
        """The token's schedule, and sooner while adoption is still open."""
        token = lease.check_delay(self.ttl_now(), self.settings.period, self.settings.check_interval)
        return min(token, tracker_state.poll_delay(self.track, time.monotonic()))

    def ttl_now(self) -> float:
        return lease.ttl_now(self.health.ttl, self.health.checked_at, time.monotonic())

    def tick(self) -> float:
        """Check the token once; return the delay until the next check."""
        token = self.token
        if token is None:  # a degraded start without a token: mint one as soon as Vault can
            health = self.vault.health()
            if not health.usable:
                where = self.settings.vault_addr
                return self.unreachable(VaultUnavailable(f"Vault at {where} {health.state}", state=health.state))
            return self.recover("the agent started without one while Vault was away")
        try:
            info = self.vault.lookup_self(token)
            self.last_lookup = time.time()
        except TokenInvalid as exc:
            return self.recover(str(exc))
        except VaultUnavailable as exc:
            return self.unreachable(exc)
        except NvtError as exc:
            self.failures += 1
            self.health.problem = exc.message
            log.warning("token check failed: %s", exc.message)
            self.report()
            return lease.retry_delay(self.failures, self.settings.check_interval)
        self.back_online()
        self.observe(info, by="the agent")
        if self.ttl_now() < lease.renew_threshold(self.settings.period):
            self.renew(token)
        self._refresh_cert()
        self.report()
        return self.check_delay()

    def act_on_time(self) -> bool:
        """What time makes due: a SIGHUP that became safe, a hand-over not adopted, an escalation.

        True when something changed."""
        before = self.track.state
        self.track, action = tracker_state.due(self.track, self.policy, time.monotonic())
        if action == "sighup" and self.settings.handoff == "env":
            self._restart_for_token()
        elif action == "sighup":
            self.agent.reload(f"the new token in {self.settings.token_config} is safe to load now")
        elif action == "escalate":
            log.error(
                "agent pid %d has not adopted token accessor %s %s after it was handed over: stopping it (%s) so "
                "systemd restarts it with the saved token",
                self.agent_pid,
                self.info.accessor,
                format_duration(time.monotonic() - self.track.handed_at),
                self.stop_signal.name,
            )
            self.agent.stop("escalation")
        if self.track.state == "not_adopted" and before != "not_adopted":
            log.error("token accessor %s %s", self.info.accessor, self.adoption())
        changed = action is not None or self.track.state != before
        if changed:
            self.report()
        return changed

    def observe(self, info: TokenInfo, by: str) -> None:
        was_adopted = self.track.adopted()
        if by == "the agent":
            self.track = tracker_state.looked(self.track, _renewal_mark(info), time.monotonic())
        else:
            self.track = tracker_state.renewed_by_us(self.track, _renewal_mark(info))
        if self.track.adopted() and not was_adopted:
            log.info("token accessor %s %s", info.accessor, self.adoption())
        renewal = _last_renewal(info)
        if renewal is not None and renewal != self.health.last_renewal:
            if self.health.last_renewal is not None or by != "the agent":
                log.info("token accessor %s renewed by %s, ttl %s", info.accessor, by, format_duration(info.ttl))
            self.health.renewed_by = by
            self.health.last_renewal = renewal
        self.info = info
        self.health.ttl = info.ttl
        self.health.checked_at = time.monotonic()
        self.health.dead_since = None
        self.health.problem = ""
        self.failures = 0

    def renew(self, token: Secret) -> None:
        try:
            self.vault.renew_self(token)
            self.observe(self.vault.lookup_self(token), by="the tracker")
        except NvtError as exc:
            log.warning("tracker renewal of accessor %s failed: %s", self.info.accessor, exc.message)

    def unreachable(self, exc: VaultUnavailable) -> float:
        self.failures += 1
        self.track = tracker_state.unreachable(self.track)
        if self.health.unreachable_since is None:
            self.health.unreachable_since = time.time()
            log.warning("Vault unreachable: %s (token ttl about %s left)", exc.message, format_duration(self.ttl_now()))
        self.health.problem = exc.message
        self.health.vault_state = exc.what
        self.report()
        return lease.retry_delay(self.failures, self.settings.check_interval)

    def back_online(self) -> None:
        if self.health.unreachable_since is not None:
            log.info("Vault reachable again after %s", format_duration(time.time() - self.health.unreachable_since))
            self.health.unreachable_since = None

    # ---- recovery --------------------------------------------------------------------

    def recover(self, why: str) -> float:
        """The token is gone: mint a new one and hand it to the agent. Never signals while Vault is down."""
        from nomad_vault_token.token.minting import login_and_mint

        self.back_online()
        self.track = tracker_state.gone(self.track, time.monotonic())
        if self.health.dead_since is None:
            self.health.dead_since = time.time()
            if self.token is None:
                log.warning("Vault is usable: minting the token %s", why)
            else:
                log.error("token accessor %s is gone (%s): recovering", self.info.accessor, why)
        self.health.ttl = 0
        self.health.checked_at = time.monotonic()
        self.failures += 1
        try:
            token, info = login_and_mint(self.vault)
            store.write(
                self.settings.state_file, store.State(token, info.accessor, self.settings.vault_addr, time.time())
            )
            how = self.hand_over(token)
        except NvtError as exc:
            self.health.problem = f"recovery failed: {exc.message}"
            log.warning("recovery failed (attempt %d): %s", self.failures, exc.message)
            self.report()
            return lease.retry_delay(self.failures, self.settings.check_interval)
        old = self.info.accessor
        self.token = token
        self.last_mint = self.last_lookup = time.time()
        self.health = Health(ttl=info.ttl, checked_at=time.monotonic(), last_renewal=_last_renewal(info))
        self.track = tracker_state.handed_over(self.track, how, _renewal_mark(info), time.monotonic())
        self.info = info
        self.failures = 0
        log.info("recovered: token accessor %s replaced by %s", old, info.accessor)
        self.report()
        return self.check_delay()

    def hand_over(self, token: Secret) -> tracker_state.Handover:
        """Give the agent the new token: SIGHUP if it can take one now, later if not; or restart it."""
        if self.settings.handoff == "file":
            from nomad_vault_token.nomad import handoff

            handoff.write_token_config(self.settings, token)
            if not tracker_state.sighup_safe(self.track, self.policy, time.monotonic()):
                log.warning(
                    "new token written to %s; no SIGHUP yet: agent pid %d was not seen renewing a token at least "
                    "%s ago, so its signal handling may not be up (a SIGHUP would kill it)",
                    self.settings.token_config,
                    self.agent_pid,
                    format_duration(self.policy.sighup_grace),
                )
                return "pending"
            self.agent.reload(f"new token written to {self.settings.token_config}")
            return "sighup"
        if not tracker_state.sighup_safe(self.track, self.policy, time.monotonic()):
            log.warning(
                "env hand-off: new token saved; agent pid %d not stopped yet: its signal handling may not be up "
                "(dying of %s, it would not be restarted)",
                self.agent_pid,
                self.stop_signal.name,
            )
            return "pending"
        self._restart_for_token()
        return "restart"

    def _restart_for_token(self) -> None:
        log.warning(
            "env hand-off: stopping agent pid %d (%s) so systemd restarts it with the new token",
            self.agent_pid,
            self.stop_signal.name,
        )
        self.agent.stop("env hand-off")

    # ---- reporting -------------------------------------------------------------------

    def healthy(self) -> bool:
        """Whether the agent holds a live token as far as we know: not dead, not refused by the agent,
        and TTL left by the monotonic clock. The WATCHDOG follows this.

        The keyring token never stops the WATCHDOG: a restart cannot mend it (the tracker replaces it in the
        file, and Nomad reads the file at its next use), and a Nomad restarted while its keyring token is dead
        or Vault is away cannot read its keyring at all. STATUS says what is wrong with it instead."""
        if not self.legacy:
            return True
        alive = self.ttl_now() > 0 or self.track.state == "degraded"  # degraded: no TTL known, Vault's fault
        return self.track.watchdog_ok() and self.health.dead_since is None and alive

    def adoption(self) -> str:
        return tracker_state.describe(self.track, self.policy, time.monotonic())

    def view(self) -> report.View:
        return report.View(
            accessor=self.info.accessor,
            agent_pid=self.agent_pid,
            track=self.track,
            health=self.health,
            ttl=self.ttl_now(),
            has_token=self.token is not None,
            adoption=self.adoption(),
            degraded_for=self.track.degraded_for(time.monotonic()),
            config_problem=self.config_problem,
            cert_days=self.cert_days,
            cert_warning=self.cert_warning,
            cert_not_after=self.cert_not_after,
            last_lookup=self.last_lookup,
            last_mint=self.last_mint,
            wall=time.time(),
            legacy=self.legacy,
            ring=None if self.keyring is None else self.keyring.view(),
        )

    def status_line(self) -> str:
        return report.status_line(self.view())

    def report(self) -> None:
        view = self.view()  # one view for STATUS, tracker.json and the metrics
        self.notifier.status(report.status_line(view))
        self.publish(view)

    def publish(self, view: View | None = None) -> None:
        """tracker.json beside the state file, for `status`; the metrics textfile when configured."""
        from nomad_vault_token.core.files import publish_json

        view = view or self.view()
        try:
            publish_json(self.settings.tracker_file, report.document(view, os.getpid()))
        except OSError as exc:
            log.debug("cannot write %s: %s", self.settings.tracker_file, exc.strerror)
        if self.settings.metrics_dir is not None:
            from nomad_vault_token.core import metrics

            try:
                metrics.write_textfile(self.settings.metrics_dir, "tracker", report.gauges(view))
            except (OSError, ValueError) as exc:
                where = self.settings.metrics_dir
                log.warning("metrics: cannot write in %s: %s", where, getattr(exc, "strerror", None) or exc)

    def ready(self) -> None:
        """READY=1 once the agent can take a reload: systemd allows `systemctl reload` (SIGHUP) from then
        on, and before Nomad installs its handler a SIGHUP kills it. Nomad 1.8+ says READY itself then."""
        if self.ready_sent or not tracker_state.sighup_safe(self.track, self.policy, time.monotonic()):
            return
        self.ready_sent = True
        self.notifier.ready(self.status_line())

    def watchdog(self) -> None:
        self.pacer.beat(time.monotonic(), self.healthy())

    def _refresh_cert(self) -> None:
        cert, key = self.settings.client_tls()
        try:
            info = tls.check_client(cert, key, self.settings.cert_warn_days)
        except NvtError as exc:
            self.cert_days, self.cert_warning = None, exc.message
            return
        self.cert_days = info.days_left
        self.cert_not_after = info.not_after.timestamp()
        self.cert_warning = info.warnings[0] if info.warnings else ""


def _renewal_mark(info: TokenInfo) -> str | None:
    """The token's last renewal, exactly (nanoseconds): what adoption is judged by."""
    mark = info.raw.get("last_renewal") or info.raw.get("last_renewal_time")
    return str(mark) if mark else None


def _last_renewal(info: TokenInfo) -> float | None:
    value = info.raw.get("last_renewal_time")
    with contextlib.suppress(TypeError, ValueError):
        return float(value) if value else None
    return None


def _exit_quietly(signum: int, frame: object) -> None:
    os._exit(0)
