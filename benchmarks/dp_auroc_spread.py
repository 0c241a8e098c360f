"""Pooled test AUROC of the default DP federation over repeated runs: how much the sites'
secret noise moves it.

    .venv/bin/python -m benchmarks.dp_auroc_spread --runs 5 > benchmarks/results/dp_auroc_spread.md

Since issue H each site draws its DP noise and batches from its own CSPRNG, so two runs of the
same config differ (privacy=off runs stay identical). Each run is the default federation
(``lhsfed-train`` defaults: 4 UCI hospitals, logistic regression with SGD, FedAvg, up to 10
rounds, ε = 3) through
``federation.coordinator.inprocess`` (the same ServerApp loop and ClientApp, without Ray).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.scores import model_scores
from federation.coordinator.inprocess import run_config_for, run_in_process
from federation.core.run_layout import LEDGERS
from federation.modeler.run_loader import load_saved_model, saved_model_path, sites_data


def pooled_auroc(run_dir: Path, overrides: list[str]) -> float:
    """The handed-out model's pooled test AUROC, scored here exactly (the summary's own figure
    is the sites' noisy DP release since issue P: benchmarks/release_share.py compares them)."""
    os.environ["LHSFED_LEDGER_DIR"] = str(run_dir / LEDGERS)  # a fresh budget every run
    with contextlib.redirect_stdout(sys.stderr):
        run_in_process(run_config_for(overrides, run_dir), run_dir=run_dir, num_nodes=4)
    saved = load_saved_model(saved_model_path(run_dir))
    return model_scores(saved.model, sites_data(saved.dataset))["auroc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("overrides", nargs="*", default=[])
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    load, start = os.getloadavg()[0], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        aurocs = [pooled_auroc(Path(tmp) / str(i), args.overrides) for i in range(args.runs)]
    print(
        f"Command: `python -m benchmarks.dp_auroc_spread --runs {args.runs} {' '.join(args.overrides)}`"
        f" (load average {load:.1f} at start, {time.time() - start:.0f} s)\n"
    )
    print("| runs | mean | min | max | stdev |\n|---:|---:|---:|---:|---:|")
    print(
        f"| {len(aurocs)} | {statistics.mean(aurocs):.3f} | {min(aurocs):.3f} | {max(aurocs):.3f} | "
        f"{statistics.stdev(aurocs) if len(aurocs) > 1 else 0:.3f} |"
    )
    print("\nPer run: " + ", ".join(f"{a:.3f}" for a in aurocs))


if __name__ == "__main__":
    main()
