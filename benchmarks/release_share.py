"""The site's release share (issue P): what each share gives the model and what it gives the
numbers the coordinator reports, side by side in one run.

    .venv/bin/python -m benchmarks.release_share --runs 5 > benchmarks/results/release_share.md

Each run is the default federation (4 UCI hospitals, ε = 3 per site for training and every
release, up to 10 rounds) in process (the same ServerApp loop and ClientApp as
``lhsfed-train``, no Ray), with every simulated site's ``release-epsilon-share`` set
(``LHSFED_RELEASE_EPSILON_SHARE``). For the model handed out it records:

- the **exact** pooled test AUROC, scored here from the sites' files (the benchmark holds the
  data; no coordinator can do this in deployment);
- the **reported** pooled test AUROC, computed by the server from the sites' noisy DP
  releases (what a coordinator sees), and its distance to the exact one;
- the round handed out and the largest ε of a site (the ledger's, releases included).
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

from benchmarks.common import machine_info
from benchmarks.scores import model_scores
from federation.coordinator.inprocess import run_config_for, run_in_process
from federation.core.run_layout import LEDGERS
from federation.modeler.run_loader import load_saved_model, saved_model_path, sites_data

SHARES = (0.2, 0.5, 0.8)
TOLERANCE = 0.02  # the bar: reported within ±0.02 of exact in 95 % of runs


def one_run(run_dir: Path, share: float, overrides: list[str]) -> dict[str, float]:
    os.environ["LHSFED_LEDGER_DIR"] = str(run_dir / LEDGERS)  # a fresh budget every run
    os.environ["LHSFED_RELEASE_EPSILON_SHARE"] = str(share)
    with contextlib.redirect_stdout(sys.stderr):
        summary = run_in_process(run_config_for(overrides, run_dir), run_dir=run_dir, num_nodes=4)
    saved = load_saved_model(saved_model_path(run_dir))
    exact = model_scores(saved.model, sites_data(saved.dataset))["auroc"]
    reported = summary["metrics"]["pooled"]["auroc"]
    return {
        "exact": exact,
        "reported": reported,
        "error": abs(reported - exact),
        "round": summary["selection"]["round"],
        "epsilon": max(s["epsilon"] for s in summary["privacy"]["sites"].values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    parser.add_argument("overrides", nargs="*", default=[])
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    info, start = machine_info(), time.time()
    results: dict[float, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for share in args.shares:
            results[share] = [
                one_run(Path(tmp) / f"{share}-{i}", share, args.overrides) for i in range(args.runs)
            ]
    shares = " ".join(str(s) for s in args.shares)
    print(
        f"Command: `python -m benchmarks.release_share --runs {args.runs} --shares {shares} "
        f"{' '.join(args.overrides)}` ({time.time() - start:.0f} s)\n"
    )
    print("Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + "\n")
    print(
        "| release share | exact pooled AUROC (mean, min) | reported pooled AUROC (mean) "
        f"| mean abs. error | runs within ±{TOLERANCE} | round handed out (mean) | max ε |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for share, runs in results.items():
        exact = [r["exact"] for r in runs]
        within = sum(r["error"] <= TOLERANCE for r in runs)
        print(
            f"| {share:g} | {statistics.mean(exact):.3f}, {min(exact):.3f} "
            f"| {statistics.mean(r['reported'] for r in runs):.3f} "
            f"| {statistics.mean(r['error'] for r in runs):.3f} | {within} of {len(runs)} "
            f"| {statistics.mean(r['round'] for r in runs):.1f} | {max(r['epsilon'] for r in runs):.3f} |"
        )
    print("\nPer run (share: exact / reported):")
    for share, runs in results.items():
        print(f"- {share:g}: " + ", ".join(f"{r['exact']:.3f} / {r['reported']:.3f}" for r in runs))


if __name__ == "__main__":
    main()
