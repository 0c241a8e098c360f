"""Review A4: the evaluate reply's test histogram and each subgroup level's histogram are
k-grouped. Grouped separately, an interval whose edges are edges of both the total's and level
A's groups gives level B's count there as total − A, under k (honest model, random data).
Grouped on one shared partition, no such interval holds fewer than k of any level."""

from __future__ import annotations

import numpy as np
import pytest

from client.releases import released_score_histograms
from client.subgroups import shared_test_histograms, site_subgroups
from federation.core import wire
from federation.core.dataspec import parse_dataset_spec
from federation.core.metrics import HIST_BINS

K = 10
SPEC = parse_dataset_spec(
    {
        "name": "t",
        "label": {"column": "y", "positive_values": [1], "negative_values": [0]},
        "features": [{"name": "sex", "type": "binary", "subgroup": True}],
        "sites": {"s": "s.csv"},
    }
)


def _site(seed: int, n: int = 150):
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 5, n)
    return (rng.random(n) < p).astype(int), p, (rng.random(n) < 0.6).astype("float64")[:, None]


def _edges(pos, neg) -> set[int]:
    """Group edges as a coordinator reads them off a released (evenly spread) histogram."""
    same = np.isclose(pos[1:], pos[:-1]) & np.isclose(neg[1:], neg[:-1])
    return {0, HIST_BINS} | {b for b in range(1, HIST_BINS) if not same[b - 1]}


def _leaks(overall, levels) -> list[tuple[str, int, int, float]]:
    """Level counts under k (not 0) got as total − other level on an interval between
    consecutive edges shared by the total's and that other level's groups."""
    tot, found = np.add(*overall), []
    for a, b in (("0", "1"), ("1", "0")):
        common = sorted(_edges(*overall) & _edges(*levels[a]))
        for s, e in zip(common, common[1:]):
            derived = round(tot[s:e].sum() - np.add(*levels[a])[s:e].sum(), 6)
            if 0 < derived < K:
                found.append((b, s, e, derived))
    return found


def _released(y, p, x, *, shared: bool):
    sub = site_subgroups(x, y, p, SPEC, min_cell=K, threshold=0.5, seed=1, resamples=5)["sex"]["levels"]
    if set(sub) != {"0", "1"} or "score_hist_pos" not in sub["0"]:
        return None
    if shared:  # the evaluate reply: the test histogram on the partition shared with the levels'
        hist = shared_test_histograms(x, y, p, SPEC, min_cell=K)
        overall = (np.array(hist[wire.SCORE_HIST_POS]), np.array(hist[wire.SCORE_HIST_NEG]))
        levels = {lv: (np.array(m["score_hist_pos"]), np.array(m["score_hist_neg"])) for lv, m in sub.items()}
    else:  # control: the old release, each histogram k-grouped on its own
        overall = tuple(np.array(h) for h in released_score_histograms(y, p, min_cell=K))
        masks = {lv: x[:, 0] == float(lv) for lv in sub}
        levels = {
            lv: tuple(np.array(h) for h in released_score_histograms(y[m], p[m], min_cell=K))
            for lv, m in masks.items()
        }
    return overall, levels


@pytest.mark.parametrize("shared", [True, False])
def test_level_counts_under_k_come_back_only_from_separate_groupings(shared):
    leaking, tried = 0, 0
    for seed in range(40):
        y, p, x = _site(seed)
        released = _released(y, p, x, shared=shared)
        if released is None:
            continue
        tried += 1
        leaking += bool(_leaks(*released))

    assert tried >= 20
    assert (leaking == 0) if shared else (leaking > 0)


def test_the_shared_partition_holds_k_of_the_total_and_of_every_level_in_each_group():
    for seed in range(10):
        y, p, x = _site(seed)
        released = _released(y, p, x, shared=True)
        if released is None:
            continue
        overall, levels = released
        edges = sorted(_edges(*overall))
        assert all(_edges(*h) <= set(edges) for h in levels.values())
        for s, e in zip(edges, edges[1:]):
            for hist in (overall, *levels.values()):
                assert np.add(*hist)[s:e].sum() >= K - 1e-9
        assert np.add(*overall).sum() == pytest.approx(len(y))
        assert np.array(overall[0]).sum() == pytest.approx(y.sum())


def test_without_level_histograms_the_test_histogram_keeps_its_own_grouping():
    y, p, _ = _site(0)
    x = np.ones((len(y), 1))  # one level only: its histogram would be the site's, none is sent

    assert shared_test_histograms(x, y, p, SPEC, min_cell=K) == {}
