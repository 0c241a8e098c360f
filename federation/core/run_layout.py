"""The run folder's layout: every file name the server writes and the modeler reads back.

One place for the names, so a writer and its readers cannot drift apart, and the few JSON
helpers both sides use. Standard library only: the CLI imports this before anything heavy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Written by the ServerApp (server/run_folder.py, server/checkpoint.py)
METRICS = "metrics.jsonl"  # one round record per line (federation.core.records.RoundRecord)
# The only folder a run's output_dir may lie in (docker/entrypoint-superlink.sh sets it; default
# $PWD/outputs): read by the ServerApp (server.run_folder) and checked early by lhsfed-train.
RUNS_ROOT_ENV = "LHSFED_RUNS_ROOT"
CHECKPOINT = "checkpoint.pt"  # the server's resume state
SUMMARY = "summary.json"
MODEL = "model.pt"  # the selected round's global model
ROUNDS = "rounds"  # rounds/round_NNN.pt: every round's global model
GLM_RECORD = "glm.json"  # model=glm: the λ grid, each λ's coefficients and validation loss, the choice
# Written by the simulated sites and the launcher
LEDGERS = "ledgers"  # the simulated sites' privacy ledgers and node keys
SITE_POLICY = "site_policy.json"
WARM_START = "warm_start.json"  # init=: what it named, the registry version it resolved to, its round
LAUNCHER_LOG = "launcher.log"
HYDRA_DIR = ".hydra"
HYDRA_CONFIG = Path(HYDRA_DIR) / "config.yaml"  # the coordinator's composed config
HYDRA_OVERRIDES = Path(HYDRA_DIR) / "overrides.yaml"
# Written by the modeler's commands
EVALUATION = "evaluation.json"
AUDIT = "audit.json"
PERSONALIZATION = "personalization.json"  # personalize=recalibrate|finetune: global vs personalized per site
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
EXPORT = "export"  # lhsfed export's default folder (RUN_DIR/export), holding:
MODEL_CARD = "model_card.json"
EXPORTED_MODELS = {"torchscript": "model.pt", "onnx": "model.onnx"}  # by --format
# A sweep folder (lhsfed-train --multirun)
SWEEP_SUMMARY = "sweep_summary.json"
# with campaign=: the MLflow run of the sweep (its trials' runs are its children), per registry
# URI and campaign, so every trial finds it (federation.coordinator.registry.sweep_run)
SWEEP_RUNS = "sweep_mlflow_runs.json"

# What a run writes into its folder; a new run must not start where these are.
# lhsfed drift's record; in a run folder: the check that preceded a campaign warm-started from
# the champion it checked (docs/learning-loop.md), shown in the run's report.
DRIFT = "drift.json"
RUN_ARTEFACTS = (METRICS, CHECKPOINT, SUMMARY, MODEL, ROUNDS, LEDGERS)


def flwr_run_dir(run_id: int | str) -> Path:
    """The run folder of a ``flwr run`` that named none (``run.output_dir`` unset)."""
    return Path("outputs") / "flwr" / str(run_id)


def round_model(server_round: int) -> Path:
    """``rounds/round_NNN.pt``: the global model after ``server_round``."""
    return Path(ROUNDS) / f"round_{server_round:03d}.pt"


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (recursively) so every document is valid JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_json(path: Path) -> Any:
    """The JSON document at ``path``, or None if there is no such file."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def read_jsonl(path: Path) -> list[Any]:
    """Every line of a JSON-lines file (blank lines skipped)."""
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def jsonl_line(document: Any) -> str:
    """One line of a JSON-lines file, keys sorted (metrics.jsonl's format)."""
    return json.dumps(document, sort_keys=True)
