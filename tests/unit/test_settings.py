"""The one config boundary: Hydra -> flat Flower run config -> typed settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli

from federation.coordinator.flwr_app_config import compose_config, default_run_config
from federation.core.errors import ConfigError
from federation.core.settings import RunSettings, flatten_config

REPO = Path(__file__).resolve().parents[2]


def test_run_config_values_are_flat_scalars_and_round_trip():
    flat = flatten_config(compose_config(["strategy=fedprox", "privacy.target_epsilon=3"]))

    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())
    settings = RunSettings.from_run_config(flat)
    assert settings.strategy.name == "fedprox"
    assert settings.strategy.params["proximal_mu"] == 0.1
    assert settings.privacy.target_epsilon == 3.0
    assert settings.data.site_names == ["cleveland", "hungary", "switzerland", "va"]


def test_pyproject_flwr_config_equals_the_default_hydra_config():
    table = tomli.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]

    assert table == default_run_config()


@pytest.mark.parametrize(
    "override, message",
    [
        ("privacy.target_epsilon=-1", "privacy.target_epsilon must be > 0 (got -1.0)"),
        ("strategy.name=nonsense", "strategy 'nonsense' is unknown"),
        ("rounds=0", "rounds must be >= 1"),
        ("privacy.delta=2", "privacy.delta must be in (0, 1)"),
    ],
)
def test_bad_values_are_rejected_with_the_key_and_value(override, message):
    flat = flatten_config(compose_config([override]))

    with pytest.raises(ConfigError) as err:
        RunSettings.from_run_config(flat)
    assert message in str(err.value)


def test_every_problem_is_reported_at_once():
    flat = flatten_config(compose_config(["privacy.target_epsilon=-1", "rounds=0"]))

    with pytest.raises(ConfigError) as err:
        RunSettings.from_run_config(flat)
    assert "rounds" in str(err.value) and "target_epsilon" in str(err.value)
