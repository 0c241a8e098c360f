"""The project's DP defaults, as they are now, against the stored DP frontier (issue Q, acceptance 3).

    .venv/bin/python -m benchmarks.defaults_vs_frontier     # make bench-defaults-frontier

The frontier (benchmarks/dp_frontier.py, 200 federations, ~18 min) is a reference that does not
change with the defaults: its chosen config's runs on every seed are read from
benchmarks/results/dp_frontier.json. This runs only the defaults, with no override but the ε
(``privacy=dp privacy.target_epsilon=E``: every other setting, ``train.lr=auto`` included, is
what ``lhsfed-train`` does), on the same datasets, splits and seeds, scores each run's own
``model.pt`` on the pooled test rows, and sets the goals beside it: defaults ≥ frontier − 0.01
AUROC at ε = 3, ≥ frontier − 0.02 at ε = 1, calibration slope in [0.7, 1.4] at ε = 3.

DP runs are not reproducible (each draws its own noise), so a defaults run here and the
frontier file's defaults runs of the same config differ by that noise alone; the table shows
both when the defaults did not change. Writes benchmarks/results/defaults_vs_frontier.md/.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks import benchmark_set as bs
from benchmarks import dp_frontier as frontier
from benchmarks.common import machine_info, write_results
from federation.core.learning_rate import default_lr

FRONTIER_FILE = frontier.RESULTS / "dp_frontier.json"


def defaults_overrides(epsilon: float) -> list[str]:
    """The defaults at ε: nothing else is set (lr, batch, clip, rounds are the config's)."""
    return ["privacy=dp", f"privacy.target_epsilon={epsilon}"]


def measure(stored: dict[str, Any], seeds: tuple[int, ...], workdir: Path, names: list[str] | None) -> dict:
    """Run the defaults on every stored dataset × ε and seed; the stored frontier beside them."""
    cells: dict[str, dict[str, Any]] = {}
    for dataset in bs.by_name(names or list(stored["datasets"])):
        prepared = bs.prepare(dataset, workdir)
        for key, old in stored["datasets"][dataset.name]["cells"].items():
            epsilon = float(key)
            runs = [
                frontier.run(
                    prepared,
                    defaults_overrides(epsilon),
                    seed,
                    workdir / "runs" / f"{dataset.name}-eps{key}-defaults-{seed}",
                )
                for seed in seeds
            ]
            cells[f"{dataset.name}@{key}"] = {
                "dataset": dataset.name,
                "epsilon": epsilon,
                "lr": default_lr(True, epsilon),
                "defaults_runs": [frontier.scored(r) for r in runs],
                "frontier_label": old["chosen_label"],
                "frontier": [r for r in old["frontier"] if r["seed"] in seeds],
                "stored_defaults_label": frontier.label(old["defaults"]),
                "stored_defaults": [r for r in old["defaults_runs"] if r["seed"] in seeds],
            }
    return cells


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frontier", default=str(FRONTIER_FILE), help="the stored dp_frontier.json")
    parser.add_argument("--datasets", nargs="*", default=None)
    parser.add_argument("--seeds", nargs="*", type=int, default=None)
    parser.add_argument("--out", default=str(frontier.RESULTS))
    parser.add_argument("--workdir", default=None, help="keep the run folders here (default: a temp dir)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    bs.quiet_logs()
    warnings.simplefilter("ignore")
    stored = json.loads(Path(args.frontier).read_text())
    seeds = tuple(args.seeds or stored["seeds"])
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="lhsfed-dvf-"))
    start, machine = time.time(), machine_info()
    try:
        cells = measure(stored, seeds, workdir, args.datasets)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    results = {
        "command": "python -m benchmarks.defaults_vs_frontier " + " ".join(argv),
        "frontier_command": stored["command"],
        "machine": machine,
        "load_after": machine_info()["load (uptime)"],
        "seeds": list(seeds),
        "wall_s": time.time() - start,
        "cells": cells,
    }
    return write_results(results, Path(args.out), "defaults_vs_frontier", render)


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.mean(r[key] for r in rows)


