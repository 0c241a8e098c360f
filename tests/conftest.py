"""Shared fixtures: real federation runs, started once per test session and reused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.runs import CONSOLE, NODP_RAY_CONFIG, run_launcher


@pytest.fixture(autouse=True)
def no_site_policy_left_behind():
    """A test leaves the simulated sites' ``LHSFED_*`` variables as it found them: a launcher
    run in this process that left one (its data folder, its ledgers) made a later test's
    SuperLink, which inherits this environment, play other sites (test_flwr_run failed so)."""
    before = {k: v for k, v in os.environ.items() if k.startswith("LHSFED_")}
    yield
    after = {k: v for k, v in os.environ.items() if k.startswith("LHSFED_")}
    for key in set(after) - set(before):
        del os.environ[key]
    os.environ.update(before)
    assert after == before, (
        f"the test left LHSFED_* variables changed: {sorted(set(after.items()) ^ set(before.items()))}"
    )


@pytest.fixture(scope="session")
def dp_run(tmp_path_factory) -> Path:
    """The default federation (4 hospitals, DP on), 5 rounds: one run shared by many tests."""
    tmp = tmp_path_factory.mktemp("dp_run")
    proc = run_launcher(tmp, "rounds=5")
    (tmp / CONSOLE).write_text(proc.stdout)  # what the modeler saw (beside the run folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


@pytest.fixture(scope="session")
def nodp_run(tmp_path_factory) -> Path:
    """``privacy=off``, 10 rounds, in process (the same ServerApp loop and ClientApp without
    Ray's start; ``dp_run`` is the shared run on Flower's simulation runtime)."""
    tmp = tmp_path_factory.mktemp("nodp_run")
    proc = run_launcher(tmp, "privacy=off", "federation.runtime=inprocess")
    (tmp / CONSOLE).write_text(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


@pytest.fixture(scope="session")
def nodp_ray_run(tmp_path_factory) -> Path:
    """``NODP_RAY_CONFIG``, uninterrupted, on the single-node Ray runtime: what a killed and
    resumed run (test_kill_resume) and the same run on a two-node Ray cluster
    (test_ray_cluster) must equal bit for bit."""
    tmp = tmp_path_factory.mktemp("nodp_ray_run")
    proc = run_launcher(tmp, *NODP_RAY_CONFIG)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


@pytest.fixture(scope="session")
def eps1_runs(tmp_path_factory):
    """Two ε=1, 3-round runs sharing the sites' ledgers (every node restarted in between),
    in process (each run a launcher process of its own, no Ray start).

    The second run caps one site (``LHSFED_MAX_EPSILON``) halfway through its rounds. Shared
    by the ledger, cap, secure-aggregation and audit tests.
    """
    from tests.helpers.privacy_runs import two_ledger_runs

    return two_ledger_runs(tmp_path_factory.mktemp("eps1_runs"))


@pytest.fixture(scope="session")
def deployment_network(tmp_path_factory):
    """docs/deployment.md's walk-through network (tests/helpers/walkthrough.py): a TLS SuperLink behind
    its proxy, cleveland and hungary, a guarded node; shared by the deployment and pinned-code
    tests so that CI starts one such network, not two."""
    from tests.helpers.walkthrough import walkthrough_network

    with walkthrough_network(tmp_path_factory.mktemp("deployment")) as net:
        yield net


LAST = ("tests/integration/test_containers.py",)  # waits for images `make test` builds meanwhile


def pytest_collection_modifyitems(config, items):
    """The container test goes last: `make test` builds its images in the background while
    the rest of the suite runs (Makefile, ``test``), so it rarely waits for them."""
    items.sort(key=lambda item: any(item.nodeid.startswith(path) for path in LAST))
