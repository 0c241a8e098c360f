"""The report's decision-curve and rounds figures say what they show (issue T.4): each site's
treat-all from its own prevalence (dcurves on that site's rows), thresholds up to where the
data has patients to treat, "federated model, all sites" (not "pooled model"), a caption that
explains net benefit; the loss figure's legend names only drawn lines, the validation loss
that chose the round is drawn and the selected round marked, and no RuntimeWarning leaks.

The figures are read from matplotlib's objects (``plots._png`` kept from closing them)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from dcurves import dca

from federation.core.decision_curve import GRID
from federation.core.metrics import HIST_BINS, score_histograms
from federation.modeler import plots, report
from federation.modeler.usefulness import curves

SITES = {"low": (400, 0.08), "high": (200, 0.45)}


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plots module draws, left open for the test to read."""
    figures = []
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or b"")
    yield figures
    for fig in figures:
        plots.plt.close(fig)


def _rows(seed: int = 5) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, (n, prevalence) in SITES.items():
        y = (rng.random(n) < prevalence).astype(int)
        bins = np.clip(np.round(rng.normal(15 + 25 * y, 8)), 0, HIST_BINS - 1)
        out[name] = (y, (bins + 0.5) / HIST_BINS)  # at bin centres: the grid is exact
    return out


def _lines(ax) -> dict[str, np.ndarray]:
    return {line.get_label(): np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()}


def test_each_site_is_drawn_against_its_own_treat_all_from_dcurves_on_its_rows(drawn):
    rows = _rows()
    plots.decision_curves(curves({name: score_histograms(y, p) for name, (y, p) in rows.items()}))
    lines = _lines(drawn[0].axes[0])

    for name, (y, p) in rows.items():
        frame = pd.DataFrame({"y": y, "risk": p})
        reference = dca(data=frame, outcome="y", modelnames=["risk"], thresholds=GRID)
        expected = reference[reference["model"] == "all"].sort_values("threshold")["net_benefit"]
        np.testing.assert_allclose(lines[f"treat all ({name})"], expected.to_numpy(), atol=1e-9)
    assert "federated model, all sites" in lines and "pooled model" not in lines


def test_the_thresholds_stop_where_under_one_percent_of_patients_would_be_treated(drawn):
    rows = _rows()
    plots.decision_curves(curves({name: score_histograms(y, p) for name, (y, p) in rows.items()}))
    limit = drawn[0].axes[0].get_xlim()[1]
    risk = np.concatenate([p for _, p in rows.values()])

    assert limit < 1.0
    assert (risk >= limit).mean() < 0.01 <= (risk >= limit - 0.05).mean()


def test_the_report_explains_the_decision_curves_and_the_marked_round():
    page = report._img("Decision curves", b"png") + report._img("Rounds", b"png")

    assert "net benefit" in page and "treat all" in page and "own prevalence" in page
    assert "round handed out" in page


def _records(train_loss):
    return [
        {
            "round": r,
            "train": {"a": {"loss": train_loss}, "b": {"loss": train_loss}},
            "evaluate": {"pooled": {"auroc": 0.7 + r / 100, "loss": None if r != 2 else 0.55}},
            "validation": {"pooled": {"auroc": 0.72 + r / 100, "loss": 0.6 - r / 100}},
        }
        for r in (1, 2, 3)
    ]


def test_under_dp_the_loss_legend_names_only_drawn_lines_with_validation_and_the_round(drawn):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no 'Mean of empty slice' leaks
        plots.rounds_curve(_records(train_loss=None), {"round": 2, "metric": "loss"})
    left = drawn[0].axes[0]
    legend = [text.get_text() for text in left.get_legend().get_texts()]
    lines = _lines(left)

    assert not any("train" in label for label in legend)
    np.testing.assert_allclose(lines["validation loss (pooled)"], [0.59, 0.58, 0.57])
    assert "selected round 2" in legend
    assert set(legend) <= set(lines)


def test_without_dp_the_train_loss_is_drawn_and_named(drawn):
    plots.rounds_curve(_records(train_loss=0.5), {"round": 3})
    legend = [text.get_text() for text in drawn[0].axes[0].get_legend().get_texts()]

    assert "train loss (mean of sites)" in legend and "selected round 3" in legend
