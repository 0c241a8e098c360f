"""The ``configs/experiment/`` presets compose and hold the FLamby runs the benchmark table records.

Each preset is compared with the explicit Hydra overrides the committed table
(``benchmarks/results/flamby_heart*.csv``) was produced with, so a drifted preset changes the
benchmark visibly here rather than silently in a rerun.
"""

from __future__ import annotations

import pytest

from benchmarks.flamby_protocol import (
    METHODS,
    SETTINGS,
    SITE_DELTA,
    SITES,
    experiment_overrides,
)
from federation.coordinator.flwr_app_config import CONFIG_DIR, compose_config
from federation.core.settings import RunSettings, flatten_config

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))

# FLamby's Fed-Heart-Disease protocol (owkin/FLamby), as overrides on the project's defaults.
PROTOCOL = ["data=uci_heart_flamby", "data.split.validation_fraction=0", "early_stopping.patience=0"]
CENTRAL = [
    "model=logreg",
    "rounds=1",
    "train.local_epochs=50",
    "train.batch_size=4",
    "train.lr=0.001",
    "train.optimizer=adam",
]
FEDERATED = [
    "model=logreg",
    "rounds=15",
    "train.local_steps=100",
    "train.batch_size=4",
    "train.optimizer=sgd",
    "train.momentum=0",
]
ADAPTIVE = ["strategy.beta_1=0.9", "strategy.beta_2=0.999", "strategy.tau=1e-8"]
DP = ["privacy=dp", "privacy.delta=1e-4", "privacy.max_grad_norm=1.1", "strategy=fedavg"]
FLAMBY_FEDAVG = [*FEDERATED, "strategy=fedavg", "train.lr=0.001"]
RECORDED = {
    "flamby_heart": [*PROTOCOL, "privacy=off"],
    "flamby_heart_central": [*PROTOCOL, "privacy=off", *CENTRAL],
    "flamby_heart_fedavg": [*PROTOCOL, "privacy=off", *FLAMBY_FEDAVG],
    "flamby_heart_fedprox": [
        *PROTOCOL,
        "privacy=off",
        *FEDERATED,
        "strategy=fedprox",
        "strategy.proximal_mu=0.01",
        "train.lr=0.001",
    ],
    "flamby_heart_fedadam": [
        *PROTOCOL,
        "privacy=off",
        *FEDERATED,
        "strategy=fedadam",
        "train.lr=0.01",
        "strategy.eta=0.01",
        *ADAPTIVE,
    ],
    "flamby_heart_fedyogi": [
        *PROTOCOL,
        "privacy=off",
        *FEDERATED,
        "strategy=fedyogi",
        "train.lr=0.003162",
        "strategy.eta=0.01",
        *ADAPTIVE,
    ],
    "flamby_heart_fedadagrad": [
        *PROTOCOL,
        "privacy=off",
        *FEDERATED,
        "strategy=fedadagrad",
        "train.lr=0.003162",
        "strategy.eta=0.316228",
        "strategy.tau=1e-8",
    ],
    "flamby_heart_dp": [*PROTOCOL, *DP],
    "flamby_heart_dp_fedavg": [*PROTOCOL, *DP, *FLAMBY_FEDAVG],
}


def test_every_preset_has_its_recorded_overrides():
    assert PRESETS == sorted(RECORDED)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_to_the_run_config_the_table_was_recorded_with(preset):
    ours = flatten_config(compose_config([f"+experiment={preset}", "seed=44"]))
    recorded = flatten_config(compose_config([*RECORDED[preset], "seed=44"]))
    assert ours == recorded
    assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in recorded.items()}
    settings = RunSettings.from_run_config(ours)  # the typed boundary accepts it
    assert settings.seed == 44 and settings.data.site_names == list(SITES)


def test_dp_presets_account_at_the_simulated_sites_delta():
    for preset in ("flamby_heart_dp", "flamby_heart_dp_fedavg"):
        privacy = compose_config([f"+experiment={preset}"])["privacy"]
        assert privacy["enabled"] and privacy["delta"] == SITE_DELTA


def test_every_benchmark_cell_names_an_existing_preset():
    for method in METHODS:
        for setting in SETTINGS:
            first, *rest = experiment_overrides(method, setting, 42)
            assert first.removeprefix("+experiment=") in PRESETS, (method, setting)
            assert "seed=42" in rest
