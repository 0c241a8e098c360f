"""Check a site's data file against the task's dataset spec, before any node starts.

The file is streamed (:mod:`federation.core.site_table`): chunks of rows are checked and counted,
so memory stays bounded whatever the file's size, and the reading rules (what is missing,
what is refused) are the loader's own.

Collect-then-report: every problem is gathered into a ``SiteReport``. *Failures* stop the
site from joining (the training code could not read the file correctly); *warnings* are
values a clinician should look at but that training handles (missing values are imputed,
out-of-range values are real but rare measurements, unknown categorical levels encode as
all-zero one-hot). Every problem is reported in one pass, up to ``MAX_FAILURES`` lines (a row
with too few fields is reported and skipped, not the end of the check).

Repeated rows and repeated patient IDs (``data.id_column``) are found by 64-bit hashes of
the rows (8 to 16 bytes a row, no row kept): a repeated patient sits on both sides of the
train/test split and inflates the test metrics. A repeated ID, or repeated rows beyond
``DUPLICATE_FAIL_FRACTION`` (a file appended to itself), fail; a few identical rows (two
patients can share every value, as one pair in UCI Hungary does) are a warning.
Runs offline at the hospital: nothing is sent anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from federation.core.data import SiteData, load_site
from federation.core.dataspec import DatasetSpec, FeatureSpec
from federation.core.errors import DataError
from federation.core.row_hashes import CELL_SEPARATOR, RowHashes, hash_strings, hash_texts
from federation.core.site_table import (
    CleanRows,
    Progress,
    blank_cells,
    csv_row_blocks,
    parquet_chunks,
    parse_numbers,
    refusal_reason,
)


@dataclass
class ColumnReport:
    name: str
    missing: int = 0
    out_of_range: int = 0
    unknown_levels: int = 0


MAX_FAILURES = 50  # failure lines listed; the rest are counted in one more line
DUPLICATE_FAIL_FRACTION = 0.1  # repeated rows beyond 10 % of the file: a duplicated extract


@dataclass
class SiteReport:
    path: Path
    rows: int = 0
    columns: list[ColumnReport] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unlisted: int = 0  # failures beyond MAX_FAILURES

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, where: str, reason: str) -> None:
        self.add(f"{self.path}: {where}: {reason}" if where else f"{self.path}: {reason}")

    def add(self, line: str) -> None:
        """One failure line, or past ``MAX_FAILURES`` one more counted."""
        if len(self.failures) < MAX_FAILURES:
            self.failures.append(line)
        else:
            self.unlisted += 1

    def close(self) -> None:
        if self.unlisted:
            self.failures.append(f"{self.path}: {self.unlisted} more problems not listed (fix these first)")
            self.unlisted = 0


@dataclass
class _Bad:
    """The first bad cell of one kind in one column, and how many there are."""

    row: int
    reason: str
    count: int = 0


@dataclass
class _Scan:
    """What the chunks seen so far add up to (counts only: no rows are kept)."""

    report: SiteReport
    spec: DatasetSpec
    rows: RowHashes = field(default_factory=RowHashes)
    ids: RowHashes = field(default_factory=RowHashes)
    columns: dict[str, ColumnReport] = field(default_factory=dict)
    bad: dict[tuple[str, str], _Bad] = field(default_factory=dict)
    bad_rows: dict[str, list] = field(default_factory=dict)  # kind -> [first refusal, count]
    labels: dict[str, int] = field(default_factory=lambda: {"positive": 0, "negative": 0})

    def note(self, column: str, kind: str, mask: pd.Series, reason) -> None:
        """Count the cells in ``mask``; keep the first one's row and ``reason(position)``."""
        if not mask.any():
            return
        first = int(np.flatnonzero(mask.to_numpy())[0])
        entry = self.bad.setdefault((column, kind), _Bad(int(mask.index[first]) + 1, reason(first)))
        entry.count += int(mask.sum())

    def bad_row(self, kind: str, error: DataError) -> None:
        """A row the reader left out: the first of its kind kept, the rest counted."""
        self.bad_rows.setdefault(kind, [str(error), 0])[1] += 1

    def report_bad_rows(self) -> None:
        for first, count in self.bad_rows.values():
            self.report.add(first if count == 1 else f"{first} ({count} such rows, left out of the counts)")
        self.bad_rows = {}


