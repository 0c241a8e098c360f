"""(b) Federated simulation wall time / centralized time for the same sample-epochs.

4 synthetic hospitals, 200k rows; R rounds x 1 local epoch on every site = R epochs over the
pooled rows. Both run as fresh processes, interleaved; DP off on both (DP cost is (a)).
Also reported: steady-state seconds per round (from the round checkpoints' times) against
seconds per centralized epoch, which leaves out the runtime's fixed start-up cost.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.common import (
    BIN,
    REPO,
    fresh_run_dir,
    median,
    run_watched,
    side_by_side,
    synth_cohort,
)
from federation.core.run_layout import ROUNDS


def federated_command(data_dir: Path, run_dir: Path, rounds: int, *extra: str) -> list[str]:
    return [
        str(BIN / "lhsfed-train"),
        "--config-dir",
        str(data_dir),
        "data=bench",
        f"federation.data_dir={data_dir}",
        f"rounds={rounds}",
        "privacy=off",
        "train.batch_size=256",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def central_command(data_dir: Path, rounds: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.central",
        "--config-dir",
        str(data_dir),
        "--data",
        "bench",
        "--epochs",
        str(rounds),
        "--batch-size",
        "256",
    ]


def seconds_per_round(run_dir: Path) -> float:
    """Mean time between consecutive round checkpoints (rounds after the first)."""
    stamps = sorted(p.stat().st_mtime for p in (run_dir / ROUNDS).glob("round_*.pt"))
    return (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1)


def run(work: Path, *, sites: int = 4, rows: int = 200_000, rounds: int = 3, repeats: int = 3) -> dict:
    data_dir = work / f"cohort_{sites}x{rows}"
    synth_cohort(data_dir, sites=sites, rows=rows)
    counter = iter(range(1000))
    steady: dict[str, list[float]] = {"federated": [], "central": []}

    def federated() -> dict[str, float]:
        run_dir = fresh_run_dir(work / f"fed_run_{next(counter)}")
        wall = run_watched(federated_command(data_dir, run_dir, rounds), cwd=REPO)["wall_s"]
        steady["federated"].append(seconds_per_round(run_dir))
        return {"wall": wall}

    def central() -> dict[str, float]:
        result = run_watched(central_command(data_dir, rounds), cwd=REPO)
        epochs = json.loads(result["output"].strip().splitlines()[-1])["epoch_s"]
        steady["central"].append(median(epochs))
        return {"wall": result["wall_s"]}

    times = side_by_side({"federated": federated, "central": central}, repeats)
    wall = {k: median(v["wall"]) for k, v in times.items()}
    per_round = {k: median(v) for k, v in steady.items()}
    return {
        "sites": sites,
        "rows": rows,
        "rounds": rounds,
        "repeats": repeats,
        "times": times,
        "steady": steady,
        "wall": wall,
        "per_round": per_round,
        "ratio_wall": wall["federated"] / wall["central"],
        "ratio_per_round": per_round["federated"] / per_round["central"],
        "command": " ".join(federated_command(data_dir, Path("RUN"), rounds)),
    }
