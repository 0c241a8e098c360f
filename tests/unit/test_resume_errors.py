"""``resume=`` refuses what it cannot continue, with one clear line (no runtime started)."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from federation.coordinator.launcher import CONFIG_DIR, train
from federation.coordinator.resume import finished_run, resumed_config
from federation.core.errors import ConfigError
from server.checkpoint import ResumeState, save_resume_state
from tests.helpers.bad_inputs_files import snapshot
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


def _finished(tmp_path, rounds=6, done=6, stopped=False):
    tmp_path.mkdir()
    folder = _run_folder(tmp_path, rounds=rounds)
    selection = {"stopped_early": stopped, "rounds_planned": rounds}
    (folder / "summary.json").write_text(json.dumps({"rounds": done, "selection": selection}))
    return folder


def _resume(folder, hydra_dir, *overrides):
    """The launcher's train() on ``resume=folder`` (the saved config is a stub: a run that
    reached the runtime would fail on it, so returning is the proof that nothing ran)."""
    argv = [f"resume={folder}", *overrides]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=argv)
    return train(cfg, hydra_dir, argv)


@pytest.mark.parametrize("done, stopped", [(6, False), (4, True)], ids=["all-rounds", "stopped-early"])
def test_resuming_a_finished_run_says_so_and_runs_nothing(tmp_path, capsys, done, stopped):
    folder = _finished(tmp_path / "run", done=done, stopped=stopped)
    before = snapshot(folder)

    assert _resume(folder, tmp_path / "hydra") == folder.resolve()

    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and f"{folder.resolve()} is a finished run" in out[0]
    assert "nothing was run" in out[0] and "rounds=N (N > " in out[0]
    assert snapshot(folder) == before


def test_resuming_with_more_rounds_is_not_finished(tmp_path):
    folder = _finished(tmp_path / "run")
    cfg = OmegaConf.create({"rounds": 8})

    assert finished_run(folder, cfg) is None
    assert finished_run(folder, OmegaConf.create({"rounds": 6})) is not None
    (folder / "summary.json").unlink()  # killed before the summary: resume finishes it
    assert finished_run(folder, OmegaConf.create({"rounds": 6})) is None


def test_the_launcher_exits_0_on_a_finished_run(tmp_path):
    folder = _finished(tmp_path / "old")  # run_launcher's own hydra.run.dir is tmp_path / "run"

    proc = run_launcher(tmp_path, f"resume={folder}", timeout=120)

    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "is a finished run" in proc.stdout and "Traceback" not in proc.stderr
