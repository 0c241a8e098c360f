"""Check a site's data file against the task's dataset spec, before any node starts.

Collect-then-report: every problem is gathered into a ``SiteReport``. *Failures* stop the
site from joining (the training code could not read the file correctly); *warnings* are
values a clinician should look at but that training handles (missing values are imputed,
out-of-range values are real but rare measurements, unknown categorical levels encode as
all-zero one-hot). Runs offline at the hospital: nothing is sent anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from federation.data import SiteData, load_site
from federation.dataspec import DatasetSpec, FeatureSpec
from federation.errors import DataError


@dataclass
class ColumnReport:
    name: str
    missing: int = 0
    out_of_range: int = 0
    unknown_levels: int = 0


@dataclass
class SiteReport:
    path: Path
    rows: int = 0
    columns: list[ColumnReport] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, where: str, reason: str) -> None:
        self.failures.append(f"{self.path}: {where}: {reason}" if where else f"{self.path}: {reason}")


def _read_raw(path: Path, spec: DatasetSpec) -> pd.DataFrame:
    """Every cell of a CSV as text (no header handling yet), so nothing is silently coerced."""
    return pd.read_csv(path, header=None, dtype=str, keep_default_na=False,
                       skip_blank_lines=True, skipinitialspace=True)


def _parquet_rows(path: Path, spec: DatasetSpec, report: SiteReport) -> pd.DataFrame | None:
    """Parquet's schema is its header and its columns are typed: checked as they are
    (stringifying every cell, as for CSV, cost seconds per 10k-row site)."""
    rows = pd.read_parquet(path).reset_index(drop=True)  # a stored index is not a row number
    rows.columns = [str(c) for c in rows.columns]
    return _with_required_columns(rows, list(rows.columns), rows.shape[1], spec, report)


def _header_and_rows(raw: pd.DataFrame, spec: DatasetSpec, report: SiteReport
                     ) -> pd.DataFrame | None:
    """Name the columns; fail on missing or duplicated header lines and missing columns."""
    expected = list(spec.columns)
    if spec.header:
        names = [str(v).strip() for v in raw.iloc[0]]
        rows = raw.iloc[1:].reset_index(drop=True)
    else:
        names = expected[: raw.shape[1]] + [f"extra_{i}" for i in range(raw.shape[1] - len(expected))]
        rows = raw
    rows.columns = names
    # A repeated header is a row equal to the header the file has (or, headerless, to the
    # spec's column names); with nothing to compare against no row can be one.
    header = names if spec.header else expected
    width = min(len(header), rows.shape[1])
    repeats = np.ones(len(rows), dtype=bool) if width else np.zeros(len(rows), dtype=bool)
    for i in range(width):  # column by column: a row-wise apply took minutes on 10k-row sites
        repeats &= rows.iloc[:, i].astype(str).str.strip().eq(header[i]).to_numpy()
    header_rows = rows.index[repeats]
    for index in header_rows:
        report.fail(f"row {index + 1}", "repeats the column names (a duplicated header line); "
                    "remove it" + ("" if spec.header else ", the spec says the file has no header"))
    rows = rows.drop(index=header_rows)
    return _with_required_columns(rows, names, raw.shape[1], spec, report)


def _with_required_columns(rows: pd.DataFrame, names: list[str], width: int, spec: DatasetSpec,
                           report: SiteReport) -> pd.DataFrame | None:
    """The rows, or None after failing a header naming a column twice or each feature or
    label column the file lacks."""
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        report.fail("line 1" if spec.format != "parquet" else "schema",
                    f"names column(s) {dup} more than once")
        return None
    missing = [c for c in ([f.name for f in spec.features] + [spec.label.column]) if c not in names]
    for column in missing:
        report.fail(f"column {column!r}", "is missing" + (" (the file has only "
                    f"{width} fields per row)" if not (spec.header or spec.format == "parquet") else ""))
    return None if missing else rows


def _blank(text: pd.Series, spec: DatasetSpec) -> pd.Series:
    """Missing: empty, a missing marker, or a null cell (Parquet nulls stay null in pandas 3)."""
    return (text.isna() | text.eq("") | text.isin(spec.missing_markers)
            | text.str.lower().isin(("nan", "none", "<na>")))


def _text_levels(rows: pd.DataFrame, feat: FeatureSpec, spec: DatasetSpec) -> pd.Series:
    """A categorical feature with text levels, compared as text (as the data layer does)."""
    text = rows[feat.name].astype(str).str.strip()
    return text.mask(_blank(text, spec))


def _numeric(rows: pd.DataFrame, column: str, spec: DatasetSpec, report: SiteReport) -> pd.Series:
    typed = rows[column]
    if (pd.api.types.is_numeric_dtype(typed)  # typed (Parquet): null = missing, as the loader reads it
            or pd.api.types.infer_dtype(typed, skipna=True) == "boolean"):  # booleans with nulls
        return typed.astype("float64")
    text = rows[column].astype(str).str.strip()
    blank = _blank(text, spec)
    values = pd.to_numeric(text.mask(blank), errors="coerce")
    bad = ~blank & values.isna()
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        report.fail(f"column {column!r} row {rows.index[first] + 1}",
                    f"non-numeric value {text.iloc[first]!r} ({int(bad.sum())} such rows); use a "
                    f"number or a missing marker {list(spec.missing_markers)}")
    return values


def _check_feature(values: pd.Series, feat: FeatureSpec, report: SiteReport) -> ColumnReport:
    values = values.mask(values.isin(feat.missing_if))
    col = ColumnReport(feat.name, missing=int(values.isna().sum()))
    present = values.dropna()
    if feat.min is not None or feat.max is not None:
        low = -np.inf if feat.min is None else feat.min
        high = np.inf if feat.max is None else feat.max
        col.out_of_range = int(((present < low) | (present > high)).sum())
        if col.out_of_range:
            report.warnings.append(f"{report.path}: column {feat.name!r}: {col.out_of_range} values "
                                   f"outside [{feat.min:g}, {feat.max:g}] {feat.unit or ''}".rstrip())
    allowed = feat.levels if feat.type == "categorical" else (0.0, 1.0) if feat.type == "binary" else ()
    if allowed:
        unknown = ~present.isin(allowed)
        col.unknown_levels = int(unknown.sum())
        if col.unknown_levels:
            shown = [v if isinstance(v, str) else f"{v:g}" for v in allowed]
            report.warnings.append(f"{report.path}: column {feat.name!r}: {col.unknown_levels} values "
                                   f"not in the levels {shown}")
    return col


def _check_label(values: pd.Series, rows: pd.DataFrame, spec: DatasetSpec, report: SiteReport) -> None:
    label = spec.label
    known = set(label.positive_values) | set(label.negative_values)
    bad = values.isna() | ~values.isin(known)
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        shown = rows[label.column].iloc[first]
        report.fail(f"column {label.column!r} row {rows.index[first] + 1}",
                    f"label value {shown!r} is not allowed ({int(bad.sum())} such rows); "
                    f"allowed: {sorted(f'{v:g}' for v in known)}")
    positive = int(values.isin(label.positive_values).sum())
    negative = int(values.isin(label.negative_values).sum())
    report.label_counts = {"positive": positive, "negative": negative}
    if positive + negative and min(positive, negative) == 0:
        only = "positive" if positive else "negative"
        report.fail(f"column {label.column!r}", f"every row is {only}: a site needs both classes "
                    "to train and to be evaluated")


def check_site_file(path: Path, spec: DatasetSpec) -> SiteReport:
    """Everything wrong (failures) or worth a look (warnings) with one site's file."""
    report = SiteReport(Path(path))
    if not report.path.is_file():
        report.fail("", "file not found; point --data at the site's extract")
        return report
    if report.path.stat().st_size == 0 or not report.path.read_bytes().strip():
        report.fail("", "file is empty")
        return report
    try:
        rows = (_parquet_rows(report.path, spec, report) if spec.format == "parquet"
                else _header_and_rows(_read_raw(report.path, spec), spec, report))
    except (ValueError, OSError, pd.errors.ParserError) as err:
        report.fail("", f"cannot be read as {spec.format}: {str(err).splitlines()[0]}")
        return report
    if rows is None:
        return report
    report.rows = len(rows)
    if report.rows < spec.min_rows:
        report.fail("", f"{report.rows} data rows, fewer than the minimum {spec.min_rows}")
    for feat in spec.features:
        values = (_text_levels(rows, feat, spec) if feat.text_levels
                  else _numeric(rows, feat.name, spec, report))
        report.columns.append(_check_feature(values, feat, report))
    _check_label(_numeric(rows, spec.label.column, spec, report), rows, spec, report)
    if spec.strict_values:  # the spec declares implausible values unacceptable, not suspicious
        report.failures.extend(report.warnings)
        report.warnings = []
    return report


def validated_site(path: Path, spec: DatasetSpec, name: str) -> SiteData:
    """Load a site's split only if its file passes the spec's checks (one error listing all).

    The multi-centre layout is read through its site filter and checked at encoding only.
    """
    if spec.site_column is None:
        report = check_site_file(path, spec)
        if not report.ok:
            raise DataError(f"site {name}: " + "; ".join(report.failures))
    return load_site(path, spec, name)
