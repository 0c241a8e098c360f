"""How the default recipe was chosen: every candidate on every benchmark dataset, by VALIDATION loss.

    .venv/bin/python -m benchmarks.defaults --stage screen    # 1 seed, DP off and ε=3
    .venv/bin/python -m benchmarks.defaults --stage confirm   # the best few, 3 seeds, + ε=1
    .venv/bin/python -m benchmarks.defaults --render          # benchmarks/results/defaults.md

Each cell is one federation (``benchmarks.benchmark_set.federate``: the real ServerApp loop and
ClientApp in process) scored by the pooled validation loss of the round it selected
(``summary["selection"]["validation"]["loss"]``); the test split is never read. A recipe's
*regret* on a cell is how much its loss exceeds the best candidate's there, relative to it; the
default is the recipe whose worst regret over all cells is smallest ("never far from the best
on any of them"). Cells are appended to a JSONL file as they finish, so a stage can resume.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks import benchmark_set as bs
from benchmarks.common import REPO, machine_info

RESULTS = REPO / "benchmarks" / "results"
PRIVACY = {"off": ["privacy=off"], "ε=3": ["privacy=dp", "privacy.target_epsilon=3.0"],
           "ε=1": ["privacy=dp", "privacy.target_epsilon=1.0"]}
# Every recipe starts from the configs as they were before this benchmark, so a cell means the
# same whatever the defaults become: 10 rounds x 1 local epoch, clip 1.0, no weight decay,
# patience 3. A recipe overrides that; the screen moves one factor at a time from a centre.
BASE = ["rounds=10", "train.local_epochs=1", "train.momentum=0.9", "train.weight_decay=0.0",
        "privacy.max_grad_norm=1.0", "early_stopping.patience=3"]
CENTRE = ["model=logreg", "train.optimizer=adam", "train.lr=0.01", "train.batch_size=32"]
RECIPES: dict[str, list[str]] = {
    "old default: mlp adam 0.01 b16": ["model=mlp", "train.optimizer=adam", "train.lr=0.01",
                                       "train.batch_size=16"],
    "centre: logreg adam 0.01 b32": CENTRE,
    "centre, mlp": [*CENTRE, "model=mlp"],
    "centre, sgd+momentum lr 0.1": [*CENTRE, "train.optimizer=sgd", "train.lr=0.1"],
    "centre, lr 0.003": [*CENTRE, "train.lr=0.003"],
    "centre, batch 64": [*CENTRE, "train.batch_size=64"],
    "centre, clip 0.5": [*CENTRE, "privacy.max_grad_norm=0.5"],
    "centre, 20 rounds": [*CENTRE, "rounds=20"],
    "centre, 2 local epochs": [*CENTRE, "train.local_epochs=2"],
    "centre, weight decay 1e-3": [*CENTRE, "train.weight_decay=0.001"],
}
# Recipes that change only DP settings: their DP-off cells are the centre's (not rerun).
DP_ONLY = {"centre, clip 0.5": "centre: logreg adam 0.01 b32"}
# screen: every recipe, one seed; confirm: the best few, a second seed and ε=1 (seed 42's
# screen cells count for the confirmation too).
STAGES = {"screen": ((42,), ("off", "ε=3")), "confirm": ((42, 43), ("off", "ε=3", "ε=1"))}


def cell(recipe: str, dataset: bs.Dataset, privacy: str, seed: int, workdir: Path) -> dict[str, Any]:
    run_dir = workdir / "runs" / f"{dataset.name}-{time.time_ns()}"
    start = time.time()
    summary = bs.federate(dataset, [*BASE, *RECIPES[recipe], *PRIVACY[privacy]], seed, run_dir)
    selection = summary["selection"]
    return {"recipe": recipe, "data": dataset.name, "privacy": privacy, "seed": seed,
            "loss": selection["validation"]["loss"], "val_auroc": selection["validation"].get("auroc"),
            "round": selection["round"], "rounds_run": summary["rounds"], "seconds": time.time() - start}


def _done(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    return {(r["recipe"], r["data"], r["privacy"], r["seed"])
            for r in map(json.loads, path.read_text().splitlines())}


def run_stage(stage: str, recipes: list[str], datasets: list[bs.Dataset], path: Path, workdir: Path) -> None:
    seeds, privacies = STAGES[stage]
    done = _done(path)
    for recipe in recipes:
        for dataset in datasets:
            prepared = bs.prepare(dataset, workdir)
            for privacy in privacies:
                for seed in seeds:
                    if (recipe, dataset.name, privacy, seed) in done or (
                            privacy == "off" and recipe in DP_ONLY):
                        continue
                    row = {**cell(recipe, prepared, privacy, seed, workdir), "stage": stage,
                           "load": machine_info()["load (uptime)"].split("load average:")[-1].strip()}
                    with path.open("a") as out:
                        out.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)


def _with_dp_only_copies(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A DP-only recipe's DP-off cells are its base recipe's (the same run, DP off)."""
    present = {r["recipe"] for r in rows}
    copies = [{**r, "recipe": k} for k, base in DP_ONLY.items() if k in present
              for r in rows if r["recipe"] == base and r["privacy"] == "off"]
    return rows + copies


