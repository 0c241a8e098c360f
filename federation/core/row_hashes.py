"""Repeated rows in a table read in chunks, found by 64-bit hashes (8 bytes a row, 16 where
the rows kept are not a run of row numbers; no row kept).

``lhsfed site check`` adds each chunk of rows (all columns, or the ID column) and asks at the
end how many rows repeat an earlier one, and which is the first. A row is hashed as its cells'
text (as read: 1 and '1' of one file agree) joined by NUL bytes (refused in a CSV file); the hash
is computed for a whole block of rows at once with numpy (``hash_texts``), so a block read as
frames and one read as pyarrow columns (``site_table.CleanRows``) hash a row alike. Two
different rows share a hash with probability about n²/2⁶⁵ (one in a million for 6 million rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

CELL_SEPARATOR = b"\0"
_SEED = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)
# _KEEP[k]: the low k bytes of a little-endian word (the part of a word inside the text)
_KEEP = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def _mix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection), in place."""
    h ^= h >> np.uint64(33)
    h *= _M1
    h ^= h >> np.uint64(33)
    h *= _M2
    h ^= h >> np.uint64(33)
    return h


def hash_texts(data: bytes | np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """64-bit hashes of the byte strings ``data[starts[i] : starts[i] + lengths[i]]``.

    Eight bytes at a time for every string together: each word (masked to the string's
    length) is folded into the string's state by a bijective mix, seeded with the length.
    """
    codes = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray) else data
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    if not len(starts):
        return np.zeros(0, dtype=np.uint64)
    padded = np.zeros((len(codes) + 23) // 8 * 8, dtype=np.uint8)
    padded[: len(codes)] = codes
    # words[i]: the 8 bytes at byte i, little-endian (an unaligned strided view, no copy)
    base = padded.view(np.uint64)
    words = np.lib.stride_tricks.as_strided(base, shape=(len(padded) - 8,), strides=(1,))
    h = _mix(lengths.astype(np.uint64) ^ _SEED)
    for offset in range(0, int(lengths.max()), 8):
        left = np.clip(lengths - offset, 0, 8)
        word = words[np.minimum(starts + offset, len(words) - 1)] & _KEEP[left]  # past the end: 0
        h ^= word
        h = _mix(h)
    return h


def hash_frame(frame: pd.DataFrame) -> np.ndarray:
    """Each row's hash: its cells as text, joined by NUL bytes (``hash_texts``)."""
    sep = CELL_SEPARATOR.decode()
    texts = [sep.join(cells).encode() for cells in zip(*(frame[c].astype(str) for c in frame.columns))]
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if texts else lengths
    return hash_texts(b"".join(texts), starts, lengths)


def hash_strings(strings: pa.Array) -> np.ndarray:
    """Each string's hash (a pyarrow string array without nulls; same as one-column ``hash_frame``)."""
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)[
        strings.offset : strings.offset + len(strings) + 1
    ]
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8) if len(strings) else np.zeros(0, np.uint8)
    return hash_texts(data, offsets[:-1], np.diff(offsets))


@dataclass
class RowHashes:
    """The hashes and row indexes of the rows added so far."""

    hashes: list[np.ndarray] = field(default_factory=list)
    rows: list[np.ndarray | range] = field(default_factory=list)  # a range: rows start..stop-1

    def add(self, frame: pd.DataFrame) -> None:
        """Hash each row of ``frame`` (cells as text, so 1 and '1' of one file agree)."""
        if frame.empty:
            return
        self.add_hashes(hash_frame(frame), frame.index.to_numpy(dtype="int64"))

    def add_hashes(self, hashes: np.ndarray, rows: np.ndarray | range) -> None:
        """Rows hashed already (``hash_texts``), with their indexes (a range takes no memory)."""
        if len(hashes):
            self.hashes.append(hashes)
            self.rows.append(rows if isinstance(rows, range) else np.asarray(rows, dtype=np.int64))

    def repeats(self) -> tuple[int, int, int] | None:
        """(rows that repeat an earlier row, the first such row, the row it repeats) or None.

        Sorts a copy of the hashes alone first (8 more bytes a row): only the rows whose hash
        repeats are then sorted with their row numbers.
        """
        if not self.hashes:
            return None
        ordered = np.concatenate(self.hashes)
        ordered.sort()
        same = ordered[1:] == ordered[:-1]
        count = int(same.sum())
        if not count:
            return None
        repeated = np.unique(ordered[1:][same])
        del ordered, same
        keep = [np.isin(hashes, repeated) for hashes in self.hashes]
        hashes = np.concatenate([h[k] for h, k in zip(self.hashes, keep)])
        rows = np.concatenate([np.asarray(r, dtype=np.int64)[k] for r, k in zip(self.rows, keep)])
        order = np.lexsort((rows, hashes))  # by hash, then by row: a group's first is the original
        hashes, rows = hashes[order], rows[order]
        repeat = np.concatenate([[False], hashes[1:] == hashes[:-1]])
        starts = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(rows))))
        later = np.flatnonzero(repeat)
        first = later[np.argmin(rows[later])]
        return count, int(rows[first]), int(rows[starts[first]])
