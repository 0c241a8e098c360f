"""``train.local_steps``: a round is exactly that many steps, and DP accounts exactly those."""

from __future__ import annotations

import numpy as np
import pytest

from client.training import train_locally
from federation.core.model import ModelSpec, build_model
from federation.core.privacy import planned_steps, sample_rate
from federation.core.settings import PrivacySettings, TrainSettings


def _data(n: int = 30):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


@pytest.mark.parametrize("dp", [False, True])
def test_local_steps_cycles_the_data_and_dp_records_every_step(dp):
    x, y = _data()  # 30 rows, batch 4: 8 batches per epoch, so 20 steps cycle it 2.5 times
    train = TrainSettings(batch_size=4, local_steps=20, optimizer="sgd", momentum=0.0, lr=0.01)
    model = build_model(ModelSpec("logreg", 5))
    result = train_locally(
        model,
        x,
        y,
        train=train,
        privacy=PrivacySettings(enabled=dp),
        noise_multiplier=1.0 if dp else None,
        seed=1,
    )
    assert result.steps == 20
    if dp:
        planned = planned_steps(n_train=30, batch_size=4, local_epochs=1, rounds=1, local_steps=20)
        assert sum(n for _, _, n in result.history) == planned == 20
        assert {q for _, q, _ in result.history} == {sample_rate(n_train=30, batch_size=4)}


def test_zero_local_steps_keeps_epochs():
    x, y = _data()
    model = build_model(ModelSpec("logreg", 5))
    result = train_locally(
        model,
        x,
        y,
        train=TrainSettings(batch_size=4, local_epochs=2),
        privacy=PrivacySettings(enabled=False),
        noise_multiplier=None,
        seed=1,
    )
    assert result.steps == 2 * 8 == planned_steps(n_train=30, batch_size=4, local_epochs=2, rounds=1)
