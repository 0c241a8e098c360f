"""The server's resume state: everything needed to continue a run after a crash.

Written atomically (write-then-rename) after every round as ``RUN_DIR/checkpoint.pt``: the
global arrays, the strategy's state (e.g. FedAdam's moments), the last complete round,
every round record so far, the largest ε each site reported and the arrays of the round
selected so far (:mod:`server.selection`; the rest of that state follows from the records).
Plain tensors and a JSON string only, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from flwr.app import ArrayRecord

from federation.core import atomic
from federation.core.errors import ConfigError, DataError
from federation.core.records import RoundRecord
from federation.core.run_layout import CHECKPOINT
from federation.core.safe_load import load_weights_only

FORMAT = 1


@dataclass
class ResumeState:
    """The server's state after round ``round`` (0: nothing trained yet)."""

    round: int
    arrays: dict[str, torch.Tensor]
    strategy: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    records: list[RoundRecord] = field(default_factory=list)
    epsilon_by_site: dict[str, float | None] = field(default_factory=dict)
    best_arrays: dict[str, torch.Tensor] | None = None  # the selected round's global model

    def array_record(self) -> ArrayRecord:
        return ArrayRecord({k: v.clone() for k, v in self.arrays.items()})


def save_resume_state(run_dir: Path, state: ResumeState) -> None:
    atomic.torch_save(
        Path(run_dir) / CHECKPOINT,
        {
            "format": FORMAT,
            "round": state.round,
            "arrays": state.arrays,
            "strategy": state.strategy,
            "records_json": json.dumps([r.to_json() for r in state.records], sort_keys=True),
            "epsilon_by_site": state.epsilon_by_site,
            "best_arrays": state.best_arrays,
        },
    )


def load_resume_state(run_dir: Path) -> ResumeState:
    """The run folder's resume state, or a ConfigError saying why it cannot be resumed."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist: resume= needs a run folder written by a run "
            "that finished at least one round"
        )
    try:
        payload = load_weights_only(path, fix="start a new run instead")
    except DataError as err:  # one line naming the file; nothing in it was run
        raise ConfigError(str(err)) from None
    if payload.get("format") != FORMAT:
        raise ConfigError(
            f"{path} has checkpoint format {payload.get('format')!r}, this version reads {FORMAT}"
        )
    records = [RoundRecord.from_json(r) for r in json.loads(payload["records_json"])]
    return ResumeState(
        round=int(payload["round"]),
        arrays=payload["arrays"],
        strategy=payload["strategy"],
        records=records,
        epsilon_by_site=payload["epsilon_by_site"],
        best_arrays=payload.get("best_arrays"),
    )


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete temporaries a killed writer left (``.NAME.*.tmp``); the real files are intact."""
    stale = sorted(Path(run_dir).rglob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
