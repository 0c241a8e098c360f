"""The promotion rule over several measures (issue T, 8): the pooled comparison's figures are
scikit-learn's / numpy's formulas on the binned scores, the pooled difference's interval
covers the true difference at about its rate under DP noise, and a challenger that gains
AUROC but loses calibration fails on calibration, with the reason, on the console and the page."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from client.comparison import comparison_metrics
from federation.core import wire
from federation.core.histogram_metrics import RELEASE_GROUPS, coarse_histograms, spread
from federation.core.metrics import HIST_BINS
from federation.core.promotion_rule import PromotionRule, judge
from server.comparison import pooled_comparison, site_comparison, site_measures

THRESHOLD = 0.3


def _reply(metrics: dict):
    return SimpleNamespace(content={wire.METRICS: metrics})


def _site(rng, n, sharp: bool):
    """Labels, a calibrated champion and a challenger that separates better but is
    overconfident (its risks pushed away from 0.5: higher AUROC, worse ECE) when ``sharp``."""
    y = rng.integers(0, 2, n)
    signal = 1.2 * (y - 0.5) + rng.normal(0, 1.0, n)
    champion = 1 / (1 + np.exp(-signal))
    better = signal + 0.8 * (y - 0.5) + rng.normal(0, 0.3, n)  # more signal: higher AUROC
    challenger = 1 / (1 + np.exp(-(4.0 if sharp else 1.0) * better))
    return y, champion, challenger


def _binned(p):
    """The wire bins' centre risks (the binned model the histograms describe)."""
    return (np.minimum((p * HIST_BINS).astype(int), HIST_BINS - 1) + 0.5) / HIST_BINS


def _ece(y, p):
    edges = np.minimum((p * 10).astype(int), 9)
    return sum(abs(p[edges == b].sum() - y[edges == b].sum()) for b in range(10)) / len(y)


def _net_benefit(y, p, t):
    called = p >= t
    n = len(y)
    return (called & (y == 1)).sum() / n - (called & (y == 0)).sum() / n * t / (1 - t)


@pytest.fixture(scope="module")
def sharp_sites():
    rng = np.random.default_rng(7)
    return [_site(rng, n, sharp=True) for n in (400, 350, 300)]


@pytest.fixture(scope="module")
def sharp_document(sharp_sites):
    replies = [_reply(comparison_metrics(y, old, new, min_cell=1, seed=1)) for y, old, new in sharp_sites]
    return {
        "task": "t",
        "champion": {"version": "1", "source": "registry:t@champion"},
        "challenger": {"version": "2", "source": "registry:t@challenger"},
        "sites": {
            f"s{i}": site_comparison(r.content[wire.METRICS]) | {"measures": site_measures(r, THRESHOLD)}
            for i, r in enumerate(replies)
        },
        "refused": {},
        "pooled": pooled_comparison(replies, THRESHOLD),
    }


def test_pooled_measures_are_the_formulas_on_the_binned_scores(sharp_sites, sharp_document):
    y = np.concatenate([s[0] for s in sharp_sites])
    old, new = (_binned(np.concatenate([s[k] for s in sharp_sites])) for k in (1, 2))
    pooled = sharp_document["pooled"]
    measures = pooled["measures"]

    truth = roc_auc_score(y, new) - roc_auc_score(y, old)
    assert pooled["auroc_difference"] == pytest.approx(truth, abs=1e-9)
    low, high = pooled["auroc_difference_ci"]
    assert low < pooled["auroc_difference"] < high and high - low < 0.1
    assert measures["ece"]["champion"] == pytest.approx(_ece(y, old), abs=1e-9)
    assert measures["ece"]["challenger"] == pytest.approx(_ece(y, new), abs=1e-9)
    for role, p in (("champion", old), ("challenger", new)):
        assert measures["net_benefit"][role] == pytest.approx(_net_benefit(y, p, THRESHOLD), abs=1e-9)
    assert pooled["threshold"] == THRESHOLD


