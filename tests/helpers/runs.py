"""Run ``lhsfed-train`` as a user would, and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = Path(sys.executable).parent / "lhsfed-train"
CONSOLE = "console.txt"  # a shared run's printed lines, beside its run folder (tests/conftest.py)
# The session's nodp_ray_run (tests/conftest.py): privacy=off with FedAdam (server moments a
# resume must restore), on Flower's simulation runtime (Ray) on one machine.
NODP_RAY_CONFIG = ("rounds=6", "strategy=fedadam", "privacy=off")


def run_launcher(
    tmp: Path,
    *overrides: str,
    multirun: bool = False,
    timeout: float = 600,
    env: dict[str, str] | None = None,
    run_dir: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run ``lhsfed-train`` as a user would, in ``tmp``, with its run folder under ``tmp``
    (``tmp/run``, or ``run_dir``: a second run from the same working directory).

    ``env`` adds environment variables (e.g. the simulated sites' privacy policy).
    """
    args = [str(LAUNCHER), *overrides]
    if multirun:
        args.insert(1, "--multirun")
        args.append(f"hydra.sweep.dir={tmp / 'multirun'}")
    else:
        args.append(f"hydra.run.dir={run_dir or tmp / 'run'}")
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", **(env or {})}
    return subprocess.run(args, cwd=tmp, capture_output=True, text=True, timeout=timeout, env=env)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def ledger_folder(run_dir: Path) -> Path:
    """Where a launched run's simulated sites kept their ledgers (its ``site_policy.json``:
    by default the task's folder shared by its campaigns, federation.coordinator.site_ledgers)."""
    from federation.coordinator.site_ledgers import recorded_folder

    folder = recorded_folder(run_dir)
    assert folder is not None, f"{run_dir} has no site_policy.json naming one ledger folder"
    return folder


def without_bootstrap_bounds(value):
    """A record (any nesting) without the bounds of bootstrap CIs (``*_ci``, ``*_ci_low``,
    ``*_ci_high``): each site draws its resamples from its own secret randomness, so two runs'
    bounds differ where nothing else does (the sites' and their subgroups' alike)."""
    if isinstance(value, dict):
        return {
            k: without_bootstrap_bounds(v)
            for k, v in value.items()
            if not (k.endswith("_ci") or k.endswith("_ci_low") or k.endswith("_ci_high"))
        }
    if isinstance(value, list):
        return [without_bootstrap_bounds(v) for v in value]
    return value
