"""Local training at a site: plain or DP-SGD (Opacus), optionally with a FedProx proximal pull.

Pure of Flower: takes a model and arrays, returns a model and numbers, so it is tested alone.
Under DP every random choice (batches, noise, dropout) comes from the site's own CSPRNG
(:mod:`client.site_randomness`), never from a seed the coordinator knows; without DP the run
seed makes training reproducible.
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

from client.site_randomness import SitePoissonSampler, SiteRandomness, use_site_noise
from federation.core.privacy import History, sample_rate, steps_per_epoch
from federation.core.settings import PrivacySettings, TrainSettings

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


def local_optimizer(model: nn.Module, train: TrainSettings) -> torch.optim.Optimizer:
    """The run's optimiser for ``model`` (also the audit's shadow models': one recipe)."""
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)


class _BatchedTensors(TensorDataset):
    """Rows fetched a batch at a time by one index (the DataLoader otherwise fetches and
    stacks each row in Python, which dominated an epoch on 50k rows)."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[index] for t in self.tensors)


def _already_batched(batch):
    return batch


def _loader(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> DataLoader:
    """Shuffled fixed-size batches, reproducible from the run seed (training without DP)."""
    data = _BatchedTensors(torch.as_tensor(x), torch.as_tensor(y))
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        data, batch_size=batch_size, shuffle=True, generator=generator, collate_fn=_already_batched
    )


def _poisson_loader(x: np.ndarray, y: np.ndarray, batch_size: int, randomness: SiteRandomness) -> DataLoader:
    """Poisson-sampled batches drawn with the site's CSPRNG: as many per pass as Opacus's
    DPDataLoader yields (1 / sample rate), so Opacus derives the same sample rate from it."""
    n = len(y)
    sampler = SitePoissonSampler(
        num_samples=n,
        sample_rate=sample_rate(n_train=n, batch_size=batch_size),
        steps=steps_per_epoch(n_train=n, batch_size=batch_size),
        randomness=randomness,
    )
    data = _BatchedTensors(torch.as_tensor(x), torch.as_tensor(y))
    return DataLoader(data, batch_sampler=sampler, collate_fn=_already_batched)


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


def _run_epochs(
    model, optimizer, loader, criterion, *, epochs: int, anchor, train: TrainSettings, mu: float
) -> tuple[float, int]:
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


def train_locally(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    train: TrainSettings,
    privacy: PrivacySettings,
    noise_multiplier: float | None,
    seed: int,
    proximal_mu: float = 0.0,
    grad_sample_mode: str = GRAD_SAMPLE_MODE,
    randomness: SiteRandomness | None = None,
) -> LocalTrainResult:
    """Train ``model`` in place for ``train.local_epochs`` epochs on the site's rows.

    ``seed`` makes training without DP reproducible; under DP it is ignored and ``randomness``
    (default: a fresh :class:`SiteRandomness`, keyed from ``os.urandom``) draws every batch,
    noise sample and dropout mask. ``grad_sample_mode`` picks how Opacus gets per-sample
    gradient norms (hooks, functorch, ghost); it changes speed only.
    """
    anchor = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = local_optimizer(model, train)
    if not privacy.enabled:
        torch.manual_seed(seed)
        loss, steps = _run_epochs(
            model,
            optimizer,
            _loader(x, y, train.batch_size, seed),
            nn.BCEWithLogitsLoss(),
            epochs=train.local_epochs,
            anchor=anchor,
            train=train,
            mu=proximal_mu,
        )
        return LocalTrainResult(loss, steps, [])
    randomness = randomness or SiteRandomness()
    torch.manual_seed(randomness.seed())  # dropout masks: a secret seed, never the run's
    engine = PrivacyEngine(accountant=privacy.accountant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about secure RNG on every call
        private = engine.make_private(
            module=model,
            optimizer=optimizer,
            criterion=nn.BCEWithLogitsLoss(),
            data_loader=_poisson_loader(x, y, train.batch_size, randomness),
            noise_multiplier=noise_multiplier,
            max_grad_norm=privacy.max_grad_norm,
            poisson_sampling=False,  # the loader above already Poisson-samples, with site randomness
            grad_sample_mode=grad_sample_mode,
        )
    if grad_sample_mode == "ghost":
        dp_model, dp_optimizer, criterion, dp_loader = private
    else:
        (dp_model, dp_optimizer, dp_loader), criterion = private, nn.BCEWithLogitsLoss()
    use_site_noise(dp_optimizer, randomness)
    loss, steps = _run_epochs(
        dp_model,
        dp_optimizer,
        dp_loader,
        criterion,
        epochs=train.local_epochs,
        anchor=anchor,
        train=train,
        mu=proximal_mu,
    )
    history = [(float(s), float(q), int(n)) for s, q, n in engine.accountant.history]
    return LocalTrainResult(loss, steps, history)
