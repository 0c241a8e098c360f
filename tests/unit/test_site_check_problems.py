"""``lhsfed site check`` tells every problem in one pass: repeated rows and patient IDs (a file
appended to itself), rows with too few or too many fields, a ';'-separated export and an
extract without its header row, each in one line naming the row or column and the fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import yaml

from client.site_check import MAX_FAILURES, check_site_file
from federation.cli.main import main as lhsfed
from federation.core.data import site_file
from federation.core.dataspec import load_spec_file
from federation.modeler.synth import dataset_spec, hospital_cohort

REPO = Path(__file__).resolve().parents[2]
UCI = load_spec_file(REPO / "configs" / "data" / "uci_heart.yaml")
CLEVELAND = site_file(UCI, "cleveland").read_text().splitlines()


def _synth_spec(tmp_path: Path, fmt: str = "parquet") -> Path:
    """A synth hospital's spec (data.id_column: patient_id), written beside its files."""
    raw = {**dataset_spec("synth", {"h": f"h.{fmt}"}), "format": fmt}
    path = tmp_path / "synth.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _hospital(rows: int = 120) -> pd.DataFrame:
    return hospital_cohort("h", rows, 0.3, seed=4)


def _check(spec: Path | None, data: Path, capsys) -> tuple[int, list[str], str]:
    argv = ["site", "check", "--data", str(data)] + (["--spec", str(spec)] if spec else [])
    code = lhsfed(argv)
    out, err = capsys.readouterr()
    failures = [line.removeprefix("FAIL ") for line in out.splitlines() if line.startswith("FAIL ")]
    return code, failures, err.strip().splitlines()[-1]


def test_a_file_appended_to_itself_fails_on_its_repeated_ids_and_rows(tmp_path, capsys):
    spec = _synth_spec(tmp_path)
    frame = _hospital()
    pd.concat([frame, frame]).to_parquet(tmp_path / "h.parquet", index=False)

    code, failures, verdict = _check(spec, tmp_path / "h.parquet", capsys)

    assert code == 1 and "Traceback" not in verdict
    assert any(
        "column 'patient_id' row 121: repeats the patient ID of row 1 (120 rows" in f for f in failures
    )
    assert any("row 121: repeats row 1 exactly (120 rows repeat an earlier row)" in f for f in failures)
    assert "both sides of the train/test split" in verdict


def test_one_repeated_patient_id_fails_even_with_different_values(tmp_path, capsys):
    spec = _synth_spec(tmp_path)
    frame = _hospital()
    frame.loc[50, "patient_id"] = frame.loc[7, "patient_id"]
    frame.to_parquet(tmp_path / "h.parquet", index=False)

    code, failures, _ = _check(spec, tmp_path / "h.parquet", capsys)

    assert code == 1
    assert failures == [
        f"{tmp_path / 'h.parquet'}: column 'patient_id' row 51: repeats the patient ID of row 8 "
        "(1 row repeats an earlier ID); keep each patient once: a repeated patient sits on both "
        "sides of the train/test split"
    ]


def test_a_missing_id_column_is_named(tmp_path, capsys):
    spec = _synth_spec(tmp_path)
    _hospital().drop(columns=["patient_id"]).to_parquet(tmp_path / "h.parquet", index=False)

    code, failures, _ = _check(spec, tmp_path / "h.parquet", capsys)

    assert code == 1 and len(failures) == 1
    assert "column 'patient_id': is missing (the spec's data.id_column" in failures[0]


def test_a_headerless_csv_appended_to_itself_fails_and_one_coincidence_only_warns(tmp_path, capsys):
    doubled = tmp_path / "doubled.csv"
    doubled.write_text("\n".join(CLEVELAND + CLEVELAND) + "\n")

    code, failures, verdict = _check(None, doubled, capsys)

    assert code == 1 and failures[-1].startswith(f"{doubled}: row 304: repeats row 1 exactly (303 rows")
    # UCI Hungary holds one pair of identical rows: a warning to look at, not a refusal.
    report = check_site_file(site_file(UCI, "hungary"), UCI)
    assert report.ok and any("row 103: repeats row 102 exactly (1 row repeats" in w for w in report.warnings)


def test_every_row_problem_is_reported_in_one_pass(tmp_path, capsys):
    lines = list(CLEVELAND)
    lines[2] = lines[2].rsplit(",", 1)[0]  # row 3: a field short
    lines[9] = lines[9] + ",1"  # row 10: one field too many
    lines[20] = lines[20].replace(lines[20].split(",")[0], "abc", 1)  # row 21: age not a number
    path = tmp_path / "site.csv"
    path.write_text("\n".join(lines) + "\n")

    code, failures, verdict = _check(None, path, capsys)

    assert code == 1 and len(failures) == 3, failures
    assert (
        failures[0]
        == f"{path}: row 3 column 'num': is missing (the row has 13 fields, the spec's columns are 14)"
    )
    assert failures[1].startswith(f"{path}: row 10 column 15: 15 fields, more than the spec's 14 columns")
    assert failures[2].startswith(f"{path}: column 'age' row 21: non-numeric value 'abc'")
    assert "(3 failures" in verdict


def test_problems_past_the_bound_are_counted_in_one_line(tmp_path):
    lines = [line.replace(line.split(",")[0], f"x{i}", 1) for i, line in enumerate(CLEVELAND)]
    columns = [f"extra{i}" for i in range(MAX_FAILURES + 5)]
    spec = dataclasses.replace(UCI, columns=(*UCI.columns, *columns), header=False)
    spec = dataclasses.replace(
        spec, features=(*spec.features, *(dataclasses.replace(spec.features[0], name=c) for c in columns))
    )
    path = tmp_path / "site.csv"
    path.write_text("\n".join(f"{line}{',x' * len(columns)}" for line in lines) + "\n")

    report = check_site_file(path, spec)

    assert len(report.failures) == MAX_FAILURES + 1
    assert report.failures[-1] == f"{path}: 6 more problems not listed (fix these first)"


@pytest.mark.parametrize("separator, said", [(";", "';'"), ("\t", "a tab")])
def test_a_file_separated_by_another_character_is_told_so(tmp_path, capsys, separator, said):
    headerless = tmp_path / "uci.csv"
    headerless.write_text("\n".join(line.replace(",", separator) for line in CLEVELAND) + "\n")
    spec = _synth_spec(tmp_path, "csv")
    with_header = tmp_path / "h.csv"
    with_header.write_text(_hospital().to_csv(index=False, sep=separator, decimal=","))

    for spec_path, data in ((None, headerless), (spec, with_header)):
        code, failures, verdict = _check(spec_path, data, capsys)

        assert code == 1 and len(failures) == 1, failures
        assert f"{data}: the file is separated by {said}, not by commas" in failures[0]
        assert "export it as comma-separated CSV" in verdict


def test_an_extract_without_its_header_row_is_told_so(tmp_path, capsys):
    spec = _synth_spec(tmp_path, "csv")
    data = tmp_path / "h.csv"
    frame = _hospital().drop(columns=["patient_id", "hospital", "smoker", "admission_type"])
    data.write_text(frame.to_csv(index=False, header=False))

    code, failures, verdict = _check(spec, data, capsys)

    assert code == 1 and len(failures) == 1, failures
    assert f"{data}: line 1 is a row of numbers (" in failures[0]
    assert "the file has no header row; export it with its header row" in verdict
    assert "appears twice" not in verdict and "more than once" not in verdict
