"""Values a model was not trained on: outside a column's range, or not one of its levels.

They are real but rare (or mistyped) measurements: ``lhsfed predict`` scores them with one
warning per row, or refuses them with ``--strict``. Values a column's ``missing_if`` marks
as missing are not out of range. Pure functions over the card's column entries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

BINARY_LEVELS = (0.0, 1.0)


def _allowed(column: dict[str, Any]) -> str:
    if column.get("type") == "categorical":
        return f"levels [{', '.join(f'{float(v):g}' for v in column.get('levels') or [])}]"
    if column.get("type") == "binary":
        return "levels [0, 1]"
    low, high = (column.get(k) for k in ("min", "max"))
    span = f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"
    return f"range {span} {column.get('unit') or ''}".rstrip()


def _outside(values: np.ndarray, column: dict[str, Any]) -> np.ndarray:
    """True where a present value is outside the column's range or levels."""
    present = ~np.isnan(values) & ~np.isin(values, column.get("missing_if") or [])
    kind = column.get("type")
    if kind in ("categorical", "binary"):
        levels = column.get("levels") if kind == "categorical" else BINARY_LEVELS
        return present & ~np.isin(values, np.asarray(levels or [], dtype=values.dtype))
    low, high = column.get("min"), column.get("max")
    too_low = values < low if low is not None else np.zeros_like(present)
    too_high = values > high if high is not None else np.zeros_like(present)
    return present & (too_low | too_high)


def out_of_range_rows(x: np.ndarray, columns: list[dict[str, Any]], path: Path) -> list[str]:
    """One line per row with a value outside its column's range or levels (row 1 = first data row)."""
    flags = {
        i: _outside(x[:, i], c)
        for i, c in enumerate(columns)
        if c.get("type") in ("categorical", "binary") or c.get("min") is not None or c.get("max") is not None
    }
    lines = []
    for row in np.flatnonzero(np.any(list(flags.values()), axis=0)) if flags else []:
        cells = [
            f"{columns[i]['name']} {x[row, i]:g} not in {_allowed(columns[i])}"
            for i, flag in flags.items()
            if flag[row]
        ]
        lines.append(f"{path}: row {row + 1}: {'; '.join(cells)}")
    return lines
