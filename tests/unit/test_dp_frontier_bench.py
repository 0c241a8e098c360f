"""``make bench-frontier BENCH_ARGS=--quick``: the DP frontier's structure, from real runs.

uci_heart, one seed, a 2-config grid at rounds=2, ε = 3 and 1 (about 25 s). The chosen config
must be the one of lowest exact pooled validation loss among those tried (with one seed, stage 3
runs nothing more), and every number must be what the run's own ``model.pt`` scores on the
sites' validation and test rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmarks import benchmark_set as bs
from benchmarks.dp_frontier import defaults
from benchmarks.dp_frontier import main as frontier
from federation.core.model import predict_risk
from federation.modeler.run_loader import load_saved_model
from tests.helpers.bench_smoke import quick_run


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return quick_run(frontier, tmp_path_factory, "frontier")


def test_quick_table_has_every_cell_and_its_goal(quick):
    out, results = quick
    text = (out / "dp_frontier.md").read_text()
    assert json.loads((out / "dp_frontier.json").read_text()) == json.loads(json.dumps(results))
    assert results["complete"] and results["seeds"] == [42]
    assert list(results["datasets"]) == ["uci_heart"]
    assert list(results["datasets"]["uci_heart"]["cells"]) == ["3", "1"]
    assert "| uci_heart | 3 | `" in text and "| uci_heart | 1 | `" in text
    assert "≥ −0.01: " in text and "≥ −0.02: " in text
    assert "Smoke run (`--quick`)" in text and "load at start" in text and "not a product path" in text


def test_chosen_is_lowest_validation_loss_and_numbers_are_the_models_own(quick):
    _, results = quick
    sites = bs.sites(bs.by_name(["uci_heart"])[0], 42)
    x_val = np.concatenate([s.x_val for s in sites])
    y_val = np.concatenate([s.y_val for s in sites]).astype("float64")
    y_test = np.concatenate([s.y_test for s in sites])
    for key, cell in results["datasets"]["uci_heart"]["cells"].items():
        grid = cell["grid"]
        assert len(grid) == cell["selection_runs"] == 2
        assert {t["config"]["lr"] for t in grid} == {defaults()["lr"], 0.3}
        assert {t["config"]["rounds"] for t in grid} == {2}
        best = min(grid, key=lambda t: t["validation_loss_exact"])
        final = min(cell["finalists"], key=lambda f: f["validation_loss_exact_mean"])
        assert cell["chosen"] == best["config"] == final["config"]  # one seed: the mean is that seed's
        assert {f["label"] for f in cell["finalists"]} == {t["label"] for t in grid}
        assert cell["frontier"][0]["run_dir"] == best["run_dir"]
        assert (
            cell["defaults_runs"][0]["run_dir"]
            == next(t for t in grid if t["config"] == cell["defaults"])["run_dir"]
        )
        for row in grid:
            run = Path(row["run_dir"])
            summary = json.loads((run / "summary.json").read_text())
            model = load_saved_model(run / "model.pt").model
            p = np.clip(predict_risk(model, x_val).astype("float64"), 1e-12, 1 - 1e-12)
            loss = -np.mean(y_val * np.log(p) + (1 - y_val) * np.log(1 - p))
            assert row["validation_loss_exact"] == pytest.approx(loss, abs=1e-12)
            risk = np.concatenate([predict_risk(model, s.x_test) for s in sites])
            assert row["auroc"] == pytest.approx(roc_auc_score(y_test, risk), abs=1e-12)
            assert summary["selection"]["round"] == row["selected_round"] <= summary["rounds"] <= 2
            assert summary["privacy"]["sites"] and all(
                0 < e <= float(key) + 1e-6 for e in row["epsilon"].values()
            )
            assert row["epsilon"] == {s: v["epsilon"] for s, v in summary["privacy"]["sites"].items()}


def _part(datasets: dict, seeds=(42, 43, 44), complete=True) -> dict:
    return {
        "command": f"python -m benchmarks.dp_frontier --datasets {' '.join(datasets)}",
        "machine": {"load (uptime)": "start"},
        "load_after": "end",
        "seeds": list(seeds),
        "epsilons": [3.0, 1.0],
        "factors": {"lr": {"key": "train.lr", "levels": [0.03, 0.3]}},
        "quick": False,
        "complete": complete,
        "wall_s": 60.0,
        "datasets": datasets,
    }


def test_combine_joins_complete_runs_of_one_grid_and_refuses_others():
    from benchmarks.dp_frontier import combine

    joined = combine([_part({"a": {"cells": {}}}), _part({"b": {"cells": {}}})])
    assert list(joined["datasets"]) == ["a", "b"] and joined["wall_s"] == 120.0
    assert joined["command"].count("&") == 1 and joined["part_walls_s"] == [60.0, 60.0]
    with pytest.raises(SystemExit, match="another grid, seeds or ε, or it stopped early"):
        combine([_part({"a": {}}), _part({"b": {}}, seeds=(42,))])
    with pytest.raises(SystemExit, match="stopped early"):
        combine([_part({"a": {}}), _part({"b": {}}, complete=False)])
