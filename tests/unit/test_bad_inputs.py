"""Bad-input corpus: every case exits 2 with one clear last line, no traceback, no file changed.

``lhsfed`` cases call ``federation.cli.main.main`` in-process (what the console script runs, less
its ``sys.exit``); a few also go through the real console script. ``lhsfed-train`` cases run
the launcher; its refusals before the runtime have their own list
(``tests/helpers/bad_input_cases_launcher.py``, run by ``tests/unit/test_launcher_refusals.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from federation.cli.main import main as lhsfed
from tests.helpers.bad_inputs_cases import (
    CASES,
    LAUNCHER_CASES,
    SITE_CHECK_ALL,
    SITE_CHECK_CASES,
    SUBPROCESS_IDS,
)
from tests.helpers.bad_inputs_files import build_corpus, snapshot
from tests.helpers.runs import REPO, run_launcher

LHSFED = Path(sys.executable).parent / "lhsfed"
LAUNCHER_INPUTS = (REPO / "configs", REPO / "federation" / "core" / "datasets")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def _fill(parts: list[str], d: Path) -> list[str]:
    return [p.replace("{d}", str(d)) for p in parts]


def _assert_one_clear_line(code: int, err: str, expected: str, want: int = 2) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == want, err
    assert "Traceback" not in err, err
    assert lines and expected in lines[-1], err


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_lhsfed_refuses_with_one_clear_line(corpus, capsys, argv, expected):
    before = snapshot(corpus)

    try:
        code = lhsfed(_fill(argv, corpus))
    except SystemExit as exit_:  # argparse refusals exit as the console script does
        code = exit_.code

    _assert_one_clear_line(code, capsys.readouterr().err, _fill([expected], corpus)[0])
    assert snapshot(corpus) == before


@pytest.mark.parametrize("case", SUBPROCESS_IDS)
def test_the_console_script_refuses_as_main_does(corpus, case):
    _, argv, expected = next(c for c in CASES if c[0] == case)
    before = snapshot(corpus)

    proc = subprocess.run(
        [str(LHSFED), *_fill(argv, corpus)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0"},
    )

    _assert_one_clear_line(proc.returncode, proc.stderr, _fill([expected], corpus)[0])
    assert snapshot(corpus) == before


# The launcher's refusals before the runtime (tests/helpers/bad_input_cases_launcher.py) run in
# tests/unit/test_launcher_refusals.py, in-process and one real command per kind: a start costs seconds.
ALL_LAUNCHER_CASES = list(LAUNCHER_CASES)


@pytest.mark.parametrize(
    "overrides, expected", [c[1:] for c in ALL_LAUNCHER_CASES], ids=[c[0] for c in ALL_LAUNCHER_CASES]
)
def test_launcher_refuses_with_one_clear_line(tmp_path, overrides, expected):
    before = snapshot(*LAUNCHER_INPUTS)

    proc = run_launcher(tmp_path, *overrides, timeout=120)

    _assert_one_clear_line(proc.returncode, proc.stderr, expected)
    assert snapshot(*LAUNCHER_INPUTS) == before


@pytest.mark.parametrize(
    "argv, expected", [c[1:] for c in SITE_CHECK_CASES], ids=[c[0] for c in SITE_CHECK_CASES]
)
def test_site_check_fails_a_bad_file_with_one_verdict_line(corpus, capsys, argv, expected):
    """``lhsfed site check``'s documented code for a file that fails is 1 (2: a usage error)."""
    before = snapshot(corpus)

    code = lhsfed(_fill(argv, corpus))

    captured = capsys.readouterr()
    _assert_one_clear_line(code, captured.err, _fill([expected], corpus)[0], want=1)
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.out
    assert snapshot(corpus) == before


@pytest.mark.parametrize("case", sorted(SITE_CHECK_ALL))
def test_site_check_lists_every_problem_of_a_file_in_one_pass(corpus, capsys, case):
    argv = next(c[1] for c in SITE_CHECK_CASES if c[0] == case)

    assert lhsfed(_fill(argv, corpus)) == 1

    failures = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL ")]
    assert len(failures) == len(SITE_CHECK_ALL[case]), failures
    assert all(text in line for text, line in zip(SITE_CHECK_ALL[case], failures)), failures


