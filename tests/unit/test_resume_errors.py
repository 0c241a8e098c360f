"""``resume=`` refuses what it cannot continue, with one clear line (no runtime started)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from federation.coordinator.resume import resumed_config
from federation.core.errors import ConfigError
from server.checkpoint import ResumeState, save_resume_state
from tests.helpers.runs import run_launcher


def _run_folder(tmp_path, rounds=6):
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(
        OmegaConf.create({"rounds": rounds, "seed": 42, "resume": None}), tmp_path / ".hydra" / "config.yaml"
    )
    save_resume_state(tmp_path, ResumeState(round=3, arrays={}))
    return tmp_path


def test_resume_reads_the_saved_config_and_may_extend_rounds(tmp_path):
    folder = _run_folder(tmp_path)
    current = OmegaConf.create({"rounds": 10, "seed": 7, "resume": str(folder)})

    cfg, path = resumed_config(str(folder), current, [f"resume={folder}", "rounds=10"])

    assert path == folder.resolve() and cfg.rounds == 10 and cfg.seed == 42


def test_resume_rejects_other_changes_and_missing_files(tmp_path):
    with pytest.raises(ConfigError) as err:
        resumed_config(str(tmp_path), OmegaConf.create({}), ["resume=x", "strategy=krum"])
    message = str(err.value)
    assert "config.yaml does not exist" in message
    assert "checkpoint.pt does not exist" in message
    assert "remove ['strategy=krum']" in message


def test_launcher_prints_one_line_for_a_bad_resume_folder(tmp_path):
    proc = run_launcher(tmp_path, f"resume={tmp_path / 'nowhere'}", timeout=120)
    assert proc.returncode == 2
    assert "lhsfed-train: error:" in proc.stderr and "nowhere" in proc.stderr
    assert "Traceback" not in proc.stderr
