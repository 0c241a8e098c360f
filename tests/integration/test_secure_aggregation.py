"""Secure aggregation (SecAgg+): equals plain FedAvg within the stated quantization tolerance,
the server never receives a site's plaintext update, both sides draw masks
from ``federation/core/secagg_masks.py``, and a site refuses an unmask request that would release
both secret shares of one node (tried as an attack, with the unprotected mod as control).

The fast tests drive the real ServerApp-side round and the real ClientApp through an
in-process grid, so every message the server receives can be inspected; the slow test runs
the whole federation with ``privacy.secure_aggregation=true`` in Flower's simulation runtime.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from flwr.app import ConfigRecord
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.crypto.shamir import combine_shares
from flwr.common.secure_aggregation.crypto.symmetric_encryption import (
    generate_shared_key,
)
from flwr.common.secure_aggregation.ndarrays_arithmetic import factor_extract
from flwr.common.secure_aggregation.quantization import dequantize
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    RECORD_KEY_STATE,
    Key,
    Stage,
)
from flwr.supercore.primitives.asymmetric import (
    bytes_to_private_key,
    bytes_to_public_key,
)

import client.secure_aggregation as client_secagg
from client.app import app as client_app
from federation.coordinator.flwr_app_config import compose_config
from federation.coordinator.inprocess import InProcessGrid
from federation.core import secagg_masks, wire
from federation.core.errors import ConfigError
from federation.core.records import read_rounds
from federation.core.settings import RunSettings, flatten_config
from server.federation_loop import _plain_train, initial_arrays
from server.secure_aggregation import (
    CLIPPING_RANGE,
    MODULUS_RANGE,
    QUANTIZATION_RANGE,
    secure_train_round,
    tolerance,
)
from strategies import build_strategy
from tests.helpers.exact_quality import exact_pooled_auroc
from tests.helpers.runs import run_launcher

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
    # Without DP each site's training is seeded, so two rounds from the same model give the
    # same updates: what lets secure and plain aggregation be compared (DP noise is the
    # sites' fresh secret every time).
    # The MLP: enough parameters (~800) for the correlation below to mean something.
    run_config = _run_config(tmp_path, "privacy=off", "model=mlp")
    settings = RunSettings.from_run_config(run_config)
    with InProcessGrid(client_app, run_config, SITES) as grid:
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
        local = reply.content[wire.ARRAYS].to_numpy_ndarrays()
        updates[reply.metadata.src_node_id] = np.concatenate([a.ravel() for a in local]) - start
    return updates


def test_server_never_receives_a_plaintext_update(federation):
    settings, grid, arrays = federation
    updates = _site_updates(grid, settings, arrays)
    grid.received.clear()

    _, _, report = secure_train_round(grid, settings, 1, arrays, timeout=60)

    # Nothing the server received holds an array: only keys, shares and masked integers.
    assert grid.received and all(
        len(a.data) == 0
        for r in grid.received
        for rec in r.content.array_records.values()
        for a in rec.values()
    )
    assert all(row["plaintext_array_bytes"] == 0 for row in report["received"].values())
    masked = {
        r.metadata.src_node_id: r.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
        for r in grid.received
        if Key.MASKED_PARAMETERS in r.content.config_records.get(RECORD_KEY_CONFIGS, {})
    }
    assert set(masked) == set(updates)
    for node, blobs in masked.items():
        vectors = [bytes_to_ndarray(b) for b in blobs][1:]  # first entry: the weight factor
        seen = np.concatenate([v.ravel() for v in dequantize(vectors, CLIPPING_RANGE, QUANTIZATION_RANGE)])
        # Unmasked, this would be the site's (weighted) update; masked it is unrelated to it.
        assert abs(np.corrcoef(seen, updates[node])[0, 1]) < 0.15
        assert np.abs(seen).max() > 100 * CLIPPING_RANGE  # mask values span the whole modulus


def test_both_sides_draw_every_mask_from_the_cryptographic_prg(federation, monkeypatch):
    settings, grid, arrays = federation
    callers: list[str] = []
    keystream = secagg_masks._keystream

    def spy(key: bytes):
        callers.append(sys._getframe(2).f_globals["__name__"])  # who called mask_prg
        return keystream(key)

    monkeypatch.setattr(secagg_masks, "_keystream", spy)

    secure, _, report = secure_train_round(grid, settings, 1, arrays, timeout=60)

    client_mod, server_workflow = (m.__name__ for m in secagg_masks.PATCHED_MODULES)
    # Each site: its private mask + one pairwise mask per other site; server: 4 private masks.
    assert callers.count(client_mod) == SITES * SITES and callers.count(server_workflow) == SITES
    assert len(callers) == SITES * SITES + SITES
    assert report["sites"] == SITES and _max_gap(secure, arrays) > 100 * tolerance(SITES)


@pytest.mark.parametrize(
    ("active", "dead", "problem"),
    [
        ([1, 2, 3], [2], "both active and dead"),
        ([1, 2, 9], [], "not among this round's share holders"),
        ([2, 3], [1], "this node (1) listed as dead"),
    ],
)
def test_unmask_refusal_names_the_problem(active, dead, problem):
    reason = client_secagg.unmask_refusal(1, {1, 2, 3}, active, dead)
    assert reason is not None and problem in reason and "no secret share sent" in reason


def test_unmask_refusal_lets_an_honest_request_through():
    assert client_secagg.unmask_refusal(1, {1, 2, 3}, [1, 3], [2]) is None


class _ListsActiveNodeAsDead:
    """A malicious server's grid: in the unmask stage it lists ``target`` as dead to every site
    although it is active (asking for both of its secrets), keeps every reply, and tells the
    workflow that nobody answered."""

    def __init__(self, grid, target: int) -> None:
        self._grid, self.target = grid, target
        self.replies: dict[str, list] = {}

    def send_and_receive(self, messages, timeout=None):
        messages = list(messages)
        stage = messages[0].content.config_records.get(RECORD_KEY_CONFIGS, {}).get(Key.STAGE, "")
        for message in messages if stage == Stage.UNMASK else []:
            message.content.config_records[RECORD_KEY_CONFIGS][Key.DEAD_NODE_ID_LIST] = [self.target]
        self.replies[stage] = list(self._grid.send_and_receive(messages, timeout=timeout))
        return [] if stage == Stage.UNMASK else self.replies[stage]

    def __getattr__(self, name: str):
        return getattr(self._grid, name)


def _target_secrets(attack: _ListsActiveNodeAsDead) -> tuple[list[bytes], list[bytes]]:
    """The target's private-seed shares and key shares the sites released."""
    seeds, keys_ = [], []
    for reply in attack.replies[Stage.UNMASK]:
        if reply.has_error():
            continue
        cfg = reply.content.config_records[RECORD_KEY_CONFIGS]
        pairs = list(zip(cfg[Key.NODE_ID_LIST], cfg[Key.SHARE_LIST], strict=True))
        n_active = len(pairs) - 1  # Flower's mod: active nodes' seed shares, then the dead's keys
        seeds += [share for node, share in pairs[:n_active] if node == attack.target]
        keys_ += [share for node, share in pairs[n_active:] if node == attack.target]
    return seeds, keys_


