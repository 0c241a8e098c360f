"""The run folder a modeler reads: metrics.jsonl, model.pt, rounds/, summary.json."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord

from federation.core import atomic
from federation.core.errors import ConfigError
from federation.core.model import ModelSpec
from federation.core.records import RoundRecord
from federation.core.run_layout import (
    METRICS,
    MODEL,
    RUNS_ROOT_ENV,  # noqa: F401  (re-exported)
    SUMMARY,
    jsonl_line,
    round_model,
)
from federation.core.settings import RunSettings


def refuse_outside_runs_root(folder: Path, root: str | None = None) -> Path:
    """``folder`` resolved, if it lies in the coordinator's runs root; else one clear error.

    A run config comes through the SuperLink's Control API, so ``run.output_dir`` must not
    choose where the ServerApp writes on the SuperLink host. Symlinks and ``..`` are resolved
    before comparing. Without a root (``LHSFED_RUNS_ROOT`` unset: the simulation, run inside the
    coordinator's own launcher) any folder is allowed.
    """
    root = os.environ.get(RUNS_ROOT_ENV) if root is None else root
    resolved = Path(folder).resolve()
    if not root:
        return resolved
    base = Path(root).resolve()
    if not resolved.is_relative_to(base):
        raise ConfigError(
            f"run.output_dir={folder}: outside the coordinator's runs root {base} "
            f"({RUNS_ROOT_ENV}); choose a folder under it"
        )
    return resolved


class RunFolder:
    """Writes every artefact of a run atomically into one folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def append_round(self, record: RoundRecord) -> None:
        atomic.append_line(self.path / METRICS, jsonl_line(record.to_json()))

    def rewrite_rounds(self, records: list[RoundRecord]) -> None:
        """Replace metrics.jsonl by exactly these records (resume drops rounds it will redo)."""
        lines = "".join(jsonl_line(r.to_json()) + "\n" for r in records)
        atomic.write_bytes(self.path / METRICS, lines.encode())

    def save_model(
        self,
        arrays: ArrayRecord,
        spec: ModelSpec,
        settings: RunSettings,
        server_round: int,
        *,
        selected: bool = True,
    ) -> None:
        """Global weights plus what rebuilds the model: ``rounds/round_NNN.pt`` always, and
        ``model.pt`` too when this is the round the run hands out (``selected``)."""
        payload = {
            "state_dict": arrays.to_torch_state_dict(),
            "model_spec": spec.to_dict(),
            "feature_names": settings.data.encoded_feature_names(),
            "dataset_spec": settings.data.to_json(),
            "round": server_round,
        }
        atomic.torch_save(self.path / round_model(server_round), payload)
        if selected:
            atomic.torch_save(self.path / MODEL, payload)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic.write_json(self.path / SUMMARY, summary)
