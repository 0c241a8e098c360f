"""What a site releases about subgroups of its held-out test rows (issue N.1), under k.

A level of a subgroup feature is released only if it holds at least k = ``min_cell_size``
rows of each class. Suppressing one level is not enough: the site's test totals and the other
levels' counts would give it back by subtraction (and the rows missing the feature are a
hidden cell of their own). So the suppressed set (small levels plus the missing rows) grows by
the smallest released level until it holds at least k of each class together, or until
nothing is left: no suppressed count, nor their sum below k, can then be recovered. Score
histograms per level go out only when no row of the feature is hidden, since the site's
histogram minus its levels' would be the hidden rows'. The levels' histograms share ONE
partition of score bins, a coarsening of the site's own k-grouped test histogram
(:func:`histogram_groups`: the test groups merged until each holds >= k rows of every level).
Separate groupings let the total minus one level give another level's count on a group that is
not one of its own (review A4); with nested ones a level's count is known only as a sum over
the levels' groups (the total's finer groups sum to them), each >= k of every level. The test
histogram itself keeps its own k-grouping: put on the levels' partition, a small level merged
one site's scores into a few wide groups and pulled the pooled AUROC far below the rows'
(issue T.1: 0.738 against 0.772). Rates (TPR,
FPR) are released as the site's own sensitivity is today. The CIs use the site's secret
randomness (known resamples would tie bounds to rows).
"""

from __future__ import annotations

import numpy as np

from client.releases import released_score_histograms, score_groups
from federation.core import wire
from federation.core.dataspec import DatasetSpec
from federation.core.metrics import score_histograms
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


K_RULE_SMALL = "k_rule_small_level"
K_RULE_HIDDEN_WITH = "k_rule_hidden_with_small_level"
HISTOGRAMS_WITHHELD = "histograms_withheld"


def withheld_levels(y: np.ndarray, masks: dict[str, np.ndarray], *, min_cell: int) -> dict[str, dict]:
    """Why each level :func:`released_levels` keeps back is withheld (the site's own view: it
    never leaves the site; a report of the site's release says only that the k rule withheld
    it). Rows missing the feature are in no level and always hidden."""
    y = np.asarray(y).astype(int)
    released = set(released_levels(y, masks, min_cell=min_cell))
    out = {}
    for level, mask in masks.items():
        if level in released:
            continue
        small = _class_counts(y, mask).min() < min_cell
        out[level] = {
            "reason": K_RULE_SMALL if small else K_RULE_HIDDEN_WITH,
            "text": f"withheld: fewer than k = {min_cell} rows of a class"
            if small
            else f"withheld: hidden with a level under k = {min_cell} so that neither comes back "
            "by subtraction from the site's totals",
        }
    return out


def _histogram_levels(masks: dict[str, np.ndarray], released: list[str]) -> list[str]:
    """The levels whose histograms go out: all of them, or none when any row is hidden (the
    site's histogram minus its levels' would otherwise be the hidden rows')."""
    everyone = len(released) == len(masks) and np.any(list(masks.values()), axis=0).all()
    return released if everyone else []


def _level_masks(x, y, spec: DatasetSpec, *, min_cell: int) -> list[np.ndarray]:
    y = np.asarray(y).astype(int)
    return [
        masks[level]
        for masks in subgroup_masks(x, spec).values()
        for level in _histogram_levels(masks, released_levels(y, masks, min_cell=min_cell))
    ]


def histogram_groups(x, y, p, spec: DatasetSpec, *, min_cell: int) -> list[tuple[int, int]] | None:
    """The one partition of score bins for every level's histogram: the test histogram's own
    k-groups merged left to right until each group holds >= ``min_cell`` rows of every level;
    None when no level histogram is released, or k = 1 (every histogram is then exact)."""
    masks = _level_masks(x, y, spec, min_cell=min_cell)
    if not masks or min_cell == 1:
        return None
    y, p = np.asarray(y).astype(int), np.asarray(p)
    test = score_groups(np.add(*score_histograms(y, p)), min_cell=min_cell)
    rows = np.array([np.add(*score_histograms(y[m], p[m])) for m in masks])
    per_group = np.stack([rows[:, start:stop].sum(axis=1) for start, stop in test], axis=1)
    return [(test[first][0], test[last - 1][1]) for first, last in score_groups(per_group, min_cell=min_cell)]


def shared_test_histograms(x, y, p, spec: DatasetSpec, *, min_cell: int) -> dict:
    """The test split's score histograms when levels' histograms go out: on its own k-grouping,
    which the levels' partition coarsens (the same as without subgroups); {} when no level has
    any."""
    if histogram_groups(x, y, p, spec, min_cell=min_cell) is None:
        return {}
    pos, neg = released_score_histograms(y, p, min_cell=min_cell)
    return {wire.SCORE_HIST_POS: pos, wire.SCORE_HIST_NEG: neg}


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
    groups = histogram_groups(x, y, p, spec, min_cell=min_cell)
    out = {}
    for feature, masks in subgroup_masks(x, spec).items():
        points, boots = {}, {}
        released = released_levels(y, masks, min_cell=min_cell)
        with_histograms = _histogram_levels(masks, released)
        for level in released:
            yg, pg = y[masks[level]], p[masks[level]]
            points[level], boots[level] = group_metrics(
                yg, pg, threshold=threshold, resamples=resamples, rng=rng
            )
            if level in with_histograms:
                pos, neg = released_score_histograms(yg, pg, min_cell=min_cell, groups=groups)
                points[level] |= {"score_hist_pos": pos, "score_hist_neg": neg}
        out[feature] = {"levels": points, "gaps": feature_gaps(points, boots)}
        withheld = withheld_levels(y, masks, min_cell=min_cell)
        if released and not with_histograms:
            withheld[HISTOGRAMS_WITHHELD] = {
                "reason": HISTOGRAMS_WITHHELD,
                "text": "score histograms withheld: part of this feature is hidden (the site's "
                "histogram minus its levels' would be the hidden rows'), so no pooled AUROC, "
                "TPR or FPR of its levels can include this site",
            }
        if withheld:  # the site's own record (subgroup_wire_metrics sends levels and gaps only)
            out[feature]["withheld"] = withheld
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