def _unmask_target(attack: _ListsActiveNodeAsDead) -> tuple[np.ndarray, float]:
    """The server's attack: strip the target's private and pairwise masks from its vector."""
    target, (seeds, key_shares) = attack.target, _target_secrets(attack)
    replies = {
        stage: {
            r.metadata.src_node_id: r.content.config_records[RECORD_KEY_CONFIGS]
            for r in attack.replies[stage]
        }
        for stage in (Stage.SETUP, Stage.COLLECT_MASKED_VECTORS)
    }
    masked = replies[Stage.COLLECT_MASKED_VECTORS][target][Key.MASKED_PARAMETERS]
    vector = [bytes_to_ndarray(b) for b in masked]
    shapes = [v.shape for v in vector]

    def mask(key: bytes) -> list[np.ndarray]:
        return secagg_masks.mask_prg(key, MODULUS_RANGE, shapes)

    vector = [v - m for v, m in zip(vector, mask(combine_shares(seeds)))]
    secret = bytes_to_private_key(combine_shares(key_shares))
    for node, cfg in replies[Stage.SETUP].items():
        if node != target:
            shared = generate_shared_key(secret, bytes_to_public_key(cfg[Key.PUBLIC_KEY_1]))
            sign = -1 if target > node else 1  # undo the site's + (higher id) / - (lower id)
            vector = [v + sign * m for v, m in zip(vector, mask(shared))]
    q_ratio, quantized = factor_extract([np.mod(v, MODULUS_RANGE) for v in vector])
    weighted = dequantize(quantized, CLIPPING_RANGE, QUANTIZATION_RANGE)
    return np.concatenate([w.ravel() for w in weighted]), q_ratio / QUANTIZATION_RANGE


