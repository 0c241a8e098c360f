"""Replaying a site's DP randomness would reveal a patient row; the site's own randomness stops it.

The attack, as a security review ran it: with ``model=logreg train.optimizer=sgd
train.momentum=0 train.lr=1 train.batch_size=1 train.local_steps=1`` the coordinator sends
zero weights and identity scaling, re-runs the site's training on dummy rows (all inputs 0, so
their weight gradients are 0) with the randomness it believes the site used, and so learns
the noise; subtracting it from the returned update leaves the clipped gradient of the one
sampled row, ``(p - y) * [x, missing flags]`` and ``(p - y)``: their ratio is the row.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from flwr.app import ArrayRecord

from client.site_randomness import SiteRandomness
from client.training import train_locally
from federation.core import wire
from federation.core.data import load_site
from federation.core.model import build_model
from federation.core.privacy import noise_for_run
from federation.core.settings import RunSettings, model_spec
from tests.helpers.site_nodes import (
    deployed_node,
    message,
    run_config,
    send,
    site_data_file,
)

ATTACK = (
    "model=logreg",
    "train.optimizer=sgd",
    "train.momentum=0",
    "train.lr=1",
    "train.batch_size=1",
    "train.local_steps=1",
)


def _coordinator_model(settings: RunSettings):
    model = build_model(model_spec(settings), seed=settings.seed)
    with torch.no_grad():
        for param in model.head.parameters():
            param.zero_()  # p = 0.5 for every row; the scaling buffers stay mean 0, std 1
    return model


def _update(settings, x, y, key: bytes) -> dict[str, np.ndarray]:
    """Weights after one site round with randomness keyed by ``key`` (what a replay runs)."""
    model = _coordinator_model(settings)
    noise = noise_for_run(settings, len(y), delta=1e-5, accountant="rdp")
    train_locally(
        model,
        x,
        y,
        train=settings.train,
        privacy=settings.privacy,
        noise_multiplier=noise,
        seed=0,
        randomness=SiteRandomness(key=key),
    )
    return {k: v.detach().numpy().ravel() for k, v in model.head.state_dict().items()}


def _recover_row(settings, returned: dict[str, np.ndarray], n: int, d: int, key: bytes):
    """The attacker: replay with ``key`` on dummy rows, strip the noise, divide. Returns the
    recovered preprocessed row and how many rows the replayed sampler drew."""
    zeros = np.zeros((n, d), dtype="float32")
    neg = _update(settings, zeros, np.zeros(n, dtype="float32"), key)
    pos = _update(settings, zeros, np.ones(n, dtype="float32"), key)
    noise_w = -neg["0.weight"]  # dummy rows have zero weight gradient: the update is -noise
    noise_b = -(neg["0.bias"] + pos["0.bias"]) / 2  # their ±0.5 bias gradients cancel
    sampled = int(round(float(pos["0.bias"][0] - neg["0.bias"][0])))
    grad_w, grad_b = -returned["0.weight"] - noise_w, -returned["0.bias"] - noise_b
    return grad_w / grad_b[0], sampled


def _distance_to_nearest_row(recovered: np.ndarray, x_train: np.ndarray) -> float:
    rows = np.concatenate([np.nan_to_num(x_train), np.isnan(x_train)], axis=1)
    return float(np.min(np.max(np.abs(rows - recovered), axis=1)))


def _attack_inputs(tmp_path):
    config = run_config(tmp_path, *ATTACK)
    settings = RunSettings.from_run_config(config)
    site = load_site(site_data_file("cleveland"), settings.data, "cleveland")
    return config, settings, site


def test_replayed_randomness_reveals_a_patient_row_control(tmp_path):
    """Control: if the coordinator knew the site's key (as it knew the old seed), it reads a row."""
    _, settings, site = _attack_inputs(tmp_path)
    n, d = site.x_train.shape
    for attempt in range(40):  # the coordinator retries rounds until one row was sampled
        key = hashlib.sha256(f"run-seed-{attempt}".encode()).digest()
        returned = _update(settings, site.x_train, site.y_train, key)
        recovered, sampled = _recover_row(settings, returned, n, d, key)
        if sampled == 1:
            break
    assert sampled == 1
    # a training row (to float32 rounding of the noise: rounded, every value is exact)
    assert _distance_to_nearest_row(recovered, site.x_train) < 0.01


def test_replay_attack_against_the_real_train_handler_fails(tmp_path):
    config, settings, site = _attack_inputs(tmp_path)
    n, d = site.x_train.shape
    node = deployed_node(tmp_path / "cleveland")
    arrays = _coordinator_model(settings).state_dict()
    distances = []
    for server_round in range(1, 4):
        reply = send(node, config, message("train", ArrayRecord(arrays), server_round))[0]
        assert not reply.has_error(), reply.error.reason
        assert wire.TRAIN_LOSS not in reply.content[wire.METRICS]  # no exact per-row loss under DP
        returned = {
            k.removeprefix("head."): v.numpy().ravel()
            for k, v in reply.content[wire.ARRAYS].items()
            if k.startswith("head.")
        }
        # The best a coordinator can do: replay with the key it would derive from the run seed.
        guess = hashlib.sha256(f"run-seed-{settings.seed * 1000 + server_round}".encode()).digest()
        recovered, _ = _recover_row(settings, returned, n, d, guess)
        distances.append(_distance_to_nearest_row(recovered, site.x_train))
    assert min(distances) > 1.0, distances  # far from every training row, every round


def test_dp_runs_with_identical_configs_give_different_weights(tmp_path):
    """The site's randomness is fresh each time; DP off stays reproducible."""

    def two_rounds(*overrides):
        config = run_config(tmp_path, "rounds=3", *overrides)
        arrays = ArrayRecord(_coordinator_model(RunSettings.from_run_config(config)).state_dict())
        out = []
        for folder in ("a", "b"):  # two sites' worth of state, same data and config
            node = deployed_node(tmp_path / f"{folder}{len(overrides)}", require_dp="false")
            reply = send(node, config, message("train", arrays, 1))[0]
            assert not reply.has_error(), reply.error.reason
            out.append(np.concatenate([a.numpy().ravel() for a in reply.content[wire.ARRAYS].values()]))
        return out

    dp_a, dp_b = two_rounds()
    off_a, off_b = two_rounds("privacy=off")
    assert not np.array_equal(dp_a, dp_b)
    np.testing.assert_array_equal(off_a, off_b)
