"""``lhsfed site check`` streams: bounded memory on a 2 GB file, and the values the loader
would mis-read (NaN text, inf, overflow, extra fields, binary) are refused by both."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from client.site_check import check_site_file
from federation.cli.main import main
from federation.cli.site import _progress_bar
from federation.core.data import encode_features, load_site, read_site_frame, site_file
from federation.core.dataspec import load_spec_file
from federation.core.errors import DataError
from tests.helpers.deployment_net import embedded_dir_for_tests

REPO = Path(__file__).resolve().parents[2]
SPEC = load_spec_file(REPO / "configs" / "data" / "uci_heart.yaml")
FLAMBY = load_spec_file(REPO / "configs" / "data" / "uci_heart_flamby.yaml")
CLEVELAND = embedded_dir_for_tests()["cleveland"].read_text().splitlines()
LHSFED = Path(sys.executable).parent / "lhsfed"
MAX_RSS_MB = 300


def _with(row: int, column: int, value: str, lines=CLEVELAND) -> list[str]:
    """The rows with one cell (0-based row and column) replaced."""
    fields = lines[row].split(",")
    fields[column] = value
    return lines[:row] + [",".join(fields)] + lines[row + 1 :]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _peak_rss_of(args: list[str]) -> dict:
    """Run ``args`` from a fresh interpreter: its exit code, stderr and peak RSS in MB
    (RUSAGE_CHILDREN of a fresh parent counts that one child only)."""
    probe = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=300)\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'rc': p.returncode, 'stderr': p.stderr, 'rss_mb': rss}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=320, env=env, check=True
    )
    return json.loads(done.stdout)


def test_a_sparse_2gb_file_gets_a_one_line_verdict_in_bounded_memory(tmp_path):
    path = tmp_path / "site.csv"
    real = "\n".join(CLEVELAND)[:9000]
    path.write_text(real[: real.rindex("\n") + 1])  # 9 kB of whole rows, then 2 GB of zeros
    os.truncate(path, 2 * 1024**3)

    result = _peak_rss_of([str(LHSFED), "site", "check", "--data", str(path)])
    path.unlink()  # sparse, but a copy of it would not be

    assert result["rc"] == 1
    verdict = result["stderr"].strip().splitlines()[-1]
    assert verdict.startswith(f"FAIL: {path}") and "binary content (a NUL byte)" in verdict
    assert "Traceback" not in result["stderr"]
    assert result["rss_mb"] <= MAX_RSS_MB, result


def test_site_check_does_not_import_torch():
    """Torch alone is ~200 MB resident: the check must not pay for it."""
    code = (
        "import sys; from federation.cli.main import build_parser; build_parser(); "
        "import client.site_check; print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout
    assert out.strip() == "False"


def test_one_endless_line_is_refused_without_reading_it_all(tmp_path, capsys):
    path = tmp_path / "site.csv"
    path.write_text("1," * 3_000_000)  # 6 MB, no line break

    assert main(["site", "check", "--data", str(path)]) == 1
    verdict = capsys.readouterr().err.strip().splitlines()[-1]
    assert "line 1 is longer than 1024 kB" in verdict


NON_FINITE = ["NaN", "nan", "inf", "-inf", "Infinity", "1e309", "-1e309"]


@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_values_are_refused_by_the_check_and_the_loader(value, tmp_path, capsys):
    path = _write(tmp_path / "site.csv", _with(5, 4, value))  # chol, row 6

    assert main(["site", "check", "--data", str(path)]) == 1
    failures = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL ")]
    assert failures == [
        f"FAIL {path}: column 'chol' row 6: non-finite value {value!r} (NaN, "
        "infinity and numbers beyond ±1.8e308 are refused); use a finite number, "
        "or a missing marker ['?'] (1 such rows)"
    ]
    with pytest.raises(DataError, match=rf"{path}: column 'chol' row 6 has non-finite value "):
        load_site(path, SPEC, "cleveland")


def test_pandas_default_na_words_are_values_not_missing(tmp_path, capsys):
    """Control: pandas' reader takes 'NaN' / 'NA' for missing; only the spec's markers are."""
    lines = _with(7, 4, "NA", _with(5, 4, "NaN"))
    path = _write(tmp_path / "site.csv", lines)
    weak = pd.read_csv(path, header=None, names=list(SPEC.columns), na_values=["?"])
    assert weak["chol"].isna().sum() == 2  # the old reading: both silently missing

    assert main(["site", "check", "--data", str(path)]) == 1
    out = capsys.readouterr().out
    assert "column 'chol' row 8: non-numeric value 'NA'" in out
    marked = _write(tmp_path / "marked.csv", _with(7, 4, "?", _with(5, 4, "")))
    assert check_site_file(marked, SPEC).ok  # the marker and an empty field are missing


def test_a_marker_spelt_nan_is_missing(tmp_path, capsys):
    spec_file = tmp_path / "spec.yaml"
    text = (REPO / "configs" / "data" / "uci_heart.yaml").read_text()
    spec_file.write_text(text.replace('missing_markers: ["?"]', 'missing_markers: ["?", "NaN"]'))
    path = _write(tmp_path / "site.csv", _with(5, 4, "NaN"))

    assert main(["site", "check", "--data", str(path), "--spec", str(spec_file)]) == 0
    assert capsys.readouterr().err.splitlines()[-1].startswith("PASS: ")


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        (_with(2, 13, "0,5"), ["row 3 column 15", "15 fields, more than the spec's 14 columns"]),
        ([line + "," for line in CLEVELAND], ["row 1 column 15", "trailing comma"]),
        (
            CLEVELAND[:4] + [CLEVELAND[4].rsplit(",", 1)[0]] + CLEVELAND[5:],
            ["row 5 column 'num'", "is missing", "13 fields"],
        ),
        (CLEVELAND[:40] + ["1,2\x003"] + CLEVELAND[40:], ["line 41", "binary content"]),
        (CLEVELAND[:3] + ["\xff\xfe"] + CLEVELAND[3:], ["line 4", "not UTF-8"]),
        (CLEVELAND[:6] + ['"63.0,1.0'] + CLEVELAND[6:], ["line 7", "unclosed quote"]),
    ],
    ids=["extra_field", "trailing_comma", "missing_field", "nul_byte", "not_utf8", "open_quote"],
)
def test_file_structure_is_refused_with_one_line_by_the_check_and_the_loader(lines, words, tmp_path, capsys):
    path = tmp_path / "site.csv"
    text = ("\n".join(lines) + "\n").encode()
    path.write_bytes(text.replace("\xff\xfe".encode(), b"\xff\xfe"))  # raw bytes, not UTF-8

    assert main(["site", "check", "--data", str(path)]) == 1
    captured = capsys.readouterr()
    failures = [line for line in captured.out.splitlines() if line.startswith("FAIL ")]
    assert len(failures) == 1 and all(word in failures[0] for word in words), failures
    assert all(word in captured.err.splitlines()[-1] for word in words)
    with pytest.raises(DataError, match=words[0]):
        load_site(path, SPEC, "cleveland")


def test_counts_add_up_across_chunks(tmp_path, monkeypatch):
    """A bad value far into a file (past the first block) is found, with its row number."""
    monkeypatch.setattr("federation.core.site_table.BLOCK", 4096)
    lines = CLEVELAND * 4
    path = _write(tmp_path / "site.csv", _with(1000, 7, "inf", lines))

    report = check_site_file(path, SPEC)

    assert report.rows == len(lines)
    assert report.failures[0] == (
        f"{path}: column 'thalach' row 1001: non-finite value 'inf' (NaN, "
        "infinity and numbers beyond ±1.8e308 are refused); use a finite "
        "number, or a missing marker ['?'] (1 such rows)"
    )
    # Four copies of one file: every row after the first copy repeats one (the changed row not).
    assert report.failures[1].startswith(f"{path}: row 304: repeats row 1 exactly (908 rows repeat")
    assert len(report.failures) == 2
    assert sum(report.label_counts.values()) == len(lines)


def test_parquet_is_checked_by_batches_and_inf_is_refused(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setattr("federation.core.site_table.CHUNK_ROWS", 50)
    frame = pd.read_csv(site_file(SPEC, "cleveland"), header=None, names=list(SPEC.columns), na_values=["?"])
    spec = dataclasses.replace(SPEC, format="parquet")
    good = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_pandas(frame), good, row_group_size=50)
    assert check_site_file(good, spec).ok and check_site_file(good, spec).rows == len(frame)

    frame.loc[120, "oldpeak"] = np.inf
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pandas(frame), bad, row_group_size=50)
    report = check_site_file(bad, spec)
    assert [f for f in report.failures if "column 'oldpeak' row 121: non-finite value inf" in f]
    with pytest.raises(DataError, match="column 'oldpeak' row 121 has non-finite value inf"):
        load_site(bad, spec, "cleveland")


@pytest.mark.parametrize("spec", [SPEC, FLAMBY], ids=["uci_heart", "uci_heart_flamby"])
def test_embedded_sites_encode_as_pandas_typed_reading_did(spec):
    """The streamed text reader changes nothing for good files (the old reader as control)."""
    for name in spec.site_names:
        path = site_file(spec, name)
        old = pd.read_csv(path, header=None, names=list(spec.columns), na_values=["?"])
        new = read_site_frame(path, spec)
        np.testing.assert_array_equal(encode_features(new, spec, path), encode_features(old, spec, path))
        assert check_site_file(path, spec).ok


def test_progress_bar_is_drawn_on_a_terminal_and_the_verdict_stays_last(tmp_path, monkeypatch):
    monkeypatch.setattr("federation.cli.site.TERMINAL_BAR", 1000)
    path = _write(tmp_path / "site.csv", CLEVELAND)
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)

    with _progress_bar(path, terminal) as progress:
        assert progress is not None
        report = check_site_file(path, SPEC, progress=progress)

    assert report.ok and "checking site.csv" in screen.getvalue()
    assert _progress_bar_is_skipped_for(path)


def _progress_bar_is_skipped_for(path: Path) -> bool:
    """Small file, not a terminal: no bar at all."""
    with _progress_bar(path, Console(file=io.StringIO())) as progress:
        return progress is None
