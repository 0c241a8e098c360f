"""The exported graph's baked-in preprocessing equals the sites' own encoding (fast, no run)."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from federation.cli import export as export_command
from federation.cli.main import main as lhsfed
from federation.core.data import encode_features, read_site_frame, site_file
from federation.core.feature_stats import feature_statistics
from federation.core.model import ModelSpec, build_model, predict_risk
from federation.core.settings import RunSettings
from federation.modeler import export as export_module
from federation.modeler.export import DeployableModel, RawFeatureEncoder, onnx_bytes


def _default_spec():
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    flat = tomllib.loads(pyproject.read_text())["tool"]["flwr"]["app"]["config"]
    return RunSettings.from_run_config(flat).data


def _raw_and_encoded(site: str):
    spec = _default_spec()
    path = site_file(spec, site)
    frame = read_site_frame(path, spec)
    raw = frame[[f.name for f in spec.features]].to_numpy(dtype="float32")
    return spec, raw, encode_features(frame, spec, path)


@pytest.mark.parametrize("site", ["cleveland", "switzerland"])
def test_encoder_reproduces_site_encoding_including_missing(site):
    spec, raw, encoded = _raw_and_encoded(site)

    out = RawFeatureEncoder(spec)(torch.as_tensor(raw)).numpy()

    assert np.array_equal(np.isnan(out), np.isnan(encoded))
    assert np.isnan(encoded).any()  # the missing path is exercised (switzerland: chol == 0)
    np.testing.assert_array_equal(np.nan_to_num(out), np.nan_to_num(encoded))


def test_onnx_graph_handles_nan_and_matches_torch_risks():
    spec, raw, encoded = _raw_and_encoded("switzerland")
    model = build_model(ModelSpec("mlp", encoded.shape[1]), seed=5)
    model.preprocess.set_statistics(*feature_statistics(encoded))
    session = onnxruntime.InferenceSession(
        onnx_bytes(DeployableModel(model, spec).eval(), spec), providers=["CPUExecutionProvider"]
    )

    (risk,) = session.run(None, {session.get_inputs()[0].name: raw})

    assert np.isfinite(risk).all()
    np.testing.assert_allclose(risk, predict_risk(model, encoded), atol=1e-5, rtol=0)


def test_cli_format_choices_are_the_exporters(tmp_path, capsys):
    """``--format`` offers exactly the exporters' formats (one table, in core/run_layout)."""
    assert export_command.FORMATS == tuple(sorted(export_module.FORMATS))

    with pytest.raises(SystemExit) as refused:
        lhsfed(["export", str(tmp_path), "--format", "pickle"])

    assert refused.value.code == 2
    assert "invalid choice: 'pickle'" in capsys.readouterr().err