def _chunks(path: Path, spec: DatasetSpec, progress: Progress | None, scan: _Scan):
    if spec.format == "parquet":
        return parquet_chunks(path, progress=progress)
    return csv_row_blocks(path, spec, progress=progress, bad_row=scan.bad_row)


def _required_columns(names: list[str], spec: DatasetSpec, report: SiteReport) -> bool:
    """False after failing a schema naming a column twice or each feature or label column
    the file lacks (a CSV's header and field counts are checked as it is read)."""
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        report.fail("schema", f"names column(s) {dup} more than once")
        return False
    missing = [c for c in ([f.name for f in spec.features] + [spec.label.column]) if c not in names]
    for column in missing:
        report.fail(f"column {column!r}", "is missing")
    if spec.id_column is not None and spec.id_column not in names:
        report.fail(
            f"column {spec.id_column!r}",
            "is missing (the spec's data.id_column: the patient ID); add it, or drop id_column",
        )
        return False
    return not missing


def _without_repeated_header(rows: pd.DataFrame, spec: DatasetSpec, report: SiteReport) -> pd.DataFrame:
    """Fail and drop each row equal to the header the file has (headerless: the spec's names)."""
    if spec.format == "parquet":
        return rows
    header = list(rows.columns) if spec.header else list(spec.columns)
    repeats = np.ones(len(rows), dtype=bool)
    for i, name in enumerate(header):  # column by column: a row-wise apply took minutes
        repeats &= rows.iloc[:, i].astype(str).str.strip().eq(name).to_numpy()
    for index in rows.index[repeats]:
        report.fail(
            f"row {index + 1}",
            "repeats the column names (a duplicated header line); "
            "remove it" + ("" if spec.header else ", the spec says the file has no header"),
        )
    return rows[~repeats]


def _numeric(rows: pd.DataFrame, column: str, scan: _Scan) -> pd.Series:
    """A column as numbers; non-numeric and non-finite cells are noted (and become NaN)."""
    cells, markers = rows[column], scan.spec.missing_markers
    values, non_numeric, non_finite = parse_numbers(cells, markers)
    scan.note(column, "non-numeric", non_numeric, lambda i: refusal_reason(cells.iloc[i], False, markers))
    scan.note(column, "non-finite", non_finite, lambda i: refusal_reason(cells.iloc[i], True, markers))
    return values


def _text_levels(rows: pd.DataFrame, feat: FeatureSpec, spec: DatasetSpec) -> pd.Series:
    """A categorical feature with text levels, compared as text (as the data layer does)."""
    cells = rows[feat.name]
    return cells.astype(str).str.strip().mask(blank_cells(cells, spec.missing_markers))


def _count_feature(values: pd.Series, feat: FeatureSpec, col: ColumnReport) -> None:
    values = values.mask(values.isin(feat.missing_if))
    col.missing += int(values.isna().sum())
    present = values.dropna()
    if feat.min is not None or feat.max is not None:
        low = -np.inf if feat.min is None else feat.min
        high = np.inf if feat.max is None else feat.max
        col.out_of_range += int(((present < low) | (present > high)).sum())
    allowed = feat.levels if feat.type == "categorical" else (0.0, 1.0) if feat.type == "binary" else ()
    if allowed:
        col.unknown_levels += int((~present.isin(allowed)).sum())


