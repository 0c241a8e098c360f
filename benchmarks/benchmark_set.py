"""The benchmark datasets the default recipe is judged on, and one federation run on any of them.

Two real ones (the four UCI heart hospitals, as this project and as FLamby split them) and three
``lhsfed synth`` cohorts built to be as hard as real hospital data: a rare outcome (5-10 %),
sites of 80-500 rows, heavy missingness whose pattern carries signal, a weak signal, noise
columns, and hospitals that differ. Every federation goes through ``federation.coordinator.inprocess``
(the real ServerApp loop and ClientApp, without Ray); ``seed`` sets both the run seed and the
sites' ``split.seed``, so three seeds are three different splits.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from federation.cli.synth import write_cohorts
from federation.coordinator.flwr_app_config import compose_config
from federation.coordinator.inprocess import run_in_process
from federation.core.dataspec import parse_dataset_spec
from federation.core.records import read_rounds
from federation.core.run_layout import LEDGERS
from federation.core.settings import flatten_config
from federation.modeler.run_loader import sites_data
from federation.modeler.synth import CohortOptions

# Simulated sites' policy for the benchmarks: sites of 80 rows hold ~11 validation rows, fewer
# than the simulation's default 20 a site needs before it scores a model.
SITE_POLICY_ENV = {"LHSFED_MIN_EVAL_ROWS": "10"}


@dataclass(frozen=True)
class Synth:
    """An ``lhsfed synth`` cohort: its size and how hard it is."""

    sites: int
    rows: int
    heterogeneity: float
    options: CohortOptions
    seed: int = 7


@dataclass(frozen=True)
class Dataset:
    """A benchmark dataset: an embedded spec (``data=NAME``) or a synth cohort."""

    name: str
    about: str
    synth: Synth | None = None
    sites: int = 4
    data_dir: Path | None = field(default=None, compare=False)


DATASETS = (
    Dataset("uci_heart", "4 UCI hospitals (this project's split), 920 rows, 55 % positive"),
    Dataset("uci_heart_flamby", "4 UCI hospitals as FLamby splits them, 740 complete rows"),
    Dataset(
        "synth_rare",
        "6 sites of 80-500 rows, 7 % positive, 3x missingness, informative",
        Synth(
            6,
            1500,
            0.5,
            CohortOptions(
                prevalence=0.07,
                missing=3.0,
                informative_missing=1.0,
                noise_features=5,
                min_rows=80,
                max_rows=500,
            ),
        ),
        6,
    ),
    Dataset(
        "synth_weak",
        "5 sites of 80-500 rows, 9 % positive, weak signal, 10 noise columns",
        Synth(
            5,
            1400,
            0.4,
            CohortOptions(
                prevalence=0.09,
                signal=0.5,
                missing=2.0,
                informative_missing=0.5,
                noise_features=10,
                min_rows=80,
                max_rows=500,
            ),
        ),
        5,
    ),
    Dataset(
        "synth_hetero",
        "8 very different sites of 80-400 rows, 6 % positive, 4x missingness",
        Synth(
            8,
            1800,
            0.9,
            CohortOptions(
                prevalence=0.06,
                signal=0.8,
                missing=4.0,
                informative_missing=1.5,
                noise_features=3,
                min_rows=80,
                max_rows=400,
            ),
        ),
        8,
    ),
    # Issue Q: one with >= 20 sites, one with an outcome under 3 %.
    Dataset(
        "synth_many",
        "24 sites of 60-300 rows, 10 % positive, 2x missingness",
        Synth(
            24,
            3600,
            0.6,
            CohortOptions(
                prevalence=0.10,
                missing=2.0,
                informative_missing=0.5,
                noise_features=3,
                min_rows=60,
                max_rows=300,
            ),
        ),
        24,
    ),
    Dataset(
        "synth_rarest",
        "6 sites of 400-1500 rows, 2 % positive",
        Synth(
            6,
            6000,
            0.4,
            CohortOptions(
                prevalence=0.02,
                missing=1.5,
                informative_missing=0.5,
                noise_features=3,
                min_rows=400,
                max_rows=1500,
            ),
        ),
        6,
    ),
)


def by_name(names: list[str] | None = None) -> list[Dataset]:
    if not names:
        return list(DATASETS)
    known = {d.name: d for d in DATASETS}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"unknown benchmark dataset(s) {unknown}; known: {sorted(known)}")
    return [known[n] for n in names]


def prepare(dataset: Dataset, workdir: Path) -> Dataset:
    """The dataset with its files on disk (synth cohorts are written once, then reused)."""
    if dataset.synth is None:
        return dataset
    folder = workdir / "cohorts" / dataset.name
    if not (folder / "data" / f"{dataset.name}.yaml").is_file():
        s = dataset.synth
        folder.mkdir(parents=True, exist_ok=True)
        write_cohorts(
            folder,
            sites=s.sites,
            rows=s.rows,
            heterogeneity=s.heterogeneity,
            seed=s.seed,
            name=dataset.name,
            options=s.options,
        )
    return Dataset(dataset.name, dataset.about, dataset.synth, dataset.sites, folder)


def spec_dict(dataset: Dataset, seed: int) -> dict[str, Any]:
    """The dataset spec as the run config carries it, split with ``seed``."""
    if dataset.synth is None:
        spec = compose_config([f"data={dataset.name}"])["data"]
    else:
        spec = yaml.safe_load((dataset.data_dir / "data" / f"{dataset.name}.yaml").read_text())
    spec["split"] = {**spec.get("split", {}), "seed": int(seed)}
    return spec


def run_config(dataset: Dataset, overrides: list[str], seed: int, run_dir: Path) -> dict[str, Any]:
    """Flat run config: the project's defaults, ``overrides``, this dataset, this seed."""
    plain = compose_config([*overrides, f"seed={seed}"])
    plain["data"] = spec_dict(dataset, seed)
    plain["output_dir"] = str(run_dir)
    return flatten_config(plain)


