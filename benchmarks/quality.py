"""Model quality on every benchmark dataset: federated defaults against what else one could do.

    .venv/bin/python -m benchmarks.quality            # make bench-quality
    .venv/bin/python -m benchmarks.quality --quick    # CI smoke: one dataset, one seed, 2 rounds

For every dataset of :mod:`benchmarks.benchmark_set` and seed (run seed = split seed), pooled test
AUROC, AUPRC and calibration slope of: pooled sklearn ``LogisticRegressionCV`` on the sites'
train+validation rows, local-only models, the federated defaults DP off / ε=3 / ε=1 (no tuning:
the model the run selected by validation loss), the exact federated GLM (``model=glm``, DP
off: Newton on the sites' summed statistics, λ chosen by pooled validation loss), and the
federation tuned with Optuna (DP off), whose objective is the pooled validation loss of the
selected round (never the test split). Beside them, the DP frontier's runs at ε = 3 and ε = 1
(benchmarks/dp_frontier.py's chosen config on the same splits and seeds), read from
benchmarks/results/dp_frontier.json, not run again: what the ε rows are judged against.
Writes benchmarks/results/quality.md and quality.json (every run's numbers and folder).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks import benchmark_set as bs
from benchmarks.common import REPO, machine_info, write_results
from benchmarks.quality_table import render
from benchmarks.scores import local_only, model_scores, pooled_logistic_regression
from federation.core.run_layout import MODEL
from federation.core.settings import RunSettings
from federation.modeler.run_loader import load_saved_model

SEEDS = (42, 43, 44)
FEDERATED = {
    "federated DP off": ["privacy=off"],
    # the exact federated GLM (issue Q): pooled logistic regression without pooling, DP off only
    "federated GLM (DP off)": ["model=glm", "privacy=off"],
    "federated ε=3": ["privacy=dp", "privacy.target_epsilon=3.0"],
    "federated ε=1": ["privacy=dp", "privacy.target_epsilon=1.0"],
}
RESULTS = REPO / "benchmarks" / "results"
FRONTIER_FILE = RESULTS / "dp_frontier.json"


def frontier_rows(stored: dict[str, Any], dataset: str, seeds: tuple[int, ...]) -> dict[str, list[dict]]:
    """The stored DP frontier's runs of this dataset on these seeds, one method per ε (none when
    the frontier file lacks the dataset or a seed: then no row, rather than a partial one)."""
    rows = {}
    for key, cell in ((stored.get("datasets") or {}).get(dataset) or {}).get("cells", {}).items():
        runs = {r["seed"]: r for r in cell["frontier"]}
        if all(seed in runs for seed in seeds):
            rows[f"DP frontier ε={float(key):g}"] = [
                {**runs[seed], "config": cell["chosen_label"]} for seed in seeds
            ]
    return rows


def federated_row(dataset: bs.Dataset, overrides: list[str], seed: int, run_dir: Path) -> dict[str, Any]:
    """One federation; its selected model (model.pt) scored on the pooled test rows."""
    summary = bs.federate(dataset, overrides, seed, run_dir)
    scores = model_scores(load_saved_model(run_dir / MODEL).model, bs.sites(dataset, seed))
    selection = summary.get("selection") or {}
    return {
        **scores,
        "run_dir": str(run_dir),
        "summary_auroc": summary["metrics"]["pooled"]["auroc"],
        "selected_round": selection.get("round"),
        "stopped_early": selection.get("stopped_early"),
        "rounds_run": summary["rounds"],
        "validation_loss": (selection.get("validation") or {}).get("loss"),
        "epsilon": {s: v.get("epsilon") for s, v in summary["privacy"]["sites"].items()},
    }


def baseline_rows(dataset: bs.Dataset, seed: int, quick: list[str]) -> dict[str, dict[str, Any]]:
    sites = bs.sites(dataset, seed)
    settings = RunSettings.from_run_config(bs.run_config(dataset, quick, seed, Path("")))
    return {
        "pooled LR (sklearn CV)": pooled_logistic_regression(sites, seed),
        "local-only (defaults, DP off)": local_only(settings, sites),
    }


def dataset_runs(
    dataset: bs.Dataset, seeds: tuple[int, ...], workdir: Path, quick: list[str], trials: int
) -> dict[str, list[dict[str, Any]]]:
    """Every method on every seed of one dataset (tuning once, on the first seed's validation)."""
    from benchmarks.tuning import tune  # optuna: imported only when a bench runs

    rows: dict[str, list[dict[str, Any]]] = {}
    best, study = tune(dataset, seeds[0], workdir / "tuning", quick, trials)
    for seed in seeds:
        for method, row in baseline_rows(dataset, seed, quick).items():
            rows.setdefault(method, []).append(row)
        for method, overrides in {**FEDERATED, "federated tuned (DP off)": ["privacy=off", *best]}.items():
            run_dir = workdir / "runs" / f"{dataset.name}-{method.split()[1]}-{seed}"
            rows.setdefault(method, []).append(federated_row(dataset, [*overrides, *quick], seed, run_dir))
    rows["federated tuned (DP off)"][0]["tuning"] = study
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke: uci_heart only, one seed, 2 rounds, 2 tuning trials"
    )
    parser.add_argument("--datasets", nargs="*", default=None)
    parser.add_argument("--seeds", nargs="*", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None, help="Optuna trials per dataset (default 6)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for quality.md and quality.json")
    parser.add_argument("--workdir", default=None, help="keep the run folders here (default: a temp dir)")
    parser.add_argument("--frontier", default=str(FRONTIER_FILE), help="the stored dp_frontier.json")
    parser.add_argument(
        "--combine",
        nargs="*",
        default=None,
        help="quality.json files of runs on different datasets: one table from them",
    )
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.combine:
        return _write(combine([json.loads(Path(p).read_text()) for p in args.combine]), Path(args.out))
    bs.quiet_logs()
    warnings.simplefilter("ignore")
    quick = ["rounds=2"] if args.quick else []
    datasets = bs.by_name(args.datasets or (["uci_heart"] if args.quick else None))
    seeds = tuple(args.seeds or (SEEDS[:1] if args.quick else SEEDS))
    trials = args.trials or (2 if args.quick else 6)
    info, start = machine_info(), time.time()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="lhsfed-quality-"))
    results = {
        "command": "python -m benchmarks.quality " + " ".join(argv),
        "machine": info,
        "seeds": list(seeds),
        "trials": trials,
        "quick": args.quick,
        "datasets": {},
    }
    stored = json.loads(Path(args.frontier).read_text()) if Path(args.frontier).is_file() else {}
    try:
        for dataset in datasets:
            prepared = bs.prepare(dataset, workdir)
            methods = dataset_runs(prepared, seeds, workdir, quick, trials)
            results["datasets"][dataset.name] = {
                "about": dataset.about,
                "profile": bs.profile(prepared, seeds[0]),
                "methods": methods | ({} if quick else frontier_rows(stored, dataset.name, seeds)),
            }
            print(f"{dataset.name} done ({time.time() - start:.0f} s)", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    results["wall_s"] = time.time() - start
    results["load_after"] = machine_info()["load (uptime)"]
    return _write(results, Path(args.out))


def combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs on different datasets (run side by side: wall = the longest)."""
    first = parts[0]
    return {
        **first,
        "command": " & ".join(p["command"] for p in parts),
        "part_walls_s": [p["wall_s"] for p in parts],
        "datasets": {k: v for p in parts for k, v in p["datasets"].items()},
        "wall_s": max(p["wall_s"] for p in parts),
        "parallel": len(parts),
        "load_after": parts[-1]["load_after"],
    }


def _write(results: dict[str, Any], out: Path) -> dict[str, Any]:
    return write_results(results, out, "quality", render)


if __name__ == "__main__":
    main()
