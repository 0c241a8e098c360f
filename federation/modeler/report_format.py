"""The report's table type and its one number format (shared by every table module)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def fmt(value: Any, digits: int = 3) -> str:
    """The one number format of both reports (None/NaN as 'n/a')."""
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def interval_of(m: dict[str, Any], name: str) -> tuple[Any, Any] | None:
    """A measure's CI as ``name_ci`` [low, high] or ``name_ci_low``/``_high`` (older files), or None."""
    pair = m.get(f"{name}_ci")
    low, high = pair if isinstance(pair, (list, tuple)) and len(pair) == 2 else (None, None)
    if low is None or high is None:
        low, high = m.get(f"{name}_ci_low"), m.get(f"{name}_ci_high")
    return None if low is None or high is None else (low, high)


def measure_cell(m: dict[str, Any], name: str, *, missing_ci: str = " (no CI)") -> str:
    """One table cell: 'value [low, high]'; the too-few marker where the measure was withheld
    ('too few (2 non-events < 10)'); no interval is ever shown without its point."""
    reason = (m.get("not_estimable") or {}).get(name)
    if reason:
        return reason["text"]
    value = m.get(name)
    if value is None:
        return fmt(None)
    interval = interval_of(m, name)
    return f"{fmt(value)} [{fmt(interval[0])}, {fmt(interval[1])}]" if interval else fmt(value) + missing_ci
