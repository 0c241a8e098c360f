"""Score a site's patients with an exported model, locally: CSV in, CSV with a risk column out.

The input is checked against the model card before anything is scored: every input column
must be there once and hold numbers, so a renamed, missing or doubled column fails with one
clear line instead of silently shifting features. A cell is missing only when it is empty
or one of the card's missing markers; text such as ``NaN`` or ``inf``, and numbers beyond
what the model's float32 input holds (``1e309``), are refused, as the sites refuse them.
Out-of-range values and unknown levels are scored with a warning per row (``strict``:
refused). The model arrives as bytes whose SHA-256 matched the card
(``federation.modeler.model_card.verified_model_bytes``): nothing unchecked is loaded. The output is
written to a temporary file and renamed, so a failure leaves no partial output.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from federation.core.dataspec import has_text_levels
from federation.core.errors import DataError, collect_then_raise
from federation.core.site_table import header_problem, parse_numbers, text_codes
from federation.core.value_checks import out_of_range_columns, out_of_range_rows

RISK_COLUMN = "risk"
# Beside each risk: the columns whose value was outside the model card's range or levels (the
# risk is an extrapolation there: age 430 scored 1.0), and the SHA-256 of the model that scored
# it, so a scored file says which model and which rows to distrust long after it was written.
OUT_OF_RANGE_COLUMN = "risk_out_of_range"
MODEL_COLUMN = "risk_model_sha256"
FORMATS = {"onnx": "an ONNX", "torchscript": "a TorchScript"}  # format -> its name in a message
FLOAT32_MAX = float(np.finfo(np.float32).max)
_SHOWN = 3  # bad rows named per column in a refusal


def card_columns(card: dict[str, Any]) -> list[str]:
    return [c["name"] for c in card["input"]["columns"]]


def check_card(card: Any, path: Path) -> None:
    """Refuse a card without the keys scoring reads, naming each missing key once."""
    if not isinstance(card, dict):
        raise DataError(
            f"{path}: not a model card (a JSON object with 'input' and 'model'); "
            "use the model_card.json lhsfed export wrote"
        )
    problems = []
    columns = card["input"].get("columns") if isinstance(card.get("input"), dict) else None
    if not isinstance(columns, list) or not columns:
        problems.append("key input.columns is missing or empty")
    elif not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in columns):
        problems.append("every entry of input.columns needs a 'name'")
    model = card.get("model") if isinstance(card.get("model"), dict) else {}
    if model.get("format") not in FORMATS:
        problems.append(f"key model.format must be one of {list(FORMATS)} (got {model.get('format')!r})")
    if not model.get("sha256"):
        problems.append("key model.sha256 is missing")
    if problems:
        raise DataError(
            f"{path}: not a usable model card: {'; '.join(problems)}; "
            "export the model again with lhsfed export"
        )


def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot be read as CSV text ({err})") from None


def _refuse_duplicates(path: Path, header: list[str]) -> None:
    seen: dict[str, int] = {}
    for index, name in enumerate(header, start=1):
        if name in seen:
            raise DataError(
                f"{path}: column {name!r} appears twice (columns {seen[name]} and "
                f"{index}); keep one, so the model reads the values you mean"
            )
        seen[name] = index


def _read_text(path: Path, expected: int) -> pd.DataFrame:
    """Every cell as its text (no value guessed missing): the checks below decide."""
    header = _header(path)
    fix = "add a first line naming the model card's columns"
    if header and (problem := header_problem(",".join(header), expected, fix)):
        raise DataError(f"{path}: {problem}")
    _refuse_duplicates(path, header)
    try:
        return pd.read_csv(path, dtype=str, na_filter=False, encoding="utf-8")
    except (ValueError, OSError, pd.errors.ParserError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        raise DataError(f"{path}: cannot be read as CSV with a header row: {reason}") from None


def _rows(mask: pd.Series) -> str:
    rows = (np.flatnonzero(mask.to_numpy()) + 1).tolist()
    more = f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
    return f"row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows[:_SHOWN]))}{more}"


def _column_problem(path: Path, column: str, text: pd.Series, markers: list[str]) -> str | None:
    """The refusal for one card column's cells, or None when every cell is a number or missing.

    Cells are parsed as a site parses them (``site_table.parse_numbers``); a number beyond
    float32 is refused too, as the model's input cannot hold it.
    """
    numbers, non_numeric, non_finite = parse_numbers(text, markers)
    if non_numeric.any():
        first = text[non_numeric].iloc[0]
        return f"{path}: column {column!r} {_rows(non_numeric)} has non-numeric value {first!r}"
    non_finite |= numbers.abs() > FLOAT32_MAX
    if non_finite.any():
        first = text[non_finite].iloc[0]
        return (
            f"{path}: column {column!r} {_rows(non_finite)} has non-finite value {first!r} "
            f"(NaN, inf and numbers beyond {FLOAT32_MAX:.3g} cannot be scored); leave the "
            f"cell empty{' or write ' + repr(markers[0]) if markers else ''} for a missing value"
        )
    return None


def read_patients(path: Path, card: dict[str, Any]) -> pd.DataFrame:
    """The CSV as text, refused if a card column is missing, doubled or holds a non-number."""
    path = Path(path)
    wanted = card_columns(card)
    frame = _read_text(path, len(wanted))
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: column {missing[0]!r} is missing"
            + (f" (and {len(missing) - 1} more: {missing[1:]})" if len(missing) > 1 else "")
            + f"; the model card expects columns {wanted}"
        )
    if frame.empty:
        raise DataError(f"{path}: has a header row but no patients to score")
    markers = [str(m) for m in card["input"].get("missing_markers") or []]
    numeric = [c["name"] for c in card["input"]["columns"] if not has_text_levels(c.get("levels"))]
    problems = [_column_problem(path, column, frame[column], markers) for column in numeric]
    collect_then_raise([p for p in problems if p], DataError)
    return frame


def _input_values(cells: pd.Series, column: dict[str, Any], markers: list[str]) -> pd.Series:
    """A column's input: numbers, or a text level's code (``site_table.text_codes``)."""
    if has_text_levels(column.get("levels")):
        return text_codes(cells, column["levels"], column.get("missing_if") or (), markers)
    return parse_numbers(cells, markers)[0]


def feature_matrix(frame: pd.DataFrame, card: dict[str, Any]) -> np.ndarray:
    """Raw input columns in the card's order (float32, NaN = missing; text levels as codes)."""
    markers = [str(m) for m in card["input"].get("missing_markers") or []]
    columns = {c["name"]: _input_values(frame[c["name"]], c, markers) for c in card["input"]["columns"]}
    return pd.DataFrame(columns).to_numpy(dtype="float32")