def sites(dataset: Dataset, seed: int):
    """Every site's split, as its ClientApp loads it (for baselines and test scoring)."""
    return sites_data(parse_dataset_spec(spec_dict(dataset, seed)), dataset.data_dir)


@contextlib.contextmanager
def _site_env(dataset: Dataset, run_dir: Path):
    env = {**SITE_POLICY_ENV, "LHSFED_LEDGER_DIR": str(run_dir / LEDGERS)}
    if dataset.data_dir is not None:
        env["LHSFED_SITE_DATA_DIR"] = str(dataset.data_dir)
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in before.items():
            os.environ.pop(key) if value is None else os.environ.update({key: value})


def federate(dataset: Dataset, overrides: list[str], seed: int, run_dir: Path) -> dict[str, Any]:
    """One federation on ``dataset``; returns its summary (the run folder holds the rest)."""
    config = run_config(dataset, overrides, seed, run_dir)
    with _site_env(dataset, run_dir), open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        return run_in_process(config, run_dir=run_dir, num_nodes=dataset.sites)


def rounds(run_dir: Path) -> list[dict[str, Any]]:
    return read_rounds(run_dir)


def quiet_logs() -> None:
    """Benchmarks print tables only (entry points only: this silences every logger)."""
    logging.disable(logging.WARNING)


def profile(dataset: Dataset, seed: int) -> dict[str, Any]:
    """What makes a dataset hard: site sizes, outcome rate, missingness, features."""
    import numpy as np

    loaded = sites(dataset, seed)
    n_train = [len(s.y_train) for s in loaded]
    x = np.concatenate([s.x_train for s in loaded])
    y = np.concatenate([s.y_train for s in loaded])
    return {
        "sites": len(loaded),
        "n_train_min": min(n_train),
        "n_train_max": max(n_train),
        "positive_rate": float(y.mean()),
        "positives_min_site": int(min(s.y_train.sum() for s in loaded)),
        "features": int(x.shape[1]),
        "missing_max_column": float(np.isnan(x).mean(0).max()),
        "missing_overall": float(np.isnan(x).mean()),
    }
