"""A model's state dict as one run-config string, and back (warm starts).

Flower's run config holds scalars only, and it is the one thing the ServerApp reads in
simulation, in-process and on a real SuperLink alike; a file path would name a file on the
coordinator's machine that a SuperLink host may not have. So the launcher sends the parent
model's weights themselves: ``torch.save`` bytes in base64, read back with
``weights_only=True`` (tensors only: nothing in the string can run). In deployment the text
rides in the app bundle, which Flower caps at 10 MB (``FAB_MAX_SIZE``): about 1.8 million
float32 parameters; the risk models here have tens to a few thousand.
"""

from __future__ import annotations

import base64
import binascii
import io

import torch

from federation.core.errors import ConfigError
from federation.core.safe_load import _LOAD_ERRORS, _reason

KEY = "run.init_weights"  # empty: a fresh model from the federated feature statistics


def encode_state_dict(state: dict[str, torch.Tensor]) -> str:
    """``state`` (tensors, cloned to CPU) as base64 text."""
    buffer = io.BytesIO()
    torch.save({name: t.detach().cpu().clone() for name, t in state.items()}, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_state_dict(text: str) -> dict[str, torch.Tensor]:
    """The state dict :func:`encode_state_dict` wrote; anything else is one ConfigError line."""
    try:
        payload = torch.load(
            io.BytesIO(base64.b64decode(text, validate=True)), map_location="cpu", weights_only=True
        )
    except (binascii.Error, *_LOAD_ERRORS) as err:
        reason = _reason(err) if not isinstance(err, binascii.Error) else "not base64"
        raise ConfigError(
            f"{KEY}: not a state dict written by lhsfed-train init= ({reason}); "
            "launch the warm start through lhsfed-train init=RUN_DIR"
        ) from None
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ConfigError(f"{KEY}: holds no state dict of tensors; launch through lhsfed-train init=RUN_DIR")
    return payload
