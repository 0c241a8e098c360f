"""FLamby's Fed-Heart-Disease benchmark, side by side with FLamby's published figures.

    .venv/bin/python -m benchmarks.flamby_heart          # make bench-flamby
    .venv/bin/python -m benchmarks.flamby_heart --seeds 42 --methods fedavg   # a quick look

Every method runs on ``data=uci_heart_flamby`` (FLamby's exact split) over seeds 42-46, once
with FLamby's hyperparameters and once with this project's defaults: the Hydra presets
``configs/experiment/flamby_heart*.yaml`` (``benchmarks.flamby_protocol`` says which). Federated runs go
through ``federation.coordinator.inprocess`` (the real ServerApp loop and ClientApp, no Ray); pooled and
local-only models through ``federation.modeler.baselines``. The DP rows' ε is composed from every
step each site's ledger recorded. Results: benchmarks/results/flamby_heart.{md,csv,png}.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, roc_auc_score

from benchmarks.flamby_protocol import (
    DATA,
    METHODS,
    SEEDS,
    SETTINGS,
    SITE_DELTA,
    RunResult,
    experiment_overrides,
    is_central,
)
from benchmarks.flamby_report import read_results, write_results
from client.ledger import open_site_ledger
from client.personalize import load_personalized, personalized_path
from client.site_policy import simulated_policy
from federation.coordinator.flwr_app_config import compose_config
from federation.coordinator.inprocess import run_config_for, run_in_process
from federation.core.data import SiteData
from federation.core.model import predict_risk
from federation.core.privacy import epsilon_spent, merge_history
from federation.core.run_layout import MODEL
from federation.core.settings import RunSettings, flatten_config
from federation.modeler.baselines import train_baseline
from federation.modeler.run_loader import load_saved_model, sites_data
from server.federation_loop import model_spec


def evaluate(model, sites: list[SiteData]) -> tuple[float, float, float]:
    """Accuracy at 0.5 per centre's test set (mean over centres), pooled accuracy, AUROC."""
    per_centre = [accuracy_score(s.y_test, predict_risk(model, s.x_test) >= 0.5) for s in sites]
    y = np.concatenate([s.y_test for s in sites])
    risk = np.concatenate([predict_risk(model, s.x_test) for s in sites])
    return float(np.mean(per_centre)), float(accuracy_score(y, risk >= 0.5)), float(roc_auc_score(y, risk))


def evaluate_personalized(run_dir: Path, settings: RunSettings, sites: list[SiteData]):
    """As :func:`evaluate`, each centre scored by the personalized model it kept itself."""
    risks = {
        s.name: load_personalized(
            personalized_path(simulated_policy(s.name, run_folder=run_dir), str(run_dir)), settings
        ).risk(s.x_test)
        for s in sites
    }
    per_centre = [accuracy_score(s.y_test, risks[s.name] >= 0.5) for s in sites]
    y = np.concatenate([s.y_test for s in sites])
    risk = np.concatenate([risks[s.name] for s in sites])
    return float(np.mean(per_centre)), float(accuracy_score(y, risk >= 0.5)), float(roc_auc_score(y, risk))


def _central(method: str, settings: RunSettings, sites: list[SiteData], seed: int, setting: str) -> RunResult:
    """Pooled or one site's local-only model, trained outside the federation."""
    train_on = sites if method == "pooled" else [s for s in sites if s.name == method.split()[1]]
    x = np.concatenate([s.x_train for s in train_on])
    y = np.concatenate([s.y_train for s in train_on])
    model = train_baseline(settings, model_spec(settings), x, y).model
    return RunResult(method, setting, seed, *evaluate(model, sites))


def _ledger_steps(run_dir: Path, settings: RunSettings) -> tuple[tuple[str, float, float, int, float], ...]:
    """Per site: the DP-SGD (σ, q, steps) its ledger recorded over the whole run, and the ε of
    every row (training and the evaluation releases)."""
    rows = []
    for site in settings.data.site_names:
        ledger = open_site_ledger(simulated_policy(site, run_folder=run_dir), site)
        history = merge_history(ledger.training_history())
        if len(history) != 1:
            raise RuntimeError(f"{site}: expected one (σ, q) over the run, got {history}")
        ((sigma, rate, steps),) = history
        rows.append((site, sigma, rate, steps, epsilon_spent(ledger.history(), delta=settings.privacy.delta)))
    return tuple(rows)


@contextlib.contextmanager
def _sites_delta(delta: float):
    """The simulated sites account at FLamby's δ: a site's δ is its own policy (LHSFED_DELTA),
    never the run config's."""
    before = os.environ.get("LHSFED_DELTA")
    os.environ["LHSFED_DELTA"] = str(delta)
    try:
        yield
    finally:
        os.environ.pop("LHSFED_DELTA") if before is None else os.environ.update(LHSFED_DELTA=before)


def _federated(
    method: str, overrides: list[str], sites: list[SiteData], seed: int, setting: str, workdir: Path
) -> RunResult:
    run_dir = workdir / f"{method.replace(' ', '_')}-{setting}-{seed}"
    config = run_config_for(overrides, run_dir)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), _sites_delta(SITE_DELTA):
        run_in_process(config, run_dir=run_dir, num_nodes=len(sites))
    model = load_saved_model(run_dir / MODEL).model
    settings = RunSettings.from_run_config(config)
    steps = _ledger_steps(run_dir, settings) if settings.privacy.enabled else ()
    if steps:  # every step taken is accounted: rounds × steps per round at each site
        expected = settings.rounds * (settings.train.local_steps or 0)
        assert not expected or all(row[3] == expected for row in steps), steps
    if settings.personalize != "none":
        scores = evaluate_personalized(run_dir, settings, sites)
        return RunResult(method, setting, seed, *scores, dp_steps=steps)
    return RunResult(method, setting, seed, *evaluate(model, sites), dp_steps=steps)


def run_one(method: str, setting: str, seed: int, sites: list[SiteData], workdir: Path) -> RunResult:
    overrides = experiment_overrides(method, setting, seed)
    if is_central(method):
        settings = RunSettings.from_run_config(flatten_config(compose_config(overrides)))
        return _central(method, settings, sites, seed, setting)
    return _federated(method, overrides, sites, seed, setting, workdir)


def _seconds(folder: Path) -> float:
    path = folder / "flamby_heart_seconds.txt"
    return float((path if path.is_file() else folder / "seconds.txt").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--merge",
        nargs="*",
        type=Path,
        default=[],
        help="only merge the per-run CSVs of earlier --out folders (runs split "
        "over processes) into one table in --out",
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")  # Opacus's per-step chatter
    torch.set_num_threads(1)  # tiny models: extra threads only contend (7x slower on 2 busy cores)
    if args.merge:
        write_results(read_results(args.merge), args.out, seconds=sum(map(_seconds, args.merge)))
        return
    settings = RunSettings.from_run_config(flatten_config(compose_config([DATA])))
    sites = sites_data(settings.data)
    start, results = time.time(), []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            for setting in SETTINGS:
                for seed in args.seeds:
                    results.append(run_one(method, setting, seed, sites, Path(tmp)))
                    r = results[-1]
                    print(
                        f"{method:>18} {setting:>6} seed {seed}: mean-centre acc "
                        f"{r.mean_centre_accuracy:.4f}  pooled acc {r.pooled_accuracy:.4f}  "
                        f"AUROC {r.pooled_auroc:.4f}  ({time.time() - start:.0f} s)",
                        flush=True,
                    )
    write_results(results, args.out, seconds=time.time() - start)


if __name__ == "__main__":
    main()
