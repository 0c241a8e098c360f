"""Replaying a site's DP randomness would reveal a patient row; the site's own randomness stops it.

The attack, as a security review ran it: with ``model=logreg train.optimizer=sgd
train.momentum=0 train.lr=1 train.batch_size=1 train.local_steps=1`` the coordinator sends
zero weights and identity scaling, re-runs the site's training on dummy rows (all inputs 0, so
their weight gradients are 0) with the randomness it believes the site used, and so learns
the noise; subtracting it from the returned update leaves the clipped gradient of the one
sampled row, ``(p - y) * [x, missing flags]`` and ``(p - y)``: their ratio is the row.

What the coordinator would replay: the key the site would use if its randomness were seeded
from the run config, as it was before (``seed * 1000 + round``, the ``seed`` the train
handler still passes for training without DP), turned into :class:`SiteRandomness`'s 32-byte
key in each natural way (:data:`RUN_CONFIG_KEYS`). The control patches the real train
handler so that its site does exactly that, and the attack reads a row; unpatched, the same
attack on the same rounds is far from every row: it fails only because the key is secret.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord

import client.app
from client.site_policy import SitePolicy
from client.site_randomness import KEY_BYTES, SiteRandomness
from client.training import train_locally
from federation.core import wire
from federation.core.data import load_site
from federation.core.model import build_model
from federation.core.privacy import site_noise_for_run
from federation.core.settings import RunSettings, model_spec
from tests.helpers.site_nodes import (
    deployed_node,
    message,
    run_config,
    send,
    site_data_file,
)

ROUNDS = 8  # the coordinator sends rounds until one sampled exactly one row (≈ 37 % each)
ATTACK = (
    "model=logreg",
    "train.optimizer=sgd",
    "train.momentum=0",
    "train.lr=1",
    "train.batch_size=1",
    "train.local_steps=1",
    f"rounds={ROUNDS}",
)
# A round's seed from the run config (what ``client.app.train`` passes as ``seed``) made into
# a ChaCha20 key the ways a change to the site's code most plausibly would.
RUN_CONFIG_KEYS = {
    "sha256-of-text": lambda seed: hashlib.sha256(str(seed).encode()).digest(),
    "sha256-of-int64": lambda seed: hashlib.sha256(seed.to_bytes(8, "little")).digest(),
    "int-little-endian": lambda seed: seed.to_bytes(KEY_BYTES, "little"),
    "int-big-endian": lambda seed: seed.to_bytes(KEY_BYTES, "big"),
}


def _round_seed(settings: RunSettings, server_round: int) -> int:
    return settings.seed * 1000 + server_round  # the seed a site used to draw its randomness from


def _coordinator_model(settings: RunSettings):
    model = build_model(model_spec(settings), seed=settings.seed)
    with torch.no_grad():
        for param in model.head.parameters():
            param.zero_()  # p = 0.5 for every row; the scaling buffers stay mean 0, std 1
    return model


def _update(settings, x, y, key: bytes) -> dict[str, np.ndarray]:
    """Weights after one site round with randomness keyed by ``key`` (what a replay runs)."""
    model = _coordinator_model(settings)
    # the σ the site trains with (the coordinator reads it in every training reply)
    noise = site_noise_for_run(
        settings, len(y), delta=1e-5, accountant="rdp", release_share=SitePolicy.release_epsilon_share
    ).sigma
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


def _rounds_of_the_real_handler(tmp_path, config, settings):
    """Rounds 1..ROUNDS trained by the real train handler of a deployed node: the head's
    returned weights of each round, from the coordinator's zero model."""
    node = deployed_node(tmp_path / "cleveland")
    arrays = _coordinator_model(settings).state_dict()
    for server_round in range(1, ROUNDS + 1):
        reply = send(node, config, message("train", ArrayRecord(arrays), server_round))[0]
        assert not reply.has_error(), reply.error.reason
        assert wire.TRAIN_LOSS not in reply.content[wire.METRICS]  # no exact per-row loss under DP
        yield (
            server_round,
            {
                k.removeprefix("head."): v.numpy().ravel()
                for k, v in reply.content[wire.ARRAYS].items()
                if k.startswith("head.")
            },
        )


def _site_keyed_from_the_run_config(monkeypatch, derive) -> None:
    """The control: the real handler's site draws its randomness from SiteRandomness keyed by
    ``derive`` of the seed the handler computes from the run config (instead of os.urandom)."""
    real = client.app.train_locally

    def train_locally_seeded(*args, seed: int, **kwargs):
        return real(*args, seed=seed, randomness=SiteRandomness(key=derive(seed)), **kwargs)

    monkeypatch.setattr(client.app, "train_locally", train_locally_seeded)


@pytest.mark.parametrize("recipe", sorted(RUN_CONFIG_KEYS))
def test_replay_reads_a_patient_row_from_a_site_keyed_by_the_run_config_control(
    tmp_path, monkeypatch, recipe
):
    """Control: were the site's key derived from the run config, the coordinator derives it
    too and, from the real train handler's reply, reads a training row."""
    derive = RUN_CONFIG_KEYS[recipe]
    _site_keyed_from_the_run_config(monkeypatch, derive)
    config, settings, site = _attack_inputs(tmp_path)
    n, d = site.x_train.shape
    for server_round, returned in _rounds_of_the_real_handler(tmp_path, config, settings):
        recovered, sampled = _recover_row(
            settings, returned, n, d, derive(_round_seed(settings, server_round))
        )
        if sampled == 1:
            break
    assert sampled == 1, f"no round of {ROUNDS} sampled exactly one row"
    # a training row (to float32 rounding of the noise: rounded, every value is exact)
    assert _distance_to_nearest_row(recovered, site.x_train) < 0.01


def test_replay_attack_against_the_real_train_handler_fails(tmp_path):
    """The same attack on the same rounds, unpatched: whichever recipe the coordinator replays,
    the recovered vector is far from every training row in every round (the key is secret)."""
    config, settings, site = _attack_inputs(tmp_path)
    n, d = site.x_train.shape
    distances = {}
    for server_round, returned in _rounds_of_the_real_handler(tmp_path, config, settings):
        for recipe, derive in RUN_CONFIG_KEYS.items():
            guess = derive(_round_seed(settings, server_round))
            recovered, _ = _recover_row(settings, returned, n, d, guess)
            distances[recipe, server_round] = _distance_to_nearest_row(recovered, site.x_train)
    # NaN (0/0: the replay stripped the noise exactly and no row was sampled) fails too
    assert all(distance > 1.0 for distance in distances.values()), distances


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
