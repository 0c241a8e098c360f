"""DP-SGD for the logistic-regression risk model, with per-sample gradients in closed form.

Why hand-written: privacy needs per-sample gradients, and Opacus gets them with module hooks
(or ghost clipping's second backward pass) whose fixed per-step cost made a DP epoch about 3x a
plain one even on a one-layer model (benchmarks/results/dp_epoch_linear.md). For BCE with
logits on a linear head the per-sample gradient needs no autograd at all: with features
``h_i = preprocess(x_i)`` and logit ``z_i = w·h_i + b``, the gradient of row i's loss is
``(sigmoid(z_i) - y_i) * [h_i, 1]``, exactly.

Everything around those gradients is Opacus's DPOptimizer step, done the same way so the
result is the same update and the same ε: flat clipping of each row's gradient to
``max_grad_norm`` (factor ``min(1, C / (norm + 1e-6))``), the clipped sum, Gaussian noise of
std ``σ·C`` per parameter in Opacus's parameter order drawn from the site's CSPRNG
(:class:`client.site_randomness.SiteRandomness`, as :func:`~client.site_randomness.use_site_noise`
does for Opacus), division by Opacus's ``expected_batch_size`` (``loss_reduction="mean"``),
then the run's own optimiser; every step (an empty Poisson batch too) is recorded by an Opacus
accountant, so the history and ε are Opacus's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from opacus.accountants import IAccountant
from torch import nn

from client.site_randomness import SiteRandomness

CLOSED_FORM = "closed-form"
_CLIP_EPS = 1e-6  # Opacus's DPOptimizer.clip_and_accumulate


def linear_head(model: nn.Module) -> nn.Linear | None:
    """The one-output ``nn.Linear`` that is ``model``'s only trainable layer, fed by its
    ``preprocess`` (the logreg :class:`~federation.core.model.RiskModel`); None otherwise."""
    head, preprocess = getattr(model, "head", None), getattr(model, "preprocess", None)
    if not isinstance(head, nn.Sequential) or not isinstance(preprocess, nn.Module) or len(head) != 1:
        return None
    linear = head[0]
    if not isinstance(linear, nn.Linear) or linear.out_features != 1 or linear.bias is None:
        return None
    trainable = [p for p in model.parameters() if p.requires_grad]
    return linear if {id(p) for p in trainable} == {id(linear.weight), id(linear.bias)} else None


def per_sample_gradients(features: torch.Tensor, residual: torch.Tensor) -> list[torch.Tensor]:
    """Each row's gradient of its BCE-with-logits loss, shaped as Opacus's ``grad_sample``:
    weight ``[m, 1, d]`` and bias ``[m, 1]``, for ``residual = sigmoid(z) - y``.

    The step itself never builds them: :func:`per_sample_norms` and :func:`clipped_sum` use
    their product form."""
    return [residual[:, None, None] * features[:, None, :], residual[:, None]]


def per_sample_norms(features: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each row's whole gradient ``r_i * [h_i, 1]``: ``|r_i| sqrt(|h_i|² + 1)``."""
    return residual.abs() * (torch.linalg.vector_norm(features, dim=1).square() + 1).sqrt()


def clipped_sum(
    features: torch.Tensor, residual: torch.Tensor, max_grad_norm: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Opacus's flat clipping (each row's gradient scaled by ``min(1, C / (norm + 1e-6))``),
    summed over the rows: the weight's ``[1, d]`` and the bias's ``[1]`` (zeros if no rows)."""
    factor = (max_grad_norm / (per_sample_norms(features, residual) + _CLIP_EPS)).clamp(max=1.0)
    scaled = factor * residual
    return scaled[None, :] @ features, scaled.sum(0, keepdim=True)


class ClosedFormDPStep:
    """One DP-SGD step of the logreg ``model`` on a batch, per call: Opacus's step, closed form.

    ``expected_batch_size`` and ``sample_rate`` are Opacus's (``int(n * q)`` and ``q``);
    ``accountant`` records each step as Opacus's optimizer hook would.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        sample_rate: float,
        expected_batch_size: int,
        randomness: SiteRandomness,
        accountant: IAccountant,
    ) -> None:
        linear = linear_head(model)
        if linear is None:
            raise ValueError(f"{CLOSED_FORM} DP-SGD needs a model whose only trainable layer is one Linear")
        self.preprocess, self.linear, self.optimizer = model.preprocess, linear, optimizer
        self.params = [linear.weight, linear.bias]  # Opacus's order: noise is drawn in it
        self.noise_multiplier, self.max_grad_norm = noise_multiplier, max_grad_norm
        self.sample_rate, self.expected_batch_size = sample_rate, expected_batch_size
        self.randomness, self.accountant = randomness, accountant

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        """Take the step; the batch's mean loss before it (0 for an empty batch)."""
        with torch.no_grad():
            features = self.preprocess(xb)
            logits = self.linear(features).squeeze(-1)
            yb = yb.to(logits.dtype)  # float64 labels must not make the sums float64
            residual = torch.sigmoid(logits) - yb
            summed = clipped_sum(features, residual, self.max_grad_norm)
            # the noise Opacus's add_noise draws parameter by parameter, in one draw
            noises = self.randomness.gaussians_like(summed, self.noise_multiplier * self.max_grad_norm)
            for param, grad, noise in zip(self.params, summed, noises, strict=True):
                param.grad = (grad + noise).view_as(param) / self.expected_batch_size
            loss = F.binary_cross_entropy_with_logits(logits, yb).item() if len(yb) else 0.0
        self.optimizer.step()
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        return loss
