"""1k. The keyring token's cost at start-up: `run` with `keyring = true` (the server token and the keyring token:
one certificate login, one kept-alive connection) against `run` with the server token alone, minting both and
reusing both. Interleaved and rotated like the start-up measurement; the agent stamps its own exec time."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from bench.common import AGENT, AuditLog, Ctx, Spread, log, paths, spread
from testbed import procs
from testbed.config import write_config

VARIANTS: dict[str, str] = {
    "mint": "run, minting the server token",
    "mint_keyring": "run --keyring, minting both tokens (one login)",
    "reuse": "run, reusing the server token",
    "reuse_keyring": "run --keyring, reusing both tokens",
}


@dataclass
class KeyringVariant:
    label: str
    ms: list[float]
    spread: Spread
    audited_requests: float
    logins: float


@dataclass
class KeyringStartup:
    runs: int
    variants: dict[str, KeyringVariant]
    ratio_mint: float  # mint_keyring / mint (medians)
    ratio_reuse: float  # reuse_keyring / reuse (medians)


def keyring_startup(ctx: Ctx) -> KeyringStartup:
    log(f"1k. keyring start-up: {ctx.args.runs} runs of each of {len(VARIANTS)} variants, interleaved")
    ctx.bao.configure_keyring()
    base = ctx.work / "s1k"
    cfgs = {
        False: write_config(base / "legacy" / "config.toml", ctx.bao, ctx.certs),
        True: write_config(
            base / "ring" / "config.toml",
            ctx.bao,
            ctx.certs,
            keyring=True,
            keyring_token_file=str(base / "ring" / "run" / "keyring-token"),
        ),
    }
    out = base / "agent-exec-time"
    audit = AuditLog(ctx.audit)
    env = {**ctx.env, "NVT_BENCH_OUT": str(out)}
    for cfg in cfgs.values():
        ctx.procs.markers.append(str(cfg))

    def once(variant: str) -> tuple[float, int, int]:
        cfg = cfgs[variant.endswith("_keyring")]
        if variant.startswith("mint"):
            for name in ("token.json", "keyring-token.json"):
                (cfg.parent / "state" / name).unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        offset = audit.offset()
        err = cfg.parent / "stderr.log"
        with open(err, "wb") as stderr:
            start = time.time_ns()
            proc = ctx.procs.popen([*ctx.nvt, "run", "--config", str(cfg), "--", *AGENT], env=env, stderr=stderr,
                                   stdout=stderr)  # fmt: skip
            code = proc.wait(120)
        if code != 0 or not out.exists():
            raise RuntimeError(f"{variant} exited {code}: {err.read_text()[-2000:]}")
        exec_at = float(out.read_text())
        procs.stop_mentioning(str(cfg), None)  # the tracker exits with its agent: wait for it
        seen = audit.requests(offset)
        # the tracker's first look-ups may land after the exec: count only what came before it
        before = [e for e in seen if str(e.get("time", "")) <= _iso(exec_at)] or seen
        return (exec_at - start / 1e9) * 1000, len(before), paths(before).get("auth/cert/login", 0)

    for variant in VARIANTS:
        for _ in range(ctx.args.warmup):
            once(variant)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    counts: dict[str, list[int]] = {v: [] for v in VARIANTS}
    logins: dict[str, list[int]] = {v: [] for v in VARIANTS}
    order = list(VARIANTS)
    for i in range(ctx.args.runs):
        for variant in order[i % len(order) :] + order[: i % len(order)]:
            ms, n, login = once(variant)
            times[variant].append(ms)
            counts[variant].append(n)
            logins[variant].append(login)
    med = {v: statistics.median(t) for v, t in times.items()}
    return KeyringStartup(
        runs=ctx.args.runs,
        variants={
            v: KeyringVariant(
                label, times[v], spread(times[v]), statistics.median(counts[v]), statistics.median(logins[v])
            )
            for v, label in VARIANTS.items()
        },
        ratio_mint=med["mint_keyring"] / med["mint"],
        ratio_reuse=med["reuse_keyring"] / med["reuse"],
    )


def _iso(epoch: float) -> str:
    """OpenBao's audit time format (RFC 3339, UTC, microseconds), comparable as text."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int((epoch % 1) * 1e6):06d}Z"
