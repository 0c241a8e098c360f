"""``train.lr=auto`` (the default): the coordinator turns the run's ε into one number that every
site receives (federation.core.learning_rate); a number the coordinator sets is kept as it is."""

from __future__ import annotations

import pytest

from federation.coordinator.flwr_app_config import compose_config
from federation.core.errors import ConfigError
from federation.core.settings import RunSettings, flatten_config


def _lr(*overrides: str) -> float:
    flat = flatten_config(compose_config(list(overrides)))
    return RunSettings.from_run_config(flat).train.lr


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ((), 0.1),  # the defaults: DP at ε = 3
        (("privacy.target_epsilon=1",), 0.1 / 3),
        (("privacy.target_epsilon=0.5",), 0.1 / 6),
        (("privacy.target_epsilon=8",), 0.1),  # never above the lr chosen at ε = 3
        (("privacy=off", "privacy.target_epsilon=1"), 0.1),  # no noise: nothing to scale for
        (("privacy.target_epsilon=1", "train.lr=0.05"), 0.05),  # the coordinator's number wins
    ],
)
def test_auto_lr_follows_the_runs_epsilon_and_an_explicit_lr_is_kept(overrides, expected):
    assert _lr(*overrides) == pytest.approx(expected, rel=1e-12)


def test_sites_receive_a_number_not_the_word_auto():
    flat = flatten_config(compose_config(["privacy.target_epsilon=1"]))
    assert isinstance(flat["train.lr"], float)


def test_a_bad_lr_is_one_line_naming_the_key():
    with pytest.raises(ConfigError, match=r"train\.lr='fast' is not a finite number"):
        _lr("train.lr=fast")


def test_a_bad_epsilon_is_named_not_the_auto_lr():
    with pytest.raises(ConfigError, match=r"privacy\.target_epsilon must be > 0") as refused:
        _lr("privacy.target_epsilon=-1")
    assert "train.lr" not in str(refused.value)
