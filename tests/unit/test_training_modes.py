"""Ghost clipping (the default) trains exactly as Opacus's hooks mode and accounts the same steps."""

from __future__ import annotations

import numpy as np
import torch

from client.site_randomness import SiteRandomness
from client.training import GRAD_SAMPLE_MODE, train_locally
from federation.core.model import ModelSpec, build_model
from federation.core.settings import PrivacySettings, TrainSettings


def _train(mode: str):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype("float32")
    x[::7, 2] = np.nan
    y = (rng.random(40) < 0.4).astype("float32")
    model = build_model(ModelSpec("mlp", 6), seed=1)
    # batch 4 of 40 rows: Poisson sampling draws some empty batches over 30 epochs
    result = train_locally(
        model,
        x,
        y,
        train=TrainSettings(local_epochs=30, batch_size=4),
        privacy=PrivacySettings(max_grad_norm=0.5),
        noise_multiplier=1.1,
        seed=5,
        proximal_mu=0.1,
        grad_sample_mode=mode,
        # the same site key for both: same batches, same noise
        randomness=SiteRandomness(key=bytes(32)),
    )
    return result, model.state_dict()


def test_ghost_clipping_matches_hooks_weights_loss_and_privacy_history():
    ghost, ghost_weights = _train("ghost")
    hooks, hooks_weights = _train("hooks")

    assert GRAD_SAMPLE_MODE == "ghost"
    assert ghost.history == hooks.history == [(1.1, 0.1, 300)]
    assert ghost.steps == hooks.steps == 300
    assert abs(ghost.loss - hooks.loss) < 1e-5
    for key, value in hooks_weights.items():
        torch.testing.assert_close(ghost_weights[key], value, atol=1e-4, rtol=1e-4)
