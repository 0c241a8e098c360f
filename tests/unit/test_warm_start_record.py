"""A warm-started campaign records the registry version it started from, so its resume (which
never resolves ``init=`` again: the alias may have moved) logs the same parent; a run refused
before its first round takes the record back with its other launch files."""

from __future__ import annotations

from federation.coordinator.hydra_folder import HYDRA_FILES, LAUNCH_FILES, FolderRecord
from federation.coordinator.launcher import record_warm_start, recorded_parent_version
from federation.coordinator.warm_start import WarmStart
from federation.core.run_layout import WARM_START, read_json


def test_the_parent_version_outlives_the_alias_it_was_resolved_from(tmp_path):
    warm = WarmStart(source="registry:uci_heart-num@champion", weights="", round=5, parent_version="3")

    record_warm_start(warm, tmp_path)

    assert read_json(tmp_path / WARM_START) == {
        "source": "registry:uci_heart-num@champion",
        "parent_version": "3",
        "round": 5,
    }
    assert recorded_parent_version(tmp_path) == "3"
    record_warm_start(WarmStart(source=str(tmp_path), weights="", round=2), tmp_path / "from-folder")
    assert recorded_parent_version(tmp_path / "from-folder") is None  # init=RUN_DIR: no version
    assert recorded_parent_version(tmp_path / "never-warm") is None


def test_a_run_refused_before_its_first_round_leaves_no_warm_start_record(tmp_path):
    run = tmp_path / "runs" / "r1"
    record = FolderRecord.before_hydra(run)
    run.mkdir(parents=True)
    record_warm_start(WarmStart(source="x", weights="", round=1, parent_version="1"), run)

    assert record.take_back((*HYDRA_FILES, *LAUNCH_FILES))
    assert not run.exists()
