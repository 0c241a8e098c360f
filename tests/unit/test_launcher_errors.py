"""A coordinator's mistake fails at once, before any runtime starts, with one clear line."""

from __future__ import annotations

import pytest

from tests.helpers.runs import run_launcher


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["strategy=nonsense"], "Could not find 'strategy/nonsense'"),
        (["privacy.target_epsilon=-1"], "privacy.target_epsilon must be > 0 (got -1.0)"),
        (
            ["federation.data_dir=/nonexistent/site-files"],
            "/nonexistent/site-files/processed.cleveland.data: data file not found",
        ),
    ],
)
def test_bad_config_fails_fast_with_one_clear_line(tmp_path, overrides, expected):
    proc = run_launcher(tmp_path, *overrides, timeout=120)

    assert proc.returncode != 0
    first_line = proc.stderr.strip().splitlines()[0]
    assert expected in first_line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_new_run_refuses_a_folder_that_holds_another_run(tmp_path):
    """Nothing already saved is touched: the earlier run's metrics and saved config stay as they were."""
    earlier = tmp_path / "run"
    (earlier / ".hydra").mkdir(parents=True)
    (earlier / "metrics.jsonl").write_text('{"round": 1}\n')
    (earlier / "checkpoint.pt").write_bytes(b"checkpoint")
    (earlier / ".hydra" / "config.yaml").write_text("rounds: 7\n")

    proc = run_launcher(tmp_path, "rounds=1", timeout=120)

    assert proc.returncode == 2
    first_line = proc.stderr.strip().splitlines()[0]
    assert "already holds a run (metrics.jsonl, checkpoint.pt)" in first_line
    assert f"resume={earlier}" in first_line and "Traceback" not in proc.stderr
    assert (earlier / "metrics.jsonl").read_text() == '{"round": 1}\n'
    assert (earlier / ".hydra" / "config.yaml").read_text() == "rounds: 7\n"
    assert sorted(p.name for p in (earlier / ".hydra").iterdir()) == ["config.yaml"]


def test_a_sweep_refuses_a_sweep_folder_whose_jobs_left_ledgers(tmp_path):
    """A killed round 1 leaves ledgers and no checkpoint: a new job there would add their ε."""
    (tmp_path / "multirun" / "0" / "ledgers").mkdir(parents=True)

    proc = run_launcher(tmp_path, "rounds=1", "privacy.target_epsilon=1,3", multirun=True, timeout=120)

    assert proc.returncode == 2
    first_line = proc.stderr.strip().splitlines()[0]
    assert "already holds a run (ledgers)" in first_line and "no checkpoint to resume from" in first_line
    assert sorted(p.name for p in (tmp_path / "multirun" / "0").iterdir()) == ["ledgers"]