def table(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, float]]:
    """Mean validation loss per recipe and (dataset, privacy); each recipe's worst regret."""
    rows = _with_dp_only_copies(rows)
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in rows:
        cells.setdefault((r["data"], r["privacy"]), {}).setdefault(r["recipe"], []).append(r["loss"])
    columns = sorted(cells, key=lambda c: (c[1], c[0]))
    recipes = sorted({r["recipe"] for r in rows}, key=list(RECIPES).index)
    complete = [c for c in columns if all(k in cells[c] for k in recipes)]
    regret = {k: max((statistics.mean(cells[c][k]) / min(statistics.mean(v) for v in cells[c].values()) - 1)
                     for c in complete) for k in recipes} if complete else {}
    lines = ["| recipe | " + " | ".join(f"{d} {p}" for d, p in columns) + " | worst regret |",
             "|---|" + "---:|" * (len(columns) + 1)]
    for k in recipes:
        values = []
        for c in columns:
            if k not in cells[c]:
                values.append("–")
                continue
            v = statistics.mean(cells[c][k])
            best = min(statistics.mean(x) for x in cells[c].values())
            values.append(f"**{v:.4f}**" if v == best else f"{v:.4f}")
        lines.append(f"| {k} | " + " | ".join(values) + f" | {100 * regret.get(k, float('nan')):.1f} % |")
    return lines, regret


def render(path: Path, out: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    text = ["# Choosing the default recipe (issue J)", "", __doc__.split("\n\n", 2)[2].strip(), ""]
    for stage in STAGES:
        staged = [r for r in rows if r.get("stage") == stage]
        if not staged:
            continue
        seeds = sorted({r["seed"] for r in staged})
        lines, regret = table(staged)
        loads = sorted({r["load"] for r in staged})
        text += [f"## Stage `{stage}`: pooled validation loss of the selected round, seeds {seeds}", "",
                 f"Command: `python -m benchmarks.defaults --stage {stage}`; "
                 f"{sum(r['seconds'] for r in staged) / 60:.0f} min of runs; load averages seen "
                 f"{loads[0]} … {loads[-1]}.", "", *lines, ""]
        if regret:
            best = min(regret, key=regret.get)
            text += [f"Smallest worst regret: **{best}** ({100 * regret[best]:.1f} %).", ""]
    out.write_text("\n".join(text) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=list(STAGES))
    parser.add_argument("--recipes", nargs="*", default=None, help="names in RECIPES (default all)")
    parser.add_argument("--datasets", nargs="*", default=None)
    parser.add_argument("--results", default=str(RESULTS / "defaults.jsonl"))
    parser.add_argument("--workdir", default="/tmp/lhsfed-defaults")
    parser.add_argument("--render", action="store_true", help="write benchmarks/results/defaults.md")
    args = parser.parse_args()
    bs.quiet_logs()
    warnings.simplefilter("ignore")
    path = Path(args.results)
    if args.stage:
        run_stage(args.stage, args.recipes or list(RECIPES), bs.by_name(args.datasets), path,
                  Path(args.workdir))
    if args.render:
        render(path, RESULTS / "defaults.md")


if __name__ == "__main__":
    main()
