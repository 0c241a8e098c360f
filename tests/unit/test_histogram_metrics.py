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
from federation.core.settings import EarlyStoppingSettings
from server.selection import rounds_without_improvement, select, should_stop


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


def _stops(values: list[tuple[float, float]], patience: int, improvement: str) -> list[bool]:
    """should_stop after each round of ``values`` (loss, se)."""
    records = [_record(r, loss, se) for r, (loss, se) in enumerate(values, start=1)]
    rules = EarlyStoppingSettings(patience=patience, improvement=improvement)
    return [should_stop(records[:taken], "loss", rules) for taken in range(1, len(records) + 1)]


def test_noise_that_cannot_tell_rounds_apart_stops_a_run_only_when_improvement_must_be_clear():
    """The deployment walk-through's releases (two sites of ~40 validation rows: loss ± ~1):
    ``tie`` hands out the last round and never stops; ``clear`` stops after ``patience``."""
    noisy = [(0.50, 1.1), (0.20, 1.2), (0.90, 1.1), (0.05, 1.0)]

    assert _stops(noisy, 1, "tie") == [False] * 4
    assert _stops(noisy, 1, "clear") == [False, True, True, True]
    assert rounds_without_improvement([_record(1, 0.5, 1.1), _record(2, 0.2, 1.2)], "loss", "clear") == 1


def test_a_clear_improvement_restarts_the_patience_and_moves_the_reference_only_then():
    precise = [(0.50, 0.01), (0.30, 0.01), (0.31, 0.01)]
    assert _stops(precise, 1, "clear") == [False, False, True]  # round 3 is no better than 2
    assert _stops(precise, 1, "tie") == [False, False, False]  # round 3 is within 2's noise
    # 0.4 and 0.3 are each within 1.645·√2·0.1 ≈ 0.23 of 0.5 (the reference stays); 0.2 is not
    creeping = [(0.50, 0.1), (0.40, 0.1), (0.30, 0.1), (0.20, 0.1)]
    records = [_record(r, loss, se) for r, (loss, se) in enumerate(creeping, start=1)]
    assert [rounds_without_improvement(records[:n], "loss", "clear") for n in (1, 2, 3, 4)] == [0, 1, 2, 0]


def test_exact_values_stop_alike_whatever_counts_as_an_improvement():
    exact = [(0.50, 0), (0.45, 0), (0.46, 0), (0.45, 0), (0.47, 0)]

    assert _stops(exact, 2, "tie") == _stops(exact, 2, "clear") == [False, False, False, True, True]


def test_the_registry_bar_refuses_only_a_model_below_it_by_more_than_its_noise():
    assert not Bar(0.55).reached(0.6)
    assert Bar(0.55, se=0.05).reached(0.6)  # 0.55 + 1.645·0.05 > 0.6
    assert not Bar(0.40, se=0.05).reached(0.6)


def _site_histograms(rng, sizes):
    """Each site's exact coarse histograms of a model that separates the classes moderately."""
    sites = []
    for n in sizes:
        y = rng.integers(0, 2, n)
        p = np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.2, n), 0.001, 0.999)
        sites.append((y, p))
    return sites


def test_the_pooled_interval_covers_the_exact_pooled_auroc_at_its_stated_rate():
    """Four small hospitals' noisy test releases (std 4, as at ε = 3 with the default share):
    the pooled interval the coordinator reports holds the exact pooled AUROC of the binned
    scores in about 95 % of releases, and an interval that ignored the noise would not."""
    from server.round_records import pooled_evaluation

    rng = np.random.default_rng(11)
    sites = _site_histograms(rng, [91, 88, 37, 61])
    y = np.concatenate([s[0] for s in sites])
    centre = np.concatenate(
        [(np.minimum((p * RELEASE_GROUPS).astype(int), RELEASE_GROUPS - 1) + 0.5) for _, p in sites]
    )
    exact = roc_auc_score(y, centre / RELEASE_GROUPS)
    covered, sampling_only, widths, undefined = 0, 0, [], 0
    trials = 200
    for _ in range(trials):
        replies = []
        for site_y, site_p in sites:
            noisy = coarse_histograms(site_y, site_p) + rng.normal(0, 4.0, (2, RELEASE_GROUPS))
            # the site's own standard errors are not needed here (noise_std=0 skips them)
            metrics = histogram_wire_metrics(noisy, n=len(site_y), noise_std=0.0, with_ci=False)
            replies.append(metrics | {wire.RELEASE_NOISE_STD: 4.0})
        pooled = pooled_evaluation(replies)
        if "auroc_ci" not in pooled:  # a class total within its noise: reported undefined
            undefined += 1
            continue
        low, high = pooled["auroc_ci"]
        covered += low <= exact <= high
        widths.append(high - low)
        exact_counts = [m | {wire.RELEASE_NOISE_STD: 1e-9} for m in replies]
        low0, high0 = pooled_evaluation(exact_counts)["auroc_ci"]
        sampling_only += low0 <= exact <= high0
    assert undefined <= 0.02 * trials, undefined
    defined = trials - undefined
    assert 0.9 <= covered / defined <= 0.995, (covered, defined)
    assert sampling_only / defined < covered / defined - 0.1, (sampling_only, covered)
    assert np.median(widths) > 0.2  # at this noise the pooled AUROC is known to about ±0.2 (0.41 wide)


def test_exact_releases_get_no_pooled_noise_interval(scored):
    from server.round_records import pooled_evaluation

    y, p = scored
    exact = histogram_wire_metrics(coarse_histograms(y, p), n=len(y), noise_std=0.0, with_ci=False)
    assert "auroc_ci" not in pooled_evaluation([exact | {wire.RELEASE_NOISE_STD: 0.0}])


def test_a_pooled_auroc_the_noise_decides_is_reported_undefined_and_never_refuses_a_version():
    """The four UCI sites' validation releases (about 33 rows each, noise std 12.5 per bin):
    131 rows against a class total's noise std of 112, so the pooled AUROC is not reported
    whichever way the noise fell (it came out 0.0 ± 0.14 for a 0.89 model once, and the
    registry bar refused the version); the bar then registers it unchecked."""
    from federation.coordinator.campaign_record import bar_of
    from server.round_records import pooled_evaluation

    rng = np.random.default_rng(5)
    replies = []
    for site_y, site_p in _site_histograms(rng, [34, 34, 15, 48]):
        noisy = coarse_histograms(site_y, site_p) + rng.normal(0, 12.5, (2, RELEASE_GROUPS))
        metrics = histogram_wire_metrics(noisy, n=len(site_y), noise_std=12.5, with_ci=False, rng=rng)
        replies.append(metrics | {wire.RELEASE_NOISE_STD: 12.5})

    pooled = pooled_evaluation(replies)

    assert np.isnan(pooled["auroc"]) and pooled["auroc_undefined"] == "noise"
    assert "auroc_ci" not in pooled and "auroc_se" not in pooled
    validation = {"auroc": pooled["auroc"], "loss_se": pooled["loss_se"], "n_test": pooled["n_test"]}
    bar = bar_of({"selection": {"validation": validation}})
    assert bar.undefined and bar.reached(0.6)
