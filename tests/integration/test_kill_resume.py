"""Kill a real ``lhsfed-train`` (SIGKILL) after round 3 of 6, resume it, compare with a run
that was never interrupted. Without DP (``privacy=off``, FedAdam, whose server moments must
survive the crash too) the final weights are the same bit for bit. With DP the sites' noise
is their own secret, fresh every round, so instead the resumed run completes every round and
each site's ledger holds every round it trained, before and after the kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from federation.core.records import read_rounds
from server.checkpoint import load_resume_state
from tests.helpers.runs import LAUNCHER, NODP_RAY_CONFIG, read_json, run_launcher, without_bootstrap_bounds

pytestmark = pytest.mark.slow
CONFIG = NODP_RAY_CONFIG  # the uninterrupted run is the session's nodp_ray_run
# The DP kill needs no Ray (the bit-for-bit one above keeps it): the same ServerApp loop and
# ClientApp in the launcher's process, killed the same way, without ~15 s of runtime start.
DP_CONFIG = ("rounds=4", "strategy=fedadam", "federation.runtime=inprocess")


def _kill_after_round(
    run_dir: Path, cwd: Path, kill_after: int, timeout: float = 600, config: tuple[str, ...] = CONFIG
) -> None:
    """Start lhsfed-train, SIGKILL its whole process group once ``kill_after`` rounds are logged."""
    proc = subprocess.Popen(
        [str(LAUNCHER), *config, f"hydra.run.dir={run_dir}"],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0"},
        start_new_session=True,
    )
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after:
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "lhsfed-train ended before it could be killed"


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, nodp_ray_run) -> tuple[Path, Path, subprocess.CompletedProcess]:
    killed = tmp_path_factory.mktemp("killed")
    _kill_after_round(killed / "run", killed, kill_after=3)
    assert load_resume_state(killed / "run").round == 3
    assert not (killed / "run" / "summary.json").exists()

    resumer = tmp_path_factory.mktemp("resumer")
    resumed = run_launcher(resumer, f"resume={killed / 'run'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return nodp_ray_run, killed / "run", resumed


def test_resume_finishes_rounds_4_to_6(runs):
    _, run_dir, resumed = runs
    assert [r["round"] for r in read_rounds(run_dir)] == [1, 2, 3, 4, 5, 6]
    assert load_resume_state(run_dir).round == 6
    assert f"run folder: {run_dir}" in resumed.stdout
    assert "round   4/6" in resumed.stdout and "round   3/6" not in resumed.stdout


def test_resumed_weights_equal_the_uninterrupted_run(runs):
    """Bit-for-bit without DP: client training is seeded per round."""
    whole, resumed, _ = runs
    expected, got = _weights(whole), _weights(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_resumed_summary_has_the_same_shape_and_metrics(runs):
    whole, resumed, _ = runs
    expected = json.loads((whole / "summary.json").read_text())
    got = json.loads((resumed / "summary.json").read_text())

    def shape(value):
        return {k: shape(v) for k, v in value.items()} if isinstance(value, dict) else None

    assert shape(got) == shape(expected)
    assert got["metrics"] == expected["metrics"]

    # the sites' bootstrap resamples are their secret: bounds differ, nothing else does
    evaluated = [without_bootstrap_bounds(r["evaluate"]) for r in read_rounds(resumed)]
    assert evaluated == [without_bootstrap_bounds(r["evaluate"]) for r in read_rounds(whole)]


@pytest.fixture(scope="module")
def dp_resumed(tmp_path_factory) -> Path:
    killed = tmp_path_factory.mktemp("dp_killed")
    _kill_after_round(killed / "run", killed, kill_after=2, config=DP_CONFIG)
    resumed = run_launcher(
        tmp_path_factory.mktemp("dp_resumer"), f"resume={killed / 'run'}", "federation.runtime=inprocess"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return killed / "run"


def test_dp_resume_completes_every_round_and_the_ledgers_keep_every_spend(dp_resumed):
    from client.ledger import open_site_ledger
    from client.site_policy import simulated_policy
    from federation.core.privacy import epsilon_spent

    rounds = read_rounds(dp_resumed)
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    for site in ("cleveland", "hungary", "switzerland", "va"):
        ledger = open_site_ledger(simulated_policy(site, run_folder=dp_resumed), site)
        trained = [e.server_round for e in ledger.entries() if not e.is_release]
        # Rounds 1-2 before the kill, a round 3 reserved when it came, then 3-4 after resume.
        assert trained[:2] == [1, 2] and trained[-2:] == [3, 4], (site, trained)
        assert set(trained) == {1, 2, 3, 4}
        # ε shown is the ledger's: every training and release row, the interrupted round's too
        shown = read_json(dp_resumed / "summary.json")["privacy"]["sites"][site]["epsilon"]
        assert shown == pytest.approx(
            epsilon_spent(ledger.history(), delta=ledger.entries()[-1].delta), rel=1e-6
        )
