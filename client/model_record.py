"""Which global models this site was sent in the runs it trained in (digests only).

A site scores a model for a comparison only if it was itself sent that model as a global
model in a run it trained in (:mod:`client.comparison`): otherwise a coordinator could have it
score models built to probe its rows (a model that puts one patient's feature values at 0.99,
say) and read answers off the released metrics. So ``evaluate`` records, after its refusal
check passed, a digest of the arrays it was sent, with the run's identity and round, in the
site's state folder (:func:`client.site_state.state_dir`). Only digests are kept: the site
needs to recognise a model, not to hold it.

One model per training of a round: the first model a site evaluates for a round it trained is
that round's model; a different one for the same round is refused (:data:`ONE_PER_ROUND`), the
same one is answered again (a retried message). A round trained again (a resumed run redoing
the round it was interrupted in; the ledger keeps both trainings' steps) may have one more
model: ``train`` counts each training (:func:`record_training`). The coordinator still
chooses which model that is, so the rule bounds how many models a site scores per run (one
per training), not which; the minimum cell size on the released confusion cells
(:func:`federation.core.metrics.site_wire_metrics`) is what keeps one crafted model from
counting a handful of patients.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from client.site_policy import SitePolicy
from client.site_state import run_key, state_dir
from federation.core import atomic

MODELS = "models"  # the sub-folder of the state folder: one JSON file per run


def model_digest(arrays: Mapping) -> str:
    """sha256 over the sorted names, dtype, shape and bytes of a model's arrays.

    ``arrays`` maps names to numpy arrays, torch tensors or Flower ``Array`` s (an
    ``ArrayRecord`` or a state dict): each is taken as a C-ordered little-endian numpy array,
    so the model.pt a run saved and the ArrayRecord its sites were sent digest alike.
    """
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = _as_numpy(arrays[name])
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        digest.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "numpy") and hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy"):  # a Flower Array
        return np.asarray(value.numpy())
    return np.asarray(value)


ONE_PER_ROUND = "this site scores one model per round it trained: that round already has its model"


def _run_folder(policy: SitePolicy, run_identity: str) -> Path:
    return state_dir(policy) / MODELS / run_key(run_identity)


def recorded_models(policy: SitePolicy, run_identity: str) -> dict[str, list[int]]:
    """digest -> rounds this site was sent that model in, for one run ({} if none)."""
    models: dict[str, list[int]] = {}
    folder = _run_folder(policy, run_identity)
    for path in sorted(folder.glob("round-*.json")) if folder.is_dir() else ():
        document = json.loads(path.read_text())
        if document.get("run_identity") != run_identity:  # a key collision: not this run's record
            continue
        models.setdefault(str(document["digest"]), []).append(int(document["round"]))
    return {digest: sorted(rounds) for digest, rounds in models.items()}


def record_training(policy: SitePolicy, run_identity: str, server_round: int) -> int:
    """Note one more training of ``server_round`` (after its ε was reserved); returns how many
    trainings the round has had. One empty file each, created exclusively."""
    folder, count = _run_folder(policy, run_identity), 1
    while not atomic.create_bytes(folder / f"trained-{int(server_round)}-{count}", b""):
        count += 1
    return count


def trainings(policy: SitePolicy, run_identity: str, server_round: int) -> int:
    """How many times this site trained ``server_round`` of the run (0: none noted)."""
    folder = _run_folder(policy, run_identity)
    return len(list(folder.glob(f"trained-{int(server_round)}-*"))) if folder.is_dir() else 0


def record_model(
    policy: SitePolicy, run_identity: str, server_round: int, digest: str, *, allowed: int = 1
) -> bool:
    """Record ``digest`` as a model of ``run_identity``'s ``server_round`` unless the round
    has its ``allowed`` models already (one per training); True if ``digest`` is one of the
    round's models (newly recorded or the same again).

    One file per model slot, created exclusively (:func:`federation.core.atomic.create_bytes`):
    of two messages racing for a slot, exactly one model is recorded.
    """
    document = {"run_identity": run_identity, "round": int(server_round), "digest": digest}
    text = (json.dumps(document, sort_keys=True) + "\n").encode()
    for slot in range(1, max(1, allowed) + 1):
        suffix = "" if slot == 1 else f"-{slot}"
        path = _run_folder(policy, run_identity) / f"round-{int(server_round)}{suffix}.json"
        if atomic.create_bytes(path, text) or json.loads(path.read_text()).get("digest") == digest:
            return True
    return False


def was_sent(policy: SitePolicy, run_identity: str, digest: str) -> bool:
    return digest in recorded_models(policy, run_identity)


def sent_in_run(node_config: dict, site: str, run_identity: str, arrays: Mapping) -> bool:
    """Was this site sent ``arrays`` as a global model in the run ``run_identity``?

    The run's records are in the state folder of the site's policy for that run (a simulated
    site keeps its ledger in that run's folder unless ``LHSFED_LEDGER_DIR`` says otherwise; a
    deployed site's node config fixes it).
    """
    from client.site_policy import site_policy

    if not run_identity:
        return False
    policy = site_policy(node_config, site, run_folder=Path(run_identity))
    return was_sent(policy, run_identity, model_digest(arrays))
