"""Shadow federations for LiRA: the run's training, replayed on random halves of each site.

Each shadow replays the run's federation in miniature: from the same seeded initialisation
and preprocessing, every site trains ``local_epochs`` on a random half of its records, the
updates are averaged by example count (FedAvg), for ``rounds`` rounds, with the run's
optimizer (the sites' own ``client.training.local_optimizer``: momentum, weight decay) and
batch size and without DP: the shadows only describe how confident such a
global model is on records it never saw. A plain tensor loop (no DataLoader, one thread)
keeps a shadow to seconds.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from client.training import local_optimizer
from federation.core.model import ModelSpec, build_model, predict_risk
from federation.core.settings import RunSettings, TrainSettings


def fit(
    model: nn.Module, x: np.ndarray, y: np.ndarray, train: TrainSettings, *, epochs: int, seed: int
) -> nn.Module:
    """Plain minibatch training of ``model`` in place."""
    generator = torch.Generator().manual_seed(seed)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    optimizer, criterion = local_optimizer(model, train), nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(yt), generator=generator)
        for batch in order.split(train.batch_size):
            optimizer.zero_grad(set_to_none=True)
            criterion(model(xt[batch]), yt[batch]).backward()
            optimizer.step()
    return model


def shadow_federation(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    chosen: np.ndarray,
    settings: RunSettings,
    *,
    seed: int,
) -> nn.Module:
    """FedAvg over the sites (``groups``) on the ``chosen`` records; ``model`` is the start."""
    sites = [np.flatnonzero(chosen & (groups == g)) for g in np.unique(groups)]
    sites = [rows for rows in sites if len(rows)]
    weights = np.array([len(rows) for rows in sites], dtype=float) / sum(len(r) for r in sites)
    for server_round in range(settings.rounds):
        start, states = copy.deepcopy(model.state_dict()), []
        for i, rows in enumerate(sites):
            model.load_state_dict(start)
            fit(
                model,
                x[rows],
                y[rows],
                settings.train,
                epochs=settings.train.local_epochs,
                seed=seed + 100 * server_round + i,
            )
            states.append(copy.deepcopy(model.state_dict()))
        model.load_state_dict({k: sum(w * s[k] for w, s in zip(weights, states)) for k in start})
    return model


def train_shadows(
    spec: ModelSpec,
    preprocess: dict[str, torch.Tensor],
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    settings: RunSettings,
    *,
    shadows: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(risk of every shadow on every record, whether that shadow trained on it)."""
    rng = np.random.default_rng(seed)
    risks, members = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads cost more than they give
    try:
        for k in range(shadows):
            chosen = rng.random(len(y)) < 0.5
            model = build_model(spec, seed=settings.seed)
            model.preprocess.load_state_dict(preprocess)
            shadow_federation(model, x, y, groups, chosen, settings, seed=seed * 1000 + 10 * k)
            risks.append(predict_risk(model, x))
            members.append(chosen)
    finally:
        torch.set_num_threads(threads)
    return np.array(risks), np.array(members)
