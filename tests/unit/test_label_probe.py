"""Issue P, acceptance 1 and 2: what a hostile coordinator reads with crafted models.

**Label probe.** The coordinator trains round 1 honestly, then sends for evaluation an MLP whose
risk is ~1 for one targeted test patient (known quasi-identifiers: age, sex, trestbps, chol)
and ~0 for everyone else. From exact releases the eval loss and the positive count give the
target's label by arithmetic; from the site's DP release (one Gaussian release of the class
histograms) the best the attacker can do is compare the noisy top bins, and no attack can be
right more often than e^ε/(1+e^ε) + δ for the release's ε. 50 targets, each in a run of its own
(one test release per run), against the real ClientApp of a deployed Cleveland node.

**Age-ordered histogram probe.** A model ordered by age: the old k-grouping released the
youngest group's exact per-class counts (control); the DP release's counts are noisy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

from client.ledger import SiteLedger
from client.node_identity import NodeIdentity
from client.releases import released_score_histograms, score_groups
from federation.cli.site import load_dataset_spec
from federation.coordinator.inprocess import run_config_for
from federation.core import wire
from federation.core.data import load_site
from federation.core.histogram_metrics import RELEASE_GROUPS
from federation.core.metrics import HIST_BINS, score_histograms
from federation.core.model import ModelSpec, build_model, predict_risk
from federation.core.privacy import epsilon_spent
from federation.core.settings import RunSettings
from tests.helpers.site_nodes import deployed_node, initial_arrays, message, send, site_data_file

TARGETS = 50
QUASI_IDENTIFIERS = ("age", "sex", "trestbps", "chol")
CLIP = 1e-7  # the site clips risks before the exact log loss (federation.core.metrics._EPS)
# The attacker's accuracy is binomial over 50 targets: 3 standard deviations above the bound.
SDS = 3.0


@pytest.fixture(scope="module")
def cleveland():
    spec = load_dataset_spec("uci_heart")
    site = load_site(site_data_file("cleveland"), spec, "cleveland")
    columns = [spec.encoded_feature_names().index(name) for name in QUASI_IDENTIFIERS]
    return site, columns


def _unique_targets(x: np.ndarray, columns: list[int]) -> list[int]:
    """Test rows whose quasi-identifiers no other test row shares (the attacker's targets)."""
    keys = [tuple(row) for row in x[:, columns]]
    return [i for i, key in enumerate(keys) if keys.count(key) == 1 and not np.isnan(key).any()]


def probe_model(n_features: int, columns: list[int], target: np.ndarray) -> ArrayRecord:
    """An MLP whose logit is 20 − 1000·L1(quasi-identifiers − the target's): ReLU(x − t) and
    ReLU(t − x) per column, summed. Identity preprocessing (mean 0, std 1)."""
    hidden = 2 * len(columns)
    model = build_model(ModelSpec("mlp", n_features, hidden=hidden), seed=0)
    with torch.no_grad():
        first, last = model.head[0], model.head[3]
        first.weight.zero_()
        first.bias.zero_()
        for k, (column, value) in enumerate(zip(columns, target)):
            first.weight[2 * k, column], first.bias[2 * k] = 1.0, -float(value)
            first.weight[2 * k + 1, column], first.bias[2 * k + 1] = -1.0, float(value)
        last.weight.fill_(-1000.0)
        last.bias.fill_(20.0)
    return ArrayRecord(model.state_dict())


def _runs(tmp, *overrides: str):
    """Run i's config: ``run_config_for`` of the overrides into ``tmp/run{i}``. Composed once
    (Hydra's compose is the same for every run); only the run folder, hence the run, differs."""
    composed = run_config_for(
        ["rounds=1", "model=mlp", f"model.hidden={2 * len(QUASI_IDENTIFIERS)}", *overrides], tmp / "run0"
    )
    return lambda i: {**composed, "run.output_dir": str(tmp / f"run{i}")}


def _probe(node: dict, config: dict, arrays: ArrayRecord, **extra):
    trained, evaluated = send(
        node,
        config,
        message("train", initial_arrays(config)),
        message("evaluate", arrays, **extra),
    )
    assert not trained.has_error(), trained.error.reason
    assert not evaluated.has_error(), evaluated.error.reason
    return evaluated.content[wire.METRICS]


def _exact_guess(metrics) -> int:
    """From the exact loss: n·loss = C·(n_pos − y) + C·(1 − y), C = −log(clip)."""
    n, loss, positives = metrics[wire.N_TEST], metrics[wire.EVAL_LOSS], metrics[wire.N_POSITIVE]
    return int(n * loss < -math.log(CLIP) * positives)


def _dp_guess(metrics) -> int:
    """The best reading of the noisy histograms: the target is alone in the top released bin."""
    top = HIST_BINS // RELEASE_GROUPS
    pos, neg = (sum(metrics[key][-top:]) for key in (wire.SCORE_HIST_POS, wire.SCORE_HIST_NEG))
    return int(pos > neg) if pos != neg else int(np.random.default_rng().integers(2))


def test_label_probe_reads_every_exact_label_and_no_more_than_epsilon_allows_under_dp(tmp_path, cleveland):
    site, columns = cleveland
    targets = _unique_targets(site.x_test, columns)[:TARGETS]
    assert len(targets) == TARGETS
    n_features = site.x_test.shape[1]
    dp_node = deployed_node(tmp_path / "dp", **{"max-epsilon": 1e6})
    exact_node = deployed_node(tmp_path / "exact", **{"max-epsilon": 1e6, "require-dp": "false"})
    dp_right = exact_right = 0
    exact_config, dp_config = _runs(tmp_path / "e", "privacy=off"), _runs(tmp_path / "d")
    for i, row in enumerate(targets):
        arrays = probe_model(n_features, columns, site.x_test[row, columns])
        label = int(site.y_test[row])
        exact = _probe(exact_node, exact_config(i), arrays)
        noisy = _probe(dp_node, dp_config(i), arrays, **{wire.EVAL_SPLIT: "test"})
        exact_right += _exact_guess(exact) == label
        dp_right += _dp_guess(noisy) == label

    # control: exact releases give every targeted patient's label
    assert exact_right == TARGETS
    # DP: the release's ε, recomputed with Opacus from the ledger rows, bounds the attack
    ledger = SiteLedger(
        dp_node["ledger-path"], identity=NodeIdentity.of_key(dp_node["node-key"]), site="cleveland"
    )
    tests = [e for e in ledger.entries() if e.release.startswith("test")]
    assert len(tests) == TARGETS and len({e.noise_multiplier for e in tests}) == 1
    epsilon = epsilon_spent([tests[0].accountant_step], delta=tests[0].delta)
    bound = math.exp(epsilon) / (1 + math.exp(epsilon)) + tests[0].delta
    tolerance = SDS * math.sqrt(bound * (1 - bound) / TARGETS)
    assert dp_right / TARGETS <= bound + tolerance, (dp_right, epsilon, bound)


def test_an_age_ordered_model_gets_noisy_counts_where_the_k_grouping_gave_exact_ones(tmp_path, cleveland):
    site, columns = cleveland
    age = columns[0]
    model = build_model(ModelSpec("logreg", site.x_test.shape[1]), seed=0)
    with torch.no_grad():
        model.head[0].weight.zero_()
        model.head[0].weight[0, age] = -0.5  # younger: higher risk; identity preprocessing
        model.head[0].bias.fill_(27.0)
        model.preprocess.mean.zero_()
        model.preprocess.std.fill_(1.0)
    risk = predict_risk(model, site.x_test)

    # control: the old grouping (k = 10) releases the youngest group's exact class counts
    exact_pos, exact_neg = (np.asarray(h) for h in score_histograms(site.y_test, risk))
    start, stop = score_groups(exact_pos + exact_neg, min_cell=10)[-1]  # the youngest patients
    pos, _ = released_score_histograms(site.y_test, risk, min_cell=10)
    assert sum(pos[start:stop]) == pytest.approx(exact_pos[start:stop].sum())  # exact, per class
    assert 10 <= (exact_pos + exact_neg)[start:stop].sum() < len(site.y_test) / 2

    node = deployed_node(tmp_path / "dp")
    config = run_config_for(["rounds=1"], tmp_path / "run")
    metrics = _probe(node, config, ArrayRecord(model.state_dict()), **{wire.EVAL_SPLIT: "test"})
    released = np.asarray(metrics[wire.SCORE_HIST_POS]).reshape(RELEASE_GROUPS, -1).sum(1)
    exact = np.bincount(
        np.minimum((risk * RELEASE_GROUPS).astype(int), RELEASE_GROUPS - 1)[site.y_test == 1],
        minlength=RELEASE_GROUPS,
    )
    assert metrics[wire.RELEASE_NOISE_STD] > 1.0
    assert not np.allclose(released, exact)  # no released group holds an exact per-class count


def test_a_model_that_fails_on_some_rows_gets_a_charged_release_not_an_error(tmp_path, cleveland):
    """A crafted model whose risk is NaN for patients over 60 and 0 for the others (an overflow
    to inf − inf): an error reply would say, uncharged, whether such a patient is in the split.
    The site answers with its release like any other (the NaN risks take a fixed place)."""
    site, columns = cleveland
    age = columns[0]
    model = build_model(ModelSpec("logreg", site.x_test.shape[1]), seed=0)
    with torch.no_grad():
        model.head[0].weight.zero_()
        model.head[0].weight[0, age] = float(np.finfo(np.float32).max) / 60.5
        model.head[0].bias.fill_(-float("inf"))
        model.preprocess.mean.zero_()
        model.preprocess.std.fill_(1.0)
    risk = predict_risk(model, site.x_test)
    assert np.isnan(risk).any() and not np.isnan(risk).all()  # the probe is real

    node = deployed_node(tmp_path / "dp")
    config = run_config_for(["rounds=1"], tmp_path / "run")
    metrics = _probe(node, config, ArrayRecord(model.state_dict()), **{wire.EVAL_SPLIT: "test"})

    assert metrics[wire.RELEASE_NOISE_STD] > 1.0
    ledger = SiteLedger(node["ledger-path"], identity=NodeIdentity.of_key(node["node-key"]), site="cleveland")
    # the run's one subgroup release (charged first) where its spec marks subgroups, then the test's
    planned = (["subgroups"] if RunSettings.from_run_config(config).data.subgroup_features else []) + ["test"]
    assert [e.release.split(" ")[0] for e in ledger.entries() if e.is_release] == planned
