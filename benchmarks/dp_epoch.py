"""(a) One DP-SGD epoch vs one plain epoch: 50k rows x 30 features, the project's MLP, batch 256.

Both go through ``client.training.train_locally`` (the code a hospital runs), on a synthetic
hospital from ``federation.modeler.synth``; every Opacus per-sample-gradient mode is timed.
"""

from __future__ import annotations

import cProfile
import io
import pstats

import numpy as np
import torch

from benchmarks.common import medians, side_by_side, timed
from client.training import GRAD_SAMPLE_MODES, train_locally
from federation.core.data import encode_features, encode_labels
from federation.core.dataspec import parse_dataset_spec
from federation.core.feature_stats import feature_statistics
from federation.core.model import ModelSpec, build_model
from federation.core.settings import PrivacySettings, TrainSettings
from federation.modeler.synth import dataset_spec, hospital_cohort

TRAIN = TrainSettings(local_epochs=1, batch_size=256, lr=0.01, optimizer="adam")
NOISE = 1.0


def cohort_arrays(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    spec = parse_dataset_spec(dataset_spec("bench", {"bench": "bench.parquet"}))
    frame = hospital_cohort("bench", rows, 0.5, seed)
    return encode_features(frame, spec, "bench"), encode_labels(frame, spec, "bench")


def _epoch(x, y, *, dp: bool, mode: str = "hooks"):
    def run():
        model = build_model(ModelSpec("mlp", n_features=x.shape[1]), seed=0)
        model.preprocess.set_statistics(*feature_statistics(x))
        train_locally(
            model,
            x,
            y,
            train=TRAIN,
            privacy=PrivacySettings(enabled=dp),
            noise_multiplier=NOISE if dp else None,
            seed=1,
            grad_sample_mode=mode,
        )

    return run


def profile_top(run, lines: int = 12) -> str:
    """cProfile's top entries by cumulative time, for the record of why a goal is missed."""
    profiler = cProfile.Profile()
    profiler.runcall(run)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(lines)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())[-4000:]


def run(rows: int = 50_000, repeats: int = 5) -> dict:
    torch.set_num_threads(1)  # as in a simulated client (Ray gives each 1 CPU, OMP_NUM_THREADS=1)
    x, y = cohort_arrays(rows)
    variants = {"plain": _epoch(x, y, dp=False)}
    variants.update({f"dp-{m}": _epoch(x, y, dp=True, mode=m) for m in GRAD_SAMPLE_MODES})
    for variant in variants.values():
        variant()  # warm-up: imports, allocator, Opacus validators
    times = side_by_side({k: (lambda v=v: timed(v)) for k, v in variants.items()}, repeats)
    med = medians(times)
    best = min((k for k in med if k != "plain"), key=lambda k: med[k]["cpu"])
    return {
        "rows": rows,
        "features": x.shape[1],
        "repeats": repeats,
        "times": times,
        "medians": med,
        "best": best,
        "ratio": {m: med[best][m] / med["plain"][m] for m in ("cpu", "wall")},
        "profile_dp": profile_top(variants[best]),
        "profile_plain": profile_top(variants["plain"]),
    }
