"""The risk model: preprocessing (standardize, impute, missing flags) baked into a torch module.

Preprocessing statistics are buffers, not parameters: they are set once from the federated
feature statistics and never trained, so DP-SGD and aggregation only touch the weights.
All layers are Opacus-compatible (no BatchNorm), which ``ModuleValidator`` checks in tests.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from federation.core.model_spec import MODEL_NAMES, ModelSpec  # noqa: F401  (re-exported)


class Preprocess(nn.Module):
    """(x - mean) / std, missing values imputed at the mean, plus a missing-flag per column."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def set_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.where(std > 1e-8, std, 1.0), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(x)
        z = torch.where(missing, torch.zeros_like(x), (x - self.mean) / self.std)
        return torch.cat([z, missing.to(z.dtype)], dim=1)


class RiskModel(nn.Module):
    """Preprocess then a classifier head; forward returns logits (sigmoid gives risk)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.preprocess = Preprocess(spec.n_features)
        width = 2 * spec.n_features
        if spec.name == "logreg":
            self.head = nn.Sequential(nn.Linear(width, 1))
        else:
            self.head = nn.Sequential(
                nn.Linear(width, spec.hidden),
                nn.ReLU(),
                nn.Dropout(spec.dropout),
                nn.Linear(spec.hidden, 1),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.preprocess(x)).squeeze(-1)


def build_model(spec: ModelSpec, seed: int = 0) -> RiskModel:
    """A freshly initialised model; the seed makes every site and the server agree."""
    if spec.name not in MODEL_NAMES:
        raise ValueError(f"model {spec.name!r} unknown; choose one of {MODEL_NAMES}")
    torch.manual_seed(seed)
    return RiskModel(spec)


def unwrapped_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict without Opacus's ``_module.`` prefix, so sites exchange plain keys."""
    inner = getattr(model, "_module", model)
    return {k: v.detach().clone() for k, v in inner.state_dict().items()}


@torch.no_grad()
def predict_risk(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Predicted probability of the positive class for each row."""
    model.eval()
    return torch.sigmoid(model(torch.as_tensor(x, dtype=torch.float32))).numpy()
