"""Subgroups under DP (issue P): one charged release of every level's class histograms, of L2
sensitivity √(features) as the code defines levels, part of the run's plan, and the
coordinator's figures from it are those of the binned scores, with intervals that include
the noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, MessageType, RecordDict
from sklearn.metrics import roc_auc_score

from client.ledger import open_site_ledger
from client.site_policy import simulated_policy
from client.subgroup_release import level_index, subgroup_cells
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.data import load_site, site_file
from federation.core.dataspec import parse_dataset_spec
from federation.core.estimable import MIN_CLASS_ROWS
from federation.core.histogram_metrics import RELEASE_GROUPS, coarse_histograms
from federation.core.model import build_model
from federation.core.privacy import (
    SUBGROUPS,
    TEST,
    VALIDATION,
    epsilon_spent,
    run_steps,
    sample_rate,
    site_noise_for_run,
)
from federation.core.settings import RunSettings, flatten_config, model_spec
from federation.core.subgroup_histograms import released_subgroups
from federation.core.subgroups import batch_slopes
from federation.modeler.usefulness import subgroups_from_sites
from server.round_records import evaluation_record
from tests.helpers.simulated_site import send_to_site

SITE, NAME = 2, "switzerland"
FEATURES = 3  # sex, chest pain type, age bands


def _config(run: str, subgroups: bool = True, *overrides: str) -> dict:
    cfg = compose_config(["rounds=1", *overrides])
    features = {f["name"]: f for f in cfg["data"]["features"]}
    for feature in features.values():  # the embedded spec marks sex and age bands: start from none
        feature.pop("subgroup", None)
        feature.pop("subgroup_bins", None)
    if subgroups:
        features["sex"]["subgroup"] = features["cp"]["subgroup"] = True
        features["age"]["subgroup_bins"] = [55]
    return flatten_config(cfg) | {"run.output_dir": run}


def test_one_patient_moves_the_release_by_at_most_root_features_and_a_full_row_by_exactly_that():
    """Remove each test patient of a real site in turn: the exact release vector moves by at
    most √3 (one bin of one level per feature), by √3 for a row observed in all three; the
    L2 sensitivity 1 of one split's release would understate it."""
    spec = RunSettings.from_run_config(_config("r")).data
    site = load_site(site_file(spec, "cleveland"), spec, "cleveland")
    x, y = site.x_test, site.y_test
    risk = np.random.default_rng(0).random(len(y))
    _, full = subgroup_cells(x, y, risk, spec)
    moves = [
        np.linalg.norm(
            full - subgroup_cells(np.delete(x, i, 0), np.delete(y, i), np.delete(risk, i), spec)[1]
        )
        for i in range(len(y))
    ]
    assert max(moves) == pytest.approx(math.sqrt(FEATURES)) and max(moves) > 1
    assert all(m <= math.sqrt(FEATURES) + 1e-12 for m in moves)


def test_a_row_in_two_levels_of_one_feature_is_refused_not_released():
    spec = parse_dataset_spec(
        {
            "name": "t",
            "label": {"column": "y", "positive_values": [1], "negative_values": [0]},
            "features": [{"name": "cp", "type": "categorical", "levels": [1, 2, 3], "subgroup": True}],
            "sites": {"s": "s.csv"},
        }
    )
    good = np.array([[1.0, 0, 0], [0, 0, 1], [0, 0, 0], [np.nan] * 3])
    assert level_index(good, spec)["cp"][1].tolist() == [0, 2, -1, -1]  # unknown, missing: none
    with pytest.raises(RuntimeError, match="puts a row in two levels"):
        level_index(np.array([[1.0, 1, 0]]), spec)


@pytest.fixture
def level():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 300), 0.001, 0.999)
    return y, p


def _released(hists: dict, std: float) -> dict:
    return released_subgroups({"f": {lv: (h[0], h[1], std) for lv, h in hists.items()}}, resamples=100)


def test_the_coordinators_figures_of_an_exact_release_are_those_of_the_binned_scores(level):
    y, p = level
    centre = (np.minimum((p * RELEASE_GROUPS).astype(int), RELEASE_GROUPS - 1) + 0.5) / RELEASE_GROUPS

    m = _released({"a": coarse_histograms(y, p)}, 0.0)["f"]["levels"]["a"]

    assert (m["n"], m["n_positive"]) == (len(y), y.sum())
    assert m["auroc"] == pytest.approx(roc_auc_score(y, centre), abs=1e-12)
    assert m["citl"] == pytest.approx(centre.mean() - y.mean(), abs=1e-12)
    assert m["tpr"] == pytest.approx(np.mean(centre[y == 1] >= 0.5))
    assert m["fpr"] == pytest.approx(np.mean(centre[y == 0] >= 0.5))
    slope = batch_slopes(np.log(centre / (1 - centre))[None], y[None].astype(float))[0]
    assert m["calibration_slope"] == pytest.approx(slope, rel=1e-8)


