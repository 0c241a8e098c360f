"""Score a site's patients with an exported model, locally: CSV in, CSV with a risk column out.

The input is checked against the model card before anything is scored: every input column
must be there and numeric, so a renamed or missing column fails with one clear line instead
of silently shifting features. The model arrives as bytes whose SHA-256 matched the card
(``federation.model_card.verified_model_bytes``): nothing unchecked is loaded.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from federation.errors import DataError, collect_then_raise

RISK_COLUMN = "risk"


def card_columns(card: dict[str, Any]) -> list[str]:
    return [c["name"] for c in card["input"]["columns"]]


def read_patients(path: Path, card: dict[str, Any]) -> pd.DataFrame:
    """The CSV as a frame, refused if it lacks a model-card column or has non-numbers."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, na_values=card["input"].get("missing_markers") or None)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise DataError(f"{path}: cannot be read as CSV with a header row: {err}") from None
    wanted = card_columns(card)
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: column {missing[0]!r} is missing"
                        + (f" (and {len(missing) - 1} more: {missing[1:]})" if len(missing) > 1 else "")
                        + f"; the model card expects columns {wanted}")
    problems = []
    for column in wanted:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column].notna() & values.isna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            problems.append(f"{path}: column {column!r} row {row + 1} has non-numeric value "
                            f"{frame[column].iloc[row]!r}")
    collect_then_raise(problems, DataError)
    return frame


def feature_matrix(frame: pd.DataFrame, card: dict[str, Any]) -> np.ndarray:
    """Raw input columns in the card's order (float32, NaN = missing)."""
    columns = card_columns(card)
    return frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float32")


def run_model(model: bytes, fmt: str, x: np.ndarray) -> np.ndarray:
    """Risks from an exported model's bytes (already checked against its card), by format."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        (risk,) = session.run(None, {session.get_inputs()[0].name: x})
        return np.asarray(risk, dtype="float64")
    if fmt != "torchscript":
        raise DataError(f"model card: model.format {fmt!r} is unknown; export the model again")
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch marks TorchScript deprecated
        module = torch.jit.load(io.BytesIO(model), map_location="cpu")
    with torch.no_grad():
        return module(torch.tensor(x)).numpy().astype("float64")


def score_csv(model: bytes, card: dict[str, Any], data: Path, out: Path) -> int:
    """Write ``out``: the input rows with a risk column added; returns the row count."""
    from federation import atomic

    frame = read_patients(data, card)
    risk = run_model(model, card["model"].get("format"), feature_matrix(frame, card))
    scored = frame.assign(**{RISK_COLUMN: risk})
    atomic.write_bytes(Path(out), scored.to_csv(index=False).encode("utf-8"))
    return len(scored)
