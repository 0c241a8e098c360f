"""Load one site's file, check it against the dataset spec, encode it and split it.

Everything here runs at the site: raw rows never leave this module's caller.
Missing values stay NaN; the model's own preprocessing imputes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

from federation.core.dataspec import DatasetSpec, FeatureSpec, value_text
from federation.core.errors import DataError, collect_then_raise
from federation.core.site_table import (
    blank_cells,
    csv_chunks,
    parse_numbers,
    refusal_reason,
)


@dataclass(frozen=True)
class SiteData:
    """A site's encoded train, validation and held-out test split (float32, NaN = missing).

    Validation rows (``split.validation_fraction`` of the non-test rows) are never trained
    on: they choose the round and stop the run; the test rows are never used for a choice.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype="float32"))
    y_val: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="float32"))


EMBEDDED_DATASETS = "federation/core/datasets"  # inside the distribution (pyproject's package-data)


def embedded_dir(spec: DatasetSpec) -> Path:
    """Folder of the dataset files shipped inside the package."""
    if not spec.embedded:
        raise DataError(f"dataset {spec.name!r} has no embedded copy: give each site a data path")
    packaged = Path(str(resources.files("federation.core.datasets") / spec.embedded))
    for folder in (packaged, _installed_copy(spec.embedded)):
        if all((folder / name).is_file() for name in spec.sites.values()):
            return folder
    return packaged


def _installed_copy(name: str) -> Path:
    """The installed distribution's copy of an embedded dataset.

    Under ``flwr run`` the apps import this package from the unpacked app bundle (FAB), and
    Flower's FAB builder drops every file that is not code or config, so the data files are
    read from the lhs-federation installed in the same environment instead.
    """
    import json
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("lhs-federation")
    except PackageNotFoundError:
        return Path()
    url = json.loads(dist.read_text("direct_url.json") or "{}")
    if url.get("dir_info", {}).get("editable") and url.get("url", "").startswith("file://"):
        return Path(url["url"][len("file://") :]) / EMBEDDED_DATASETS / name
    return Path(str(dist.locate_file(f"{EMBEDDED_DATASETS}/{name}")))


def _read_table(path: Path, spec: DatasetSpec, site_value: str | None) -> pd.DataFrame:
    """Parquet typed; CSV as text cells (numbers parsed per column later), through the same
    streamed reader as ``lhsfed site check``: only empty fields and the spec's missing
    markers become NaN (pandas' default NA words such as "NaN" would hide bad values)."""
    if spec.format == "parquet":
        return pd.read_parquet(path, filters=_parquet_site_filter(path, spec, site_value))
    frame = pd.concat(list(csv_chunks(path, spec)))
    for column in frame.columns:
        frame[column] = frame[column].mask(blank_cells(frame[column], spec.missing_markers))
    return frame


def _parquet_site_filter(path: Path, spec: DatasetSpec, site_value: str | None) -> list | None:
    """Push the site selection into the Parquet reader: only that site's rows are loaded."""
    if not (spec.site_column and site_value is not None):
        return None
    schema = pq.read_schema(path)
    if spec.site_column not in schema.names:
        return None  # reported as a missing column by _site_rows
    kind = schema.field(spec.site_column).type
    try:
        value = (
            int(site_value)
            if pa.types.is_integer(kind)
            else float(site_value)
            if pa.types.is_floating(kind)
            else site_value
        )
    except ValueError:
        return None
    return [(spec.site_column, "==", value)]


def _site_rows(frame: pd.DataFrame, spec: DatasetSpec, site_value: str, path: Path) -> pd.DataFrame:
    """The rows of a multi-centre file that belong to one site."""
    column = spec.site_column
    if column not in frame.columns:
        raise DataError(
            f"{path}: site column {column!r} is missing; the spec's data.site_column "
            "must name the column that says which hospital a row is from"
        )
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values):
        try:
            rows = values == float(site_value)
        except ValueError:
            rows = values != values
    else:
        rows = values.astype(str) == site_value
    if not rows.any():
        found = sorted(map(str, values.dropna().unique()))[:10]
        raise DataError(
            f"{path}: no row has {column!r} == {site_value!r} (values found: {found}); "
            "fix data.sites or the file"
        )
    return frame[rows.to_numpy()].reset_index(drop=True)