def verdicts(cell: dict[str, Any]) -> dict[str, Any]:
    """The goals of issue Q for one dataset × ε: AUROC gap to the frontier and, at ε = 3, slope."""
    gap = _mean(cell["defaults_runs"], "auroc") - _mean(cell["frontier"], "auroc")
    auroc_ok = gap >= -frontier.GOALS[cell["epsilon"]]
    slope = _mean(cell["defaults_runs"], "slope")
    slope_ok = None if cell["epsilon"] != 3.0 else frontier.SLOPE_GOAL[0] <= slope <= frontier.SLOPE_GOAL[1]
    return {"gap": gap, "auroc_ok": auroc_ok, "slope": slope, "slope_ok": slope_ok}


def render(results: dict[str, Any]) -> str:
    """defaults_vs_frontier.md from the results (pure: dict -> text)."""
    m = results["machine"]
    lines = [
        "# The DP defaults against the stored DP frontier (issue Q, acceptance 3)",
        "",
        f"Command: `{results['command']}`; seeds {results['seeds']} (run seed = split seed); "
        f"{sum(len(c['defaults_runs']) for c in results['cells'].values())} federations, "
        f"{results['wall_s'] / 60:.1f} min on one process. The frontier: `{results['frontier_command']}` "
        "(benchmarks/results/dp_frontier.md), read from its JSON, not run again.",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; load at start: `{m['load (uptime)']}`; "
        f"at the end: `{results['load_after']}`.",
        "",
        "Defaults: `lhsfed-train privacy=dp privacy.target_epsilon=E` and nothing else, so "
        "`train.lr=auto` gives lr = 0.1 · min(1, ε / 3). Mean ± sd of pooled test AUROC and "
        "calibration slope over the seeds; the stored defaults are the frontier file's runs of the "
        "defaults of that time (another noise draw).",
        "",
        "| dataset | ε | defaults lr | defaults AUROC | frontier AUROC (config) | defaults − frontier "
        "| goal | defaults slope | slope goal (ε = 3) | stored defaults AUROC (config) "
        "| ε spent per site (max) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|",
    ]
    for c in results["cells"].values():
        v = verdicts(c)
        spent = max(e for r in c["defaults_runs"] for e in r["epsilon"].values() if e is not None)
        slope_goal = (
            "–" if v["slope_ok"] is None else ("in [0.7, 1.4]: met" if v["slope_ok"] else "**MISSED**")
        )
        lines.append(
            f"| {c['dataset']} | {c['epsilon']:g} | {c['lr']:.3g} "
            f"| {frontier.mean_sd([r['auroc'] for r in c['defaults_runs']])} "
            f"| {frontier.mean_sd([r['auroc'] for r in c['frontier']])} (`{c['frontier_label']}`) "
            f"| {v['gap']:+.3f} | ≥ −{frontier.GOALS[c['epsilon']]:.2f}: "
            f"{'met' if v['auroc_ok'] else '**MISSED**'} "
            f"| {frontier.mean_sd([r['slope'] for r in c['defaults_runs']])} | {slope_goal} "
            f"| {frontier.mean_sd([r['auroc'] for r in c['stored_defaults']])} "
            f"(`{c['stored_defaults_label']}`) "
            f"| {spent:.2f} |"
        )
    met = sum(verdicts(c)["auroc_ok"] for c in results["cells"].values())
    slopes = [verdicts(c)["slope_ok"] for c in results["cells"].values() if c["epsilon"] == 3.0]
    lines += [
        "",
        f"AUROC goals met in {met} of {len(results['cells'])} dataset × ε cells; calibration slope at "
        f"ε = 3 in range on {sum(bool(s) for s in slopes)} of {len(slopes)} datasets.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
