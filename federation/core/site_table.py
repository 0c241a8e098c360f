"""A site's table read in bounded memory, with the rules both the site check and the loader use.

A CSV is streamed as text cells in chunks of rows (``csv_chunks``): binary content (a NUL
byte), a line longer than ``LINE_LIMIT``, text that is not UTF-8, a duplicated header name and
a row with more or fewer fields than the columns are refused as soon as they are read, so a
2 GB file of zeros or one 2 GB "line" gets a verdict in well under a second. A Parquet file is
read one record batch at a time (``parquet_chunks``). ``parse_numbers`` says which cells are
missing (only an empty field, a null or one of the spec's missing markers: pandas' default NA
words such as "NaN" or "NA" are not) and refuses non-finite numbers (NaN, inf, 1e309).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from federation.core.dataspec import UNKNOWN_LEVEL_CODE, DatasetSpec, level_codes
from federation.core.errors import DataError

LINE_LIMIT = 1 << 20  # bytes: a real site row is under 1 kB
BLOCK = 1 << 20  # bytes read at a time
CHUNK_ROWS = 20_000  # Parquet rows per chunk handed to the checks
NAN_WORDS = frozenset({"nan", "+nan", "-nan"})
Progress = Callable[[int], None]  # told how many more bytes were read
# Told of each row left out: its kind ("unclosed quote", "extra fields", "missing fields") and
# the refusal naming it (the site check reports the first of each kind and counts the rest).
BadRow = Callable[[str, DataError], None]


def _raw_blocks(handle, path: Path, progress: Progress | None) -> Iterator[tuple[int, int, bytes]]:
    """(line number of the first, how many lines, the complete lines joined by b"\\n") for each
    block read, blank lines kept; refuses NUL bytes and lines longer than ``LINE_LIMIT`` as soon
    as they are read."""
    buffer, before = b"", 0
    while block := handle.read(BLOCK):
        if (nul := block.find(b"\0")) >= 0:
            line = before + (buffer + block[:nul]).count(b"\n") + 1
            raise DataError(
                f"{path}: line {line}: binary content (a NUL byte), not a CSV text "
                "file; export the site's table as CSV"
            )
        if not before and not buffer:
            block = block.removeprefix(codecs.BOM_UTF8)
        data = buffer + block
        end = data.rfind(b"\n")
        raw, buffer = (data[:end], data[end + 1 :]) if end >= 0 else (b"", data)
        count = raw.count(b"\n") + 1 if end >= 0 else 0
        _check_lengths(raw, before, path)
        if len(buffer) > LINE_LIMIT:
            raise DataError(
                f"{path}: line {before + count + 1} is longer than "
                f"{LINE_LIMIT >> 10} kB (no line break); a site row is one short line"
            )
        if count:
            yield before + 1, count, raw
        before += count
        if progress:
            progress(len(block))
    if buffer:
        yield before + 1, 1, buffer


def _check_lengths(raw: bytes, before: int, path: Path) -> None:
    if len(raw) <= LINE_LIMIT:
        return
    ends = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == ord("\n"))
    lengths = np.diff(np.concatenate([[-1], ends, [len(raw)]])) - 1
    if (long := np.flatnonzero(lengths > LINE_LIMIT)).size:
        raise DataError(
            f"{path}: line {before + int(long[0]) + 1} is longer than {LINE_LIMIT >> 10} kB; "
            "a site row is one short line"
        )


def _text(raw: bytes, first: int, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first + raw[: err.start].count(b"\n")
        raise DataError(
            f"{path}: line {line} is not UTF-8 text ({err.reason}); save the file as UTF-8 CSV"
        ) from None


def _fields(line: str) -> list[str]:
    """A line's fields (the csv module only where there are quotes: splitting is faster)."""
    return next(csv.reader([line], skipinitialspace=True)) if '"' in line else line.split(",")


def _block_lines(first: int, raw: bytes, path: Path) -> list[tuple[int, str]]:
    """(line number, text) of a block's non-blank lines (a quoted field may not span lines)."""
    text = _text(raw, first, path).split("\n")
    return [(first + i, line.rstrip("\r")) for i, line in enumerate(text) if line.strip()]


def _lines(path: Path, progress: Progress | None) -> Iterator[list[tuple[int, str]]]:
    """(line number, text) blocks of the non-blank lines."""
    with open(path, "rb") as handle:
        for first, _, raw in _raw_blocks(handle, path, progress):
            yield _block_lines(first, raw, path)


