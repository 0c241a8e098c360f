"""(a) One DP-SGD epoch vs one plain epoch: 50k rows x 30 features, batch 256, Adam, noise 1.0.

Both go through ``client.training.train_locally`` (the code a hospital runs), on a synthetic
hospital from ``federation.modeler.synth``; every DP mode the model allows is timed side by
side (the MLP: Opacus's hooks, functorch, ghost; the default logreg model also the closed-form
per-sample gradients of ``client.linear_dp``, its default). Only ``train_locally`` is timed:
building the model and its feature statistics is the same for both and is left out.

``make bench`` runs the MLP as section (a); the default model alone:

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.dp_epoch [--model logreg] [--repeats 7]

writes ``benchmarks/results/dp_epoch_linear.md`` (``--model mlp``: ``dp_epoch_mlp.md``) with
the command, machine load, medians and ratios.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import warnings

import numpy as np
import torch

from benchmarks.common import REPO, machine_info, medians, side_by_side, timed
from client.linear_dp import CLOSED_FORM
from client.training import GRAD_SAMPLE_MODES, default_grad_sample_mode, train_locally
from federation.core.data import encode_features, encode_labels
from federation.core.dataspec import parse_dataset_spec
from federation.core.feature_stats import feature_statistics
from federation.core.model import ModelSpec, build_model
from federation.core.settings import PrivacySettings, TrainSettings
from federation.modeler.synth import dataset_spec, hospital_cohort

TRAIN = TrainSettings(local_epochs=1, batch_size=256, lr=0.01, optimizer="adam")
NOISE = 1.0
GOAL = 1.5
OUT_NAMES = {"logreg": "dp_epoch_linear.md", "mlp": "dp_epoch_mlp.md"}
NOTES_LOGREG = """\
What the two epochs are: the same loader code and batch fetch (one indexing call per batch,
`_BatchedTensors`), the same Adam; the plain path was not changed for this benchmark. On a
60->1 linear model a plain step is small, so the batch fetch and Adam are a large share of the
plain epoch (profile below). What DP adds per step with the closed form: the Poisson sampler
(one 64-bit ChaCha20 word per row per step, {kb:.0f} kB of keystream a step here, compared as
integers), the closed-form clipping (no autograd, no per-sample tensors: norms
`|r| sqrt(|h|^2 + 1)`), one noise draw for weight and bias, and the accountant's step.
Opacus's modes on the same model pay hooks or a second backward pass on top of that.

Not done: drawing 32 bits per row first (exact with a tie-break draw) would halve the
sampler's keystream, but changes which keystream bytes pick which rows."""


def cohort_arrays(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    spec = parse_dataset_spec(dataset_spec("bench", {"bench": "bench.parquet"}))
    frame = hospital_cohort("bench", rows, 0.5, seed)
    return encode_features(frame, spec, "bench"), encode_labels(frame, spec, "bench")


def _fresh_model(name: str, stats: tuple[np.ndarray, np.ndarray]):
    model = build_model(ModelSpec(name, n_features=len(stats[0])), seed=0)
    model.preprocess.set_statistics(*stats)
    return model


def _epoch(x, y, *, dp: bool, mode: str | None = None, model: str, stats):
    """A fresh model each call (untimed), then one timed epoch: {"wall": s, "cpu": s}."""

    def train(net) -> None:
        train_locally(
            net,
            x,
            y,
            train=TRAIN,
            privacy=PrivacySettings(enabled=dp),
            noise_multiplier=NOISE if dp else None,
            seed=1,
            grad_sample_mode=mode,
        )

    def run() -> dict[str, float]:
        net = _fresh_model(model, stats)
        return timed(lambda: train(net))

    run.train = train  # for the profile
    return run


def dp_modes(model: str) -> tuple[str, ...]:
    return (CLOSED_FORM, *GRAD_SAMPLE_MODES) if model == "logreg" else GRAD_SAMPLE_MODES


def profile_top(run, lines: int = 12) -> str:
    """cProfile's top entries by own time, for the record of where an epoch's time goes."""
    profiler = cProfile.Profile()
    profiler.runcall(run)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(lines)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())[-4000:]


