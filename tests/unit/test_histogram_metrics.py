"""Metrics from class histograms (the post-processing of a DP release) are scikit-learn's on
the binned scores; the interval and standard errors widen with the release's noise; selection
and the registry bar read a noisy validation value as no better and no worse than its noise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from federation.coordinator.campaign_record import Bar
from federation.core import wire
from federation.core.histogram_metrics import RELEASE_GROUPS, coarse_histograms, histogram_wire_metrics
from federation.core.records import Evaluation, RoundRecord
from server.selection import select


@pytest.fixture
def scored():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 400), 0.001, 0.999)
    return y, p


def test_exact_histograms_give_scikit_learns_metrics_of_the_binned_scores(scored):
    y, p = scored
    centre = (np.minimum((p * RELEASE_GROUPS).astype(int), RELEASE_GROUPS - 1) + 0.5) / RELEASE_GROUPS

    got = histogram_wire_metrics(coarse_histograms(y, p), n=len(y), noise_std=0.0, with_ci=False)

    assert got[wire.AUROC] == pytest.approx(roc_auc_score(y, centre), abs=1e-12)
    assert got[wire.AUPRC] == pytest.approx(average_precision_score(y, centre), abs=1e-12)
    assert got[wire.BRIER] == pytest.approx(brier_score_loss(y, centre), abs=1e-12)
    assert got[wire.EVAL_LOSS] == pytest.approx(log_loss(y, centre), abs=1e-12)
    assert got[wire.N_POSITIVE] == y.sum() and got[wire.N_TEST] == len(y)
    assert got[wire.SENSITIVITY] == pytest.approx(np.mean(centre[y == 1] >= 0.5))
    assert sum(got[wire.SCORE_HIST_POS]) == pytest.approx(y.sum())


def test_the_interval_holds_the_estimate_and_widens_with_the_noise(scored):
    y, p = scored
    hist = coarse_histograms(y, p)
    rng = np.random.default_rng(0)
    widths = []
    for std in (0.0, 3.0, 10.0):
        noisy = hist + rng.normal(0, std, hist.shape)
        got = histogram_wire_metrics(noisy, n=len(y), noise_std=std, rng=np.random.default_rng(1))
        assert got[wire.AUROC_CI_LOW] <= got[wire.AUROC] <= got[wire.AUROC_CI_HIGH]
        widths.append(got[wire.AUROC_CI_HIGH] - got[wire.AUROC_CI_LOW])
    assert widths[0] < widths[1] < widths[2]


def _record(server_round: int, loss: float, se: float) -> RoundRecord:
    pooled = {"loss": loss} | ({"loss_se": se} if se else {})
    return RoundRecord(round=server_round, validation=Evaluation(pooled=pooled), aggregated=["a"])


def test_selection_prefers_a_later_round_the_noise_cannot_tell_from_the_best():
    exact = [_record(1, 0.50, 0), _record(2, 0.45, 0), _record(3, 0.46, 0)]
    noisy = [_record(1, 0.50, 0.05), _record(2, 0.45, 0.05), _record(3, 0.46, 0.05)]
    clear = [_record(1, 0.50, 0.001), _record(2, 0.45, 0.001), _record(3, 0.46, 0.001)]

    assert select(exact, "loss").round == 2  # exact numbers: the best
    assert select(noisy, "loss").round == 3  # within the noise of the best: trained more
    assert select(clear, "loss").round == 2  # precise releases act as exact ones


def test_the_registry_bar_refuses_only_a_model_below_it_by_more_than_its_noise():
    assert not Bar(0.55).reached(0.6)
    assert Bar(0.55, se=0.05).reached(0.6)  # 0.55 + 1.645·0.05 > 0.6
    assert not Bar(0.40, se=0.05).reached(0.6)