def _count_label(rows: pd.DataFrame, scan: _Scan) -> None:
    label = scan.spec.label
    values = _numeric(rows, label.column, scan)
    known = set(label.positive_values) | set(label.negative_values)
    allowed = sorted(f"{v:g}" for v in known)
    scan.note(
        label.column,
        "label",
        values.isna() | ~values.isin(known),
        lambda i: f"label value {rows[label.column].iloc[i]!r} is not allowed; allowed: {allowed}",
    )
    scan.labels["positive"] += int(values.isin(label.positive_values).sum())
    scan.labels["negative"] += int(values.isin(label.negative_values).sum())


def _add_chunk(rows: pd.DataFrame, scan: _Scan) -> None:
    rows = _without_repeated_header(rows, scan.spec, scan.report)
    scan.report.rows += len(rows)
    scan.rows.add(rows)
    if scan.spec.id_column is not None:
        ids = rows[[scan.spec.id_column]]
        scan.ids.add(ids[~blank_cells(ids.iloc[:, 0], scan.spec.missing_markers).to_numpy()])
    for feat in scan.spec.features:
        values = _text_levels(rows, feat, scan.spec) if feat.text_levels else _numeric(rows, feat.name, scan)
        _count_feature(values, feat, scan.columns.setdefault(feat.name, ColumnReport(feat.name)))
    _count_label(rows, scan)


_LEADING_SPACES = re.compile(rb"(^|,) +", re.MULTILINE)  # what the reader's skipinitialspace drops
_COMMA_TO_SEPARATOR = bytes.maketrans(b",", CELL_SEPARATOR)


def _clean_text(rows: CleanRows, column: str, spec: DatasetSpec) -> tuple[pa.Array, np.ndarray]:
    """A column's cells stripped (plain ASCII: the same as str.strip), and which are blank."""
    text = pc.ascii_trim_whitespace(rows.cells[rows.columns.index(column)])
    blank = pc.equal(text, "")
    if spec.missing_markers:
        blank = pc.or_(blank, pc.is_in(text, pa.array(list(spec.missing_markers), pa.string())))
    return text, blank.to_numpy(zero_copy_only=False)


