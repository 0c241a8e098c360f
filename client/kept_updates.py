"""The update this site sent for a round, kept so that the same round sent again from the same
global model gets the same update back, at no new charge.

Why: a site pays a round's ε before it trains, so a reply lost on the way (the SuperLink
killed mid-round, a network cut) leaves ε spent on an update nobody received. The resumed run
then sends that round again from the same checkpointed global model. Training again would pay
a second time for a second draw; sending the first output again is post-processing of the one
release already paid for, so it costs nothing and the charge is finally used. A different
global model for the round is a different training: charged (or refused) as any other.

Kept in the site's state folder (:func:`client.site_state.state_dir`), one ``.npz`` of the
arrays and one JSON of the reply's fixed metrics per (run, round, global model digest); the
JSON is written last, so an update without it was never complete and is not used.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from client.site_policy import SitePolicy
from client.site_state import run_key, state_dir
from federation.core import atomic

UPDATES = "updates"  # the sub-folder of the state folder: one folder per run


def _paths(policy: SitePolicy, run_identity: str, server_round: int, received: str) -> tuple[Path, Path]:
    stem = state_dir(policy) / UPDATES / run_key(run_identity) / f"round-{int(server_round)}-{received}"
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def keep_update(
    policy: SitePolicy, run_identity: str, server_round: int, received: str, state: dict, metrics: dict
) -> None:
    """Keep the update trained from the global model of digest ``received``: its arrays
    (``state``: name -> tensor, in the order sent) and the reply's metrics."""
    arrays, data = {name: t.detach().cpu().numpy() for name, t in state.items()}, io.BytesIO()
    np.savez(data, **arrays)
    npz, meta = _paths(policy, run_identity, server_round, received)
    atomic.write_bytes(npz, data.getvalue())
    atomic.write_json(meta, {"run_identity": run_identity, "names": list(arrays), "metrics": metrics})


def kept_update(
    policy: SitePolicy, run_identity: str, server_round: int, received: str
) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(arrays as sent, metrics) of the update kept for this round and global model, or None."""
    npz, meta = _paths(policy, run_identity, server_round, received)
    if not meta.is_file() or not npz.is_file():
        return None
    document = json.loads(meta.read_text())
    if document.get("run_identity") != run_identity:  # a key collision: not this run's
        return None
    with np.load(npz, allow_pickle=False) as arrays:
        state = {name: torch.from_numpy(arrays[name].copy()) for name in document["names"]}
    return state, document["metrics"]
