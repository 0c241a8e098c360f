"""Which measures a split (a site, a pooled set, a subgroup level) has enough patients to estimate.

A measure that compares the two classes (AUROC, AUPRC, the calibration slope and intercept) or
is a rate within one class (sensitivity, TPR: among events; specificity, FPR: among non-events)
is not reported below :data:`MIN_CLASS_ROWS` rows of the class(es) it needs: its value is
replaced by ``None`` and a machine-readable reason (:func:`too_few`), which every report table
shows as e.g. "too few (2 non-events < 10)" instead of a number (issue T.6: switzerland, with
2 negatives among 37 test rows, showed calibration slope -0.037, intercept 2.900 and
specificity 0.500 as if they were measurements). Brier, ECE and calibration in the large need
no such split and are always shown, with their intervals.
"""

from __future__ import annotations

import math
from typing import Any

MIN_CLASS_ROWS = 10
"""Fewest events AND non-events (the class a measure needs) for a measure to be reported.

Why 10: the calibration slope and intercept are a two-parameter logistic regression, and the
classic floor for a logistic fit is about 10 events per estimated parameter, counted in the
smaller outcome class (Peduzzi et al., J Clin Epidemiol 1996;49:1373-9); with fewer, the
fit is dominated by a handful of patients and may not exist at all (separation), and AUROC
moves in steps of 1/(events x non-events) (switzerland: 1/70). It is a floor, not a target:
validation studies are advised to have at least 100 events and 100 non-events (Vergouwe et
al., J Clin Epidemiol 2005;58:475-83; Collins et al., Stat Med 2016;35:214-26), which is why
every value above the floor carries its 95% CI. It equals the sites' default k
(``client.releases.DEFAULT_MIN_CELL``), so a level a site releases under its default k rule is
always estimable."""

BOTH, EVENTS, NON_EVENTS = "both", "events", "non_events"
NEEDS = {  # measure -> the class(es) it needs at least MIN_CLASS_ROWS of
    "auroc": BOTH,
    "auprc": BOTH,
    "calibration_slope": BOTH,
    "calibration_intercept": BOTH,
    "sensitivity": EVENTS,
    "tpr": EVENTS,
    "specificity": NON_EVENTS,
    "fpr": NON_EVENTS,
}
TOO_FEW = "too_few"
NOT_ESTIMABLE = "not_estimable"  # the key, beside the measures, holding each reason


def _count(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def too_few(
    measure: str, events: Any, non_events: Any, *, noisy: bool = False, minimum: int = MIN_CLASS_ROWS
) -> dict[str, Any] | None:
    """The reason ``measure`` is not estimable from ``events`` / ``non_events`` rows, or None.

    ``noisy``: the counts are a DP release's (a noisy count below the floor is too few as well:
    the release cannot show the class is there). An unknown count is too few."""
    need = NEEDS.get(measure)
    if need is None:
        return None
    counts = {EVENTS: _count(events), NON_EVENTS: _count(non_events)}
    short = [
        cls
        for cls in (EVENTS, NON_EVENTS)
        if need in (BOTH, cls) and (counts[cls] is None or counts[cls] < minimum)
    ]
    if not short:
        return None
    return {
        "reason": TOO_FEW,
        "events": counts[EVENTS],
        "non_events": counts[NON_EVENTS],
        "minimum": minimum,
        "noisy_counts": noisy,
        "text": marker(short, counts, minimum, noisy),
    }


def _shown(count: float | None, noisy: bool) -> str:
    if count is None:
        return "unknown"
    return f"≈{round(count)}" if noisy else str(round(count))


def marker(short: list[str], counts: dict[str, float | None], minimum: int, noisy: bool = False) -> str:
    """'too few (2 non-events < 10)': what a table shows instead of the number."""
    parts = [f"{_shown(counts[cls], noisy)} {cls.replace('_', '-')} < {minimum}" for cls in short]
    return f"too few ({'; '.join(parts)}{', noisy counts' if noisy else ''})"


def withhold_too_few(
    entry: dict[str, Any], events: Any, non_events: Any, *, noisy: bool = False, measures=None
) -> dict[str, Any]:
    """``entry`` with every measure it cannot estimate set to None (its CI keys too) and each
    reason under :data:`NOT_ESTIMABLE`; ``measures``: which keys to judge (default: NEEDS)."""
    out = dict(entry)
    reasons = dict(out.get(NOT_ESTIMABLE) or {})
    for measure in measures or NEEDS:
        if measure not in out:
            continue
        reason = too_few(measure, events, non_events, noisy=noisy)
        if reason is None:
            continue
        reasons[measure] = reason
        out[measure] = None
        for key in (f"{measure}_ci", f"{measure}_ci_low", f"{measure}_ci_high"):
            if key in out:
                out[key] = None
    if reasons:
        out[NOT_ESTIMABLE] = reasons
    return out