def test_control_without_the_check_a_server_listing_a_node_active_and_dead_reads_its_update(
    federation, monkeypatch
):
    settings, grid, arrays = federation
    target = min(grid.get_node_ids())
    update = _site_updates(grid, settings, arrays)[target]
    monkeypatch.setattr(client_secagg, "_refuse_unmask", lambda message, context: None)  # weak mod
    attack = _ListsActiveNodeAsDead(grid, target)

    secure_train_round(attack, settings, 1, arrays, timeout=60)
    recovered, weight = _unmask_target(attack)

    assert len(_target_secrets(attack)[1]) == SITES  # every site released the target's key share
    step = 2 * CLIPPING_RANGE / QUANTIZATION_RANGE  # the site's own quantization error
    assert np.abs(recovered - weight * update).max() <= step + FLOAT32_SLACK


def test_a_node_listed_active_and_dead_gets_no_secret_share(federation, caplog):
    settings, grid, arrays = federation
    target = min(grid.get_node_ids())
    attack = _ListsActiveNodeAsDead(grid, target)

    secure, _, _ = secure_train_round(attack, settings, 1, arrays, timeout=60)

    unmask = attack.replies[Stage.UNMASK]
    assert len(unmask) == SITES and all(r.has_error() for r in unmask)
    assert {r.error.code for r in unmask} == {client_secagg.UNMASK_REFUSED}
    assert all("both active and dead" in r.error.reason for r in unmask)
    assert _target_secrets(attack) == ([], [])
    assert "SecAgg+ unmask refused" in caplog.text  # each site logged it locally
    assert all(RECORD_KEY_STATE not in ctx.state.config_records for ctx in grid.contexts.values())
    assert _max_gap(secure, arrays) == 0  # the round aborted: the model is unchanged


class _AsksTwice:
    """A malicious server's grid: after the honest unmask request (``target`` active), it asks
    every site again with ``target`` dead, for the key share that would unmask it."""

    def __init__(self, grid, target: int) -> None:
        self._grid, self.target = grid, target
        self.second: list = []

    def send_and_receive(self, messages, timeout=None):
        messages = list(messages)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        configs = [m.content.config_records.get(RECORD_KEY_CONFIGS, {}) for m in messages]
        if configs and configs[0].get(Key.STAGE) == Stage.UNMASK:
            for cfg in configs:
                cfg[Key.ACTIVE_NODE_ID_LIST] = [n for n in cfg[Key.ACTIVE_NODE_ID_LIST] if n != self.target]
                cfg[Key.DEAD_NODE_ID_LIST] = [self.target]
            self.second = list(self._grid.send_and_receive(messages, timeout=timeout))
        return replies

    def __getattr__(self, name: str):
        return getattr(self._grid, name)


def test_a_site_answers_one_unmask_request_per_round(federation):
    """Different active/dead views of one node, asked one after the other, give no key share."""
    settings, grid, arrays = federation
    attack = _AsksTwice(grid, min(grid.get_node_ids()))

    secure, _, _ = secure_train_round(attack, settings, 1, arrays, timeout=60)

    assert len(attack.second) == SITES and all(r.has_error() for r in attack.second)
    assert all(
        r.error.code == client_secagg.UNMASK_REFUSED and "one unmask request per round" in r.error.reason
        for r in attack.second
    )
    assert _max_gap(secure, arrays) > 100 * tolerance(SITES)  # the honest round still completed


def test_secure_aggregation_refuses_strategies_that_need_each_update():
    cfg = compose_config(["privacy.secure_aggregation=true", "strategy=krum"])
    with pytest.raises(ConfigError, match="secure_aggregation.*krum"):
        RunSettings.from_run_config(flatten_config(cfg))


@pytest.mark.slow
def test_secure_aggregation_run_matches_plain_fedavg(tmp_path, eps1_runs):
    """Whole federation with DP, 4 simulated sites, in Flower's simulation runtime: the protocol
    ran, no plaintext array reached the server, the model learns. (Secure = plain FedAvg within
    the bound is the in-process test above: with DP the sites' noise differs run to run.)"""
    proc = run_launcher(tmp_path, *eps1_runs.overrides, "privacy.secure_aggregation=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    first = read_rounds(run)[0]
    secagg = first["secure_aggregation"]
    assert secagg["sites"] == SITES and len(first["train"]) == SITES
    assert all(row["plaintext_array_bytes"] == 0 for row in secagg["received"].values())
    assert secagg["received"]["collect_masked_vectors"]["masked_vector_bytes"] > 0
    assert exact_pooled_auroc(run) > 0.7  # the handed-out model, scored here (the summary's is a DP release)
