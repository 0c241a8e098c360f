"""What a site releases about subgroups of its held-out test rows (issue N.1), under k.

A level of a subgroup feature is released only if it holds at least k = ``min_cell_size``
rows of each class. Suppressing one level is not enough: the site's test totals and the other
levels' counts would give it back by subtraction (and the rows missing the feature are a
hidden cell of their own). So the suppressed set (small levels plus the missing rows) grows by
the smallest released level until it holds at least k of each class together, or until
nothing is left: no suppressed count, nor their sum below k, can then be recovered. Score
histograms per level (k-grouped as the site's own) go out only when no row of the feature is
hidden, since the site's histogram minus its levels' would be the hidden rows'. Rates (TPR,
FPR) are released as the site's own sensitivity is today. The CIs use the site's secret
randomness (known resamples would tie bounds to rows).
"""

from __future__ import annotations

import numpy as np

from client.releases import released_score_histograms
from federation.core import wire
from federation.core.dataspec import DatasetSpec
from federation.core.subgroups import (
    SUBGROUP_RESAMPLES,
    feature_gaps,
    group_metrics,
    subgroup_masks,
)


def _class_counts(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.array([int((y[mask] == 0).sum()), int((y[mask] == 1).sum())])


def released_levels(y: np.ndarray, masks: dict[str, np.ndarray], *, min_cell: int) -> list[str]:
    """The levels a site may release (the others, and the missing rows, stay hidden together)."""
    y = np.asarray(y).astype(int)
    missing = ~np.any(list(masks.values()), axis=0) if masks else np.ones(len(y), bool)
    hidden = _class_counts(y, missing)
    kept = []
    for level, mask in masks.items():
        counts = _class_counts(y, mask)
        if counts.min() < min_cell:
            hidden = hidden + counts
        else:
            kept.append(level)
    kept.sort(key=lambda lv: (_class_counts(y, masks[lv]).min(), lv))
    while kept and hidden.sum() > 0 and hidden.min() < min_cell:
        hidden = hidden + _class_counts(y, masks[kept.pop(0)])
    return sorted(kept, key=list(masks).index)


def _wire_name(name: str) -> str:
    return name.replace("_", "-")


def site_subgroups(
    x: np.ndarray,
    y: np.ndarray,
    p: np.ndarray,
    spec: DatasetSpec,
    *,
    min_cell: int,
    threshold: float,
    seed: int,
    resamples: int = SUBGROUP_RESAMPLES,
) -> dict[str, dict]:
    """feature -> {"levels": {level: metrics incl. histograms}, "gaps": {...}} (released only)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y).astype(int)
    out = {}
    for feature, masks in subgroup_masks(x, spec).items():
        points, boots = {}, {}
        released = released_levels(y, masks, min_cell=min_cell)
        # Histograms only when no row is hidden: the test histogram minus the levels' would
        # otherwise be the hidden rows' histogram, whose bins need not hold k.
        everyone = len(released) == len(masks) and np.any(list(masks.values()), axis=0).all()
        for level in released:
            yg, pg = y[masks[level]], p[masks[level]]
            points[level], boots[level] = group_metrics(
                yg, pg, threshold=threshold, resamples=resamples, rng=rng
            )
            if everyone:
                pos, neg = released_score_histograms(yg, pg, min_cell=min_cell)
                points[level] |= {"score_hist_pos": pos, "score_hist_neg": neg}
        out[feature] = {"levels": points, "gaps": feature_gaps(points, boots)}
    return out


def subgroup_wire_metrics(subgroups: dict[str, dict]) -> dict:
    """The evaluate reply's subgroup keys (``wire.SUBGROUP_PREFIX`` ...) from site_subgroups."""
    metrics = {}
    for feature, found in subgroups.items():
        for level, values in found["levels"].items():
            prefix = f"{wire.SUBGROUP_PREFIX}{feature}={level}/"
            metrics |= {prefix + _wire_name(k): v for k, v in values.items()}
        prefix = f"{wire.SUBGROUP_GAP_PREFIX}{feature}/"
        metrics |= {prefix + _wire_name(k): v for k, v in found["gaps"].items()}
    return metrics


def from_wire(metrics: dict) -> dict[str, dict]:
    """The server's view of a reply's subgroup keys: the same nesting as site_subgroups."""
    out: dict[str, dict] = {}
    for key, value in metrics.items():
        if key.startswith(wire.SUBGROUP_PREFIX):
            group, name = key[len(wire.SUBGROUP_PREFIX) :].rsplit("/", 1)
            feature, level = group.split("=", 1)
            entry = out.setdefault(feature, {"levels": {}, "gaps": {}})["levels"].setdefault(level, {})
        elif key.startswith(wire.SUBGROUP_GAP_PREFIX):
            feature, name = key[len(wire.SUBGROUP_GAP_PREFIX) :].rsplit("/", 1)
            entry = out.setdefault(feature, {"levels": {}, "gaps": {}})["gaps"]
        else:
            continue
        entry[name.replace("-", "_")] = value if isinstance(value, list) else float(value)
    return out
