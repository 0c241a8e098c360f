"""Values a model was not trained on: outside a column's range, or not one of its levels.

They are real but rare (or mistyped) measurements: ``lhsfed predict`` scores them with one
warning per row, or refuses them with ``--strict``. Values a column's ``missing_if`` marks
as missing are not out of range. Pure functions over the card's column entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from federation.core.dataspec import has_text_levels, level_codes, value_text

BINARY_LEVELS = (0.0, 1.0)


def _allowed(column: dict[str, Any]) -> str:
    if column.get("type") == "categorical":
        return f"levels [{', '.join(value_text(v) for v in column.get('levels') or [])}]"
    if column.get("type") == "binary":
        return "levels [0, 1]"
    low, high = (column.get(k) for k in ("min", "max"))
    span = f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"
    return f"range {span} {column.get('unit') or ''}".rstrip()


def _outside(values: np.ndarray, column: dict[str, Any]) -> np.ndarray:
    """True where a present value is outside the column's range or levels."""
    numbers = [v for v in column.get("missing_if") or [] if not isinstance(v, str)]
    present = ~np.isnan(values) & ~np.isin(values, np.asarray(numbers, dtype=values.dtype))
    kind = column.get("type")
    if has_text_levels(column.get("levels")):  # values are the levels' codes
        return present & ~np.isin(values, np.asarray(list(level_codes(column["levels"]).values())))
    if kind in ("categorical", "binary"):
        levels = column.get("levels") if kind == "categorical" else BINARY_LEVELS
        return present & ~np.isin(values, np.asarray(levels or [], dtype=values.dtype))
    low, high = column.get("min"), column.get("max")
    too_low = values < low if low is not None else np.zeros_like(present)
    too_high = values > high if high is not None else np.zeros_like(present)
    return present & (too_low | too_high)


def _shown(x: np.ndarray, row: int, i: int, column: dict[str, Any], text) -> str:
    """The value as the file wrote it for a text column (``x`` holds its code), else the number."""
    if text is not None and has_text_levels(column.get("levels")):
        return repr(str(text[column["name"]].iloc[row]).strip())
    return f"{x[row, i]:g}"


def _range_flags(x: np.ndarray, columns: list[dict[str, Any]]) -> dict[int, np.ndarray]:
    """Per checked column (its index), which rows hold a value outside its range or levels."""
    return {
        i: _outside(x[:, i], c)
        for i, c in enumerate(columns)
        if c.get("type") in ("categorical", "binary") or c.get("min") is not None or c.get("max") is not None
    }


def out_of_range_columns(x: np.ndarray, columns: list[dict[str, Any]]) -> list[str]:
    """Per row, the names of its columns outside their range or levels, joined by ';' ('' if none)."""
    flags = _range_flags(x, columns)
    return [";".join(columns[i]["name"] for i, flag in flags.items() if flag[row]) for row in range(len(x))]


def out_of_range_rows(x: np.ndarray, columns: list[dict[str, Any]], path: Path, *, text=None) -> list[str]:
    """One line per row with a value outside its column's range or levels (row 1 = first data row).

    ``text``: the rows as read (a DataFrame), to show a text column's cell rather than its code.
    """
    flags = _range_flags(x, columns)
    lines = []
    for row in np.flatnonzero(np.any(list(flags.values()), axis=0)) if flags else []:
        cells = [
            f"{columns[i]['name']} {_shown(x, row, i, columns[i], text)} not in {_allowed(columns[i])}"
            for i, flag in flags.items()
            if flag[row]
        ]
        lines.append(f"{path}: row {row + 1}: {'; '.join(cells)}")
    return lines
