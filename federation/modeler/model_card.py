"""``model_card.json``: what an exported model predicts, from what, trained where, at what cost.

``lhsfed predict`` reads the card's input columns to refuse a file that does not match, and
the exported file's SHA-256 to refuse a model file that is not the one the card describes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import federation
from federation.core.dataspec import UNKNOWN_LEVEL_CODE, DatasetSpec, level_codes
from federation.core.errors import DataError
from federation.core.metrics import METRIC_KEYS
from federation.core.settings import RunSettings
from federation.modeler.run_loader import SavedModel


def input_columns(spec: DatasetSpec) -> list[dict[str, Any]]:
    """The raw columns the exported model takes, in order, with units and valid values."""
    columns = []
    for feat in spec.features:
        column = {
            "name": feat.name,
            "type": feat.type,
            "unit": feat.unit,
            "min": feat.min,
            "max": feat.max,
            "missing_if": list(feat.missing_if),
        }
        if feat.type == "categorical":
            column["levels"] = list(feat.levels)
        if feat.text_levels:  # the model's input is the level's code; lhsfed predict maps the text
            column["codes"] = level_codes(feat.levels)
            column["unknown_code"] = UNKNOWN_LEVEL_CODE
        columns.append(column)
    return columns


def _metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    named = {**evaluation["sites"], "pooled": evaluation["pooled"]}
    return {name: {k: m.get(k) for k in METRIC_KEYS} for name, m in named.items()}


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_card(
    checkpoint: SavedModel, settings: RunSettings, evaluation: dict[str, Any], *, fmt: str, model_file: Path
) -> dict[str, Any]:
    """The card of ``model_file`` (already written): what it predicts, from what, its SHA-256."""
    spec = checkpoint.dataset
    return {
        "name": f"{spec.name} risk model",
        "task": {
            "type": "binary risk",
            "output": "risk = P(label is positive), in [0, 1]",
            "label_column": spec.label.column,
            "positive_values": list(spec.label.positive_values),
            "negative_values": list(spec.label.negative_values),
        },
        "input": {
            "columns": input_columns(spec),
            "missing_markers": list(spec.missing_markers),
            "missing": "empty cell or a missing marker; the model imputes it",
        },
        "encoded_features": checkpoint.feature_names,
        "model": {
            "file": model_file.name,
            "format": fmt,
            "sha256": sha256_of(Path(model_file).read_bytes()),
            "architecture": checkpoint.spec.to_dict(),
            "preprocessing": "baked in: missing_if, one-hot, imputation, missing flags, "
            "standardization with federated statistics",
        },
        "training": {
            "sites": evaluation["data"],
            "rounds": checkpoint.round,
            "strategy": settings.strategy.name,
            "local_epochs": settings.train.local_epochs,
            "seed": settings.seed,
        },
        "privacy": evaluation["privacy"],
        "metrics": {
            "evaluated_round": evaluation["round"],
            "threshold": evaluation["threshold"],
            "ci": "AUROC percentile bootstrap 95%",
            **_metrics(evaluation),
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "lhs_federation_version": federation.__version__,
    }


def read_card(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model card not found; export writes it beside the model (or pass --card)")
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # not JSON, or not UTF-8 text
        raise DataError(f"{path}: not a valid model card ({err})") from None


def verified_model_bytes(model_path: Path, card: dict[str, Any], card_path: Path) -> bytes:
    """The model file's bytes if their SHA-256 is the card's, else one DataError line.

    The file is read once and these bytes are what gets loaded, so a file swapped after the
    check is never run. The hash ties the file to its card; it does not say who exported it.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise DataError(f"{model_path}: model file not found; create it with lhsfed export")
    expected = (card.get("model") or {}).get("sha256")
    if not expected:
        raise DataError(
            f"{card_path}: has no model.sha256, so {model_path.name} cannot be checked "
            "against it; export the model again with lhsfed export"
        )
    data = model_path.read_bytes()
    if sha256_of(data) != expected:
        raise DataError(
            f"{model_path}: SHA-256 {sha256_of(data)[:16]}... differs from "
            f"model.sha256 {expected[:16]}... in {card_path}: this is not the model "
            "the card describes; use the file lhsfed export wrote with this card "
            "(or export again); the model was not loaded"
        )
    return data