def run(rows: int = 50_000, repeats: int = 5, model: str = "mlp") -> dict:
    torch.set_num_threads(1)  # as in a simulated client (Ray gives each 1 CPU, OMP_NUM_THREADS=1)
    x, y = cohort_arrays(rows)
    stats = feature_statistics(x)
    variants = {"plain": _epoch(x, y, dp=False, model=model, stats=stats)}
    variants.update(
        {f"dp-{m}": _epoch(x, y, dp=True, mode=m, model=model, stats=stats) for m in dp_modes(model)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus's secure-RNG and backward-hook warnings
        for variant in variants.values():
            variant()  # warm-up: imports, allocator, Opacus validators
        times = side_by_side(variants, repeats)
        med = medians(times)
        best = min((k for k in med if k != "plain"), key=lambda k: med[k]["cpu"])
        default = f"dp-{default_grad_sample_mode(_fresh_model(model, stats))}"
        ratio = {v: {m: med[v][m] / med["plain"][m] for m in ("cpu", "wall")} for v in med}
        return {
            "model": model,
            "rows": rows,
            "features": x.shape[1],
            "repeats": repeats,
            "times": times,
            "medians": med,
            "best": best,
            "default": default,
            "ratio": ratio[best],
            "ratios": ratio,
            "profile_dp": profile_top(lambda: variants[default].train(_fresh_model(model, stats))),
            "profile_plain": profile_top(lambda: variants["plain"].train(_fresh_model(model, stats))),
        }


def report(result: dict, command: str, machine: dict[str, str]) -> str:
    """The Markdown record: command, machine and load, medians, ratios, profiles."""
    default, ratio = result["default"], result["ratios"][result["default"]]["cpu"]
    status = f"**met** (goal <= {GOAL})" if ratio <= GOAL else f"**missed** (goal <= {GOAL})"
    lines = [
        f"# DP-SGD epoch / plain epoch, {result['model']} model",
        "",
        f"Command: `{command}`",
        "",
        f"{result['rows']} rows x {result['features']} features (synthetic hospital), "
        f"model `{result['model']}`, batch 256, Adam, noise 1.0, one torch thread, "
        f"{result['repeats']} repeats interleaved; only `client.training.train_locally` is timed.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in machine.items()),
        "",
        "| variant | median CPU s | median wall s | DP/plain (CPU) | DP/plain (wall) | all CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for name, med in result["medians"].items():
        ratios, cpus = result["ratios"][name], ", ".join(f"{t:.3f}" for t in result["times"][name]["cpu"])
        lines.append(
            f"| {name} | {med['cpu']:.3f} | {med['wall']:.3f} | {ratios['cpu']:.2f} | "
            f"{ratios['wall']:.2f} | {cpus} |"
        )
    lines += [
        "",
        f"Default DP mode for this model: `{default}`; DP/plain = {ratio:.2f} (CPU time, median), "
        f"{result['ratios'][default]['wall']:.2f} (wall): {status}.",
        "",
        *([NOTES_LOGREG.format(kb=8 * result["rows"] / 1000), ""] if result["model"] == "logreg" else []),
        f"cProfile of one `{default}` epoch (top by own time):",
        "",
        "```",
        result["profile_dp"],
        "```",
        "",
        "Plain epoch:",
        "",
        "```",
        result["profile_plain"],
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="logreg", choices=("logreg", "mlp"))
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.dp_epoch " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = {**machine_info(), "torch threads": "1"}
    result = run(rows=args.rows, repeats=args.repeats, model=args.model)
    machine["load after (uptime)"] = machine_info()["load (uptime)"]
    out = REPO / "benchmarks" / "results" / OUT_NAMES[args.model]
    out.write_text(report(result, command.strip(), machine))
    print(out.read_text().split("cProfile")[0])


if __name__ == "__main__":
    main()