def test_a_challenger_better_on_auroc_but_worse_calibrated_fails_on_calibration(sharp_document):
    pooled = sharp_document["pooled"]
    assert pooled["auroc_difference"] > 0.02  # it discriminates better
    assert pooled["measures"]["ece"]["difference"] > 0.05  # and is clearly worse calibrated

    verdict = judge(sharp_document, PromotionRule())
    outcome = {part.name: part.passed for part in verdict.parts}

    assert not verdict.passed
    assert outcome["auroc"] and not outcome["calibration"]
    (finding,) = [f for f in verdict.findings if "ECE" in f and "site" not in f]
    assert "pooled ECE" in finding and "> margin 0.02" in finding
    assert verdict.lines()[-1] == "overall: FAIL"
    # before this rule (AUROC only) the same comparison passed
    assert judge(sharp_document, PromotionRule(ece_margin=1.0, net_benefit_margin=1.0)).parts[0].passed


def test_a_site_blocks_on_any_measure_and_small_sites_are_named_not_silently_passed():
    def row(auroc_ci, ece_ci, nb_ci):
        return {
            "n_test": 60,
            "auroc_difference": sum(auroc_ci) / 2,
            "difference_ci": list(auroc_ci),
            "measures": {
                "ece": {"difference": sum(ece_ci) / 2, "difference_ci": list(ece_ci)},
                "net_benefit": {"difference": sum(nb_ci) / 2, "difference_ci": list(nb_ci)},
            },
        }

    measures = {
        "ece": {"champion": 0.05, "challenger": 0.05, "difference": 0.0, "difference_ci": [-0.01, 0.01]},
        "net_benefit": {
            "champion": 0.1,
            "challenger": 0.1,
            "difference": 0.0,
            "difference_ci": [-0.01, 0.01],
        },
    }
    document = {
        "sites": {
            "big": row((0.0, 0.04), (0.03, 0.06), (-0.01, 0.01)),  # ECE rose beyond 0.02: blocks
            "cleveland": row((-0.2, 0.15), (-0.05, 0.1), (-0.12, 0.05)),  # too small to tell
        },
        "pooled": {"auroc_difference": 0.01, "auroc_difference_ci": [-0.01, 0.03], "measures": measures},
    }
    verdict = judge(document, PromotionRule())

    assert not verdict.passed and not verdict.parts[-1].passed
    assert verdict.findings == ["site big: ECE difference CI [+0.0300, +0.0600] entirely above 0.02"]
    (note,) = verdict.too_small
    assert note.startswith("site cleveland on AUROC (CI [-0.2000, +0.1500] wider than 0.2), ECE (")
    assert "net benefit (CI [-0.1200, +0.0500] wider than 0.1)" in note
    assert any(line.startswith("too small to tell: site cleveland on AUROC") for line in verdict.lines())


def test_a_comparison_made_before_the_rule_fails_on_the_parts_it_lacks():
    old = {"sites": {}, "pooled": {"champion_auroc": 0.8, "challenger_auroc": 0.81, "auroc_difference": 0.01}}
    verdict = judge(old, PromotionRule())
    assert [p.passed for p in verdict.parts] == [True, False, False, True]
    assert "run lhsfed compare again" in verdict.text()


