"""``lhsfed synth`` sizes its output before writing: too many site files or more bytes than the
disk has free are refused in one line (tests/unit/test_bad_inputs.py runs the CLI cases); a
large job reports its progress."""

from __future__ import annotations

from pathlib import Path

from federation.cli import synth as synth_command
from federation.cli.main import main as lhsfed


def test_the_estimate_is_not_below_what_synth_writes(tmp_path):
    argv = ["synth", "--sites", "3", "--rows", "30000", "--noise-features", "3"]
    assert lhsfed([*argv, "--out", str(tmp_path)]) == 0

    written = sum(p.stat().st_size for p in Path(tmp_path).glob("*.parquet"))
    estimate = synth_command.estimated_bytes(30000, 3, 3)
    assert written <= estimate < 2 * written


def test_a_disk_too_small_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(synth_command, "_free_bytes", lambda out: 100_000)

    code = lhsfed(["synth", "--sites", "2", "--rows", "6000", "--out", str(tmp_path / "new")])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "the disk has 97.7 kB free" in err[0]
    assert not (tmp_path / "new").exists()


def test_a_large_job_reports_every_row_as_it_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(synth_command, "LARGE_JOB_ROWS", 500)
    seen = []
    write = synth_command.write_cohorts

    def recording(*args, progress=None, **kwargs):
        assert progress is not None  # a bar for this job

        def told(site, rows):
            seen.append((site, rows))
            progress(site, rows)

        return write(*args, progress=told, **kwargs)

    monkeypatch.setattr(synth_command, "write_cohorts", recording)

    assert lhsfed(["synth", "--sites", "3", "--rows", "600", "--out", str(tmp_path)]) == 0
    assert [site for site, _ in seen] == ["hospital_001", "hospital_002", "hospital_003"]
    assert sum(rows for _, rows in seen) == 600
