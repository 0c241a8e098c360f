"""The coordinator's commands write under the runs root ``LHSFED_RUNS_ROOT`` (the SuperLink
host's, where the ServerApp writes: docs/operations.md, "The learning loop"): by default, and
a folder outside it is refused in one line before anything is made; a failed query leaves no
folder behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from federation.coordinator import comparison, drift
from federation.coordinator.hydra_folder import query_folder
from federation.coordinator.launcher import CONFIG_DIR
from federation.core.errors import ConfigError, LhsFedError
from tests.helpers.runs import LAUNCHER


def test_the_default_run_folder_lies_under_the_runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LHSFED_RUNS_ROOT", str(tmp_path / "runs-root"))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    assert cfg.hydra.run.dir.startswith(f"{tmp_path / 'runs-root'}/runs/")
    assert cfg.hydra.sweep.dir.startswith(f"{tmp_path / 'runs-root'}/multirun/")
    assert comparison.default_out("t").parent == tmp_path / "runs-root" / "comparisons"
    assert drift.default_out("t").parent == tmp_path / "runs-root" / "drift"


def test_without_a_runs_root_the_default_is_outputs(monkeypatch):
    monkeypatch.delenv("LHSFED_RUNS_ROOT", raising=False)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    assert cfg.hydra.run.dir.startswith("outputs/runs/")
    assert comparison.default_out("t").parent == Path("outputs") / "comparisons"


def test_lhsfed_train_refuses_a_run_folder_outside_the_root_in_one_line(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "elsewhere" / "run"
    root.mkdir()
    proc = subprocess.run(
        [str(LAUNCHER), "rounds=1", f"hydra.run.dir={outside}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "LHSFED_RUNS_ROOT": str(root), "FLWR_TELEMETRY_ENABLED": "0"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"lhsfed-train: error: hydra.run.dir={outside}: outside the coordinator's runs root {root} "
        "(LHSFED_RUNS_ROOT), where the ServerApp writes; choose a folder under it, or leave "
        "hydra.run.dir out (the default is under it)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # nothing made


@pytest.mark.parametrize("check", [comparison.run_compare, drift.check_drift])
def test_compare_and_drift_refuse_an_out_folder_outside_the_root(tmp_path, monkeypatch, check):
    monkeypatch.setenv("LHSFED_RUNS_ROOT", str(tmp_path / "root"))
    if check is comparison.run_compare:
        options = {"challenger_dir": None, "out_dir": tmp_path / "q"}
    else:
        options = {"thresholds": {}, "out": tmp_path / "q"}
    with pytest.raises(ConfigError, match=r"^--out=.*/q: outside the coordinator's runs root"):
        check("uci_heart-num", uri=f"sqlite:///{tmp_path / 'none.db'}", overrides=[], **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # not even the registry was opened


def test_a_failed_query_leaves_no_folder(tmp_path, monkeypatch):
    """What a query writes before its run starts (its Flower home, the app folder) goes with
    the folders made for it when the run fails; the control: a query that wrote its result."""
    monkeypatch.setenv("LHSFED_RUNS_ROOT", str(tmp_path))
    out = tmp_path / "drift" / "uci_heart-num-1"
    with pytest.raises(LhsFedError):
        with query_folder(out):
            (out / ".flwr-home").mkdir()
            (out / ".flwr-home" / "config.toml").write_text("[superlink]\n")
            (out / ".flwr-app").mkdir()
            raise LhsFedError("run 1 ended finished:failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(LhsFedError):
        with query_folder(out):
            (out / "drift.json").write_text("{}")
            raise LhsFedError("logging failed")
    assert (out / "drift.json").is_file()
