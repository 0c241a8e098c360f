"""personalize's config (one line for a bad value), its place in the run's noise plan, and the
'worse' rule of personalization.json."""

from __future__ import annotations

from dataclasses import replace

import pytest

from federation.coordinator.flwr_app_config import compose_config
from federation.core.errors import ConfigError
from federation.core.privacy import epsilon_spent, noise_for_run, planned_steps, sample_rate
from federation.core.settings import RunSettings, flatten_config
from server.personalization import is_worse


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
    assert is_worse(_model(0.80, 0.70, 0.90), personalized) is worse
