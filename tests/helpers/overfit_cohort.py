"""A synthetic cohort built to overfit: few rows per hospital and many pure-noise features.

Shared by the selection tests: with DP off and many local epochs, the global model fits the
noise and the validation loss turns up after a few rounds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from federation.coordinator.inprocess import run_config_for
from federation.modeler.synth import cohorts, dataset_spec

NOISE_FEATURES = 20


def write_overfit_cohort(folder: Path, *, sites: int = 3, rows: int = 600, seed: int = 3) -> dict:
    """Parquet files per hospital, each with ``NOISE_FEATURES`` N(0, 1) columns; the spec."""
    rng = np.random.default_rng(seed)
    files = {}
    for site, frame in cohorts(sites, rows, 0.3, seed):
        noise = pd.DataFrame(
            rng.normal(size=(len(frame), NOISE_FEATURES)),
            columns=[f"noise_{i}" for i in range(NOISE_FEATURES)],
        )
        files[site] = f"{site}.parquet"
        pd.concat([frame, noise], axis=1).to_parquet(folder / files[site], index=False)
    spec = dataset_spec("overfit", files)
    spec["features"] += [{"name": f"noise_{i}", "type": "numeric"} for i in range(NOISE_FEATURES)]
    return spec


def overfit_run_config(spec: dict, run_dir: Path, *overrides: str) -> dict:
    """DP off, a wide MLP and many local epochs: the recipe that overfits this cohort."""
    # Pinned whatever the defaults are: an MLP with Adam, as this cohort was built to overfit.
    config = run_config_for(
        [
            "privacy=off",
            "model=mlp",
            "model.hidden=64",
            "train.optimizer=adam",
            "train.batch_size=16",
            "train.local_epochs=3",
            "train.lr=0.003",
            "rounds=6",
            *overrides,
        ],
        run_dir,
    )
    config["data.spec"] = json.dumps(spec, sort_keys=True)
    return config
