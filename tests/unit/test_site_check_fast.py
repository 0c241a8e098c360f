"""``lhsfed site check`` reads plain blocks of rows at C speed (``site_table.CleanRows``) and
anything else row by row: both readings give the same report, line for line, and a row hashes
alike in either (a repeat is found across a quoted block and a plain one)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from client.site_check import check_site_file
from federation.core import site_table
from federation.core.data import site_file
from federation.core.dataspec import load_spec_file
from federation.modeler.synth import dataset_spec, hospital_cohort

REPO = Path(__file__).resolve().parents[2]
UCI = load_spec_file(REPO / "configs" / "data" / "uci_heart.yaml")
CLEVELAND = site_file(UCI, "cleveland").read_text().splitlines()


def _with(lines: list[str], row: int, column: int, value: str) -> list[str]:
    fields = lines[row].split(",")
    fields[column] = value
    return lines[:row] + [",".join(fields)] + lines[row + 1 :]


def _distinct(lines: list[str], copies: int) -> list[str]:
    """``copies`` of the rows, each copy's trestbps moved by 0.01 (so no row repeats)."""
    out = []
    for k in range(copies):
        for line in lines:
            fields = line.split(",")
            if fields[3] != "?":
                fields[3] = f"{float(fields[3]) + k / 100:.2f}"
            out.append(",".join(fields))
    return out


def _both(path: Path, spec, monkeypatch) -> tuple:
    """The report read with clean blocks, and read as frames only; small blocks, so a file is
    several batches (some clean, some not)."""
    monkeypatch.setattr("federation.core.site_table.BLOCK", 2048)
    monkeypatch.setattr("federation.core.site_table.BATCH", 4096)
    clean, read = [], site_table._clean_rows
    monkeypatch.setattr(site_table, "_clean_rows", lambda *args: clean.append(read(*args)) or clean[-1])
    fast = check_site_file(path, spec)
    assert any(cells is not None for cells in clean)  # some blocks were read at C speed
    monkeypatch.setattr(site_table, "_clean_rows", lambda *args: None)
    slow = check_site_file(path, spec)
    return dataclasses.asdict(fast), dataclasses.asdict(slow)


CASES = {
    "plain": lambda: _distinct(CLEVELAND, 3),
    "appended to itself": lambda: CLEVELAND * 3,
    "spaces after commas in one copy": lambda: CLEVELAND + [line.replace(",", ", ") for line in CLEVELAND],
    "leading and trailing spaces": lambda: _distinct(CLEVELAND, 2) + ["  " + CLEVELAND[5] + " "],
    "a quoted copy of a later row": lambda: (
        ['"' + CLEVELAND[0].replace(",", '","') + '"'] + _distinct(CLEVELAND, 3)[1:]
    ),
    "values out of range, levels unknown, markers": lambda: _with(
        _with(_with(_distinct(CLEVELAND, 3), 700, 0, "130"), 705, 2, "9"), 710, 4, "?"
    ),
    "a bad label far in": lambda: _with(_distinct(CLEVELAND, 3), 800, 13, "7"),
    "a non-numeric cell and a NaN": lambda: _with(
        _with(_distinct(CLEVELAND, 3), 650, 7, "abc"), 660, 9, "NaN"
    ),
    "a repeated header": lambda: _distinct(CLEVELAND, 2)[:500] + [",".join(UCI.columns)] + CLEVELAND[:50],
    "blank lines and bad rows": lambda: _distinct(CLEVELAND, 2)[:400] + ["", "  ", "1,2,3"] + CLEVELAND[:50],
    "non-ASCII text": lambda: _with(_distinct(CLEVELAND, 2), 500, 7, "é"),
    "a tab and a form feed": lambda: _with(_with(_distinct(CLEVELAND, 2), 500, 7, "\t150"), 510, 0, "60\f"),
}


@pytest.mark.parametrize("name", CASES)
def test_clean_blocks_and_frames_give_the_same_report(name, tmp_path, monkeypatch):
    path = tmp_path / "site.csv"
    path.write_text("\n".join(CASES[name]()) + "\n")
    fast, slow = _both(path, UCI, monkeypatch)
    assert fast == slow


def test_windows_line_ends_read_alike(tmp_path, monkeypatch):
    path = tmp_path / "site.csv"
    path.write_bytes(("\r\n".join(CLEVELAND * 2) + "\r\n").encode())
    fast, slow = _both(path, UCI, monkeypatch)
    assert fast == slow
    assert fast["rows"] == 2 * len(CLEVELAND)


@pytest.mark.parametrize("repeat", [False, True])
def test_ids_text_levels_and_a_header_read_alike(repeat, tmp_path, monkeypatch):
    """A synth hospital's CSV (header, patient_id, text levels); a repeated ID far in."""
    raw = {**dataset_spec("synth", {"h": "h.csv"}), "format": "csv"}
    (tmp_path / "synth.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec_file(tmp_path / "synth.yaml")
    frame = hospital_cohort("h", 300, 0.3, seed=4)
    if repeat:
        frame.loc[250, spec.id_column] = frame.loc[3, spec.id_column]
    frame.to_csv(tmp_path / "h.csv", index=False)
    fast, slow = _both(tmp_path / "h.csv", spec, monkeypatch)
    assert fast == slow
    assert fast["rows"] == 300 and (not fast["failures"]) != repeat