def _clean_numbers(rows: CleanRows, column: str, spec: DatasetSpec) -> np.ndarray | None:
    """A column as numbers (NaN where missing), or None if a cell is refused (to be named)."""
    text, blank = _clean_text(rows, column, spec)
    try:  # pyarrow's cast, as parse_numbers tries first: what it takes, parse_numbers takes alike
        values = pc.cast(pc.if_else(pa.array(blank), pa.scalar(None, pa.string()), text), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    values = values.to_numpy(zero_copy_only=False)
    return None if (~blank & ~np.isfinite(values)).any() else values


def _clean_feature(rows: CleanRows, feat: FeatureSpec, spec: DatasetSpec, col: ColumnReport) -> bool:
    """``_count_feature`` of a clean block's column; False (nothing counted) if a cell is refused."""
    allowed = feat.levels if feat.type == "categorical" else (0.0, 1.0) if feat.type == "binary" else ()
    if feat.text_levels:  # compared as text: only text values can match
        if feat.min is not None or feat.max is not None:
            return False
        text, missing = _clean_text(rows, feat.name, spec)
        marked = [v for v in feat.missing_if if isinstance(v, str)]
        if marked:
            missing |= pc.is_in(text, pa.array(marked, pa.string())).to_numpy(zero_copy_only=False)
        col.missing += int(missing.sum())
        levels = pa.array([v for v in allowed if isinstance(v, str)], pa.string())
        if allowed:
            known = pc.is_in(text, levels).to_numpy(zero_copy_only=False)
            col.unknown_levels += int((~missing & ~known).sum())
        return True
    values = _clean_numbers(rows, feat.name, spec)
    if values is None:
        return False
    if marked := [v for v in feat.missing_if if not isinstance(v, str)]:
        values = np.where(np.isin(values, marked), np.nan, values)
    present = values[~np.isnan(values)]
    col.missing += len(values) - len(present)
    if feat.min is not None or feat.max is not None:
        low = -np.inf if feat.min is None else feat.min
        high = np.inf if feat.max is None else feat.max
        col.out_of_range += int(((present < low) | (present > high)).sum())
    if allowed:
        col.unknown_levels += int((~np.isin(present, [v for v in allowed if not isinstance(v, str)])).sum())
    return True


def _clean_row_hashes(rows: CleanRows) -> np.ndarray:
    """Each row's hash, as ``RowHashes.add`` hashes the frame of its cells (leading spaces dropped)."""
    lines = rows.lines if b" " not in rows.lines else _LEADING_SPACES.sub(rb"\1", rows.lines)
    ends = np.append(np.flatnonzero(np.frombuffer(lines, dtype=np.uint8) == ord("\n")), len(lines))
    starts = np.concatenate([[0], ends[:-1] + 1])
    return hash_texts(lines.translate(_COMMA_TO_SEPARATOR), starts, ends - starts)


def _add_clean(rows: CleanRows, scan: _Scan) -> bool:
    """``_add_chunk`` of a clean block with pyarrow and numpy, or False (nothing counted) if a
    row needs its own line: a refused cell, a label outside the spec's, a repeated header."""
    spec, label = scan.spec, scan.spec.label
    text, _ = _clean_text(rows, label.column, spec)
    if pc.any(pc.equal(text, label.column)).as_py():  # a repeated header repeats the label's name
        return False
    labels = _clean_numbers(rows, label.column, spec)
    known = list(label.positive_values) + list(label.negative_values)
    if labels is None or not np.isin(labels, known).all():
        return False
    counts = {feat.name: ColumnReport(feat.name) for feat in spec.features}
    if not all(_clean_feature(rows, feat, spec, counts[feat.name]) for feat in spec.features):
        return False
    if spec.id_column is not None:
        index = np.arange(rows.start, rows.start + rows.rows, dtype=np.int64)
        _, blank = _clean_text(rows, spec.id_column, spec)
        ids = pc.utf8_ltrim(rows.cells[rows.columns.index(spec.id_column)], characters=" ")
        scan.ids.add_hashes(hash_strings(ids.filter(pa.array(~blank))), index[~blank])
    scan.rows.add_hashes(_clean_row_hashes(rows), range(rows.start, rows.start + rows.rows))
    scan.report.rows += rows.rows
    for feat in spec.features:
        col = scan.columns.setdefault(feat.name, ColumnReport(feat.name))
        col.missing += counts[feat.name].missing
        col.out_of_range += counts[feat.name].out_of_range
        col.unknown_levels += counts[feat.name].unknown_levels
    scan.labels["positive"] += int(np.isin(labels, label.positive_values).sum())
    scan.labels["negative"] += int(np.isin(labels, label.negative_values).sum())
    return True


def _value_warnings(scan: _Scan) -> None:
    report = scan.report
    for feat in scan.spec.features:
        col = scan.columns[feat.name]
        report.columns.append(col)
        if col.out_of_range:
            report.warnings.append(
                f"{report.path}: column {feat.name!r}: {col.out_of_range} values "
                f"outside [{feat.min:g}, {feat.max:g}] {feat.unit or ''}".rstrip()
            )
        if col.unknown_levels:
            allowed = feat.levels if feat.type == "categorical" else (0.0, 1.0)
            shown = [v if isinstance(v, str) else f"{v:g}" for v in allowed]
            report.warnings.append(
                f"{report.path}: column {feat.name!r}: {col.unknown_levels} values not in the levels {shown}"
            )


def _duplicates(scan: _Scan) -> None:
    """Repeated patient IDs fail; repeated rows warn, or fail beyond DUPLICATE_FAIL_FRACTION."""
    report, spec = scan.report, scan.spec
    if spec.id_column is not None and (found := scan.ids.repeats()):
        count, row, first = found
        report.fail(
            f"column {spec.id_column!r} row {row + 1}",
            f"repeats the patient ID of row {first + 1} ({_rows(count)} an earlier ID); keep "
            "each patient once: a repeated patient sits on both sides of the train/test split",
        )
    if not (found := scan.rows.repeats()):
        return
    count, row, first = found
    many = count > DUPLICATE_FAIL_FRACTION * max(report.rows, 1)
    line = (
        f"{report.path}: row {row + 1}: repeats row {first + 1} exactly "
        f"({_rows(count)} an earlier row); "
        + (
            "remove the repeats (a file appended to itself?): a repeated patient sits on both "
            "sides of the train/test split and inflates the test metrics"
            if many
            else "check it is two patients, not one patient twice"
        )
    )
    if many:
        report.add(line)
    else:
        report.warnings.append(line)


def _rows(count: int) -> str:
    return "1 row repeats" if count == 1 else f"{count} rows repeat"


def _finish(scan: _Scan) -> None:
    """The totals' failures (bad cells: the first and the count) and warnings."""
    report, spec = scan.report, scan.spec
    left_out = sum(count for _, count in scan.bad_rows.values())
    scan.report_bad_rows()
    for (column, _), bad in scan.bad.items():
        report.fail(f"column {column!r} row {bad.row}", f"{bad.reason} ({bad.count} such rows)")
    if left_out:  # the rows' count is not the file's: no verdict on it
        pass
    elif report.rows == 0 and not spec.header and spec.format != "parquet":
        report.fail("", "file is empty")
    elif report.rows < spec.min_rows:
        report.fail("", f"{report.rows} data rows, fewer than the minimum {spec.min_rows}")
    _value_warnings(scan)
    report.label_counts = dict(scan.labels)
    positive, negative = scan.labels["positive"], scan.labels["negative"]
    if positive + negative and min(positive, negative) == 0:
        only = "positive" if positive else "negative"
        report.fail(
            f"column {spec.label.column!r}",
            f"every row is {only}: a site needs both classes to train and to be evaluated",
        )
    if spec.strict_values:  # the spec declares implausible values unacceptable, not suspicious
        for line in report.warnings:
            report.add(line)
        report.warnings = []
    _duplicates(scan)  # after: a few identical rows stay a warning whatever strict_values says
    report.close()


def check_site_file(path: Path, spec: DatasetSpec, *, progress: Progress | None = None) -> SiteReport:
    """Everything wrong (failures) or worth a look (warnings) with one site's file.

    ``progress`` is told how many more bytes have been read (for a progress bar).
    """
    report = SiteReport(Path(path))
    if report.path.is_dir():
        report.fail("", "is a folder, not a file; point --data at the site's extract")
        return report
    if not report.path.is_file():
        report.fail("", "file not found; point --data at the site's extract")
        return report
    if report.path.stat().st_size == 0:
        report.fail("", "file is empty")
        return report
    scan = _Scan(report, spec)
    try:
        for number, rows in enumerate(_chunks(report.path, spec, progress, scan)):
            if number == 0 and not _required_columns(list(rows.columns), spec, report):
                scan.report_bad_rows()
                report.close()
                return report
            if not isinstance(rows, CleanRows):
                _add_chunk(rows, scan)
            elif not _add_clean(rows, scan):  # a cell to name: the rows as frames, checked one by one
                for frame in rows.frames():
                    _add_chunk(frame, scan)
    except DataError as err:  # the file's structure: one line, and no verdict on its values
        scan.report_bad_rows()
        report.add(str(err))
        report.close()
        return report
    except (ValueError, OSError, pa.ArrowException) as err:
        report.fail("", f"cannot be read as {spec.format}: {str(err).splitlines()[0]}")
        return report
    _finish(scan)
    return report


def validated_site(path: Path, spec: DatasetSpec, name: str) -> SiteData:
    """Load a site's split only if its file passes the spec's checks (one error listing all).

    The multi-centre layout is read through its site filter and checked at encoding only.
    """
    if spec.site_column is None:
        report = check_site_file(path, spec)
        if not report.ok:
            # "; " separates problems (the site's error reply counts them), so none inside one
            raise DataError(f"site {name}: " + "; ".join(f.replace("; ", ", ") for f in report.failures))
    return load_site(path, spec, name)