def test_intervals_include_the_noise_and_gaps_come_with_them(level):
    y, p = level
    hists = {"a": coarse_histograms(y[:150], p[:150]), "b": coarse_histograms(y[150:], 1 - p[150:])}

    exact, noisy = _released(hists, 0.0)["f"], _released(hists, 5.0)["f"]

    # (the slope's fit takes the counts clipped at 0: noise flattens it, and its interval with it)
    for name in ("auroc", "citl", "tpr", "fpr"):
        width = {k: r["levels"]["a"][f"{name}_ci_high"] - r["levels"]["a"][f"{name}_ci_low"]
                 for k, r in (("exact", exact), ("noisy", noisy))}  # fmt: skip
        assert 0 < width["exact"] < width["noisy"], name
    gaps = noisy["gaps"]
    assert (
        gaps["auroc_gap"] > 0.3 and gaps["auroc_gap_ci_low"] < gaps["auroc_gap"] < gaps["auroc_gap_ci_high"]
    )


def test_a_level_the_noise_swamps_gets_undefined_figures_not_a_narrow_interval_around_noise(level):
    """40 rows (at least MIN_CLASS_ROWS of each class) under noise std 7 per bin (the default's,
    two features): a ratio of noisy sums near 0 is the noise's; control: the same rows exact
    are defined (12 rows, as this test had before the too-few floor, are too few either way)."""
    y, p = level
    rows = 40
    assert min(y[:rows].sum(), rows - y[:rows].sum()) >= MIN_CLASS_ROWS
    hist = coarse_histograms(y[:rows], p[:rows]) + np.random.default_rng(1).normal(0, 7, (2, RELEASE_GROUPS))

    noisy = _released({"a": hist}, 7.0)["f"]["levels"]["a"]
    exact = _released({"a": coarse_histograms(y[:rows], p[:rows])}, 0.0)["f"]["levels"]["a"]

    for name in ("auroc", "citl", "calibration_slope", "tpr", "fpr"):
        assert np.isnan([noisy[name], noisy[f"{name}_ci_low"], noisy[f"{name}_ci_high"]]).all(), name
        assert np.isfinite(exact[name]), name


def test_subgroups_are_a_release_of_the_plan_only_where_the_spec_marks_them():
    """A spec without subgroups plans what it always did (docs/privacy.md's table); with subgroups the one
    release shares the run's release ε with the others, and σ still keeps the whole within
    the target (its planned history composes to the target)."""
    plain, marked = (RunSettings.from_run_config(_config("r", s, "rounds=10")) for s in (False, True))
    noise = [
        site_noise_for_run(s, 169, delta=1e-5, accountant="rdp", release_share=0.5) for s in (plain, marked)
    ]
    assert noise[0].releases == {VALIDATION: 10, TEST: 1}
    assert noise[1].releases == {VALIDATION: 10, TEST: 1, SUBGROUPS: 1}
    assert noise[1].release_z[SUBGROUPS] == pytest.approx(noise[1].release_z[TEST])
    assert noise[1].release_z[TEST] > noise[0].release_z[TEST]  # three kinds share the releases' ε
    training = (noise[1].sigma, sample_rate(n_train=169, batch_size=32), run_steps(marked, 169))
    whole = epsilon_spent(noise[1].release_history + [training], delta=1e-5)
    assert whole == pytest.approx(marked.privacy.target_epsilon, rel=1e-3) and whole <= 3 * (1 + 1e-6)


def _ledger(tmp_path):
    return open_site_ledger(simulated_policy(NAME, run_folder=tmp_path), NAME, create_key=True)


