"""Repeated rows in a table read in chunks, found by 64-bit hashes (16 bytes a row, no row kept).

``lhsfed site check`` adds each chunk of rows (all columns, or the ID column) and asks at the
end how many rows repeat an earlier one, and which is the first. Two different rows share a
hash with probability about n²/2⁶⁵ (one in a million for 6 million rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class RowHashes:
    """The hashes and row indexes of the rows added so far."""

    hashes: list[np.ndarray] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)

    def add(self, frame: pd.DataFrame) -> None:
        """Hash each row of ``frame`` (cells as text, so 1 and '1' of one file agree)."""
        if frame.empty:
            return
        text = frame.astype(str)
        self.hashes.append(pd.util.hash_pandas_object(text, index=False).to_numpy())
        self.rows.append(frame.index.to_numpy(dtype="int64"))

    def repeats(self) -> tuple[int, int, int] | None:
        """(rows that repeat an earlier row, the first such row, the row it repeats) or None."""
        if not self.hashes:
            return None
        hashes, rows = np.concatenate(self.hashes), np.concatenate(self.rows)
        order = np.lexsort((rows, hashes))  # by hash, then by row: a group's first is the original
        hashes, rows = hashes[order], rows[order]
        repeat = np.concatenate([[False], hashes[1:] == hashes[:-1]])
        if not repeat.any():
            return None
        starts = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(rows))))
        later = np.flatnonzero(repeat)
        first = later[np.argmin(rows[later])]
        return int(repeat.sum()), int(rows[first]), int(rows[starts[first]])