def read_site_frame(path: Path, spec: DatasetSpec, site: str | None = None) -> pd.DataFrame:
    """Read a site's raw table; missing markers become NaN and id columns are dropped.

    With a multi-centre file (``spec.site_column``) and a ``site``, only that site's rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found; point the site at its extract")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    site_value = spec.sites.get(site, site) if site is not None else None
    try:
        frame = _read_table(path, spec, site_value)
    except DataError:
        raise
    except (ValueError, OSError, pd.errors.ParserError, pa.ArrowException) as err:
        raise DataError(f"{path}: cannot be read as {spec.format}: {err}") from None
    ids = [spec.id_column] if spec.id_column else []
    frame = frame.drop(columns=[*spec.drop_columns, *ids], errors="ignore")
    if spec.site_column and site_value is not None:
        frame = _site_rows(frame, spec, site_value, path)
    if frame.empty:
        raise DataError(f"{path}: file has no data rows")
    return frame


def _numeric_column(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """A column as float64 (NaN = missing); a non-numeric or non-finite cell is refused."""
    values, non_numeric, non_finite = parse_numbers(frame[column])
    bad = non_numeric | non_finite
    if bad.any():
        row = int(bad.to_numpy().argmax())
        reason = refusal_reason(frame[column].iloc[row], bool(non_finite.iloc[row]))
        raise DataError(f"{path}: column {column!r} row {row + 1} has {reason}")
    return values


def _feature_values(frame: pd.DataFrame, feat: FeatureSpec, path: Path) -> pd.Series:
    """A feature's raw values: text for categoricals with text levels, numbers otherwise."""
    if feat.text_levels:
        values = frame[feat.name]
        return values.where(values.isna(), values.astype(str).str.strip())  # as the site check reads it
    return _numeric_column(frame, feat.name, path)


def _encode_feature(values: pd.Series, feat: FeatureSpec) -> np.ndarray:
    """One feature's model columns; missing and 'missing_if' values become NaN."""
    values = values.mask(values.isin(feat.missing_if))
    if feat.type != "categorical":
        return values.to_numpy(dtype="float64")[:, None]
    onehot = np.stack([(values == level).to_numpy(dtype="float64") for level in feat.encoded_levels], 1)
    onehot[values.isna().to_numpy()] = np.nan
    return onehot


def encode_labels(frame: pd.DataFrame, spec: DatasetSpec, path: Path) -> np.ndarray:
    """Binary label from the raw label column, rejecting values the spec does not know."""
    column = spec.label.column
    if column not in frame.columns:
        raise DataError(f"{path}: label column {column!r} is missing")
    raw = _numeric_column(frame, column, path)
    known = set(spec.label.positive_values) | set(spec.label.negative_values)
    unknown = raw.isna() | (~raw.isin(known) if spec.label.negative_values else raw.isna())
    if unknown.any():
        row = int(unknown.to_numpy().argmax())
        raise DataError(
            f"{path}: label {column!r} row {row + 1} has value {frame[column].iloc[row]!r}; "
            f"allowed: {sorted(known)}"
        )
    return raw.isin(spec.label.positive_values).to_numpy(dtype="float32")


def encode_features(frame: pd.DataFrame, spec: DatasetSpec, path: Path) -> np.ndarray:
    """Model input matrix (float32, NaN = missing) in the spec's feature order."""
    missing = [f.name for f in spec.features if f.name not in frame.columns]
    collect_then_raise([f"{path}: column {m!r} is missing" for m in missing], DataError)
    blocks = [_encode_feature(_feature_values(frame, f, path), f) for f in spec.features]
    return np.concatenate(blocks, axis=1).astype("float32")