@pytest.mark.usefixtures("as_the_server_process")
def test_the_test_release_carries_every_levels_noisy_histograms_once_and_the_coordinator_reads_them(
    tmp_path,
):
    config = _config(str(tmp_path / "run"))
    settings = RunSettings.from_run_config(config)
    arrays = ArrayRecord(build_model(model_spec(settings), seed=settings.seed).state_dict())

    def send(message_type: str, **asked):
        content = RecordDict(
            {wire.ARRAYS: arrays, wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1, **asked})}
        )
        return send_to_site(config, message_type, content, partition=SITE)

    send(MessageType.TRAIN)
    validation = dict(send(MessageType.EVALUATE).content[wire.METRICS])
    test = send(MessageType.EVALUATE, **{wire.EVAL_SPLIT: TEST})
    rows = len(_ledger(tmp_path).entries())
    again = send(MessageType.EVALUATE, **{wire.EVAL_SPLIT: TEST})

    assert not any(k.startswith("subgroup") for k in validation)
    metrics = dict(test.content[wire.METRICS])
    levels = {k.rsplit("/", 1)[0] for k in metrics if k.startswith(wire.SUBGROUP_PREFIX)}
    assert levels == {
        *(f"subgroup/sex={v}" for v in ("0", "1")),
        *(f"subgroup/cp={v}" for v in ("1", "2", "3", "4")),  # Switzerland's small levels too
        *(f"subgroup/age={v}" for v in ("<55", ">=55")),
    }
    assert {k.rsplit("/", 1)[1] for k in metrics if k.startswith(wire.SUBGROUP_PREFIX)} == {
        "score-hist-pos",
        "score-hist-neg",
    }  # no exact count nor any figure: the coordinator computes them
    row = next(e for e in _ledger(tmp_path).entries() if e.release.startswith(SUBGROUPS))
    assert f"L2 sensitivity {math.sqrt(FEATURES):g}" in row.release
    assert metrics[wire.SUBGROUP_NOISE_STD] == pytest.approx(row.noise_multiplier * math.sqrt(FEATURES))
    # the plan holds one: a second test message is refused before either release is spent
    assert again.has_error() and again.error.code == wire.BUDGET_REFUSED
    assert len(_ledger(tmp_path).entries()) == rows

    found = evaluation_record([test]).sites[NAME]["subgroups"]
    for feature in found.values():  # (a figure the noisy counts leave undefined is NaN, as "n/a")
        for m in feature["levels"].values():
            assert m["noise_std"] == metrics[wire.SUBGROUP_NOISE_STD]
            for name in ("auroc", "citl", "calibration_slope", "tpr", "fpr"):
                point, low, high = m[name], m[f"{name}_ci_low"], m[f"{name}_ci_high"]
                assert np.isnan(point) or low <= point <= high, (name, point, low, high)
    assert set(found["age"]["gaps"]) >= {"auroc_gap", "auroc_gap_ci_low", "equalized_odds_difference"}


@pytest.mark.usefixtures("as_the_server_process")
def test_adding_subgroups_after_the_first_training_message_is_refused_as_a_plan_change(tmp_path):
    run = str(tmp_path / "run")
    settings = RunSettings.from_run_config(_config(run, False))
    arrays = ArrayRecord(build_model(model_spec(settings), seed=settings.seed).state_dict())

    def send(config: dict, message_type: str, **asked):
        content = RecordDict(
            {wire.ARRAYS: arrays, wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1, **asked})}
        )
        return send_to_site(config, message_type, content, partition=SITE)

    assert not send(_config(run, False), MessageType.TRAIN).has_error()
    refused = send(_config(run, True), MessageType.EVALUATE, **{wire.EVAL_SPLIT: TEST})
    assert refused.has_error() and refused.error.code == wire.BUDGET_REFUSED
    assert "plan is fixed at its first training message" in refused.error.reason
    assert "subgroups=['age', 'sex', 'cp'] (was None)" in refused.error.reason, refused.error.reason
    assert [e.release for e in _ledger(tmp_path).entries() if e.is_release] == []


def test_pooled_dp_subgroups_sum_the_sites_releases_and_add_their_noise_variances(level):
    """The report's pooled levels (federation.modeler.usefulness) from the sites' records as
    metrics.jsonl keeps them: summed histograms, noise std the root of the summed variances."""
    y, p = level
    records = {
        name: released_subgroups({"f": {"a": (*coarse_histograms(y[rows], p[rows]), std)}}, resamples=50)
        for name, rows, std in (("s1", slice(0, 100), 2.0), ("s2", slice(100, 300), 3.0))
    }

    found = subgroups_from_sites(records, threshold=0.5)

    pooled = found["pooled"]["f"]["levels"]["a"]
    assert pooled["noise_std"] == pytest.approx(math.hypot(2.0, 3.0))
    assert (pooled["n"], pooled["n_positive"]) == (len(y), y.sum())
    assert pooled["auroc"] == pytest.approx(
        _released({"a": coarse_histograms(y, p)}, 0.0)["f"]["levels"]["a"]["auroc"]
    )
    assert pooled["auroc_ci_low"] < pooled["auroc"] < pooled["auroc_ci_high"]
    assert (
        set(found["sites"]) == {"s1", "s2"}
        and "score_hist_pos" not in found["sites"]["s1"]["f"]["levels"]["a"]
    )


@pytest.mark.usefixtures("as_the_server_process")
def test_a_plan_its_target_cannot_pay_is_refused_at_the_first_training_message(tmp_path):
    """ε 0.01: half of it cannot pay three releases even at z = 1000; refused as a budget
    matter (one line), before any ledger row."""
    config = _config(str(tmp_path / "run"), True, "privacy.target_epsilon=0.01")
    settings = RunSettings.from_run_config(config)
    arrays = ArrayRecord(build_model(model_spec(settings), seed=settings.seed).state_dict())
    content = RecordDict({wire.ARRAYS: arrays, wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1})})

    refused = send_to_site(config, MessageType.TRAIN, content, partition=SITE)

    assert refused.has_error() and refused.error.code == wire.BUDGET_REFUSED
    assert "refuses this run's plan: ε=0.005 is too small for 3 releases" in refused.error.reason
    assert not (tmp_path / "ledgers").exists() or _ledger(tmp_path).entries() == []
