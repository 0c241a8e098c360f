"""Load one site's file, check it against the dataset spec, encode it and split it.

Everything here runs at the site: raw rows never leave this module's caller.
Missing values stay NaN; the model's own preprocessing imputes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from federation.dataspec import DatasetSpec, FeatureSpec
from federation.errors import DataError, collect_then_raise


@dataclass(frozen=True)
class SiteData:
    """A site's encoded train and held-out test split (float32 features, NaN = missing)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def embedded_dir(spec: DatasetSpec) -> Path:
    """Folder of the dataset files shipped inside the package."""
    if not spec.embedded:
        raise DataError(f"dataset {spec.name!r} has no embedded copy: give each site a data path")
    packaged = Path(str(resources.files("federation.datasets") / spec.embedded))
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
        return Path(url["url"][len("file://"):]) / "federation" / "datasets" / name
    return Path(str(dist.locate_file(f"federation/datasets/{name}")))


def read_site_frame(path: Path, spec: DatasetSpec) -> pd.DataFrame:
    """Read a site's raw table; missing markers become NaN."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found; point the site at its extract")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        if spec.format == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(
                path,
                header=0 if spec.header else None,
                names=None if spec.header else list(spec.columns),
                na_values=list(spec.missing_markers),
                keep_default_na=True,
            )
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: cannot be read as {spec.format}: {err}") from None
    if frame.empty:
        raise DataError(f"{path}: file has no data rows")
    return frame


def _numeric_column(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = frame[column].notna() & values.isna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(
            f"{path}: column {column!r} row {row + 1} has non-numeric value "
            f"{frame[column].iloc[row]!r}; use a number, or the spec's missing marker"
        )
    return values.astype("float64")


def _encode_feature(values: pd.Series, feat: FeatureSpec) -> np.ndarray:
    """One feature's model columns; missing and 'missing_if' values become NaN."""
    values = values.mask(values.isin(feat.missing_if))
    if feat.type != "categorical":
        return values.to_numpy(dtype="float64")[:, None]
    onehot = np.stack([(values == level).to_numpy(dtype="float64") for level in feat.levels], 1)
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
    blocks = [_encode_feature(_numeric_column(frame, f.name, path), f) for f in spec.features]
    return np.concatenate(blocks, axis=1).astype("float32")


def split_site(x: np.ndarray, y: np.ndarray, spec: DatasetSpec) -> tuple[np.ndarray, ...]:
    """Seeded train/test split, stratified when both classes can appear in each part."""
    counts = np.bincount(y.astype(int), minlength=2)
    stratify = y if counts.min() >= 2 else None
    return tuple(
        train_test_split(
            x, y, test_size=spec.split.test_fraction, random_state=spec.split.seed, stratify=stratify
        )
    )


def load_site(path: Path, spec: DatasetSpec, name: str) -> SiteData:
    """Read, encode and split one site's file."""
    frame = read_site_frame(path, spec)
    x, y = encode_features(frame, spec, path), encode_labels(frame, spec, path)
    if len(y) < spec.min_rows:
        raise DataError(f"{path}: {len(y)} rows, fewer than the minimum {spec.min_rows}")
    x_train, x_test, y_train, y_test = split_site(x, y, spec)
    return SiteData(name, x_train, y_train, x_test, y_test)


def site_file(spec: DatasetSpec, site: str, data_dir: Path | None = None) -> Path:
    """Path of a site's file in a folder laid out like the spec's ``sites`` mapping."""
    if site not in spec.sites:
        raise DataError(f"site {site!r} is not in dataset {spec.name!r}; known: {spec.site_names}")
    return Path(data_dir or embedded_dir(spec)) / spec.sites[site]
