"""Local training at a site: plain or DP-SGD, optionally with a FedProx proximal pull.

DP-SGD is Opacus's, except for the logreg model, whose per-sample gradients are computed in
closed form (:mod:`client.linear_dp`: same clipping, noise, scaling and accounting at about half
the cost of Opacus's fastest mode on it); ``grad_sample_mode`` still selects an Opacus mode.

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
from opacus.accountants import create_accountant
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from client.linear_dp import CLOSED_FORM, ClosedFormDPStep, linear_head
from client.site_randomness import SitePoissonSampler, SiteRandomness, use_site_noise
from federation.core.privacy import History, sample_rate, steps_per_epoch
from federation.core.settings import PrivacySettings, TrainSettings

log = logging.getLogger(__name__)
# How Opacus gets per-sample gradient norms: ghost clipping measured fastest on our MLPs
# (benchmarks/RESULTS.md, (a)); "hooks" and "functorch" give the same clipping and ε.
GRAD_SAMPLE_MODE = "ghost"
GRAD_SAMPLE_MODES = ("hooks", "functorch", "ghost")
# The logreg model skips Opacus: its per-sample gradients in closed form (client/linear_dp.py)
# make a DP epoch far cheaper (benchmarks/results/dp_epoch_linear.md), same clipping and ε.
DP_MODES = (CLOSED_FORM, *GRAD_SAMPLE_MODES)


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


def _autograd_step(model: nn.Module, optimizer, criterion):
    """A training step by backpropagation (plain, or Opacus's DP optimizer): the batch's loss."""

    def step(xb: torch.Tensor, yb: torch.Tensor) -> float:
        optimizer.zero_grad(set_to_none=True)
        logits = model(xb)
        # Poisson sampling can draw an empty batch: it is still a (noisy) step.
        loss = criterion(logits, yb) if len(yb) else logits.sum() * 0.0
        loss.backward()
        optimizer.step()
        return loss.item() if len(yb) else 0.0

    return step


def _run_epochs(
    model, step, loader, *, epochs: int, anchor, train: TrainSettings, mu: float
) -> tuple[float, int]:
    total, batches, steps = 0.0, 0, 0
    model.train()
    for xb, yb in _batches(loader, epochs=epochs, max_steps=train.local_steps):
        loss = step(xb, yb)
        steps += 1
        if mu > 0:
            _proximal_pull(model, anchor, lr=train.lr, mu=mu)
        if len(yb):
            total, batches = total + loss, batches + 1
    return total / max(batches, 1), steps


def default_grad_sample_mode(model: nn.Module) -> str:
    """Closed-form per-sample gradients for the logreg model, Opacus's ghost clipping otherwise."""
    return CLOSED_FORM if linear_head(model) is not None else GRAD_SAMPLE_MODE


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
    grad_sample_mode: str | None = None,
    randomness: SiteRandomness | None = None,
) -> LocalTrainResult:
    """Train ``model`` in place for ``train.local_epochs`` epochs on the site's rows.

    ``seed`` makes training without DP reproducible; under DP it is ignored and ``randomness``
    (default: a fresh :class:`SiteRandomness`, keyed from ``os.urandom``) draws every batch,
    noise sample and dropout mask. ``grad_sample_mode`` picks how DP-SGD gets per-sample
    gradients: ``closed-form`` (:mod:`client.linear_dp`, logreg only) or Opacus's hooks,
    functorch or ghost; None takes :func:`default_grad_sample_mode`. It changes speed only.
    """
    anchor = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = local_optimizer(model, train)
    if not privacy.enabled:
        torch.manual_seed(seed)
        step = _autograd_step(model, optimizer, nn.BCEWithLogitsLoss())
        loader = _loader(x, y, train.batch_size, seed)
        loss, steps = _run_epochs(
            model, step, loader, epochs=train.local_epochs, anchor=anchor, train=train, mu=proximal_mu
        )
        return LocalTrainResult(loss, steps, [])
    mode = grad_sample_mode or default_grad_sample_mode(model)
    if mode not in DP_MODES:
        raise ValueError(f"grad_sample_mode {mode!r} unknown; choose one of {DP_MODES}")
    randomness = randomness or SiteRandomness()
    torch.manual_seed(randomness.seed())  # dropout masks: a secret seed, never the run's
    loader = _poisson_loader(x, y, train.batch_size, randomness)
    if mode == CLOSED_FORM:
        dp_model, step, accountant = _closed_form(model, optimizer, loader, privacy, noise_multiplier)
    else:
        dp_model, step, accountant = _opacus(model, optimizer, loader, privacy, noise_multiplier, mode)
    loss, steps = _run_epochs(
        dp_model, step, loader, epochs=train.local_epochs, anchor=anchor, train=train, mu=proximal_mu
    )
    history = [(float(s), float(q), int(n)) for s, q, n in accountant.history]
    return LocalTrainResult(loss, steps, history)


def _closed_form(model, optimizer, loader, privacy: PrivacySettings, noise_multiplier: float):
    """The logreg's DP-SGD step in closed form, with Opacus's sample rate, batch size scaling
    and accountant (``make_private`` derives them from the loader the same way)."""
    rate = 1 / len(loader)
    accountant = create_accountant(mechanism=privacy.accountant)
    step = ClosedFormDPStep(
        model,
        optimizer,
        noise_multiplier=noise_multiplier,
        max_grad_norm=privacy.max_grad_norm,
        sample_rate=rate,
        expected_batch_size=int(len(loader.dataset) * rate),
        randomness=loader.batch_sampler.randomness,
        accountant=accountant,
    )
    return model, step, accountant


def _opacus(model, optimizer, loader, privacy: PrivacySettings, noise_multiplier: float, mode: str):
    """Opacus's DP-SGD (``mode``: hooks, functorch or ghost), noise from the site's randomness."""
    engine = PrivacyEngine(accountant=privacy.accountant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns about secure RNG on every call
        private = engine.make_private(
            module=model,
            optimizer=optimizer,
            criterion=nn.BCEWithLogitsLoss(),
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=privacy.max_grad_norm,
            poisson_sampling=False,  # the loader already Poisson-samples, with site randomness
            grad_sample_mode=mode,
        )
    # the loader comes back as it went in (poisson_sampling=False, no secure_mode)
    if mode == "ghost":
        dp_model, dp_optimizer, criterion, _ = private
    else:
        (dp_model, dp_optimizer, _), criterion = private, nn.BCEWithLogitsLoss()
    use_site_noise(dp_optimizer, loader.batch_sampler.randomness)
    return dp_model, _autograd_step(dp_model, dp_optimizer, criterion), engine.accountant
