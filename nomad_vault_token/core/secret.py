"""`Secret`: a token, key or JWT held in memory; its repr and str never show the value."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Secret:
    """A token. `repr`/`str` never reveal it; call `reveal()` where it must go out."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "<token>"

    def __bool__(self) -> bool:
        return bool(self._value)
