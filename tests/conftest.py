"""Shared fixtures: real federation runs, started once per test session and reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAUNCHER = Path(sys.executable).parent / "lhsfed-train"


def run_launcher(tmp: Path, *overrides: str, multirun: bool = False, timeout: float = 600,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``lhsfed-train`` as a user would, in ``tmp``, with its run folder under ``tmp``.

    ``env`` adds environment variables (e.g. the simulated sites' privacy policy).
    """
    args = [str(LAUNCHER), *overrides]
    if multirun:
        args.insert(1, "--multirun")
        args.append(f"hydra.sweep.dir={tmp / 'multirun'}")
    else:
        args.append(f"hydra.run.dir={tmp / 'run'}")
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", **(env or {})}
    return subprocess.run(args, cwd=tmp, capture_output=True, text=True, timeout=timeout, env=env)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def dp_run(tmp_path_factory) -> Path:
    """The default federation (4 hospitals, DP on), 5 rounds: one run shared by many tests."""
    tmp = tmp_path_factory.mktemp("dp_run")
    proc = run_launcher(tmp, "rounds=5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


@pytest.fixture(scope="session")
def nodp_run(tmp_path_factory) -> Path:
    """``privacy=off``, 10 rounds."""
    tmp = tmp_path_factory.mktemp("nodp_run")
    proc = run_launcher(tmp, "privacy=off")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


@pytest.fixture(scope="session")
def eps1_runs(tmp_path_factory):
    """Two ε=1, 3-round runs sharing the sites' ledgers (every node restarted in between).

    The second run caps one site (``LHSFED_MAX_EPSILON``) halfway through its rounds. Shared
    by the ledger, cap, secure-aggregation and audit tests.
    """
    from tests.privacy_runs import two_ledger_runs

    return two_ledger_runs(tmp_path_factory.mktemp("eps1_runs"))


@pytest.fixture(scope="session")
def deployment_network(tmp_path_factory):
    """docs/deployment.md's walk-through network (tests/walkthrough.py): a TLS SuperLink behind
    its proxy, cleveland and hungary, a guarded node; shared by the deployment and pinned-code
    tests so that CI starts one such network, not two."""
    from tests.walkthrough import walkthrough_network

    with walkthrough_network(tmp_path_factory.mktemp("deployment")) as net:
        yield net
