"""A coordinator's mistake fails at once, before any runtime starts, with one clear line."""

from __future__ import annotations

import pytest

from tests.conftest import run_launcher


@pytest.mark.parametrize("overrides, expected", [
    (["strategy=nonsense"], "Could not find 'strategy/nonsense'"),
    (["privacy.target_epsilon=-1"], "privacy.target_epsilon must be > 0 (got -1.0)"),
    (["federation.data_dir=/nonexistent/site-files"],
     "/nonexistent/site-files/processed.cleveland.data: data file not found"),
])
def test_bad_config_fails_fast_with_one_clear_line(tmp_path, overrides, expected):
    proc = run_launcher(tmp_path, *overrides, timeout=120)

    assert proc.returncode != 0
    first_line = proc.stderr.strip().splitlines()[0]
    assert expected in first_line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_new_run_refuses_a_folder_that_holds_another_run(tmp_path):
    """Nothing already saved is touched: the first run's metrics stay byte for byte."""
    earlier = tmp_path / "run"
    earlier.mkdir()
    (earlier / "metrics.jsonl").write_text('{"round": 1}\n')

    proc = run_launcher(tmp_path, "rounds=1", timeout=120)

    assert proc.returncode == 2
    first_line = proc.stderr.strip().splitlines()[0]
    assert "already holds a run (metrics.jsonl)" in first_line and f"resume={earlier}" in first_line
    assert "Traceback" not in proc.stderr
    assert (earlier / "metrics.jsonl").read_text() == '{"round": 1}\n'
