"""Local training at a site: plain or DP-SGD (Opacus), optionally with a FedProx proximal pull.

Pure of Flower: takes a model and arrays, returns a model and numbers, so it is tested alone.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from federation.privacy import History
from federation.settings import PrivacySettings, TrainSettings

log = logging.getLogger(__name__)
# How Opacus gets per-sample gradient norms: ghost clipping measured fastest on our MLPs
# (benchmarks/RESULTS.md, (a)); "hooks" and "functorch" give the same clipping and ε.
GRAD_SAMPLE_MODE = "ghost"
GRAD_SAMPLE_MODES = ("hooks", "functorch", "ghost")


@dataclass(frozen=True)
class LocalTrainResult:
    """What one round of local training did: mean loss, and the DP steps it took."""

    loss: float
    steps: int
    history: History  # (noise multiplier, sample rate, steps) as Opacus's accountant saw them


def _optimizer(model: nn.Module, train: TrainSettings) -> torch.optim.Optimizer:
    if train.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum)
    return torch.optim.Adam(model.parameters(), lr=train.lr)


class _BatchedTensors(TensorDataset):
    """Rows fetched a batch at a time by one index (the DataLoader otherwise fetches and
    stacks each row in Python, which dominated an epoch on 50k rows)."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[index] for t in self.tensors)


def _already_batched(batch):
    return batch


def _loader(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> DataLoader:
    data = _BatchedTensors(torch.as_tensor(x), torch.as_tensor(y))
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator,
                      collate_fn=_already_batched)


@torch.no_grad()
def _proximal_pull(model: nn.Module, anchor: dict[str, torch.Tensor], *, lr: float, mu: float) -> None:
    """FedProx: move weights towards the global model by lr * mu * (w - w_global).

    Applied after each (DP) optimizer step, as a data-independent post-processing, so it
    costs no privacy and works with Opacus (whose per-sample grads would drop a loss term).
    """
    for name, param in model.named_parameters():
        key = name.removeprefix("_module.")
        param.sub_(lr * mu * (param - anchor[key]))


def _batches(loader, *, epochs: int, max_steps: int):
    """``epochs`` passes over the loader, or (``max_steps`` > 0) exactly that many batches,
    cycling the loader, so the steps taken are the steps the DP accounting planned."""
    if max_steps <= 0:
        for _ in range(epochs):
            yield from loader
        return
    taken = 0
    while True:
        for batch in loader:
            yield batch
            taken += 1
            if taken == max_steps:
                return


def _run_epochs(model, optimizer, loader, criterion, *, epochs: int, anchor, train: TrainSettings,
                mu: float) -> tuple[float, int]:
    total, batches, steps = 0.0, 0, 0
    model.train()
    for xb, yb in _batches(loader, epochs=epochs, max_steps=train.local_steps):
        optimizer.zero_grad(set_to_none=True)
        logits = model(xb)
        # Poisson sampling can draw an empty batch: it is still a (noisy) step.
        loss = criterion(logits, yb) if len(yb) else logits.sum() * 0.0
        loss.backward()
        optimizer.step()
        steps += 1
        if mu > 0:
            _proximal_pull(model, anchor, lr=train.lr, mu=mu)
        if len(yb):
            total, batches = total + loss.item(), batches + 1
    return total / max(batches, 1), steps


def train_locally(model: nn.Module, x: np.ndarray, y: np.ndarray, *, train: TrainSettings,
                  privacy: PrivacySettings, noise_multiplier: float | None, seed: int,
                  proximal_mu: float = 0.0, grad_sample_mode: str = GRAD_SAMPLE_MODE
                  ) -> LocalTrainResult:
    """Train ``model`` in place for ``train.local_epochs`` epochs on the site's rows.

    ``grad_sample_mode`` picks how Opacus gets per-sample gradient norms (hooks, functorch,
    ghost); it changes speed only: clipping, noise and accounting are the same.
    """
    torch.manual_seed(seed)
    anchor = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = _optimizer(model, train)
    loader = _loader(x, y, train.batch_size, seed)
    if not privacy.enabled:
        loss, steps = _run_epochs(model, optimizer, loader, nn.BCEWithLogitsLoss(),
                                  epochs=train.local_epochs,
                                  anchor=anchor, train=train, mu=proximal_mu)
        return LocalTrainResult(loss, steps, [])
    engine = PrivacyEngine(accountant=privacy.accountant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about secure RNG on every call
        private = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader, criterion=nn.BCEWithLogitsLoss(),
            noise_multiplier=noise_multiplier, max_grad_norm=privacy.max_grad_norm,
            poisson_sampling=True, grad_sample_mode=grad_sample_mode,
        )
    if grad_sample_mode == "ghost":
        dp_model, dp_optimizer, criterion, dp_loader = private
    else:
        (dp_model, dp_optimizer, dp_loader), criterion = private, nn.BCEWithLogitsLoss()
    loss, steps = _run_epochs(dp_model, dp_optimizer, dp_loader, criterion, epochs=train.local_epochs,
                              anchor=anchor, train=train, mu=proximal_mu)
    history = [(float(s), float(q), int(n)) for s, q, n in engine.accountant.history]
    return LocalTrainResult(loss, steps, history)
