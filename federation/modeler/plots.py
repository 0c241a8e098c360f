"""The report's figures as PNG bytes (matplotlib, headless): rounds curve, ROC, calibration."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the report is built on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from federation.core.metrics import ECE_BINS  # noqa: E402

Predictions = dict[str, tuple[np.ndarray, np.ndarray]]
_DPI = 100


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=_DPI)
    plt.close(fig)
    return buffer.getvalue()


def rounds_curve(records: list[dict[str, Any]]) -> bytes:
    """Mean train loss, pooled test loss and pooled AUROC per round."""
    rounds = [r["round"] for r in records]
    train = [np.nanmean([t.get("loss") or np.nan for t in r["train"].values()] or [np.nan]) for r in records]
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


def calibration_plot(predictions: Predictions) -> bytes:
    """Observed event rate against mean predicted risk in equal-width bins."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, (y, p) in predictions.items():
        observed, predicted = calibration_curve(y, p, n_bins=ECE_BINS, strategy="uniform")
        ax.plot(predicted, observed, marker="o", label=name, linewidth=2.5 if name == "pooled" else 1.2)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set(xlabel="predicted risk", ylabel="observed rate", title="Calibration", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)
