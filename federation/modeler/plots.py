"""The report's figures as PNG bytes (matplotlib, headless): rounds, ROC, calibration, decision curves."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the report is built on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from federation.core.decision_curve import threshold_limit  # noqa: E402

Predictions = dict[str, tuple[np.ndarray, np.ndarray]]
_DPI = 100


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=_DPI)
    plt.close(fig)
    return buffer.getvalue()


def _mean_of_known(values: list[float | None]) -> float:
    """Mean of the values a site sent; NaN (a gap in the curve) when none did, as under DP,
    where train loss is not released, without numpy's empty-slice warning."""
    known = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(known)) if known else float("nan")


def _as_float(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _plot_drawn(ax, x: list[int], y: list[float | None], **style) -> bool:
    """Plot a per-round line only if some round has a value: a legend entry for a line never
    drawn (train loss under DP) told a reader of a curve that is not there (issue T.4)."""
    values = _as_float(y)
    if not np.isfinite(values).any():
        return False
    ax.plot(x, values, **style)
    return True


def rounds_curve(records: list[dict[str, Any]], selection: dict[str, Any] | None = None) -> bytes:
    """Loss and AUROC per round: pooled validation (what chose the round), pooled test (shown
    only), mean train loss where sites released it; the selected round marked."""
    rounds = [r["round"] for r in records]
    train = [_mean_of_known([t.get("loss") for t in r["train"].values()]) for r in records]
    test = [r["evaluate"].get("pooled", {}) for r in records]
    val = [(r.get("validation") or {}).get("pooled", {}) for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    _plot_drawn(left, rounds, train, marker="o", label="train loss (mean of sites)")
    _plot_drawn(left, rounds, [v.get("loss") for v in val], marker="^", label="validation loss (pooled)")
    _plot_drawn(left, rounds, [t.get("loss") for t in test], marker="s", label="test loss (pooled)")
    left.set(xlabel="round", ylabel="loss", title="Loss per round")
    _plot_drawn(right, rounds, [v.get("auroc") for v in val], marker="^", label="validation (pooled)")
    _plot_drawn(
        right, rounds, [t.get("auroc") for t in test], marker="o", color="tab:green", label="test (pooled)"
    )
    right.set(xlabel="round", ylabel="AUROC", title="Pooled AUROC per round", ylim=(0.4, 1.0))
    chosen = (selection or {}).get("round")
    for ax in (left, right):
        if chosen is not None:
            ax.axvline(chosen, linestyle=":", color="black", label=f"selected round {chosen}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _png(fig)


def _has_both_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def roc_curves(predictions: Predictions) -> bytes:
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, (y, p) in predictions.items():
        if _has_both_classes(y):
            fpr, tpr, _ = roc_curve(y, p)
            ax.plot(fpr, tpr, label=name, linewidth=2.5 if name == "pooled" else 1.2)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC on held-out test rows")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


Line = tuple[str, dict[str, Any], dict[str, Any], str | None]


def _net_benefit_plot(lines: list[Line], title: str) -> bytes:
    """Net benefit curves (label, curve, line style, its patients' name or None), each named one
    with its own treat-all (its patients' prevalence, dashed, same colour), and treat-none;
    thresholds up to where the first curve treats almost nobody (``threshold_limit``)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for label, curve, style, patients in lines:
        (line,) = ax.plot(curve["threshold"], curve["model"], label=label, **style)
        if patients:
            ax.plot(
                curve["threshold"], curve["treat_all"], linestyle="--", color=line.get_color(),
                linewidth=0.8, label=f"treat all ({patients})",
            )  # fmt: skip
    reference = lines[0][1]
    ax.plot(reference["threshold"], reference["treat_none"], linestyle=":", color="grey", label="treat none")
    limit = threshold_limit(reference)
    shown = [np.array(c["model"])[np.array(c["threshold"]) <= limit] for _, c, _, _ in lines]
    top = max([*(float(np.nanmax(v)) for v in shown if np.isfinite(v).any()), 0.01])
    top = max(top, *(max(c["treat_all"]) for _, c, _, _ in lines))
    ax.set(xlabel="threshold risk t (treat if risk ≥ t)", ylabel="net benefit", title=title)
    ax.set(xlim=(0, limit), ylim=(-0.05 * top * 4, top * 1.1))
    ax.legend(fontsize=6, loc="upper right")
    return _png(fig)


DECISION_CURVE_NOTE = (
    "Decision curves: net benefit = TP/n − FP/n · t/(1 − t) of treating those with risk ≥ t; "
    "the model helps at t where its curve lies above both treat all (dashed: the same patients' "
    "own prevalence) and treat none; thresholds shown up to where under 1 % of patients would "
    "be treated"
)


def decision_curves(curves: dict[str, Any]) -> bytes:
    """Net benefit against threshold: the federated model on all sites' test rows together
    (not a pooled, centralized model) and at each site, each against its own treat-all."""
    sites = [(name, c, {"linewidth": 1.0, "alpha": 0.8}, name) for name, c in curves["sites"].items()]
    everyone = (
        "federated model, all sites",
        curves["pooled"],
        {"linewidth": 2.5, "color": "black"},
        "all sites",
    )
    lines: list[Line] = [everyone, *sites]
    return _net_benefit_plot(lines, "Decision curves (test rows)")


def compared_decision_curves(curves: dict[str, Any]) -> bytes:
    """Net benefit of each model (role -> curve) on all sites' test rows together."""
    lines: list[Line] = [
        (name, curve, {"linewidth": 2.0}, "all sites" if i == 0 else None)  # the same patients
        for i, (name, curve) in enumerate(curves.items())
    ]
    return _net_benefit_plot(lines, "Decision curves, all sites (test rows)")


def quantile_calibration_plot(calibration: dict[str, Any]) -> bytes:
    """Observed rate (95% Wilson interval) against mean risk in equal-count bins."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, cal in calibration.items():
        observed, predicted = np.array(cal["observed"]), np.array(cal["predicted"])
        errors = np.clip([observed - np.array(cal["low"]), np.array(cal["high"]) - observed], 0, None)
        ax.errorbar(
            predicted, observed, yerr=errors, marker="o", capsize=2, label=name,
            linewidth=2.5 if name == "pooled" else 1.0, markersize=4 if name == "pooled" else 3,
        )  # fmt: skip
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="predicted risk", ylabel="observed rate", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("Calibration: equal-count bins, 95% Wilson intervals", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def forest_plot(result: dict[str, Any], label: str = "AUROC", shown: list[str] | None = None) -> bytes:
    """Each site's estimate with its 95 % interval, the random-effects summary (diamond: its
    CI) and the prediction interval for a new site (bar), from
    ``federation.modeler.heterogeneity.random_effects``; ``shown``: the sites drawn (at scale
    the extremes, federation.modeler.site_view; the summary is over every site)."""
    names = [n for n in result["sites"] if shown is None or n in shown]
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * (len(names) + 3) + 0.8))
    z = 1.959963984540054
    back = (lambda x: 1 / (1 + np.exp(-x))) if result["scale"] == "logit" else (lambda x: x)
    forward = (lambda p: np.log(p / (1 - p))) if result["scale"] == "logit" else (lambda x: x)
    for row, name in enumerate(names):
        site = result["sites"][name]
        centre = forward(np.clip(site["estimate"], 1e-3, 1 - 1e-3))
        low, high = back(centre - z * site["se"]), back(centre + z * site["se"])
        y = len(names) - row + 1
        ax.plot([low, high], [y, y], color="black", linewidth=1)
        ax.plot(site["estimate"], y, "s", color="black", markersize=4 + 10 * result["weights"][name])
    low, high = result["ci"]
    ax.fill([low, result["summary"], high, result["summary"]], [0.5, 0.8, 0.5, 0.2], color="tab:blue")
    if result.get("prediction_interval"):
        p_low, p_high = result["prediction_interval"]
        ax.plot([p_low, p_high], [0.5, 0.5], color="tab:blue", linewidth=1, linestyle="--")
    ax.set_yticks([0.5, *range(len(names) + 1, 1, -1)], ["summary (RE)", *names])
    ax.axvline(result["summary"], color="tab:blue", linewidth=0.6, alpha=0.5)
    ax.set_xlabel(f"{label} (95 % CI; dashed: 95 % prediction interval)")
    drawn = "" if len(names) == result["k"] else f", {len(names)} of {result['k']} sites drawn"
    ax.set_title(f"{label} per site, I² = {100 * result['i2']:.0f} %{drawn}")
    return _png(fig)
