"""``flwr run .`` runs this app unchanged (2 rounds, the four hospitals).

Flower's own SuperLink in simulation mode, started by the test on a free port with runtime
dependency installation off (by default it would `uv sync` the app's dependencies into a
fresh environment, pulling a CUDA torch build), and a Flower home whose connection points at it.
"""

from __future__ import annotations

import json

import pytest

from federation.coordinator.flwr_connection import (
    CONNECTION,
    run_flwr,
    write_flower_home,
)
from tests.helpers.deployment_net import (
    BIN,
    Proc,
    base_env,
    free_port,
    start,
    wait_for_port,
)
from tests.helpers.runs import REPO, read_json

pytestmark = pytest.mark.slow


@pytest.fixture
def sim_superlink(tmp_path):
    port = free_port()
    proc: Proc = start(
        [
            str(BIN / "flower-superlink"),
            "--insecure",
            "--simulation",
            "--disable-runtime-dependency-installation",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        base_env(tmp_path / "superlink-home"),
        tmp_path / "superlink.log",
    )
    try:
        wait_for_port(port, 90)
        yield write_flower_home(tmp_path / "flwr-home", f"127.0.0.1:{port}", None)
    finally:
        proc.stop()


def test_flwr_run_dot_completes_two_rounds(sim_superlink, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_flwr(
        sim_superlink,
        "run",
        ".",
        CONNECTION,
        "--stream",
        "--federation-config",
        "num-supernodes=4",
        "--run-config",
        f'rounds=2 run.output_dir="{run_dir}"',
        timeout=500,
        cwd=REPO,
    )
    listing = run_flwr(sim_superlink, "ls", CONNECTION, "--format", "json")
    run = json.loads(listing.stdout[listing.stdout.index("{") :])["runs"][0]
    # It ended finished:failed in full-suite runs only ("cannot import name 'clone' from partially
    # initialized module 'sklearn.base'": the two apps' threads raced, federation/core/eager_imports.py);
    # if it fails again, say everything Flower kept
    superlink_log = (tmp_path / "superlink.log").read_text(errors="replace")[-4000:]
    why = f"{run}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}\nsuperlink.log:\n{superlink_log}"
    assert proc.returncode == 0, why
    assert run["status"] == "finished:completed", why
    summary = read_json(run_dir / "summary.json")
    assert summary["rounds"] == 2
    assert set(summary["metrics"]["sites"]) == {"cleveland", "hungary", "switzerland", "va"}
