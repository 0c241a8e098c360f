"""``model.l2_grid``'s parser, without torch (the run settings read it before any runtime)."""

from __future__ import annotations

import numpy as np


def parse_grid(text: str) -> np.ndarray:
    """``model.l2_grid`` ("0.1,1,10": a Hydra list travels as this string) as λ values > 0."""
    try:
        values = np.array([float(v) for v in str(text).replace(",", " ").split()], dtype=float)
    except ValueError:
        values = np.array([])
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"model.l2_grid={text!r}: give λ values > 0, e.g. model.l2_grid=[0.1,1,10]")
    return values
