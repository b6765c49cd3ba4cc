"""Go-style durations ("72h", "1h30m", "90s") to whole seconds. Pure."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"([0-9]+)([smhd])")
_WHOLE = re.compile(r"(?:[0-9]+[smhd])+")
_DIGITS = re.compile(r"[0-9]+")


class DurationError(ValueError):
    """Not a duration; the message says what a valid one looks like."""


def parse_duration(text: str, bare_seconds: bool = True) -> int:
    """Seconds in `text`: "72h", "1h30m", "45s", "2d", "0"; a bare number is seconds
    unless `bare_seconds` is False (for the period, where "72" is surely a mistake)."""
    value = text.strip().lower()
    if value == "0":
        return 0
    if _DIGITS.fullmatch(value) and bare_seconds:
        return int(value)
    if not _WHOLE.fullmatch(value):
        if _DIGITS.fullmatch(value):
            raise DurationError(f"{text!r} has no unit: write e.g. {text}s or {text}h")
        raise DurationError(f"{text!r} is not a duration: write e.g. 72h, 30m or 1h30m")
    return sum(int(n) * _UNITS[u] for n, u in _PART.findall(value))


def format_duration(seconds: float) -> str:
    """Short human form: 71h58m, 4m10s, 12s (negative shown as 0s)."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    hours += days * 24
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
