"""Go's ``time.ParseDuration``, for the durations Nomad reads from its config (``task_token_ttl``):
the same units, fractions, sign and overflow, and a ValueError where Go returns an error. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

_GO_UNITS_NS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "ns": 1,
        "us": 10**3,
        "\u00b5s": 10**3,
        "\u03bcs": 10**3,
        "ms": 10**6,
        "s": 10**9,
        "m": 60 * 10**9,
        "h": 3600 * 10**9,
    }
)
_GO_DURATION = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_MAX_NS: Final = 2**63 - 1


def go_duration_ns(text: str) -> int:
    """Nanoseconds in a Go duration ("72h", "1h30m", "1.5s", "-5m", "0"); ValueError like Go's."""
    s = text
    sign = 1
    if s[:1] in ("-", "+"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = 0, 0
    while pos < len(s):
        match = _GO_DURATION.match(s, pos)
        if not match or (not match.group(1) and not match.group(2)):
            raise ValueError(f"invalid duration {text!r}")
        whole, frac, unit = match.group(1), match.group(2) or "", match.group(3)
        per = _GO_UNITS_NS[unit]
        total += int(whole or "0") * per + (int(frac) * per // 10 ** len(frac) if frac else 0)
        pos = match.end()
    if total > _MAX_NS + (1 if sign < 0 else 0):
        raise ValueError(f"invalid duration {text!r}")
    return sign * total