OTHER_SEPARATORS = {";": "';'", "\t": "a tab", "|": "'|'"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def header_problem(line: str, expected: int, header_fix: str = "") -> str | None:
    """Why a first line is no comma-separated header of ``expected`` columns, or None:
    another separator (a ';' export from a spreadsheet), or a data row (no header at all;
    ``header_fix`` ends that message)."""
    names = [name.strip() for name in _fields(line)]
    for separator, said in OTHER_SEPARATORS.items():
        if len(names) < max(expected, 2) and line.count(separator) + 1 > len(names):
            return (
                f"the file is separated by {said}, not by commas (line 1 is {len(names)} field(s)); "
                "export it as comma-separated CSV (UTF-8), or convert it"
            )
    if names and all(_is_number(name) for name in names if name) and any(names):
        return (
            f"line 1 is a row of numbers ({','.join(names[:3])},...), not column names: the file has "
            f"no header row; {header_fix or 'export it with its header row'}"
        )
    return None


def _names(blocks: Iterator, spec: DatasetSpec, path: Path) -> tuple[list[str], list]:
    """The column names (the header line's, or the spec's ``columns``) and unread lines."""
    if not spec.header:
        first = next((block for block in blocks if block), [])
        if first and (problem := header_problem(first[0][1], len(spec.columns))):
            if "separated by" in problem:
                raise DataError(f"{path}: {problem}")
        return list(spec.columns), first
    first = next((block for block in blocks if block), [])
    if not first:
        raise DataError(f"{path}: file is empty")
    expected = len(spec.features) + 1
    fix = "export it with its header row (the spec says header: true), or set header: false and columns:"
    if problem := header_problem(first[0][1], expected, fix):
        raise DataError(f"{path}: {problem}")
    names = [name.strip() for name in _fields(first[0][1])]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"{path}: line 1: names column(s) {duplicated} more than once")
    return names, first[1:]


def _width_error(path: Path, row: int, fields: list[str], names: list[str], header: bool) -> DataError:
    """One line naming the row and the first column that is extra or missing."""
    source = "the header's" if header else "the spec's"
    if len(fields) > len(names):
        return DataError(
            f"{path}: row {row} column {len(names) + 1}: {len(fields)} fields, more than "
            f"{source} {len(names)} columns; remove the extra field(s) (a trailing comma?)"
        )
    return DataError(
        f"{path}: row {row} column {names[len(fields)]!r}: is missing (the row has "
        f"{len(fields)} fields, {source} columns are {len(names)})"
    )


def _row_error(
    path: Path, number: int, row: int, line: str, names: list[str], header: bool
) -> tuple[str, DataError] | None:
    """(kind, refusal) for a line that is no row of one field per column, or None."""
    if line.count('"') % 2:
        return "unclosed quote", DataError(
            f"{path}: line {number}: an unclosed quote (a quoted field may not span lines); fix the quoting"
        )
    if (count := line.count(",") + 1 if '"' not in line else len(_fields(line))) != len(names):
        kind = "extra fields" if count > len(names) else "missing fields"
        return kind, _width_error(path, row, _fields(line), names, header)
    return None


def _frame(
    lines: list[tuple[int, str]],
    names: list[str],
    start: int,
    path: Path,
    header: bool,
    bad_row: BadRow | None = None,
) -> pd.DataFrame:
    """Text cells of lines already known to be rows; each must have one field per column
    (else refused, or with ``bad_row`` told to it and left out)."""
    rows = []
    for i, (number, line) in enumerate(lines):
        if (error := _row_error(path, number, start + i + 1, line, names, header)) is None:
            rows.append(i)
        elif bad_row is None:
            raise error[1]
        else:
            bad_row(*error)
    skipped = len(rows) < len(lines)
    if skipped:
        lines = [lines[i] for i in rows]
    text = io.StringIO("\n".join(line for _, line in lines))
    frame = (
        pd.read_csv(
            text,
            header=None,
            names=range(len(names)),
            dtype=str,
            na_filter=False,
            skipinitialspace=True,
            skip_blank_lines=False,
        )
        if lines
        else pd.DataFrame(columns=range(len(names)), dtype=str)
    )
    frame.columns = names
    frame.index = pd.Index([start + i for i in rows]) if skipped else pd.RangeIndex(start, start + len(frame))
    return frame


def csv_chunks(
    path: Path, spec: DatasetSpec, *, progress: Progress | None = None, bad_row: BadRow | None = None
) -> Iterator[pd.DataFrame]:
    """Text cells ('' for an empty field) a block of lines at a time, at least one chunk.

    Columns are the header's (or the spec's) names; the index is the data row number - 1
    (blank lines and the header are not rows, as in pandas). A row with too few or too many
    fields is refused, or with ``bad_row`` (the site check) reported to it and skipped.
    """
    path = Path(path)
    blocks = _lines(path, progress)
    names, pending = _names(blocks, spec, path)
    start = 0
    for lines in _chained(pending, blocks):
        yield _frame(lines, names, start, path, spec.header, bad_row)
        start += len(lines)
    if not start:
        yield _frame([], names, 0, path, spec.header)