def test_the_pooled_difference_interval_covers_the_true_difference_at_its_rate_under_dp():
    """Four small hospitals' noisy compare releases (std 4 per bin, both models in one release):
    the pooled difference's interval holds the exact difference of the binned models' pooled
    AUROC in about 95 % of releases (conservative on the sampling part: the models' pairing is
    not in the histograms); one that ignored the noise holds it far less often."""
    rng = np.random.default_rng(11)
    sites = [_site(rng, n, sharp=False) for n in (91, 88, 37, 61)]
    y = np.concatenate([s[0] for s in sites])
    coarse = [
        (
            np.minimum(
                (np.concatenate([s[k] for s in sites]) * RELEASE_GROUPS).astype(int), RELEASE_GROUPS - 1
            )
            + 0.5
        )
        / RELEASE_GROUPS
        for k in (1, 2)
    ]
    truth = roc_auc_score(y, coarse[1]) - roc_auc_score(y, coarse[0])
    covered, noiseless, trials = 0, 0, 200
    for _ in range(trials):
        replies = []
        for site_y, old, new in sites:
            metrics = {wire.RELEASE_NOISE_STD: 4.0}
            for prefix, risk in ((wire.CHAMPION_PREFIX, old), (wire.CHALLENGER_PREFIX, new)):
                noisy = coarse_histograms(site_y, risk) + rng.normal(0, 4.0, (2, RELEASE_GROUPS))
                metrics[prefix + wire.SCORE_HIST_POS] = spread(noisy[0])
                metrics[prefix + wire.SCORE_HIST_NEG] = spread(noisy[1])
            replies.append(_reply(metrics))
        low, high = pooled_comparison(replies)["auroc_difference_ci"]
        covered += low <= truth <= high
        exact = [_reply(r.content[wire.METRICS] | {wire.RELEASE_NOISE_STD: 0.0}) for r in replies]
        low0, high0 = pooled_comparison(exact)["auroc_difference_ci"]
        noiseless += low0 <= truth <= high0
    assert 0.9 <= covered / trials <= 0.99, covered  # 0.94 at this seed
    assert noiseless / trials < covered / trials - 0.1, (noiseless, covered)


def test_the_page_and_the_console_state_pass_or_fail_per_part(sharp_document):
    from federation.cli.compare import table
    from federation.modeler.comparison_page import render

    page = render(sharp_document)
    lines = table(sharp_document)

    assert "<h2>Promotion rule</h2>" in page and "Overall: FAIL" in page
    for part, outcome in (("auroc", "pass"), ("calibration", "FAIL")):
        assert f"<td>{part}</td><td><b>{outcome}</b></td>" in page
        assert any(line.startswith(f"{part}: {outcome}: ") for line in lines)
    assert lines[-1] == "overall: FAIL"
    low, high = sharp_document["pooled"]["auroc_difference_ci"]
    assert f"[{low:.3f}, {high:.3f}] (pooled)" in "\n".join(lines)


def test_a_site_whose_release_the_noise_decides_neither_blocks_nor_vouches():
    """A 37-row DP site at the default query-epsilon (noise std about 11 per bin; 13.5 here): its
    released AUROC difference CI once came out [-1.24, -0.58] and blocked a promotion. Its
    split is small against the noise on public numbers alone, so it keeps its figures, loses
    its intervals, is named as too small to tell, and blocks nothing."""
    rng = np.random.default_rng(3)
    y, old, new = _site(rng, 37, sharp=False)
    metrics = comparison_metrics(y, old, new, min_cell=1, seed=1) | {
        wire.DIFFERENCE_CI_LOW: -1.24,
        wire.DIFFERENCE_CI_HIGH: -0.58,
        wire.RELEASE_NOISE_STD: 13.5,
    }
    reply = _reply(metrics)
    document = {
        "sites": {"switzerland": site_comparison(metrics) | {"measures": site_measures(reply, THRESHOLD)}},
        "refused": {},
        "pooled": pooled_comparison([reply], THRESHOLD),
    }

    entry = document["sites"]["switzerland"]
    assert "too_noisy" in entry and all(np.isnan(entry["difference_ci"]))
    verdict = judge(document, PromotionRule())
    assert {p.name: p.passed for p in verdict.parts}["sites"]
    assert any(note.startswith("site switzerland: 37 test rows") for note in verdict.too_small)
    # control: the same interval from a site whose split outweighs its noise blocks
    large = site_comparison(metrics | {wire.RELEASE_NOISE_STD: 0.5})
    assert "too_noisy" not in large
    blocked = judge({**document, "sites": {"switzerland": large}}, PromotionRule())
    assert not {p.name: p.passed for p in blocked.parts}["sites"]