def run_model(model: bytes, fmt: str, x: np.ndarray, *, source: str = "model") -> np.ndarray:
    """Risks from an exported model's bytes (already checked against its card), by format.

    A file that does not load or run as ``fmt`` is refused in one line; the loaders are
    native code that raise many types, hence the broad ``except``.
    """
    if fmt not in FORMATS:
        raise DataError(f"model card: model.format {fmt!r} is unknown; export the model again")
    try:
        session = _load(model, fmt)
    except Exception as err:  # noqa: BLE001 - see docstring
        raise DataError(
            f"{source}: cannot be loaded as {FORMATS[fmt]} model ({_first_line(err)}); "
            "use the file lhsfed export wrote, or export again"
        ) from None
    try:
        return session(x)
    except Exception as err:  # noqa: BLE001 - see docstring
        raise DataError(
            f"{source}: the {fmt} model does not take the card's {x.shape[1]} input "
            f"columns ({_first_line(err)}); export the model and card again"
        ) from None


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _load(model: bytes, fmt: str):
    """A function rows -> risks for the model bytes."""
    if fmt == "onnx":
        import onnxruntime

        onnx = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        name = onnx.get_inputs()[0].name
        return lambda x: np.asarray(onnx.run(None, {name: x})[0], dtype="float64")
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch marks TorchScript deprecated
        module = torch.jit.load(io.BytesIO(model), map_location="cpu")

    def score(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.tensor(x)).numpy().astype("float64")

    return score


def score_csv(
    model: bytes, card: dict[str, Any], data: Path, out: Path, *, strict: bool = False, source: str = "model"
) -> tuple[int, list[str]]:
    """Write ``out``: the input rows with the risk, the columns out of the card's range per row
    and the model's SHA-256 added; returns (rows, warnings).

    ``strict`` refuses out-of-range values and unknown levels instead of warning.
    """
    from federation.core import atomic

    frame = read_patients(data, card)
    x = feature_matrix(frame, card)
    notes = out_of_range_rows(x, card["input"]["columns"], Path(data), text=frame)
    if strict and notes:
        more = f" (and {len(notes) - 1} more rows)" if len(notes) > 1 else ""
        raise DataError(
            f"{notes[0]}{more}; --strict refuses values outside the card's ranges "
            "and levels: correct them, or drop --strict to score with a warning"
        )
    risk = run_model(model, card["model"]["format"], x, source=source)
    scored = frame.assign(
        **{
            RISK_COLUMN: risk,
            OUT_OF_RANGE_COLUMN: out_of_range_columns(x, card["input"]["columns"]),
            MODEL_COLUMN: card["model"]["sha256"],
        }
    )
    atomic.write_bytes(Path(out), scored.to_csv(index=False).encode("utf-8"))
    return len(scored), notes
