"""``lhsfed-train init=``: the parent model reaches the ServerApp intact, or is refused early.

No federation runs here: the parent is a ``model.pt`` written by the server's own
``RunFolder.save_model``, configs are composed with Hydra's compose API, and a refusal is
shown through the launcher's ``train()`` (before any runtime starts) and once through the
real console script (no run folder left).
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord
from flwr.cli.build import build_fab_from_disk
from flwr.common.config import get_fused_config_from_fab
from flwr.supercore.run import Run
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from federation.coordinator.launcher import CONFIG_DIR, train, warm_start
from federation.coordinator.simulation import write_app_folder
from federation.coordinator.warm_start import prepare_warm_start
from federation.core.errors import ConfigError, LhsFedError
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config, model_spec
from federation.core.weights_text import KEY, decode_state_dict, encode_state_dict
from server.federation_loop import warm_start_arrays
from server.run_folder import RunFolder
from tests.helpers.runs import LAUNCHER


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _flat(*overrides: str) -> dict:
    return flatten_config(OmegaConf.to_container(_cfg(*overrides), resolve=True))


def _settings(*overrides: str) -> RunSettings:
    return RunSettings.from_run_config(_flat(*overrides))


def _parent(folder: Path, *overrides: str) -> dict[str, torch.Tensor]:
    """A finished run's model.pt (trained-looking weights, its own standardization)."""
    settings = _settings(*overrides)
    model = build_model(model_spec(settings), seed=7)
    n = len(settings.data.encoded_feature_names())
    model.preprocess.set_statistics(torch.linspace(1, 9, n).numpy(), torch.linspace(2, 3, n).numpy())
    RunFolder(folder).save_model(ArrayRecord(model.state_dict()), model_spec(settings), settings, 4)
    return model.state_dict()


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    folder = tmp_path_factory.mktemp("parent")
    return folder, _parent(folder)


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0)


def test_the_server_starts_from_the_parents_weights_and_standardization(parent):
    folder, state = parent
    settings = _settings(f"init={folder}")

    flat = warm_start(_cfg(f"init={folder}"), settings).run_config()
    round_zero = warm_start_arrays(RunSettings.from_run_config({**_flat(), **flat})).to_torch_state_dict()

    _assert_same(round_zero, state)  # weights AND preprocess.mean/std: the parent's, not new stats
    fresh = build_model(model_spec(settings), seed=settings.seed).state_dict()
    assert not torch.equal(fresh["head.0.weight"], state["head.0.weight"])  # the control differs


def test_the_weights_reach_the_serverapp_through_a_superlinks_app_bundle(parent, tmp_path):
    """Deployment: the app folder lhsfed-train submits, built into a FAB by Flower's own
    build, and the run config a SuperLink fuses from it for the ServerApp."""
    folder, state = parent
    run_config = _flat() | warm_start(_cfg(f"init={folder}"), _settings()).run_config()

    fab = build_fab_from_disk(write_app_folder(tmp_path, run_config))
    fused = get_fused_config_from_fab(fab, Run.create_empty(1))

    _assert_same(warm_start_arrays(RunSettings.from_run_config(fused)).to_torch_state_dict(), state)


def test_without_init_nothing_is_added_and_the_default_key_is_empty():
    assert warm_start(_cfg(), _settings()) is None
    assert _flat()[KEY] == "" and RunSettings.from_run_config(_flat()).initial_weights == ""


# (overrides of the warm-started run, text its one line must hold)
INCOMPATIBLE = [
    (
        ["data.features.4.missing_if=[]"],
        "feature 'chol': missing_if [0] in the model differs from the run's spec: []",
    ),
    (["data.features.2.levels=[1,2,3]"], "feature 'cp': levels [1, 2, 3, 4] in the model differs"),
    (
        ["data.label.positive_values=[2,3,4]"],
        "label 'num': positive_values [1, 2, 3, 4] in the model differs from the run's spec: [2, 3, 4]",
    ),
    (["model=mlp"], "the model is 'logreg' but the run's model is 'mlp'"),
    (
        ["data.features.2.name=chol", "data.features.4.name=cp"],
        "feature 3 is 'cp' in the model but 'chol' in the run's spec",
    ),
]


@pytest.mark.parametrize("overrides, expected", INCOMPATIBLE, ids=[c[0][0] for c in INCOMPATIBLE])
def test_an_incompatible_model_is_refused_before_the_runtime_naming_the_difference(
    parent, tmp_path, overrides, expected
):
    folder, _ = parent
    argv = [f"init={folder}", "federation.runtime=inprocess", *overrides]

    with pytest.raises(LhsFedError) as err:
        train(_cfg(*argv), tmp_path / "run", argv)

    assert str(err.value).startswith(f"init {folder}: ") and expected in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()  # nothing written, no site contacted


def test_a_differing_hidden_size_is_refused(tmp_path):
    _parent(tmp_path / "mlp", "model=mlp", "model.hidden=16")

    mlp = str(tmp_path / "mlp")

    with pytest.raises(ConfigError, match="hidden size 16 differs from the run's: 32"):
        prepare_warm_start(mlp, _settings("model=mlp", "model.hidden=32"), registry_uri=None)
    assert prepare_warm_start(mlp, _settings("model=mlp", "model.hidden=16"), registry_uri=None)


def test_the_console_refuses_in_one_line_and_leaves_no_run_folder(parent, tmp_path):
    folder, _ = parent
    proc = subprocess.run(
        [str(LAUNCHER), f"init={folder}", "model=mlp", "federation.runtime=inprocess"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0"},
    )

    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lhsfed-train: error: init {folder}: the model is 'logreg'")
    assert "Traceback" not in proc.stderr + proc.stdout and "round " not in proc.stdout
    assert list(tmp_path.iterdir()) == []  # no outputs/runs/DATE/TIME


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_crafted_weights_text_runs_nothing(tmp_path):
    """The run config is not trusted: a pickle that would run code is refused in one line;
    the control shows an unrestricted load of the same bytes does run it."""
    buffer = io.BytesIO()
    torch.save({"head.0.weight": _WritesMarker(tmp_path / "marker")}, buffer)
    text = base64.b64encode(buffer.getvalue()).decode()

    with pytest.raises(ConfigError, match=f"^{KEY}: not a state dict written by lhsfed-train init="):
        decode_state_dict(text)
    assert not (tmp_path / "marker").exists()
    with pytest.raises(ConfigError, match="not base64"):
        decode_state_dict("%%%")
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)  # the control
    assert (tmp_path / "marker").read_text() == "ran"


def test_weights_of_another_shape_are_refused_by_the_server():
    wrong = encode_state_dict(build_model(model_spec(_settings("model=mlp")), seed=1).state_dict())

    with pytest.raises(ConfigError, match=f"^{KEY}: the warm-start weights do not fit the run's model"):
        warm_start_arrays(RunSettings.from_run_config({**_flat(), KEY: wrong}))
