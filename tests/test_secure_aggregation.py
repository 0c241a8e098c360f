"""Secure aggregation (SecAgg+): equals plain FedAvg within the stated quantization tolerance,
and the server never receives a site's plaintext update (acceptance 3).

The fast tests drive the real ServerApp-side round and the real ClientApp through an
in-process grid, so every message the server receives can be inspected; the slow test runs
the whole federation with ``privacy.secure_aggregation=true`` in Flower's simulation runtime.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.quantization import dequantize
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from client.app import app as client_app
from federation import keys
from federation.errors import ConfigError
from federation.flwr_app_config import compose_config
from federation.settings import RunSettings, flatten_config
from server.federation_loop import _plain_train, initial_arrays
from server.run_folder import read_rounds
from server.secure_aggregation import CLIPPING_RANGE, QUANTIZATION_RANGE, secure_train_round, tolerance
from strategies import build_strategy
from tests.conftest import read_json, run_launcher
from tests.inprocess_grid import InProcessGrid

SITES = 4
FLOAT32_SLACK = 1e-6  # global weights are stored as float32 (|w| < 1: rounding < 6e-8)


def _run_config(tmp_path, *overrides: str) -> dict:
    cfg = compose_config(["privacy.secure_aggregation=true", *overrides])
    cfg["output_dir"] = str(tmp_path / "run")
    return flatten_config(cfg)


@pytest.fixture()
def federation(tmp_path, monkeypatch):
    """Settings, an in-process grid of the four UCI sites, and the seeded global model."""
    monkeypatch.setenv("LHSFED_LEDGER_DIR", str(tmp_path / "ledgers"))
    run_config = _run_config(tmp_path)
    settings = RunSettings.from_run_config(run_config)
    with InProcessGrid(client_app, {n: {"partition-id": n} for n in range(SITES)}, run_config) as grid:
        arrays = initial_arrays(grid, settings, grid.get_node_ids(), timeout=60)
        yield settings, grid, arrays


def _max_gap(a, b) -> float:
    sa, sb = a.to_torch_state_dict(), b.to_torch_state_dict()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


def test_secure_round_equals_plain_fedavg_within_quantization_tolerance(federation):
    settings, grid, arrays = federation
    plain, _, _, _ = _plain_train(grid, build_strategy(settings.strategy), 1, arrays, 60, {})

    secure, replies, report = secure_train_round(grid, settings, 1, arrays, timeout=60)

    assert report["sites"] == SITES and not any(r.has_error() for r in replies)
    assert report["tolerance"] == SITES * 2 * CLIPPING_RANGE / QUANTIZATION_RANGE
    gap = _max_gap(secure, plain)
    assert gap <= tolerance(SITES) + FLOAT32_SLACK, gap
    assert _max_gap(secure, arrays) > 100 * tolerance(SITES)  # the round did move the model


def _site_updates(grid, settings, arrays) -> dict[int, np.ndarray]:
    """Each site's plaintext update for round 1, flattened (what SecAgg+ must hide)."""
    messages = build_strategy(settings.strategy).configure_train(1, arrays, ConfigRecord(), grid)
    start = np.concatenate([a.ravel() for a in arrays.to_numpy_ndarrays()]).astype("float64")
    updates = {}
    for reply in grid.send_and_receive(messages):
        local = reply.content[keys.ARRAYS].to_numpy_ndarrays()
        updates[reply.metadata.src_node_id] = np.concatenate([a.ravel() for a in local]) - start
    return updates


def test_server_never_receives_a_plaintext_update(federation):
    settings, grid, arrays = federation
    updates = _site_updates(grid, settings, arrays)
    grid.received.clear()

    _, _, report = secure_train_round(grid, settings, 1, arrays, timeout=60)

    # Nothing the server received holds an array: only keys, shares and masked integers.
    assert grid.received and all(len(a.data) == 0 for r in grid.received
                                 for rec in r.content.array_records.values() for a in rec.values())
    assert all(row["plaintext_array_bytes"] == 0 for row in report["received"].values())
    masked = {r.metadata.src_node_id: r.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
              for r in grid.received if Key.MASKED_PARAMETERS in r.content.config_records.get(RECORD_KEY_CONFIGS, {})}
    assert set(masked) == set(updates)
    for node, blobs in masked.items():
        vectors = [bytes_to_ndarray(b) for b in blobs][1:]  # first entry: the weight factor
        seen = np.concatenate([v.ravel() for v in dequantize(vectors, CLIPPING_RANGE, QUANTIZATION_RANGE)])
        # Unmasked, this would be the site's (weighted) update; masked it is unrelated to it.
        assert abs(np.corrcoef(seen, updates[node])[0, 1]) < 0.15
        assert np.abs(seen).max() > 100 * CLIPPING_RANGE  # mask values span the whole modulus


def test_secure_aggregation_refuses_strategies_that_need_each_update():
    cfg = compose_config(["privacy.secure_aggregation=true", "strategy=krum"])
    with pytest.raises(ConfigError, match="secure_aggregation.*krum"):
        RunSettings.from_run_config(flatten_config(cfg))


@pytest.mark.slow
def test_secure_aggregation_run_matches_plain_fedavg(tmp_path, eps1_runs):
    """Whole federation, 4 simulated sites: round-1 weights equal the plain run's (same seeds)."""
    proc = run_launcher(tmp_path, *eps1_runs.overrides, "privacy.secure_aggregation=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    first = read_rounds(run)[0]
    secagg = first["secure_aggregation"]
    assert secagg["sites"] == SITES and len(first["train"]) == SITES
    assert all(row["plaintext_array_bytes"] == 0 for row in secagg["received"].values())
    assert secagg["received"]["collect_masked_vectors"]["masked_vector_bytes"] > 0
    plain = torch.load(eps1_runs.first / "rounds" / "round_001.pt", weights_only=False)["state_dict"]
    secure = torch.load(run / "rounds" / "round_001.pt", weights_only=False)["state_dict"]
    gap = max(float((plain[k].double() - secure[k].double()).abs().max()) for k in plain)
    assert gap <= secagg["tolerance"] + FLOAT32_SLACK, gap
    assert read_json(run / "summary.json")["metrics"]["pooled"]["auroc"] > 0.7