BATCH = 8 << 20  # bytes of lines looked at together for the clean-block fast path
_CSV_PARSE = pacsv.ParseOptions(quote_char=False, double_quote=False, ignore_empty_lines=False)


@dataclass
class CleanRows:
    """Rows read at C speed: a block of lines with nothing unusual (ASCII text without control
    characters or quotes, one field per column on every line), as pyarrow text columns.

    ``cells`` are as written (spaces kept), one array per column of ``columns``; ``lines`` is the
    block's text, lines joined by b"\\n" (a "\\r" ending removed); ``frames()`` gives the same rows
    as the reader's frames, for the checks that name a cell.
    """

    columns: list[str]
    start: int  # the first row's index (its data row number - 1)
    rows: int
    cells: list[pa.Array]
    lines: bytes
    frames: Callable[[], Iterator[pd.DataFrame]]


def _clean_rows(lines: bytes, count: int, names: list[str]) -> list[pa.Array] | None:
    """The text columns of ``count`` lines if every one is a plain row (see ``CleanRows``)."""
    if len(names) < 2 or not lines.isascii() or b'"' in lines:
        return None
    codes = np.frombuffer(lines, dtype=np.uint8)
    if np.count_nonzero(codes < 0x20) != count - 1:  # a control character besides the line ends
        return None
    columns = [f"c{i}" for i in range(len(names))]
    try:  # a line of more or fewer fields (a blank line is one field) is refused by pyarrow
        table = pacsv.read_csv(
            pa.py_buffer(lines),
            read_options=pacsv.ReadOptions(column_names=columns),
            parse_options=_CSV_PARSE,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows != count:
        return None
    return [table.column(i).combine_chunks() for i in range(len(names))]


def _batches(blocks: Iterator) -> Iterator[list]:
    """Raw blocks gathered about ``BATCH`` bytes at a time; a block refused while reading is
    refused after the blocks before it are handed on (as block by block)."""
    batch, size = [], 0
    try:
        for block in blocks:
            batch.append(block)
            size += len(block[2])
            if size >= BATCH:
                yield batch
                batch, size = [], 0
    except DataError:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def _block_frames(
    batch: list, names: list[str], start: int, *, path: Path, header: bool, bad_row: BadRow | None
) -> Generator[pd.DataFrame, None, int]:
    """The frames of raw blocks, as ``csv_chunks`` reads them; returns the next row's index."""
    for first, _, raw in batch:
        if lines := _block_lines(first, raw, path):
            yield _frame(lines, names, start, path, header, bad_row)
            start += len(lines)
    return start


def _units(
    pending: list, raw: Iterator, names: list[str], path: Path, header: bool, bad_row: BadRow | None
) -> Iterator[tuple[bytes, int, Callable[[int], Generator[pd.DataFrame, None, int]]]]:
    """(text, lines, frames(start)) for the rows after the header line, then each batch."""

    def first(start: int) -> Generator[pd.DataFrame, None, int]:
        yield _frame(pending, names, start, path, header, bad_row)
        return start + len(pending)

    if pending:
        yield "\n".join(line for _, line in pending).encode(), len(pending), first
    for batch in _batches(raw):
        text = b"\n".join(lines for _, _, lines in batch)
        frames = partial(_block_frames, batch, names, path=path, header=header, bad_row=bad_row)
        yield text, sum(n for _, n, _ in batch), frames


def csv_row_blocks(
    path: Path, spec: DatasetSpec, *, progress: Progress | None = None, bad_row: BadRow | None = None
) -> Iterator[pd.DataFrame | CleanRows]:
    """``csv_chunks``' rows, but a block of plain rows comes as ``CleanRows`` (at C speed);
    anything else in a block (quotes, bad rows, blank lines, non-ASCII text) as frames."""
    path = Path(path)
    with open(path, "rb") as handle:
        raw = _raw_blocks(handle, path, progress)
        names, pending = _names((_block_lines(first, text, path) for first, _, text in raw), spec, path)
        start = 0
        for text, count, frames in _units(pending, raw, names, path, spec.header, bad_row):
            if b"\r" in text and text.count(b"\r") == text.count(b"\r\n") + text.endswith(b"\r"):
                text = text.replace(b"\r\n", b"\n").removesuffix(b"\r")
            if (cells := _clean_rows(text, count, names)) is not None:
                yield CleanRows(names, start, count, cells, text, partial(frames, start))
                start += count
            else:
                start = yield from frames(start)
        if not start:
            yield _frame([], names, 0, path, spec.header)


def _chained(pending: list, blocks: Iterator) -> Iterator[list]:
    """The lines left after the header, then every further non-empty block."""
    if pending:
        yield pending
    for lines in blocks:
        if lines:
            yield lines


def parquet_chunks(path: Path, *, progress: Progress | None = None) -> Iterator[pd.DataFrame]:
    """Typed columns one record batch at a time (pyarrow reads a row group at a time)."""
    import pyarrow.parquet as pq

    file, start = pq.ParquetFile(path), 0
    total, size = max(file.metadata.num_rows, 1), Path(path).stat().st_size
    for batch in file.iter_batches(batch_size=CHUNK_ROWS):
        frame = batch.to_pandas().reset_index(drop=True)  # a stored index is not a row number
        frame.columns = [str(c) for c in frame.columns]
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        if progress:
            progress(size * len(frame) // total)
        yield frame
    if not start:
        yield file.schema_arrow.empty_table().to_pandas().reset_index(drop=True)


def blank_cells(cells: pd.Series, missing_markers, text: pd.Series | None = None) -> pd.Series:
    """Missing: a null, an empty field or one of the spec's markers (compared stripped)."""
    text = cells.astype(str).str.strip() if text is None else text
    return cells.isna() | text.eq("") | text.isin(list(missing_markers))


def _fast_floats(text: pd.Series) -> pd.Series | None:
    """Every cell parsed by pyarrow's cast (20x pandas' to_numeric); None if one is not a number."""
    try:
        parsed = pc.cast(pa.array(text, type=pa.string(), from_pandas=True), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return pd.Series(parsed.to_numpy(zero_copy_only=False), index=text.index, dtype="float64")


def _typed(cells: pd.Series) -> bool:
    """Numbers or booleans already (Parquet), not text to parse."""
    return (
        pd.api.types.is_bool_dtype(cells)
        or pd.api.types.is_numeric_dtype(cells)
        or (cells.dtype == object and pd.api.types.infer_dtype(cells, skipna=True) == "boolean")
    )


def parse_numbers(cells: pd.Series, missing_markers=()) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(float64 values, NaN where missing or refused; non-numeric mask; non-finite mask)."""
    if _typed(cells):
        values = cells.astype("float64")
        non_finite = cells.notna() & np.isinf(values)
        return values.mask(non_finite), pd.Series(False, index=cells.index), non_finite
    text = cells.astype(str).str.strip()
    blank = blank_cells(cells, missing_markers, text)
    values = _fast_floats(text.mask(blank))
    if values is not None:  # every cell a number or missing: a NaN here was written as one
        non_finite = ~blank & ~np.isfinite(values)
        return values.mask(non_finite), pd.Series(False, index=cells.index), non_finite
    values = pd.to_numeric(text.mask(blank), errors="coerce").astype("float64")
    non_finite = ~blank & (np.isinf(values) | text.str.lower().isin(NAN_WORDS))
    non_numeric = ~blank & values.isna() & ~non_finite
    return values.mask(non_finite), non_numeric, non_finite


def refusal_reason(value, non_finite: bool, markers=()) -> str:
    """Why a cell is refused, and the fix (the caller names the file, row and column)."""
    value = value.item() if isinstance(value, np.generic) else value  # inf, not np.float64(inf)
    marker = f"a missing marker {list(markers)}" if markers else "the spec's missing marker"
    if non_finite:
        return (
            f"non-finite value {value!r} (NaN, infinity and numbers beyond ±1.8e308 are "
            f"refused); use a finite number, or {marker}"
        )
    return f"non-numeric value {value!r}; use a number, or {marker}"


def text_codes(cells: pd.Series, levels, missing_if=(), missing_markers=()) -> pd.Series:
    """Text cells of a column with text levels as the numbers an exported model takes:
    a level's code (``level_codes``), NaN when missing (blank, a marker or a text
    ``missing_if``) and ``UNKNOWN_LEVEL_CODE`` for any other text (all-zero one-hot, as at a site)."""
    text = cells.astype(str).str.strip()
    marked = [v for v in missing_if if isinstance(v, str)]
    missing = blank_cells(cells, missing_markers, text) | text.isin(marked)
    codes = text.map(level_codes(levels)).astype("float64").fillna(UNKNOWN_LEVEL_CODE)
    return codes.mask(missing)
