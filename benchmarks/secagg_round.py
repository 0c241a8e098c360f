"""SecAgg+ training round vs plain training round, 4 UCI sites, side by side in one process.

Both rounds go through the server code a run uses (``server.federation_loop._plain_train`` and
``server.secure_aggregation.secure_train_round``) and the real ClientApp of each site, over
the in-process grid the tests use (no Ray, no sockets: what is timed is training plus the
protocol, not transport). Rounds alternate, so load changes hit both alike; goal: SecAgg+
round <= 2x a plain round. One untimed warm-up pair first; then a cProfile of one more
SecAgg+ round says where its time goes. CPU seconds (this process: server and sites) are the
figure to trust on a loaded machine; wall seconds are also reported.

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.secagg_round [--repeats 21]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import sys
import tempfile

import torch

from benchmarks.common import REPO, machine_info, medians, side_by_side, timed
from client.app import app as client_app
from federation.coordinator.flwr_app_config import compose_config
from federation.coordinator.inprocess import InProcessGrid
from federation.core.settings import RunSettings, flatten_config
from server.federation_loop import _plain_train, initial_arrays
from server.secure_aggregation import secure_train_round
from strategies import build_strategy

SITES, TIMEOUT, GOAL = 4, 600.0, 2.0
# One torch thread: on a loaded shared machine torch's pool spin-waits, and round times then
# swing 30x; sites run on their own machines in a deployment anyway.
THREADS = 1
OUT = REPO / "benchmarks" / "results" / "secagg_round.md"
SPLIT = ("train_locally", "mask_prg", "budget")  # sites' training, masks (both sides), ε query


def _profile(run) -> tuple[str, dict[str, float]]:
    """cProfile text of ``run`` and the cumulative seconds of the functions named in SPLIT."""
    profiler = cProfile.Profile()
    profiler.runcall(run)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("cumulative")
    stats.print_stats(25)
    stats.sort_stats("tottime").print_stats(15)
    split = {"total": stats.total_tt}
    for (_, _, function), (_, _, _, cumulative, _) in stats.stats.items():
        if function in SPLIT:
            split[function] = split.get(function, 0.0) + cumulative
    return text.getvalue(), split


def _timed_round(run) -> dict[str, float]:
    """Times one round; refuses to count a round that did not train all four sites."""
    result: list = []
    seconds = timed(lambda: result.append(run()))
    _, replies, report = result[0]
    trained = report.get("sites", sum(not r.has_error() for r in replies))
    if trained != SITES or any(r.has_error() for r in replies):
        raise RuntimeError(f"a benchmark round trained {trained} of {SITES} sites: not comparable")
    return seconds


def measure(repeats: int) -> tuple[dict, tuple[str, dict[str, float]]]:
    """Median wall/CPU seconds per variant, and the profile of one more SecAgg+ round."""
    run_config = flatten_config(compose_config([f"rounds={2 * repeats + 4}"]))
    run_config["output_dir"] = tempfile.mkdtemp(prefix="secagg-bench-")
    settings = RunSettings.from_run_config(run_config)
    rounds = itertools.count(1)
    with InProcessGrid(client_app, run_config, SITES) as grid:
        arrays = initial_arrays(grid, settings, grid.get_node_ids(), timeout=TIMEOUT)
        strategy = build_strategy(settings.strategy)
        variants = {
            "plain FedAvg round": lambda: _timed_round(
                lambda: _plain_train(grid, strategy, next(rounds), arrays, TIMEOUT)
            ),
            "SecAgg+ round": lambda: _timed_round(
                lambda: secure_train_round(grid, settings, next(rounds), arrays, TIMEOUT)
            ),
        }
        side_by_side(variants, 1)  # warm-up, untimed: first-call costs (imports, Opacus) of each
        times = side_by_side(variants, repeats)
        profile = _profile(lambda: secure_train_round(grid, settings, next(rounds), arrays, TIMEOUT))
    return {"times": times, "medians": medians(times)}, profile


def report(result: dict, profiled: tuple[str, dict[str, float]], command: str, info: dict) -> str:
    profile, split = profiled
    med = result["medians"]
    plain, secure = med["plain FedAvg round"], med["SecAgg+ round"]
    ratio = secure["wall"] / plain["wall"]
    lines = [
        "# SecAgg+ round vs plain round (4 sites)",
        "",
        f"Command: `{command}`",
        "",
        "| machine | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    lines += ["", "| round | median wall s | median CPU s | all wall s |", "|---|---|---|---|"]
    for name, m in med.items():
        walls = ", ".join(f"{w:.2f}" for w in result["times"][name]["wall"])
        lines.append(f"| {name} | {m['wall']:.2f} | {m['cpu']:.2f} | {walls} |")
    verdict = "met" if ratio <= GOAL else "MISSED"
    lines += [
        "",
        f"**Ratio SecAgg+ / plain (median wall): {ratio:.2f}** "
        f"(CPU: {secure['cpu'] / plain['cpu']:.2f}); goal <= {GOAL:g}: {verdict}.",
        "",
        f"Where one SecAgg+ round's {split['total']:.2f} s go (profiled): sites' local "
        f"training {split.get('train_locally', 0):.2f} s, budget query "
        f"{split.get('budget', 0):.2f} s, mask generation (ChaCha20, both sides) "
        f"{split.get('mask_prg', 0):.3f} s, the rest (keys, Shamir shares, encryption, "
        f"quantization, message copies) "
        f"{split['total'] - sum(v for k, v in split.items() if k != 'total'):.2f} s.",
        "",
        "What this leaves out: the grid is in process, so a deployment adds, per SecAgg+ "
        "round, the latency of 4 more server-site round trips (budget query and 3 more "
        "protocol stages; a plain round has 1). The own-time list below shows where the "
        "protocol's CPU goes.",
        "",
        "Profile of one more SecAgg+ round (cProfile: top 25 by cumulative time, then top 15 by own time):",
        "",
        "```",
        profile.strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args(argv)
    os.environ.setdefault("LHSFED_LEDGER_DIR", tempfile.mkdtemp(prefix="secagg-bench-ledgers-"))
    torch.set_num_threads(THREADS)
    command = "python -m benchmarks.secagg_round " + " ".join(sys.argv[1:] if argv is None else argv)
    info = {**machine_info(), "torch threads": str(THREADS)}  # load before the run
    result, profile = measure(args.repeats)
    info["load after (uptime)"] = machine_info()["load (uptime)"]
    OUT.write_text(report(result, profile, command.strip(), info))
    print(OUT.read_text().split("Profile")[0])


if __name__ == "__main__":
    main()
