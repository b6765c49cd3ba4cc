"""`check`'s findings: one row per check (pass, warn, fail, skip), the exit code they add up to, the table.

Shared by `check`, `check --workload-identity` (`check_workload`) and `cutover`, below all three.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nomad_vault_token.core.errors import EX_CONFIG, EX_NOPERM, EX_UNAVAILABLE, NvtError


@dataclass(frozen=True)
class Row:
    side: str  # "local", "agent" (its argv and config files) or "vault"
    check: str
    result: str  # pass / warn / fail / skip
    detail: str
    fix: str = ""


class Report:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, side: str, check: str, result: str, detail: str, fix: str = "") -> None:
        self.rows.append(Row(side, check, result, detail, fix))

    def attempt(self, side: str, check: str, detail: str, action: Callable[[], object]) -> bool:
        """Run `action`: a pass with `detail`, or a fail with the error's one line."""
        try:
            action()
        except NvtError as exc:
            self.add(side, check, "fail", exc.message)
            return False
        self.add(side, check, "pass", detail)
        return True

    def failed(self, side: str) -> bool:
        return any(r.side == side and r.result == "fail" for r in self.rows)

    def exit_code(self, unavailable: bool) -> int:
        if self.failed("local") or self.failed("agent"):
            return EX_CONFIG
        if unavailable:
            return EX_UNAVAILABLE
        return EX_NOPERM if self.failed("vault") else 0


def table(report: Report) -> str:
    width = max(len(r.check) for r in report.rows) + 2
    lines = []
    for r in report.rows:
        lines.append(f"{r.result.upper():5} {r.check:<{width}}{r.detail}")
        if r.fix and r.result in {"fail", "warn"}:
            lines.append(f"{'':5} {'':<{width}}fix: {r.fix}")
    fails = sum(r.result == "fail" for r in report.rows)
    warns = sum(r.result == "warn" for r in report.rows)
    lines.append(f"\n{len(report.rows)} checks: {fails} failed, {warns} warnings")
    return "\n".join(lines) + "\n"
