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


def rounds_curve(records: list[dict[str, Any]]) -> bytes:
    """Mean train loss, pooled test loss and pooled AUROC per round."""
    rounds = [r["round"] for r in records]
    train = [_mean_of_known([t.get("loss") for t in r["train"].values()]) for r in records]
    pooled = [r["evaluate"].get("pooled", {}) for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(rounds, train, marker="o", label="train loss (mean of sites)")
    left.plot(rounds, [p.get("loss") for p in pooled], marker="s", label="test loss (pooled)")
    left.set(xlabel="round", ylabel="loss", title="Loss per round")
    left.legend(fontsize=8)
    right.plot(rounds, [p.get("auroc") for p in pooled], marker="o", color="tab:green")
    right.set(xlabel="round", ylabel="AUROC", title="Pooled test AUROC per round", ylim=(0.4, 1.0))
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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


def _net_benefit_plot(
    lines: list[tuple[str, dict[str, Any], dict[str, Any]]], reference: dict, title: str
) -> bytes:
    """Net benefit curves (label, curve, line style) against ``reference``'s treat-all and
    treat-none, on one axis scaled to the best curve."""
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for label, curve, style in lines:
        ax.plot(curve["threshold"], curve["model"], label=label, **style)
    ax.plot(reference["threshold"], reference["treat_all"], linestyle="--", color="grey", label="treat all")
    ax.plot(reference["threshold"], reference["treat_none"], linestyle=":", color="grey", label="treat none")
    top = max([*(max(curve["model"]) for _, curve, _ in lines), max(reference["treat_all"]), 0.01])
    ax.set(xlabel="threshold risk", ylabel="net benefit", title=title)
    ax.set(xlim=(0, 1), ylim=(-0.05 * top * 4, top * 1.1))
    ax.legend(fontsize=7, loc="upper right")
    return _png(fig)


def decision_curves(curves: dict[str, Any]) -> bytes:
    """Net benefit against threshold per site and pooled, with treat-all and treat-none."""
    pooled = curves["pooled"]
    sites = [(name, curve, {"linewidth": 1.0, "alpha": 0.8}) for name, curve in curves["sites"].items()]
    lines = [*sites, ("pooled model", pooled, {"linewidth": 2.5, "color": "black"})]
    return _net_benefit_plot(lines, pooled, "Decision curves (test rows)")


def compared_decision_curves(curves: dict[str, Any]) -> bytes:
    """Pooled net benefit of each model (role -> curve) against treat-all and treat-none."""
    lines = [(name, curve, {"linewidth": 2.0}) for name, curve in curves.items()]
    return _net_benefit_plot(lines, next(iter(curves.values())), "Decision curves, pooled (test rows)")


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
