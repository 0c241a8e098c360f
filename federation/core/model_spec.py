"""What names a model and rebuilds it from a saved state dict, without torch: the run settings
(and so every ``lhsfed-train`` refusal) read it before any runtime starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

MODEL_NAMES = ("mlp", "logreg")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the model from a saved state dict."""

    name: str
    n_features: int
    hidden: int = 32
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)
