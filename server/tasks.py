"""Which loop a ServerApp run drives: the federation (train) or one question to the sites.

The learning loop's checks (docs/learning-loop.md) are Flower runs of the same ServerApp and
ClientApp as training, so they go through the same launcher, SuperLink, pinned code and site
rules; ``run.task`` picks the loop. Each loop is imported only when chosen.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from flwr.serverapp import Grid

from federation.core.settings import GLM, RunSettings

# task -> (module, function(grid, settings, default_dir=...)); keys are settings.TASKS.
TASK_LOOPS = {
    "train": ("server.federation_loop", "run_federation"),
    "compare": ("server.comparison", "run_comparison"),
    "drift": ("server.drift", "run_drift"),
}


# model=glm trains by Newton rounds on the sites' sums, not by the strategy's rounds.
GLM_LOOP = ("server.glm_loop", "run_glm")


def run_task(grid: Grid, settings: RunSettings, *, default_dir: Path) -> Any:
    """Run the loop ``settings.task`` names; returns what it returns (a summary dict)."""
    glm = settings.task == "train" and settings.model.name == GLM
    module, function = GLM_LOOP if glm else TASK_LOOPS[settings.task]
    return getattr(importlib.import_module(module), function)(grid, settings, default_dir=default_dir)
