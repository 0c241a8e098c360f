"""Export the global model for a hospital: raw feature columns in, risk out.

The exported graph holds the whole preprocessing: the spec's 'missing_if' values become
missing, categoricals are one-hot encoded, missing values imputed and flagged, features
standardized with the federated statistics, then the classifier and a sigmoid. A site feeds
its raw columns (NaN = missing) in the model card's order and gets a risk per row. A column
with text levels (never/former/current) is fed as its level's code, the position in the
card's ``levels`` (``federation.core.dataspec.level_codes``; ``lhsfed predict`` does this).
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import torch
from torch import nn

from federation.core import atomic
from federation.core.dataspec import DatasetSpec, FeatureSpec, level_codes
from federation.core.model import RiskModel
from federation.core.run_layout import EXPORTED_MODELS

FORMATS = EXPORTED_MODELS
INPUT_NAME, OUTPUT_NAME = "features", "risk"
ONNX_OPSET = 17


def _level_inputs(feat: FeatureSpec) -> list[float]:
    """What the input holds for each encoded level: the number, or a text level's code.

    A number among text levels never matches (the site compares such a column as text).
    """
    if not feat.text_levels:
        return [float(value) for value in feat.encoded_levels]
    codes = level_codes(feat.levels)
    return [codes.get(v, math.nan) if isinstance(v, str) else math.nan for v in feat.encoded_levels]


def _missing_inputs(feat: FeatureSpec) -> list[float]:
    """The numbers meaning missing in the graph (a text column's arrive as NaN already)."""
    if feat.text_levels:
        return []
    return [float(v) for v in feat.missing_if if not isinstance(v, str)]


class RawFeatureEncoder(nn.Module):
    """Raw columns -> the model's encoded columns, as ``federation.core.data`` encodes a site file."""

    def __init__(self, spec: DatasetSpec) -> None:
        super().__init__()
        source, level, categorical = [], [], []
        for index, feat in enumerate(spec.features):
            values = _level_inputs(feat) if feat.type == "categorical" else [0.0]
            source += [index] * len(values)
            level += values
            categorical += [feat.type == "categorical"] * len(values)
        missing_if = [_missing_inputs(f) for f in spec.features]
        width = max([len(m) for m in missing_if] + [1])
        missing = [m + [math.nan] * (width - len(m)) for m in missing_if]
        self.register_buffer("source", torch.tensor(source, dtype=torch.long))
        self.register_buffer("level", torch.tensor(level, dtype=torch.float32))
        self.register_buffer("categorical", torch.tensor(categorical, dtype=torch.bool))
        # NaN padding never equals a value, so features without 'missing_if' are untouched.
        self.register_buffer("missing_if", torch.tensor(missing, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hits = (x.unsqueeze(2) == self.missing_if).to(x.dtype).sum(dim=2) > 0
        x = torch.where(hits, torch.full_like(x, math.nan), x)
        raw = torch.index_select(x, 1, self.source)
        onehot = (raw == self.level).to(x.dtype)
        encoded = torch.where(self.categorical, onehot, raw)
        return torch.where(torch.isnan(raw), raw, encoded)


class DeployableModel(nn.Module):
    """Encoder + risk model + sigmoid: the single graph that is exported."""

    def __init__(self, model: RiskModel, spec: DatasetSpec) -> None:
        super().__init__()
        self.encoder = RawFeatureEncoder(spec)
        self.preprocess = model.preprocess
        self.head = model.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.preprocess(self.encoder(x))).squeeze(-1)
        return torch.sigmoid(logits)


def _example(spec: DatasetSpec) -> torch.Tensor:
    example = torch.zeros(2, len(spec.features))
    example[1, 0] = math.nan  # trace the missing-value path too
    return example


def torchscript_bytes(model: DeployableModel, spec: DatasetSpec) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is in maintenance; the format still loads
        traced = torch.jit.trace(model, _example(spec), check_trace=False)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def onnx_bytes(model: DeployableModel, spec: DatasetSpec) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (_example(spec),),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=ONNX_OPSET,
            dynamo=False,
            dynamic_axes={INPUT_NAME: {0: "rows"}, OUTPUT_NAME: {0: "rows"}},
        )
    return buffer.getvalue()


def export_model(model: RiskModel, spec: DatasetSpec, fmt: str, out_dir: Path) -> Path:
    """Write the deployable model in ``fmt`` into ``out_dir``; returns its path."""
    deployable = DeployableModel(model, spec).eval()
    data = torchscript_bytes(deployable, spec) if fmt == "torchscript" else onnx_bytes(deployable, spec)
    path = Path(out_dir) / FORMATS[fmt]
    atomic.write_bytes(path, data)
    return path
