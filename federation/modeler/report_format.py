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
