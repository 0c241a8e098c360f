"""Update validation: the pure checks, and the wrapper around real Flower strategies."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord
from flwr.serverapp.strategy import FedAdam, FedAvg, FedMedian

from federation.core import wire
from strategies.validated import ValidatedStrategy
from strategies.validation import norm_bound, screen, update_norm
from tests.helpers.faulty_client import corrupt
from tests.helpers.replies import global_arrays, numpy_arrays, train_reply, trained

GOOD_SITES = [("cleveland", 11, 212), ("hungary", 12, 205), ("switzerland", 13, 86)]


class _NoGrid:
    """configure_train asks the grid for node ids; the wrapper test needs three."""

    def get_node_ids(self):
        return [11, 12, 13, 14]


def _strategy(inner_cls=FedAvg, **kwargs) -> ValidatedStrategy:
    inner = inner_cls(weighted_by_key=wire.NUM_EXAMPLES, min_available_nodes=1, **kwargs)
    return ValidatedStrategy(inner, norm_factor=10.0, min_train_nodes=2)


def _round_replies(reference, bad_kind: str | None):
    replies = [train_reply(s, node, trained(reference, seed=node), n) for s, node, n in GOOD_SITES]
    if bad_kind:
        bad = corrupt(bad_kind, numpy_arrays(reference), trained(reference, seed=99))
        replies.append(train_reply("va", 14, bad, 140))
    return replies


def _aggregate(strategy: ValidatedStrategy, reference, replies):
    strategy.configure_train(1, reference, ConfigRecord(), _NoGrid())
    arrays, _ = strategy.aggregate_train(1, replies)
    return numpy_arrays(arrays)


@pytest.mark.parametrize(
    "kind, reason", [("nan", "non-finite"), ("scale", "update norm"), ("shape", "shape")]
)
def test_fedavg_with_a_broken_site_equals_fedavg_without_it(kind, reason):
    reference = global_arrays()

    with_bad = _strategy()
    got = _aggregate(with_bad, reference, _round_replies(reference, kind))
    expected = _aggregate(_strategy(), reference, _round_replies(reference, None))

    assert [r.site for r in with_bad.rejected] == ["va"]
    assert reason in with_bad.rejected[0].reason
    assert with_bad.aggregated_sites == ["cleveland", "hungary", "switzerland"]
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_aggregation_does_not_depend_on_reply_order():
    reference = global_arrays()
    replies = _round_replies(reference, None)

    forward = _aggregate(_strategy(), reference, replies)
    backward = _aggregate(_strategy(), reference, _round_replies(reference, None)[::-1])

    for key in forward:
        np.testing.assert_array_equal(forward[key], backward[key])


def test_too_few_usable_updates_keep_the_global_model():
    reference = global_arrays()
    replies = _round_replies(reference, "nan")[2:]  # switzerland + a NaN site

    strategy = _strategy()
    strategy.configure_train(1, reference, ConfigRecord(), _NoGrid())
    arrays, metrics = strategy.aggregate_train(1, replies)

    assert arrays is None and metrics is None
    assert strategy.aggregated_sites == []
    assert [r.site for r in strategy.rejected] == ["va"]


def test_wrapped_median_and_fedadam_aggregate_what_survives():
    reference = global_arrays()
    for inner in (FedMedian, FedAdam):
        strategy = _strategy(inner)
        arrays = _aggregate(strategy, reference, _round_replies(reference, "scale"))
        assert all(np.isfinite(v).all() for v in arrays.values())
        # FedOpt computes in float64; the global model must stay float32 for the next round.
        assert {v.dtype for v in arrays.values()} == {np.dtype("float32")}
        assert [r.site for r in strategy.rejected] == ["va"]


def test_norm_bound_uses_the_low_median_so_two_sites_suffice():
    assert norm_bound([1.0, 1000.0], factor=10.0, max_norm=None) == 10.0
    assert norm_bound([1.0, 2.0, 3.0, 4000.0], factor=5.0, max_norm=None) == 10.0
    assert norm_bound([1.0, 2.0], factor=10.0, max_norm=3.5) == 3.5
    assert norm_bound([], factor=10.0, max_norm=None) == float("inf")


def test_screen_names_every_problem():
    reference = {"w": np.zeros((2, 2), "float32"), "b": np.zeros(2, "float32")}
    ok = {"w": np.full((2, 2), 0.1, "float32"), "b": np.full(2, 0.1, "float32")}
    updates = [
        ok,
        ok,
        {**ok, "w": np.zeros((3, 2), "float32")},
        {**ok, "b": np.zeros(2, "float64")},
        {"w": ok["w"]},
        {**ok, "b": np.array([np.inf, 0.0], "float32")},
        {k: v * 1000 for k, v in ok.items()},
    ]

    reasons = screen(updates, reference, factor=10.0, max_norm=None)

    assert reasons[:2] == [None, None]
    assert "shape [3, 2]" in reasons[2]
    assert "dtype float64" in reasons[3]
    assert "missing ['b']" in reasons[4]
    assert "1 non-finite" in reasons[5]
    assert "exceeds the round's bound" in reasons[6]


def test_update_norm_is_the_l2_norm_of_the_difference():
    reference = {"a": np.zeros(3, "float32"), "b": np.ones(1, "float32")}
    update = {"a": np.array([3.0, 0.0, 0.0], "float32"), "b": np.array([5.0], "float32")}
    assert update_norm(update, reference) == pytest.approx(5.0)
