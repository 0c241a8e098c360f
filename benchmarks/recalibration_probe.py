"""Can the DP model be recalibrated from what the sites already release? (issue Q, item 5)

    .venv/bin/python -m benchmarks.defaults_vs_frontier --workdir /tmp/dvf   # the runs
    .venv/bin/python -m benchmarks.recalibration_probe --workdir /tmp/dvf

Each round every site releases noisy per-class histograms of its validation risks
(client.dp_release). A Platt fit (outcome on the logit of the bin centre, counts as weights)
on the pooled released histograms of the round a run handed out would be free of ε: it is
post-processing. This probe fits it on every ε = 3 run of ``defaults_vs_frontier``'s folders
and scores the recalibrated risks on the pooled test rows, beside the released and true
validation counts, to show whether that noise leaves anything to fit. A probe, not a product
path: its answer decides whether one is worth building.
Writes benchmarks/results/recalibration_probe.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from benchmarks import benchmark_set as bs
from benchmarks.common import machine_info, write_results
from benchmarks.dp_frontier import RESULTS
from benchmarks.scores import pooled_scores
from federation.core.histogram_metrics import RELEASE_GROUPS, bin_centres
from federation.core.model import predict_risk
from federation.core.records import read_rounds
from federation.modeler.run_loader import load_saved_model


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def released_counts(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The selected round's validation histograms summed over the sites, on the released bins."""
    selected = json.loads((run_dir / "summary.json").read_text())["selection"]["round"]
    record = next(r for r in read_rounds(run_dir) if r["round"] == selected)
    pos, neg = np.zeros(RELEASE_GROUPS), np.zeros(RELEASE_GROUPS)
    for site in record["validation"]["sites"].values():
        if "score_hist_pos" in site:
            pos += np.asarray(site["score_hist_pos"]).reshape(RELEASE_GROUPS, -1).sum(1)
            neg += np.asarray(site["score_hist_neg"]).reshape(RELEASE_GROUPS, -1).sum(1)
    return pos, neg


def platt_from_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of outcome on logit(bin centre), negative counts read as 0."""
    z = _logit(bin_centres(len(pos)))
    x = np.concatenate([z, z])[:, None]
    y = np.concatenate([np.ones_like(z), np.zeros_like(z)])
    weights = np.clip(np.concatenate([pos, neg]), 0, None) + 1e-9
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(x, y, sample_weight=weights)
    return float(fit.intercept_[0]), float(fit.coef_[0, 0])


def probe(workdir: Path, epsilon: str = "3") -> list[dict[str, Any]]:
    rows = []
    for dataset in bs.by_name(None):
        for run_dir in sorted((workdir / "runs").glob(f"{dataset.name}-eps{epsilon}-defaults-*")):
            seed = int(run_dir.name.rsplit("-", 1)[1])
            sites = bs.sites(bs.prepare(dataset, workdir), seed)
            x = np.concatenate([s.x_test for s in sites])
            y = np.concatenate([s.y_test for s in sites])
            risk = predict_risk(load_saved_model(run_dir / "model.pt").model, x)
            pos, neg = released_counts(run_dir)
            a, b = platt_from_counts(pos, neg)
            after = pooled_scores(y, 1 / (1 + np.exp(-(a + b * _logit(risk))))) if b > 0 else None
            rows.append(
                {
                    "dataset": dataset.name,
                    "seed": seed,
                    "slope_before": pooled_scores(y, risk)["slope"],
                    "platt_slope": b,
                    "slope_after": None if after is None else after["slope"],
                    "released_positives": float(pos.sum()),
                    "released_negatives": float(neg.sum()),
                    "true_validation_positives": int(sum(s.y_val.sum() for s in sites)),
                    "true_validation_rows": int(sum(len(s.y_val) for s in sites)),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="defaults_vs_frontier's --workdir")
    parser.add_argument("--out", default=str(RESULTS))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    results = {
        "command": "python -m benchmarks.recalibration_probe " + " ".join(argv),
        "machine": machine_info(),
        "rows": probe(Path(args.workdir)),
    }
    return write_results(results, Path(args.out), "recalibration_probe", render)


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Recalibrating the DP model from the validation releases (issue Q, item 5): a probe",
        "",
        f"Command: `{results['command']}` over `python -m benchmarks.defaults_vs_frontier`'s ε = 3 "
        f"run folders. Machine: {m['cpu']}, {m['cores']} cores; load `{m['load (uptime)']}`.",
        "",
        "Platt scaling fitted on the pooled released (noisy) validation histograms of the round each "
        "run handed out (post-processing: no ε), applied to the model's risks, scored on the pooled "
        "test rows. Goal: slope after in [0.7, 1.4].",
        "",
        "| dataset | seed | slope before | Platt slope fitted | slope after | released positives / negatives "
        "| true validation positives / rows |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        after = "n/a (fitted slope ≤ 0)" if r["slope_after"] is None else f"{r['slope_after']:.2f}"
        lines.append(
            f"| {r['dataset']} | {r['seed']} | {r['slope_before']:.2f} | {r['platt_slope']:.2f} | {after} "
            f"| {r['released_positives']:.1f} / {r['released_negatives']:.1f} "
            f"| {r['true_validation_positives']} / {r['true_validation_rows']} |"
        )
    inside = sum(r["slope_after"] is not None and 0.7 <= r["slope_after"] <= 1.4 for r in results["rows"])
    before = sum(0.7 <= r["slope_before"] <= 1.4 for r in results["rows"])
    lines += ["", f"Slope in [0.7, 1.4]: {before} of {len(results['rows'])} runs before, {inside} after."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
