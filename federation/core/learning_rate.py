"""The default learning rate from the run's ε: ``train.lr=auto`` (the default, docs/defaults.md).

Why: under DP-SGD each step moves the weights by lr · (clipped gradient mean + noise of
standard deviation σ · clip / batch), and σ grows roughly as 1/ε. The default lr (0.1) was
chosen at ε = 3; below it, scaling lr with ε keeps the noise each step adds to the weights near
what it was at ε = 3, where the defaults reach the DP frontier. Measured against the frontier at
ε = 1 (benchmarks/results/dp_frontier.md), whose choice was lr 0.03 on every synth cohort.
Above ε = 3 and without DP the rule keeps 0.1: it never raises lr past what was chosen.

The rule uses only the run's own settings (never a site's data), and the coordinator resolves
it before the run starts, so every site receives a number (the run folder's Hydra config keeps
``auto`` and the ε it follows from).
"""

from __future__ import annotations

import math

AUTO = "auto"
BASE_LR = 0.1  # chosen DP off and at ε = 3 over the benchmark datasets (benchmarks/results/defaults.md)
REFERENCE_EPSILON = 3.0


def default_lr(dp_enabled: bool, target_epsilon: float) -> float:
    """lr = 0.1 · min(1, ε / 3) under DP; 0.1 without."""
    if not dp_enabled:
        return BASE_LR
    return BASE_LR * min(1.0, float(target_epsilon) / REFERENCE_EPSILON)


def resolved_lr(value: object, dp_enabled: object, target_epsilon: object) -> object:
    """``train.lr`` as the run gets it: ``auto`` becomes the rule's number; anything else
    (a number the coordinator chose, or a bad value the settings check names) is kept. With a
    bad ε, ``auto`` is 0.1, so that the one error line names the ε, not lr."""
    if str(value).strip().lower() != AUTO:
        return value
    try:
        epsilon = float(target_epsilon)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        epsilon = math.nan
    if not (math.isfinite(epsilon) and epsilon > 0):
        return BASE_LR  # the run is refused for privacy.target_epsilon, which the settings check names
    return default_lr(bool(dp_enabled), epsilon)
