"""FLamby's Fed-Heart-Disease protocol: which runs the benchmark makes and what it is compared with.

``benchmarks.flamby_heart`` (the runs) and ``benchmarks.flamby_report`` (the tables) both import
this module and nothing of each other. The hyperparameters are Hydra presets,
``configs/experiment/flamby_heart*.yaml``, so any run can use them (``lhsfed-train
+experiment=flamby_heart_fedyogi``); ``experiment_overrides`` says which preset each cell runs.
"""

from __future__ import annotations

from dataclasses import dataclass

SEEDS = (42, 43, 44, 45, 46)
SITES = ("cleveland", "hungary", "switzerland", "va")
DATA = "data=uci_heart_flamby"  # FLamby's split (tests/unit/test_flamby_split.py)
STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad")
DP_EPSILONS = (1.0, 5.0, 10.0)
DP_DELTA = 1e-3  # FLamby's δ: the recorded DP rows (results/*.csv) used it
# A site accounts at its own δ and refuses one above 1/(10 n_train): FLamby's 1e-3 is above that
# for Cleveland, Hungary and VA, so new runs' simulated sites (and flamby_heart_dp.yaml) use this.
SITE_DELTA = 1e-4
# Mean accuracy over the four centres' test sets, mean of 5 seeds (FLamby, NeurIPS 2022).
FLAMBY_PUBLISHED = {
    "pooled": 0.7353,
    "local cleveland": 0.7221,
    "local hungary": 0.6287,
    "local switzerland": 0.5670,
    "local va": 0.6366,
    "fedavg": 0.6850,
    "fedprox": 0.6850,
    "fedadam": 0.7255,
    "fedyogi": 0.7314,
    "fedadagrad": 0.7314,
    "dp fedavg ε=1": 0.702,
    "dp fedavg ε=5": 0.700,
    "dp fedavg ε=10": 0.698,
    # FLamby's fine-tuning example (FedAvg, then each centre fine-tunes locally): 0.718 -> 0.735.
    "fedavg + finetune": 0.735,
}
# Local steps each centre fine-tunes the FedAvg model for (personalize=finetune): one round's
# worth of FLamby's recipe (100 steps); the tuned defaults use lhsfed's personalize_steps default.
FINETUNE_STEPS_FLAMBY = 100
METHODS = tuple(FLAMBY_PUBLISHED)
SETTINGS = ("flamby", "tuned")  # FLamby's hyperparameters, this project's defaults


@dataclass(frozen=True)
class RunResult:
    """One method, one hyperparameter setting, one seed."""

    method: str
    setting: str
    seed: int
    mean_centre_accuracy: float
    pooled_accuracy: float
    pooled_auroc: float
    dp_steps: tuple[tuple[str, float, float, int, float], ...] = ()  # site, σ, q, steps, ε


def is_central(method: str) -> bool:
    """Pooled and local-only models train outside the federation."""
    return method == "pooled" or method.startswith("local ")


def experiment_overrides(method: str, setting: str, seed: int) -> list[str]:
    """The Hydra overrides of one benchmark cell: its experiment preset, seed and ε."""
    flamby = setting == "flamby"
    if is_central(method):
        return [f"+experiment={'flamby_heart_central' if flamby else 'flamby_heart'}", f"seed={seed}"]
    if method == "fedavg + finetune":  # each site's own fine-tuned model is scored on its test set
        if flamby:
            return [
                "+experiment=flamby_heart_fedavg",
                f"seed={seed}",
                "personalize=finetune",
                f"personalize_steps={FINETUNE_STEPS_FLAMBY}",
            ]
        return ["+experiment=flamby_heart", f"seed={seed}", "strategy=fedavg", "personalize=finetune"]
    if method.startswith("dp fedavg"):
        epsilon = float(method.split("=")[1])
        preset = "flamby_heart_dp_fedavg" if flamby else "flamby_heart_dp"
        return [f"+experiment={preset}", f"seed={seed}", f"privacy.target_epsilon={epsilon}"]
    if flamby:
        return [f"+experiment=flamby_heart_{method}", f"seed={seed}"]
    return ["+experiment=flamby_heart", f"seed={seed}", f"strategy={method}"]
