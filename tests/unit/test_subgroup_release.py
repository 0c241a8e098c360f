"""What a site releases about subgroups: only aggregate keys, nothing under k, no complement."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from client.app import app as client_app
from client.subgroups import from_wire, released_levels, site_subgroups, subgroup_wire_metrics
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.dataspec import parse_dataset_spec
from federation.core.errors import ConfigError
from federation.core.metrics import HIST_BINS
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config
from server.federation_loop import model_spec

LEVEL_KEYS = {
    "n", "n-positive", "mean-risk", "score-hist-pos", "score-hist-neg",
    *(f"{m}{s}" for m in ("auroc", "citl", "calibration-slope", "tpr", "fpr")
      for s in ("", "-ci-low", "-ci-high")),
}  # fmt: skip
GAP_KEYS = {
    f"{g}{s}"
    for g in ("auroc-gap", "citl-gap", "slope-gap", "tpr-gap", "fpr-gap", "equalized-odds-difference")
    for s in ("", "-ci-low", "-ci-high")
}


def _run_config(subgroups: bool, *overrides: str) -> dict:
    """A run (by default without DP: subgroups are released only as exact aggregates, in a run
    the simulated site allows without DP) whose spec marks sex and age bands, or nothing."""
    cfg = compose_config(["rounds=1", *(overrides or ("privacy=off",))])
    features = {f["name"]: f for f in cfg["data"]["features"]}
    for feature in features.values():  # the embedded spec marks sex and age bands: none, or these
        feature.pop("subgroup", None)
        feature.pop("subgroup_bins", None)
    if subgroups:
        features["sex"]["subgroup"] = True
        features["age"]["subgroup_bins"] = [55]
    return flatten_config(cfg)


pytestmark = pytest.mark.usefixtures("as_the_server_process")  # tests/unit/conftest.py


def _ask(run_config: dict, message_type: str) -> Message:
    settings = RunSettings.from_run_config(run_config)
    arrays = ArrayRecord(build_model(model_spec(settings), seed=settings.seed).state_dict())
    content = RecordDict({wire.ARRAYS: arrays, wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1})})
    message = Message(content, dst_node_id=7, message_type=message_type)
    context = Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": 0, "lhsfed-mode": "simulation"},
        state=RecordDict(),
        run_config=run_config,
    )
    return client_app(message, context)


def test_evaluate_reply_adds_only_subgroup_aggregates_and_only_with_subgroups_in_the_spec():
    plain, marked = _run_config(False), _run_config(True)
    _ask(plain, MessageType.TRAIN)
    before = dict(_ask(plain, MessageType.EVALUATE).content[wire.METRICS])
    reply = dict(_ask(marked, MessageType.EVALUATE).content[wire.METRICS])

    assert not any(k.startswith(("subgroup", "val-subgroup")) for k in before)
    extra = {k: v for k, v in reply.items() if k not in before}
    assert set(reply) - set(extra) == set(before)
    groups = {k.rsplit("/", 1)[0] for k in extra if k.startswith(wire.SUBGROUP_PREFIX)}
    assert groups == {"subgroup/sex=0", "subgroup/sex=1", "subgroup/age=<55", "subgroup/age=>=55"}
    for key, value in extra.items():
        prefix, name = key.rsplit("/", 1)
        assert name in (LEVEL_KEYS if prefix in groups else GAP_KEYS), key
        if isinstance(value, list):
            assert name.startswith("score-hist") and len(value) == HIST_BINS
        else:
            assert isinstance(value, (int, float))
    parsed = from_wire(reply)
    assert sum(parsed["sex"]["levels"][lv]["n"] for lv in ("0", "1")) <= reply[wire.N_TEST]


def test_under_dp_a_validation_release_carries_no_subgroup():
    """Under DP subgroups are one release of their own, with the test split's
    (tests/unit/test_dp_subgroups.py): a validation release carries none."""
    marked = _run_config(True, "privacy=dp")
    _ask(marked, MessageType.TRAIN)
    reply = dict(_ask(marked, MessageType.EVALUATE).content[wire.METRICS])
    assert reply and not any(k.startswith(("subgroup", "val-subgroup")) for k in reply)


def test_a_level_under_k_is_suppressed_with_enough_others_that_subtraction_gives_nothing():
    y = np.array([0] * 30 + [1] * 30 + [0] * 20 + [1] * 20 + [0] * 12 + [1] * 3)
    masks = {
        "a": np.arange(len(y)) < 60,
        "b": (np.arange(len(y)) >= 60) & (np.arange(len(y)) < 100),
        "c": np.arange(len(y)) >= 100,  # 3 positives: under k = 10
    }
    assert released_levels(y, masks, min_cell=10) == ["a"]  # b hides with c: 23 positives together
    assert released_levels(y, masks, min_cell=3) == ["a", "b", "c"]
    # Control: releasing a and b alone would give c's positives back as total - a - b.
    assert int(y.sum()) - int(y[masks["a"]].sum()) - int(y[masks["b"]].sum()) == 3


def test_rows_missing_the_feature_count_as_a_hidden_cell():
    y = np.array([0, 1] * 40 + [1] * 4)
    masks = {"0": np.arange(84) < 40, "1": (np.arange(84) >= 40) & (np.arange(84) < 80)}
    # 4 missing rows (all positive): one level hides with them, so the missing count stays unknown
    assert len(released_levels(y, masks, min_cell=10)) == 1
    assert released_levels(y[:80], {k: m[:80] for k, m in masks.items()}, min_cell=10) == ["0", "1"]


def test_site_subgroups_without_subgroup_features_is_empty():
    spec = parse_dataset_spec(_spec_raw())
    x, y, p = np.zeros((50, 1)), np.zeros(50), np.full(50, 0.3)
    assert subgroup_wire_metrics(site_subgroups(x, y, p, spec, min_cell=5, threshold=0.5, seed=1)) == {}


def _spec_raw(**feature):
    return {
        "name": "t",
        "label": {"column": "y", "positive_values": [1], "negative_values": [0]},
        "features": [{"name": "age", "type": "numeric", **feature}],
        "sites": {"s": "s.csv"},
    }


@pytest.mark.parametrize(
    ("feature", "says"),
    [
        ({"subgroup": True}, "feature 'age': subgroup: true needs a binary or categorical"),
        ({"subgroup_bins": [65, 40]}, "feature 'age': subgroup_bins must be strictly increasing"),
        ({"type": "binary", "subgroup_bins": [1]}, "feature 'age': subgroup_bins is for numeric"),
    ],
)
def test_bad_subgroup_settings_are_refused_in_one_line_naming_the_feature(feature, says):
    with pytest.raises(ConfigError, match=says):
        parse_dataset_spec(_spec_raw(**feature))


def test_level_histograms_go_out_only_when_no_row_of_the_feature_is_hidden():
    """The site's test histogram minus its released levels' would be the hidden rows'."""
    spec = parse_dataset_spec(
        {**_spec_raw(), "features": [{"name": "sex", "type": "binary", "subgroup": True}]}
    )
    rng = np.random.default_rng(0)
    p = rng.random(200)
    y = (rng.random(200) < p).astype(int)
    x = (np.arange(200) % 2).astype("float32")[:, None]
    every = site_subgroups(x, y, p, spec, min_cell=10, threshold=0.5, seed=1, resamples=10)
    x_missing = x.copy()
    x_missing[:30] = np.nan  # 30 rows missing sex: hidden (>= k of each class), levels released
    some = site_subgroups(x_missing, y, p, spec, min_cell=10, threshold=0.5, seed=1, resamples=10)

    assert all("score_hist_pos" in m for m in every["sex"]["levels"].values())
    assert set(some["sex"]["levels"]) == {"0", "1"}
    assert not any("score_hist_pos" in m for m in some["sex"]["levels"].values())
