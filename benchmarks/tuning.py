"""Optuna around ``run_in_process`` for the quality table's "federated tuned (DP off)" row.

A small TPE search (seeded) over the recipe, minimising the pooled validation loss of the
round each trial's run selected (``summary["selection"]["validation"]["loss"]``): the test
split is never seen. DP off only: a DP search would spend each trial's ε (the sweep of
``lhsfed-train --multirun hydra/sweeper=optuna`` accounts that in the site ledgers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from benchmarks import benchmark_set as bs


def trial_overrides(trial: optuna.Trial) -> list[str]:
    """One recipe: model, optimiser, learning rate, batch size, local epochs, weight decay."""
    optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
    low, high = (1e-3, 3e-2) if optimizer == "adam" else (1e-2, 0.5)
    return [
        f"model={trial.suggest_categorical('model', ['logreg', 'mlp'])}",
        f"train.optimizer={optimizer}",
        f"train.lr={trial.suggest_float('lr', low, high, log=True):.5g}",
        f"train.batch_size={trial.suggest_categorical('batch_size', [16, 32, 64])}",
        f"train.local_epochs={trial.suggest_int('local_epochs', 1, 3)}",
        f"train.weight_decay={trial.suggest_categorical('weight_decay', [0.0, 1e-4, 1e-3])}",
    ]


def validation_loss(summary: dict[str, Any]) -> float:
    return float(summary["selection"]["validation"]["loss"])


def tune(
    dataset: bs.Dataset, seed: int, workdir: Path, quick: list[str], trials: int
) -> tuple[list[str], dict[str, Any]]:
    """(best overrides, what the study tried) after ``trials`` DP-off federations."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tried: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        overrides = trial_overrides(trial)
        run_dir = workdir / f"{dataset.name}-{trial.number}"
        loss = validation_loss(bs.federate(dataset, ["privacy=off", *overrides, *quick], seed, run_dir))
        tried.append({"overrides": overrides, "validation_loss": loss})
        trial.set_user_attr("overrides", overrides)
        return loss

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    best = study.best_trial.user_attrs["overrides"]
    return best, {"trials": tried, "best": best, "best_validation_loss": study.best_value}