def test_resume_refuses_a_checkpoint_of_random_bytes_before_the_runtime(corpus, tmp_path):
    folder = corpus / "run_random_checkpoint"
    before = snapshot(corpus)

    proc = run_launcher(tmp_path, f"resume={folder}", timeout=120)

    expected = f"{folder / 'checkpoint.pt'}: cannot be read safely as plain weights"
    _assert_one_clear_line(proc.returncode, proc.stderr, expected)
    assert "round " not in proc.stdout and snapshot(corpus) == before


def test_the_corpus_is_large_enough():
    assert len(CASES) + len(SUBPROCESS_IDS) + len(ALL_LAUNCHER_CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


def test_predict_scores_out_of_range_rows_with_one_warning_per_row(corpus, tmp_path, capsys):
    """Without --strict an out-of-range row is scored, and said so (the snapshot sees writes)."""
    before = snapshot(tmp_path)

    code = lhsfed(
        [
            "predict",
            str(corpus / "onnx" / "model.onnx"),
            "--data",
            str(corpus / "age430.csv"),
            "--out",
            str(tmp_path / "scored.csv"),
        ]
    )

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0
    assert err == [f"warning: {corpus / 'age430.csv'}: row 2: age 430 not in range 18..100 years"]
    scored = (tmp_path / "scored.csv").read_text().splitlines()
    assert len(scored) == 1 + 6 and scored[0].endswith(",risk,risk_out_of_range,risk_model_sha256")
    assert scored[2].split(",")[:2] == ["p1", "430"]  # input text passed through as written
    frame = pd.read_csv(tmp_path / "scored.csv", keep_default_na=False)
    assert frame["risk"].between(0.0, 1.0).all()
    # the extrapolated row says so in the file itself (issue T, 9), and every row names its model
    assert frame["risk_out_of_range"].tolist() == ["", "age", "", "", "", ""]
    card = json.loads((corpus / "onnx" / "model_card.json").read_text())
    assert set(frame["risk_model_sha256"]) == {card["model"]["sha256"]}
    assert snapshot(tmp_path) != before


def test_the_weak_versions_fall_for_what_the_corpus_refuses(corpus):
    """Controls: a plain path compare, pandas' own header handling and the model itself do
    not catch what the checks catch (so the refusals above are not vacuous)."""
    import numpy as np
    import pandas as pd

    from federation.core.input_files import same_file
    from federation.modeler.scoring import run_model

    data = corpus / "patients.csv"
    for alias in (corpus / "link.csv", corpus / "hard.csv", corpus / "folder" / ".." / "patients.csv"):
        assert str(alias) != str(data) and same_file(alias, data)
    assert not same_file(corpus / "nan.csv", data)
    doubled = pd.read_csv(corpus / "dup.csv")  # pandas renames the second 'age' silently
    assert "age.1" in doubled.columns and doubled["age"].notna().all()
    rows = np.zeros((2, 13), "float32")
    rows[1, 4] = np.inf
    risk = run_model((corpus / "onnx" / "model.onnx").read_bytes(), "onnx", rows)
    # An inf cell: no risk (an MLP) or a saturated one (logistic regression), and no word.
    assert np.isfinite(risk[0]) and (not np.isfinite(risk[1]) or risk[1] in (0.0, 1.0))


def test_synth_keeps_an_earlier_cohort_unless_forced(tmp_path, capsys):
    argv = ["synth", "--sites", "2", "--rows", "600", "--out", str(tmp_path)]
    assert lhsfed(argv) == 0
    before = snapshot(tmp_path)

    refused = lhsfed(argv)
    err = capsys.readouterr().err.strip().splitlines()
    unchanged = snapshot(tmp_path) == before
    forced = lhsfed([*argv, "--seed", "1", "--force"])

    assert refused == 2 and ".parquet already exists" in err[-1] and unchanged
    assert forced == 0 and snapshot(tmp_path) != before
