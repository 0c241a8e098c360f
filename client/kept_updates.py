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
JSON is written last, so an update without it was never complete and is not used. Not under
secure aggregation (client.app): there the server must see sums only, and the same update
summed with another set of sites would be subtracted out.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from pathlib import Path

import numpy as np
import torch

from client.site_policy import SitePolicy
from client.site_state import run_key, state_dir
from federation.core import atomic

log = logging.getLogger(__name__)
UPDATES = "updates"  # the sub-folder of the state folder: one folder per run


def _stem(policy: SitePolicy, run_identity: str, server_round: int, received: str) -> Path:
    return state_dir(policy) / UPDATES / run_key(run_identity) / f"round-{int(server_round)}-{received}"


def keep_update(
    policy: SitePolicy, run_identity: str, server_round: int, received: str, state: dict, metrics: dict
) -> None:
    """Keep the update trained from the global model of digest ``received``: its arrays
    (``state``: name -> tensor, in the order sent) and the reply's metrics. The arrays go to a
    file of their own, then the JSON naming them is created exclusively: of two trainings
    racing for one key the first stays, whole. A failure is logged, never raised: the reply
    (already paid for) still goes out."""
    stem = _stem(policy, run_identity, server_round, received)
    arrays, data = {name: t.detach().cpu().numpy() for name, t in state.items()}, io.BytesIO()
    try:
        np.savez(data, **arrays)
        npz = stem.with_name(f"{stem.name}-{secrets.token_hex(8)}.npz")
        atomic.write_bytes(npz, data.getvalue())
        document = {
            "run_identity": run_identity,
            "arrays": npz.name,
            "names": list(arrays),
            "metrics": metrics,
        }
        if not atomic.create_bytes(stem.with_suffix(".json"), json.dumps(document).encode()):
            npz.unlink(missing_ok=True)  # another training of the same key was kept first
    except OSError as err:
        log.warning(
            "round %s: the update could not be kept (%s); a resend would train again", server_round, err
        )


def kept_update(
    policy: SitePolicy, run_identity: str, server_round: int, received: str
) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(arrays as sent, metrics) of the update kept for this round and global model, or None."""
    meta = _stem(policy, run_identity, server_round, received).with_suffix(".json")
    if not meta.is_file():
        return None
    document = json.loads(meta.read_text())
    npz = meta.with_name(str(document.get("arrays", "")))
    if document.get("run_identity") != run_identity or not npz.is_file():  # a key collision
        return None
    with np.load(npz, allow_pickle=False) as arrays:
        state = {name: torch.from_numpy(arrays[name].copy()) for name in document["names"]}
    return state, document["metrics"]
