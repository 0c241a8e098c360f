"""A site's own reference statistics of a run's data, taken when it first trains in the run.

``lhsfed drift`` asks a site whether its patients have changed since the champion was
trained. The site answers against *this* file, never against numbers the coordinator sends:
a coordinator-made reference (bin edges, means) could be chosen to probe single rows. The
file stays at the site (:func:`client.site_state.state_dir`), one per run, written once and
never overwritten (a resumed run keeps the first one).

Per feature of the spec (not per encoded column), over all the site's rows at that time
(train + validation + test): rows, missing count, whether its cells passed the site's
minimum cell size then, and for numeric features mean, SD, decile edges of the observed
values (deduplicated) with the count in each bin; for binary and categorical features the
count of each level (``1``/``0`` for binary, each encoded level for categorical) and
``other`` (a dropped first level, unknown levels, stray values).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from client.releases import feature_column_slices, feature_releasable
from client.site_policy import SitePolicy
from client.site_state import run_key, state_dir
from federation.core.atomic import write_json
from federation.core.data import SiteData
from federation.core.dataspec import DatasetSpec, FeatureSpec

log = logging.getLogger(__name__)
DECILES = np.linspace(0.1, 0.9, 9)
RANGE_BINS = 10


def site_rows(data: SiteData) -> np.ndarray:
    """Every encoded row the site holds now: train, validation and test."""
    parts = [x for x in (data.x_train, data.x_val, data.x_test) if x.size]
    return np.concatenate(parts) if parts else data.x_train


def level_counts(x: np.ndarray, feat: FeatureSpec) -> list[int]:
    """Observed rows per level of an indicator feature, ``other`` last (x: its columns)."""
    observed = x[~np.isnan(x[:, 0])]
    if feat.type == "binary":
        ones, zeros = int((observed[:, 0] == 1).sum()), int((observed[:, 0] == 0).sum())
        return [ones, zeros, len(observed) - ones - zeros]
    ones = (observed == 1).sum(0).astype(int).tolist()
    return [*ones, len(observed) - int((observed == 1).any(1).sum())]


def bin_counts(values: np.ndarray, edges: list[float]) -> list[int]:
    """Rows in (-inf, e0], (e0, e1], ..., (e_last, inf): len(edges) + 1 bins."""
    index = np.digitize(values, np.asarray(edges, dtype="float64"), right=True)
    return np.bincount(index, minlength=len(edges) + 1).astype(int).tolist()


def feature_reference(x: np.ndarray, feat: FeatureSpec, *, min_cell: int) -> dict:
    """One feature's reference (x: its encoded columns, NaN = missing)."""
    observed = ~np.isnan(x[:, 0])
    ref = {
        "type": feat.type,
        "rows": len(x),
        "missing": int((~observed).sum()),
        "releasable": bool(feature_releasable(x, feat, min_cell=min_cell)),
    }
    if feat.type != "numeric":
        return ref | {"counts": level_counts(x, feat)}
    values = x[observed, 0].astype("float64")
    ref |= range_reference(values, feat)
    if not len(values):
        return ref | {"mean": 0.0, "sd": 0.0, "edges": [], "counts": [0]}
    edges = np.unique(np.quantile(values, DECILES)).tolist()
    return ref | {
        "mean": float(values.mean()),
        "sd": float(values.std()),
        "edges": edges,
        "counts": bin_counts(values, edges),
    }


def range_edges(feat: FeatureSpec) -> list[float] | None:
    """RANGE_BINS equal-width bins over the spec's [min, max] (public: no patient sets them),
    as interior edges; None without both bounds."""
    if feat.min is None or feat.max is None or not feat.max > feat.min:
        return None
    return np.linspace(feat.min, feat.max, RANGE_BINS + 1)[1:-1].tolist()


def range_reference(values: np.ndarray, feat: FeatureSpec) -> dict:
    """The counts a DP drift release uses (client.drift_release): over bins of the spec's range,
    never over edges taken from the rows (one patient would move them, and every count with
    them)."""
    edges = range_edges(feat)
    return {} if edges is None else {"range_edges": edges, "range_counts": bin_counts(values, edges)}


def reference_statistics(x: np.ndarray, spec: DatasetSpec, *, min_cell: int) -> dict[str, dict]:
    """Feature name -> its reference, over the encoded rows ``x``."""
    return {
        feat.name: feature_reference(x[:, cols], feat, min_cell=min_cell)
        for feat, cols in feature_column_slices(spec)
    }


def reference_path(policy: SitePolicy, run_identity: str) -> Path:
    return state_dir(policy) / f"drift-reference-{run_key(run_identity)}.json"


def record_reference(policy: SitePolicy, run_identity: str, data: SiteData, spec: DatasetSpec) -> bool:
    """Write the run's reference unless one exists (first training message only); True if written."""
    path = reference_path(policy, run_identity)
    if path.is_file():
        return False
    stats = reference_statistics(site_rows(data), spec, min_cell=policy.min_cell_size)
    write_json(path, {"run_identity": run_identity, "spec": spec.name, "features": stats})
    log.info("drift reference of this run written to %s", path)
    return True


def load_reference(policy: SitePolicy, run_identity: str) -> dict[str, dict] | None:
    """The features' reference this site took in that run (None: it never trained in it)."""
    path = reference_path(policy, run_identity)
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return stored["features"] if stored.get("run_identity") == run_identity else None
