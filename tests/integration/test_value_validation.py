"""A strict dataset spec refuses bad values at the site; the other sites train on."""

from __future__ import annotations

import dataclasses
import re
import shutil

import pytest

from client.site_check import validated_site
from federation.coordinator.flwr_app_config import compose_config
from federation.core.data import site_file
from federation.core.dataspec import parse_dataset_spec
from federation.core.errors import DataError
from tests.helpers.runs import ledger_folder, read_json, run_launcher

SPEC = parse_dataset_spec(compose_config()["data"])
STRICT = dataclasses.replace(SPEC, strict_values=True)
# Cleveland's first row: age 63, ..., cp 1 (column 3), ..., num 0.
FIRST = "63.0,1.0,1.0,145.0,233.0,1.0,2.0,150.0,0.0,2.3,3.0,0.0,6.0,0"


def _cleveland_with(tmp_path, replacement: str):
    text = site_file(SPEC, "cleveland").read_text().replace(FIRST, replacement, 1)
    path = tmp_path / "processed.cleveland.data"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "row, message",
    [
        (FIRST.replace("63.0,", "sixty,", 1), "column 'age' row 1"),
        (FIRST.replace("63.0,", "430.0,", 1), "column 'age': 1 values outside [18, 100] years"),
        (FIRST.replace("63.0,1.0,1.0,", "63.0,1.0,9.0,", 1), "column 'cp': 1 values not in the levels"),
    ],
)
def test_strict_spec_rejects_wrong_type_out_of_range_and_unknown_level(tmp_path, row, message):
    path = _cleveland_with(tmp_path, row)

    with pytest.raises(DataError) as err:
        validated_site(path, STRICT, "cleveland")
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_lenient_spec_accepts_an_out_of_range_value_and_every_real_site(tmp_path):
    path = _cleveland_with(tmp_path, FIRST.replace("63.0,", "430.0,", 1))

    assert len(validated_site(path, SPEC, "cleveland").y_train) > 0
    for site in SPEC.site_names:
        assert len(validated_site(site_file(SPEC, site), STRICT, site).y_test) > 0


@pytest.mark.slow
def test_a_site_with_bad_values_sits_out_while_the_others_train(tmp_path):
    data_dir = tmp_path / "sites"
    shutil.copytree(site_file(SPEC, "cleveland").parent, data_dir)
    target = data_dir / "processed.va.data"
    va_rows = target.read_text().splitlines()
    va_rows[0] = "430" + va_rows[0][va_rows[0].index(",") :]  # an age of 430 years
    target.write_text("\n".join(va_rows) + "\n")

    proc = run_launcher(
        tmp_path,
        "rounds=2",
        "data.strict_values=true",
        f"federation.data_dir={data_dir}",
        "federation.runtime=inprocess",  # the site's check is under test, not the runtime
        "allow_absent_sites=true",  # va sits out: that is the point
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 of 4 sites trained" in proc.stdout
    summary = read_json(tmp_path / "run" / "summary.json")
    assert set(summary["metrics"]["sites"]) == {"cleveland", "hungary", "switzerland"}
    # The coordinator hears a category; the site's log has the details (no values leave it).
    log = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "data check failed: 1 problem (details in the site's log)" in log
    assert "outside [18, 100] years" not in log
    assert not re.search(r"(?<![\d.])430(?![\d.])", log)  # the bad age itself (not 0.8430...)
    site_log = (ledger_folder(tmp_path / "run") / "site.log").read_text()
    assert "site va: " in site_log and "outside [18, 100] years" in site_log
