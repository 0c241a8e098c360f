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
- the reported pooled AUROC's 95 % interval (DP noise included) and whether it holds the
  exact value;
- the round handed out and the largest ε of a site (the ledger's, releases included).

It ends with the floor no mechanism of this budget can beat: a curator holding all the test
patients, spending a site's whole ε on one Gaussian release of the pooled AUROC itself.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_info
from benchmarks.scores import model_scores
from client.site_policy import derived_delta
from federation.coordinator.inprocess import run_config_for, run_in_process
from federation.core.histogram_metrics import NORMAL_95
from federation.core.privacy import release_noise
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
    pooled = summary["metrics"]["pooled"]
    # None/NaN: the noisy class totals left the pooled AUROC undefined (the console's "n/a")
    reported = math.nan if pooled.get("auroc") is None else float(pooled["auroc"])
    low, high = pooled.get("auroc_ci") or (math.nan, math.nan)
    return {
        "exact": exact,
        "reported": reported,
        "error": abs(reported - exact),
        "covered": low <= exact <= high,
        "dataset": saved.dataset,
        "width": high - low,
        "round": summary["selection"]["round"],
        "epsilon": max(s["epsilon"] for s in summary["privacy"]["sites"].values()),
    }


def _mean(values) -> str:
    values = list(values)
    return f"{statistics.mean(values):.3f}" if values else "n/a"


def central_floor(epsilon: float, dataset) -> str:
    """The ±half-width (95 %) of one Gaussian release of the pooled test AUROC by a curator
    holding every site's test rows and spending all of ``epsilon`` on it: one patient moves
    AUROC by at most 1 / (the smaller class's count), and δ is the largest a site derives."""
    sites = sites_data(dataset)
    positives = sum(int(s.y_test.sum()) for s in sites)
    negatives = sum(len(s.y_test) for s in sites) - positives
    delta = max(derived_delta(len(s.y_train)) for s in sites)
    z = release_noise(epsilon=epsilon, delta=delta, releases=1)
    half = NORMAL_95 * z / min(positives, negatives)
    return (
        f"Floor: {positives} positive and {negatives} negative test patients; one Gaussian release "
        f"of the pooled AUROC at ε = {epsilon:g}, δ = {delta:g} (z = {z:.3f}, sensitivity "
        f"1/{min(positives, negatives)}) is within ±{half:.3f} of the truth in 95 % of releases."
    )


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
        "| release share | exact pooled AUROC (mean, min) | reported undefined (n/a) "
        "| reported pooled AUROC (mean) "
        f"| mean abs. error | runs within ±{TOLERANCE} | interval holds exact | interval width (mean) "
        "| round handed out (mean) | max ε |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for share, runs in results.items():
        exact = [r["exact"] for r in runs]
        defined = [r for r in runs if math.isfinite(r["reported"])]  # an undefined one is never within
        within = sum(r["error"] <= TOLERANCE for r in defined)
        print(
            f"| {share:g} | {statistics.mean(exact):.3f}, {min(exact):.3f} | {len(runs) - len(defined)} "
            f"| {_mean(r['reported'] for r in defined)} "
            f"| {_mean(r['error'] for r in defined)} | {within} of {len(runs)} "
            f"| {sum(r['covered'] for r in runs)} of {len(runs)} "
            f"| {_mean(r['width'] for r in defined)} "
            f"| {statistics.mean(r['round'] for r in runs):.1f} | {max(r['epsilon'] for r in runs):.3f} |"
        )
    print("\nPer run (share: exact / reported):")
    for share, runs in results.items():
        print(f"- {share:g}: " + ", ".join(f"{r['exact']:.3f} / {r['reported']:.3f}" for r in runs))
    print("\n" + central_floor(3.0, next(iter(results.values()))[0]["dataset"]))


if __name__ == "__main__":
    main()
