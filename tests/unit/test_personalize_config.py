"""personalize's config (one line for a bad value), its place in the run's noise plan, and the
'worse' rule of personalization.json (several measures, per mode: issue T.3)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.errors import ConfigError
from federation.core.privacy import epsilon_spent, noise_for_run, planned_steps, sample_rate
from federation.core.settings import RunSettings, flatten_config
from server.personalization import is_worse, site_entry, worse_reasons, worse_rule


def _settings(*overrides: str) -> RunSettings:
    return RunSettings.from_run_config(flatten_config(compose_config(["rounds=2", *overrides])))


def test_a_bad_personalize_value_is_one_line_naming_the_key_and_the_choices():
    with pytest.raises(ConfigError) as err:
        _settings("personalize=sometimes")

    assert str(err.value) == "personalize='sometimes' is unknown; choose one of none, recalibrate, finetune"


def test_a_bad_personalize_steps_value_names_the_key():
    with pytest.raises(ConfigError, match="personalize_steps must be >= 1"):
        _settings("personalize=finetune", "personalize_steps=0")


def test_the_run_noise_covers_rounds_and_fine_tuning_steps_at_the_target():
    tuned, plain, n = _settings("personalize=finetune", "personalize_steps=7"), _settings(), 200
    rate = sample_rate(n_train=n, batch_size=tuned.train.batch_size)
    rounds = planned_steps(n_train=n, batch_size=tuned.train.batch_size, local_epochs=1, rounds=2)

    sigma = noise_for_run(tuned, n, delta=1e-5, accountant="rdp")
    weak = noise_for_run(plain, n, delta=1e-5, accountant="rdp")

    assert epsilon_spent([(sigma, rate, rounds + 7)], delta=1e-5) <= tuned.privacy.target_epsilon
    assert epsilon_spent([(weak, rate, rounds + 7)], delta=1e-5) > tuned.privacy.target_epsilon
    assert noise_for_run(replace(tuned, personalize="recalibrate"), n, delta=1e-5, accountant="rdp") == weak


def _model(auroc, low, high):
    return {"auroc": auroc, "auroc_ci": [low, high]}


@pytest.mark.parametrize(
    ("personalized", "worse"),
    [
        (_model(0.80, 0.70, 0.90), False),  # same
        (_model(0.785, 0.69, 0.88), True),  # 0.015 lower: past the 0.01 margin
        (_model(0.795, 0.69, 0.89), False),  # 0.005 lower: within the margin
        (_model(0.60, 0.55, 0.68), True),  # CI entirely below the global one
        (_model(float("nan"), float("nan"), float("nan")), False),  # undefined: no claim
    ],
)
def test_worse_flag(personalized, worse):
    assert is_worse(_model(0.80, 0.70, 0.90), personalized, "finetune") is worse


def _reply(auroc: tuple[float, float], slope: tuple[float, float], brier: tuple[float, float]) -> dict:
    """A personalize reply under the wire keys (global, personalized)."""
    out = {wire.N_TEST: 120}
    for i, prefix in enumerate((wire.GLOBAL_PREFIX, wire.PERSONALIZED_PREFIX)):
        out |= {
            prefix + "auroc": auroc[i],
            prefix + "auroc-ci-low": auroc[i] - 0.08,
            prefix + "auroc-ci-high": auroc[i] + 0.08,
            prefix + "calibration-slope": slope[i],
            prefix + "calibration-intercept": 0.0,
            prefix + "brier": brier[i],
        }
    return out


def test_a_recalibration_that_spoils_calibration_is_flagged_with_its_reasons():
    """The issue's va: slope 0.95 → 1.66, Brier 0.130 → 0.142, AUROC the same (the old rule,
    AUROC only, could not fire for recalibrate)."""
    entry = site_entry(_reply((0.74, 0.74), (0.95, 1.66), (0.130, 0.142)), "recalibrate")

    assert entry["worse"] is True
    assert entry["worse_reasons"] == ["Brier 0.130 → 0.142", "calibration slope 0.95 → 1.66"]


def test_a_recalibration_is_not_flagged_for_an_auroc_change_it_cannot_make():
    """The issue's switzerland: Brier 0.183 → 0.101 and an AUROC lower by binning only."""
    entry = site_entry(_reply((0.70, 0.68), (0.60, 0.95), (0.183, 0.101)), "recalibrate")

    assert entry["worse"] is False and entry["worse_reasons"] == []
    assert "AUROC not judged" in worse_rule("recalibrate") and "Brier" in worse_rule("recalibrate")


def test_fine_tuning_is_judged_on_auroc_too():
    reasons = worse_reasons(
        {"auroc": 0.80, "auroc_ci": [0.7, 0.9], "brier": 0.15, "calibration_slope": 1.0},
        {"auroc": 0.75, "auroc_ci": [0.65, 0.85], "brier": 0.15, "calibration_slope": 1.05},
        "finetune",
    )

    assert reasons == ["AUROC 0.800 → 0.750"]


def test_a_recalibration_refused_on_its_validation_rows_says_validation_only(tmp_path):
    """The issue's switzerland message said 'too few test rows … (validation split)'."""
    import numpy as np

    from client.personalize import recalibrate
    from client.site_errors import EvaluationRefused
    from client.site_policy import SitePolicy
    from federation.core.data import SiteData

    y = np.r_[np.ones(3), np.zeros(3)]
    data = SiteData(
        "s", np.zeros((6, 1)), y, np.zeros((60, 1)), np.r_[np.ones(30), np.zeros(30)], np.zeros((6, 1)), y
    )
    policy = SitePolicy(ledger_path=tmp_path / "l", max_epsilon=10.0, node_key=tmp_path / "k")

    with pytest.raises(EvaluationRefused) as err:
        recalibrate(None, data, policy)

    assert str(err.value).startswith("recalibration refused (too few validation rows)")
    assert "test" not in str(err.value)
