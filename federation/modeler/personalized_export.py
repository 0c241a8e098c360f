"""A site's personalized model as an exportable checkpoint (``lhsfed export --personalized``).

The site keeps its adaptation of the selected global model (``personalize=``, in
client.personalize) and never sends it; to score its patients with it, it exports it as
any model is exported. Fine-tuned weights replace the global ones (same architecture and
preprocessing buffers); Platt recalibration, risk = sigmoid(a + b * logit), is folded into the
last linear layer (weight * b, a + b * bias), so the exported graph computes it exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from federation.core.errors import ConfigError
from federation.core.input_files import require_file
from federation.core.settings import RunSettings
from federation.modeler.run_loader import SavedModel


def personalized_checkpoint(
    checkpoint: SavedModel, settings: RunSettings, path: Path
) -> tuple[SavedModel, dict[str, Any]]:
    """(the checkpoint with the site's model, the model card's ``personalized`` entry)."""
    from client.personalize import load_personalized
    from federation.modeler.model_card import sha256_of

    path = require_file(path, what="personalized model", fix="give the file personalize= kept at this site")
    try:
        own = load_personalized(path, settings)
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise ConfigError(
            f"{path}: not a personalized model of this run ({' '.join(str(err).split())[:200]}); "
            "give the file this run's personalize= step kept at this site"
        ) from None
    model = own.model
    if own.platt is not None:
        a, b = own.platt
        last = model.head[-1]
        with torch.no_grad():
            last.weight.mul_(b)
            last.bias.mul_(b).add_(a)
    note = {
        "mode": own.mode,
        "file": path.name,
        "sha256": sha256_of(path.read_bytes()),
        "metrics": "the metrics above are the global model's; this site's global vs personalized "
        "test metrics are in the run's personalization.json",
    }
    return dataclasses.replace(checkpoint, model=model), note
