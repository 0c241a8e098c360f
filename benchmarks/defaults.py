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
PRIVACY = {
    "off": ["privacy=off"],
    "ε=3": ["privacy=dp", "privacy.target_epsilon=3.0"],
    "ε=1": ["privacy=dp", "privacy.target_epsilon=1.0"],
}
# Every recipe starts from the configs as they were before this benchmark, so a cell means the
# same whatever the defaults become: 10 rounds x 1 local epoch, clip 1.0, no weight decay,
# patience 3. A recipe overrides that; the screen moves one factor at a time from a centre.
BASE = [
    "rounds=10",
    "train.local_epochs=1",
    "train.momentum=0.9",
    "train.weight_decay=0.0",
    "privacy.max_grad_norm=1.0",
    "early_stopping.patience=3",
]
CENTRE = ["model=logreg", "train.optimizer=adam", "train.lr=0.01", "train.batch_size=32"]
RECIPES: dict[str, list[str]] = {
    "old default: mlp adam 0.01 b16": [
        "model=mlp",
        "train.optimizer=adam",
        "train.lr=0.01",
        "train.batch_size=16",
    ],
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
    return {
        "recipe": recipe,
        "data": dataset.name,
        "privacy": privacy,
        "seed": seed,
        "loss": selection["validation"]["loss"],
        "val_auroc": selection["validation"].get("auroc"),
        "round": selection["round"],
        "rounds_run": summary["rounds"],
        "seconds": time.time() - start,
    }


def _done(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    return {
        (r["recipe"], r["data"], r["privacy"], r["seed"])
        for r in map(json.loads, path.read_text().splitlines())
    }


def run_stage(stage: str, recipes: list[str], datasets: list[bs.Dataset], path: Path, workdir: Path) -> None:
    seeds, privacies = STAGES[stage]
    done = _done(path)
    for recipe in recipes:
        for dataset in datasets:
            prepared = bs.prepare(dataset, workdir)
            for privacy in privacies:
                for seed in seeds:
                    if (recipe, dataset.name, privacy, seed) in done or (
                        privacy == "off" and recipe in DP_ONLY
                    ):
                        continue
                    row = {
                        **cell(recipe, prepared, privacy, seed, workdir),
                        "stage": stage,
                        "load": machine_info()["load (uptime)"].split("load average:")[-1].strip(),
                    }
                    with path.open("a") as out:
                        out.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)


NOTES = """## What was cut, and why

The machine (2 cores) was shared with several other engineers' test runs while this ran: load
averages 11-18, so one federation took 45-115 s instead of 5-10 s. The screen was therefore
cut to the recipes above (`--recipes`, two processes side by side) and stopped once the
choice was clear: the `centre` variants (logreg + Adam, clip 0.5 with Adam) were worse than
SGD + momentum wherever they ran, and the old default (MLP + Adam) was up to 32 % worse
(uci_heart_flamby, DP off; it overfits the small synth sites by round 2). Not screened:
learning rates other than 0.1 for SGD, batch 64, 20 rounds, 2 local epochs and weight decay
as separate recipes; the quality bench's *tuned* row (Optuna over optimiser, lr, batch,
local epochs, weight decay and model, DP off) covers them per dataset and says how far the
default is from what tuning finds. The confirm stage re-ran the chosen recipe on a second
split (seed 43) and at ε=1; DP cells of one seed can move by ±0.03 loss between runs (the
sites' noise is their own secret), e.g. uci_heart ε=1, seed 42: 0.427 and 0.494.

Chosen default: logistic regression, SGD with momentum 0.9, lr 0.1, batch 32, 10 rounds × 1
local epoch, clip 1.0, no weight decay, patience 3. It is within 5 % of the best validation
loss on every cell it ran (worst: synth_hetero ε=3, 0.426 vs the MLP's 0.408)
and the best on 5 of the 10 screen cells, within 0.2 % of the best on 2 more.
"""


def _with_dp_only_copies(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A DP-only recipe's DP-off cells are its base recipe's (the same run, DP off)."""
    present = {r["recipe"] for r in rows}
    copies = [
        {**r, "recipe": k}
        for k, base in DP_ONLY.items()
        if k in present
        for r in rows
        if r["recipe"] == base and r["privacy"] == "off"
    ]
    return rows + copies


def table(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, float]]:
    """Mean validation loss per recipe and (dataset, privacy), and each recipe's worst regret
    over the cells it ran (a recipe cut short says how many cells that is)."""
    rows = _with_dp_only_copies(rows)
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in rows:
        cells.setdefault((r["data"], r["privacy"]), {}).setdefault(r["recipe"], []).append(r["loss"])
    columns = sorted(cells, key=lambda c: (c[1], c[0]))
    recipes = sorted({r["recipe"] for r in rows}, key=list(RECIPES).index)
    best = {c: min(statistics.mean(v) for v in cells[c].values()) for c in columns}
    regret = {
        k: max(statistics.mean(cells[c][k]) / best[c] - 1 for c in columns if k in cells[c]) for k in recipes
    }
    lines = [
        "| recipe | " + " | ".join(f"{d} {p}" for d, p in columns) + " | worst regret (cells) |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for k in recipes:
        values = [
            (
                "–"
                if k not in cells[c]
                else f"**{statistics.mean(cells[c][k]):.4f}**"
                if statistics.mean(cells[c][k]) == best[c]
                else f"{statistics.mean(cells[c][k]):.4f}"
            )
            for c in columns
        ]
        ran = sum(k in cells[c] for c in columns)
        lines.append(
            f"| {k} | " + " | ".join(values) + f" | {100 * regret[k]:.1f} % ({ran}/{len(columns)}) |"
        )
    complete = {k: v for k, v in regret.items() if all(k in cells[c] for c in columns)}
    return lines, complete


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
        text += [
            f"## Stage `{stage}`: pooled validation loss of the selected round, seeds {seeds}",
            "",
            f"Command: `python -m benchmarks.defaults --stage {stage} --recipes …` (the recipes "
            f"below); "
            f"{sum(r['seconds'] for r in staged) / 60:.0f} min of runs; load averages seen "
            f"{loads[0]} … {loads[-1]}.",
            "",
            *lines,
            "",
        ]
        if regret:
            best = min(regret, key=regret.get)
            text += [
                f"Smallest worst regret among the recipes that ran every cell: **{best}** "
                f"({100 * regret[best]:.1f} %).",
                "",
            ]
    text += [NOTES]
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
        run_stage(
            args.stage, args.recipes or list(RECIPES), bs.by_name(args.datasets), path, Path(args.workdir)
        )
    if args.render:
        render(path, RESULTS / "defaults.md")


if __name__ == "__main__":
    main()
