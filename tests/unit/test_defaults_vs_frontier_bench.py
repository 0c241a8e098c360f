"""benchmarks/defaults_vs_frontier.py: the defaults it runs are lhsfed-train's (lr from ε), and
its verdicts are issue Q's goals (pure parts; the runs themselves are benchmarks.dp_frontier.run)."""

from __future__ import annotations

import pytest

from benchmarks import benchmark_set as bs
from benchmarks.defaults_vs_frontier import defaults_overrides, render, verdicts


@pytest.mark.parametrize(("epsilon", "lr"), [(3.0, 0.1), (1.0, 0.1 / 3)])
def test_the_defaults_run_is_the_launchers_config_with_only_the_epsilon_set(tmp_path, epsilon, lr):
    dataset = bs.by_name(["uci_heart"])[0]
    flat = bs.run_config(dataset, defaults_overrides(epsilon), 42, tmp_path)
    assert flat["train.lr"] == pytest.approx(lr)
    assert flat["privacy.target_epsilon"] == epsilon and flat["privacy.enabled"] is True


def _run(auroc: float, slope: float) -> dict:
    return {"auroc": auroc, "slope": slope, "epsilon": {"a": 1.0}}


def _cell(epsilon: float, defaults: list[float], frontier: list[float], slope: float) -> dict:
    return {
        "dataset": "d",
        "epsilon": epsilon,
        "lr": 0.1,
        "defaults_runs": [_run(a, slope) for a in defaults],
        "frontier": [_run(a, 1.0) for a in frontier],
        "frontier_label": "f",
        "stored_defaults": [_run(a, 1.0) for a in defaults],
        "stored_defaults_label": "s",
    }


def test_goals_are_the_issues_gap_and_slope_bounds():
    at_3 = verdicts(_cell(3.0, [0.80, 0.78], [0.80, 0.79], slope=0.5))  # gap −0.005, slope out
    assert at_3["gap"] == pytest.approx(-0.005) and at_3["auroc_ok"] and at_3["slope_ok"] is False
    at_1 = verdicts(_cell(1.0, [0.70, 0.70], [0.73, 0.72], slope=0.5))  # gap −0.025: missed
    assert not at_1["auroc_ok"] and at_1["slope_ok"] is None  # no slope goal at ε = 1
    inside = verdicts(_cell(3.0, [0.8], [0.8], slope=1.39))
    assert inside["auroc_ok"] and inside["slope_ok"]


def test_the_table_says_missed_where_a_goal_is_missed():
    results = {
        "command": "c",
        "frontier_command": "f",
        "machine": {"cpu": "x", "cores": 2, "memory": "1 GiB", "load (uptime)": "l"},
        "load_after": "l",
        "seeds": [42],
        "wall_s": 1.0,
        "cells": {"d@1": _cell(1.0, [0.70], [0.73], slope=1.0), "d@3": _cell(3.0, [0.8], [0.8], slope=1.0)},
    }
    text = render(results)
    assert text.count("**MISSED**") == 1 and "AUROC goals met in 1 of 2" in text
    assert "slope at ε = 3 in range on 1 of 1" in text
