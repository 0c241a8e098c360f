"""``federation.ray_address``: a simulation on a two-node Ray cluster on 127.0.0.1 (a head
and a worker, ``ray start`` each, one CPU each: tests/helpers/ray_cluster.py).

- Placement: Ray's GCS (its task events and actor table) shows that each run's sites ran
  ClientAppActor tasks on both nodes.
- Without DP (``privacy=off``, FedAdam, 6 rounds) the model is the same bit for bit, and every
  round's metrics the same (but the sites' bootstrap intervals: their secret), as the same
  run's on the single-node Ray runtime (the session's ``nodp_ray_run``, which
  test_kill_resume compares its resumed run with too: no run of its own in ``make test``).
- With DP the sites' ledgers are in the task's shared folder, as the launcher's policy says,
  and hold the same rows (σ, q, steps, δ, ε, releases) as the same run's in process (one
  node too: a site's ledger is the ClientApp's own accounting, whichever runtime runs it;
  the noise is each site's secret, so weights are not compared).
- The policy is the launcher's on every node: the worker's ``ray start`` runs with
  ``LHSFED_SITE_DATA_DIR`` and ``LHSFED_MAX_EPSILON`` of its own (a missing folder, a cap
  no round fits): its sites train only because the job sends the launcher's data folder
  and sends the cap it does not set as unset (federation.coordinator.ray_cluster.job_env).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

from federation.cli.site import load_dataset_spec
from federation.core.data import embedded_dir
from federation.core.records import read_rounds
from tests.helpers.privacy_runs import site_ledger
from tests.helpers.ray_cluster import LOOPBACK, TwoNodeCluster
from tests.helpers.runs import LAUNCHER, NODP_RAY_CONFIG, ledger_folder, without_bootstrap_bounds

pytestmark = pytest.mark.slow
OFF = NODP_RAY_CONFIG  # the session's nodp_ray_run is the same run on one machine
DP = ("rounds=2",)
SITES = ("cleveland", "hungary", "switzerland", "va")
# A ledger row but for its run id, time and hashes.
LEDGER_FIELDS = ("site", "server_round", "noise_multiplier", "sample_rate", "steps", "delta", "epsilon_run")
LEDGER_FIELDS += ("epsilon_total", "release")
# What a node's own environment may hold; the launcher's policy must win over it.
WORKER_ENV = {"LHSFED_SITE_DATA_DIR": "/nonexistent/stale-data", "LHSFED_MAX_EPSILON": "0.01"}


def _start(tmp: Path, *overrides: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``lhsfed-train`` as tests.helpers.runs.run_launcher runs it, in the background
    (its output in ``tmp/out.log``; its run folder ``tmp/run``)."""
    tmp.mkdir()
    args = [str(LAUNCHER), *overrides, f"hydra.run.dir={tmp / 'run'}"]
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", **(env or {})}
    with open(tmp / "out.log", "wb") as out:
        return subprocess.Popen(args, cwd=tmp, stdout=out, stderr=subprocess.STDOUT, env=env)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> Path:
    tmp = Path(proc.args[-1].split("=", 1)[1]).parent
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 0, (tmp / "out.log").read_text()[-4000:]
    return tmp / "run"


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]


def _rounds_without_ci(run_dir: Path) -> list[dict]:
    return [{**r, "evaluate": without_bootstrap_bounds(r["evaluate"])} for r in read_rounds(run_dir)]


def _ledger_rows(ledgers: Path, site: str) -> list[tuple]:
    return [tuple(getattr(e, name) for name in LEDGER_FIELDS) for e in site_ledger(ledgers, site).entries()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, nodp_ray_run):
    """The cluster's two runs (DP, then privacy=off), Ray's record of where their sites ran,
    and the single-node references: the session's ``nodp_ray_run`` (shared with
    test_kill_resume) and the DP run in process (started first, beside the cluster: the wall
    time is what CI pays); wall times printed."""
    tmp = tmp_path_factory.mktemp("ray_cluster")
    data_dir = embedded_dir(load_dataset_spec("uci_heart"))
    took, began = {}, time.monotonic()
    references = [_start(tmp / "dp_single", *DP, "federation.runtime=inprocess")]
    try:
        with TwoNodeCluster(tmp / "logs", worker_env=WORKER_ENV) as cluster:
            took["cluster start"], mark = time.monotonic() - began, time.monotonic()
            joined = (f"federation.ray_address={cluster.address}",)
            dp = _finish(_start(tmp / "dp", *DP, *joined, f"federation.data_dir={data_dir}", env=LOOPBACK))
            took["dp on cluster"], mark = time.monotonic() - mark, time.monotonic()
            off = _finish(_start(tmp / "off", *OFF, *joined, env=LOOPBACK))
            took["off on cluster"], mark = time.monotonic() - mark, time.monotonic()
            placement = cluster.placement()
            took["placement"], mark = time.monotonic() - mark, time.monotonic()
        took["cluster stop"], mark = time.monotonic() - mark, time.monotonic()
        (dp_single,) = (_finish(proc) for proc in references)
        took["references left"] = time.monotonic() - mark
    finally:
        for proc in references:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    took["total"] = time.monotonic() - began
    print("wall times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in took.items()))
    return dp, off, placement, nodp_ray_run, dp_single


def test_each_runs_sites_ran_on_both_nodes(runs):
    _, _, placement, _, _ = runs
    assert len(placement["nodes"]) == 2
    jobs: dict[str, dict[str, int]] = {}
    for key, count in placement["ran"].items():
        job, node = key.split()
        jobs.setdefault(job, {})[node] = count
    assert len(jobs) == 2, placement  # the DP run and the privacy=off run
    for job, nodes in jobs.items():
        assert set(nodes) == set(placement["nodes"]), (job, nodes)


def test_without_dp_the_model_is_the_single_node_runs_bit_for_bit(runs):
    _, off, _, off_single, _ = runs
    expected, got = _weights(off_single), _weights(off)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert _rounds_without_ci(off) == _rounds_without_ci(off_single)


def test_dp_ledgers_are_where_the_policy_says_with_the_single_node_runs_rows(runs):
    dp, _, _, _, dp_single = runs
    ledgers = ledger_folder(dp)
    assert ledgers == (dp.parent / "outputs" / "ledgers" / "uci_heart-num").absolute()  # the task's
    for site in SITES:
        rows = _ledger_rows(ledgers, site)
        assert {r[1] for r in rows if not r[-1]} == {1, 2}, (site, rows)  # trained both rounds
        assert rows == _ledger_rows(ledger_folder(dp_single), site), site
    assert all(r["train"].keys() == set(SITES) for r in read_rounds(dp))
