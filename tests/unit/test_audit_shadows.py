"""Shadow models train with the run's own optimiser settings (momentum, weight decay)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from federation.core.model import ModelSpec, build_model
from federation.core.settings import TrainSettings
from federation.modeler.audit.shadows import fit

SGD = TrainSettings(optimizer="sgd", lr=0.1, batch_size=8, momentum=0.0, weight_decay=0.0)


def _fitted(train: TrainSettings) -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] + rng.normal(scale=0.5, size=64) > 0).astype("float32")
    model = build_model(ModelSpec("logreg", n_features=3), seed=1)
    fit(model, x, y, train, epochs=2, seed=3)
    return [p.detach().clone() for p in model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b))


def test_shadows_follow_train_momentum():
    without = _fitted(SGD)

    assert _same(without, _fitted(SGD))  # the control: a shadow's training is deterministic
    assert not _same(without, _fitted(dataclasses.replace(SGD, momentum=0.9)))


def test_shadows_follow_train_weight_decay():
    assert not _same(_fitted(SGD), _fitted(dataclasses.replace(SGD, weight_decay=0.1)))
