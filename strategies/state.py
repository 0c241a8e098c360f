"""What a strategy must remember across a server restart, as plain tensors.

Flower's FedOpt family (FedAdam, FedYogi, FedAdagrad) keeps its server-optimizer moments in
the attributes ``m_t`` and ``v_t``; every other 1.41 strategy used here is stateless between
rounds (FedOpt's ``current_arrays`` is set again by ``configure_train``). Tensors, not numpy
arrays, so a checkpoint loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import numpy as np
import torch

from federation.core.errors import ConfigError

MOMENT_ATTRIBUTES = ("m_t", "v_t")


def strategy_state(strategy: object) -> dict[str, dict[str, torch.Tensor]]:
    """The strategy's moments (only those it has set), keyed by attribute then array."""
    state = {}
    for name in MOMENT_ATTRIBUTES:
        moments = getattr(strategy, name, None)
        if moments:
            state[name] = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in moments.items()}
    return state


def load_strategy_state(strategy: object, state: dict[str, dict[str, torch.Tensor]]) -> None:
    """Put moments saved by ``strategy_state`` back onto a freshly built strategy."""
    for name, moments in state.items():
        if name not in MOMENT_ATTRIBUTES or not hasattr(strategy, name):
            raise ConfigError(
                f"checkpoint holds strategy state {name!r} that "
                f"{type(strategy).__name__} does not keep: resume with the "
                "strategy the run started with"
            )
        setattr(strategy, name, {k: v.numpy() for k, v in moments.items()})