def split_site(x: np.ndarray, y: np.ndarray, spec: DatasetSpec) -> tuple[np.ndarray, ...]:
    """Seeded train/test split, stratified when both classes can appear in each part."""
    counts = np.bincount(y.astype(int), minlength=2)
    stratify = y if counts.min() >= spec.split.stratify_min_class_rows else None
    return tuple(
        train_test_split(
            x, y, test_size=spec.split.test_fraction, random_state=spec.split.seed, stratify=stratify
        )
    )


def split_validation(x_train: np.ndarray, y_train: np.ndarray, spec: DatasetSpec) -> tuple[np.ndarray, ...]:
    """(x_train, x_val, y_train, y_val): the validation part of the non-test rows.

    Seeded with ``split.seed`` and stratified like the test split; fraction 0 (or too few
    rows for one validation row) keeps every non-test row for training.
    """
    fraction = spec.split.validation_fraction
    if fraction <= 0 or round(fraction * len(y_train)) < 1:
        return x_train, x_train[:0], y_train, y_train[:0]
    counts = np.bincount(y_train.astype(int), minlength=2)
    stratify = y_train if counts.min() >= spec.split.stratify_min_class_rows else None
    return tuple(
        train_test_split(
            x_train, y_train, test_size=fraction, random_state=spec.split.seed, stratify=stratify
        )
    )


def complete_rows(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Only the rows with every feature and the label present (``drop_incomplete_rows``)."""
    used = [f.name for f in spec.features if f.name in frame.columns] + [spec.label.column]
    return frame.dropna(subset=[c for c in used if c in frame.columns]).reset_index(drop=True)


def standardize_by_train(x_train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every part scaled by the training part's mean and sample std (``standardize: site``).

    A constant column becomes 0 (the tiny offset keeps 0/0 out, as FLamby's 1e-9 does).
    """
    mean, std = np.nanmean(x_train, axis=0), np.nanstd(x_train, axis=0, ddof=1) + 1e-9
    return tuple(((x - mean) / std).astype("float32") for x in (x_train, *others))


def load_site(path: Path, spec: DatasetSpec, name: str) -> SiteData:
    """Read, encode and split one site's file (test first, then validation from the rest)."""
    frame = read_site_frame(path, spec, site=name)
    if spec.drop_incomplete_rows:
        frame = complete_rows(frame, spec)
    x, y = encode_features(frame, spec, path), encode_labels(frame, spec, path)
    if len(y) < spec.min_rows:
        raise DataError(f"{path}: {len(y)} rows, fewer than the minimum {spec.min_rows}")
    x_rest, x_test, y_rest, y_test = split_site(x, y, spec)
    x_train, x_val, y_train, y_val = split_validation(x_rest, y_rest, spec)
    if spec.standardize == "site":
        x_train, x_test, x_val = standardize_by_train(x_train, x_test, x_val)
    return SiteData(name, x_train, y_train, x_test, y_test, x_val, y_val)


def site_file(spec: DatasetSpec, site: str, data_dir: Path | None = None) -> Path:
    """Path of a site's file in a folder laid out like the spec (per-site files or one file)."""
    if site not in spec.sites:
        raise DataError(f"site {site!r} is not in dataset {spec.name!r}; known: {spec.site_names}")
    return Path(data_dir or embedded_dir(spec)) / (spec.file or spec.sites[site])


def check_site_sources(spec: DatasetSpec, data_dir: Path | None = None) -> None:
    """Fail early if a site's file is unreadable or a multi-centre file lacks a site's rows.

    Each file is read once, so a multi-centre file is not re-read for every site.
    """
    if not spec.site_column:
        for site in spec.site_names:
            read_site_frame(site_file(spec, site, data_dir), spec)
        return
    path = site_file(spec, spec.site_names[0], data_dir)
    frame = read_site_frame(path, spec)
    if spec.site_column not in frame.columns:
        raise DataError(f"{path}: site column {spec.site_column!r} is missing")
    present = set(frame[spec.site_column].dropna().map(value_text))
    absent = [value for value in spec.sites.values() if value not in present]
    collect_then_raise(
        [f"{path}: no row has {spec.site_column!r} == {v!r}; fix data.sites or the file" for v in absent],
        DataError,
    )
