"""``lhsfed evaluate --baselines`` trains the baselines as the federation trained the model it
handed out (issue T.7): the epochs of the rounds up to that round, not the plan's, and under DP
the ε each site's training had spent by then (the pooled model: the largest), checked with
Opacus's own RDP accountant on the sites' round records; evaluation.json says what they trained.

Small synthetic sites, no federation run: the round records are what DP sites would write."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from federation.coordinator.flwr_app_config import compose_config
from federation.core.data import SiteData
from federation.core.privacy import noise_for_run, sample_rate, steps_per_epoch
from federation.core.records import RoundRecord
from federation.core.settings import RunSettings, flatten_config, model_spec
from federation.modeler.run_evaluation import EvalOptions, baseline_section

PLANNED, HANDED_OUT = 5, 2
SITE_DELTA = {"a": 1e-5, "b": 1e-4}


def _site(name: str, n: int, seed: int, n_features: int) -> SiteData:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features)).astype("float32")
    y = (rng.random(n) < 1 / (1 + np.exp(-x[:, 0]))).astype("float32")
    return SiteData(name, x[: n - 60], y[: n - 60], x[n - 60 :], y[n - 60 :])


def _records(settings: RunSettings, sites: list[SiteData]) -> list[RoundRecord]:
    """What each DP site records per round: its σ (planned over the run), rate and steps."""
    batch, epochs = settings.train.batch_size, settings.train.local_epochs
    train = {
        s.name: {
            "noise_multiplier": noise_for_run(
                settings, len(s.y_train), delta=settings.privacy.delta, accountant="rdp"
            ),
            "sample_rate": sample_rate(n_train=len(s.y_train), batch_size=batch),
            "steps": epochs * steps_per_epoch(n_train=len(s.y_train), batch_size=batch),
            "delta": SITE_DELTA[s.name],  # each site accounts at its own δ
        }
        for s in sites
    }
    # a site's "steps" is its run's steps so far (its ledger), as client.app replies
    return [
        RoundRecord(round=r, train={site: {**t, "steps": t["steps"] * r} for site, t in train.items()})
        for r in range(1, PLANNED + 1)
    ]


def _opacus_epsilon(train: dict, rounds: int, delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = [(train["noise_multiplier"], train["sample_rate"], train["steps"] * rounds)]
    return accountant.get_epsilon(delta)


@pytest.fixture(scope="module")
def matched():
    settings = RunSettings.from_run_config(flatten_config(compose_config([f"rounds={PLANNED}"])))
    assert settings.privacy.enabled
    width = model_spec(settings).n_features
    sites = [_site("a", 260, 1, width), _site("b", 200, 2, width)]
    records = _records(settings, sites)
    checkpoint = SimpleNamespace(spec=model_spec(settings), round=HANDED_OUT)
    base = baseline_section(
        settings, checkpoint, sites, {"a": 0.7, "b": 0.7, "pooled": 0.7}, EvalOptions(resamples=10), records
    )
    return settings, records, base


def test_the_baselines_train_the_rounds_up_to_the_model_handed_out(matched):
    settings, _, base = matched

    assert base["epochs"] == HANDED_OUT * settings.train.local_epochs
    assert base["trained"]["rounds"] == HANDED_OUT and base["trained"]["rounds_planned"] == PLANNED


def test_each_local_only_baseline_spends_what_its_site_had_spent_by_then(matched):
    settings, records, base = matched
    spent = {site: _opacus_epsilon(t, HANDED_OUT, SITE_DELTA[site]) for site, t in records[0].train.items()}
    assert records[HANDED_OUT - 1].train["a"]["steps"] == HANDED_OUT * records[0].train["a"]["steps"]

    for site, epsilon in base["local_only"]["epsilon"].items():
        assert epsilon == pytest.approx(spent[site], rel=0.01)
        assert epsilon < 0.8 * settings.privacy.target_epsilon  # not the plan's whole target
    assert base["pooled_centralized"]["epsilon"] == pytest.approx(max(spent.values()), rel=0.01)
    assert base["trained"]["site_training_epsilon"] == pytest.approx(spent, rel=1e-6)
    assert base["trained"]["site_delta"] == SITE_DELTA
