"""``lhsfed site check``: each bad file is rejected with one line naming file/column/row."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.cli.main import main
from tests.helpers.deployment_net import embedded_dir_for_tests

SITE_FILES = embedded_dir_for_tests()
CLEVELAND = SITE_FILES["cleveland"].read_text().splitlines()
HEADER = "age,sex,cp,trestbps,chol,fbs,restecg,thalach,exang,oldpeak,slope,ca,thal,num"


def _file(tmp_path: Path, lines: list[str], name: str = "site.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


def _replace_field(line: str, index: int, value: str) -> str:
    fields = line.split(",")
    fields[index] = value
    return ",".join(fields)


def _check(path: Path, capsys) -> tuple[int, list[str]]:
    code = main(["site", "check", "--data", str(path)])
    out = capsys.readouterr().out
    return code, [line for line in out.splitlines() if line.startswith("FAIL ")]


@pytest.mark.parametrize("site", sorted(SITE_FILES))
def test_accepts_each_uci_site(site, capsys):
    code = main(["site", "check", "--data", str(SITE_FILES[site]), "--site", site])
    captured = capsys.readouterr()
    assert code == 0, captured.out
    assert "PASS" in captured.out and "missing" in captured.out  # the table was printed
    assert captured.err.splitlines()[-1].startswith("PASS: ")


CASES = {
    # name: (lines builder, words the one-line reason must contain)
    "missing_file": (None, ["file not found"]),
    "empty_file": (lambda: [], ["file is empty"]),
    "missing_column": (
        lambda: [",".join(line.split(",")[:12]) for line in CLEVELAND],
        ["column 'thal'", "is missing"],
    ),
    "non_numeric": (
        lambda: CLEVELAND[:5] + [_replace_field(CLEVELAND[5], 4, "high")] + CLEVELAND[6:],
        ["column 'chol'", "row 6", "non-numeric", "'high'"],
    ),
    "label_outside": (
        lambda: CLEVELAND[:9] + [_replace_field(CLEVELAND[9], 13, "7")] + CLEVELAND[10:],
        ["column 'num'", "row 10", "'7'", "not allowed"],
    ),
    "one_class": (
        lambda: [line for line in CLEVELAND if line.endswith(",0")],
        ["column 'num'", "every row is negative"],
    ),
    "too_few_rows": (lambda: CLEVELAND[:12], ["12 data rows", "minimum 20"]),
    "duplicated_header": (lambda: [HEADER] + CLEVELAND, ["row 1", "duplicated header"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejects_with_one_line_reason(case, tmp_path, capsys):
    build, words = CASES[case]
    path = tmp_path / "absent.csv" if build is None else _file(tmp_path, build())
    code, failures = _check(path, capsys)
    assert code == 1
    reasons = [line for line in failures if all(word in line for word in words)]
    assert reasons, failures
    assert str(path) in reasons[0] and "\n" not in reasons[0]


def test_out_of_range_values_warn_but_pass(tmp_path, capsys):
    """A real but implausible measurement is a warning for a clinician, not a failure."""
    lines = CLEVELAND[:3] + [_replace_field(CLEVELAND[3], 4, "900")] + CLEVELAND[4:]
    code = main(["site", "check", "--data", str(_file(tmp_path, lines))])
    out = capsys.readouterr().out
    assert code == 0
    assert "column 'chol': 1 values outside [80, 700]" in out


def test_unknown_dataset_is_one_clear_line(capsys):
    assert main(["site", "check", "--data", "x.csv", "--dataset", "nope"]) == 2
    assert "dataset 'nope' is unknown" in capsys.readouterr().err
