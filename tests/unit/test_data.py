"""The embedded UCI data: four real sites, binary labels, missing values, a held-out split."""

from __future__ import annotations

import numpy as np
import pytest

from federation.coordinator.flwr_app_config import compose_config
from federation.core.data import load_site, read_site_frame, site_file
from federation.core.dataspec import parse_dataset_spec
from federation.core.errors import DataError

SPEC = parse_dataset_spec(compose_config()["data"])
ROWS = {"cleveland": 303, "hungary": 294, "switzerland": 123, "va": 200}
POSITIVES = {"cleveland": 139, "hungary": 106, "switzerland": 115, "va": 149}


@pytest.mark.parametrize("site", list(ROWS))
def test_each_site_loads_with_binary_labels_and_a_disjoint_test_split(site):
    data = load_site(site_file(SPEC, site), SPEC, site)

    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == ROWS[site]
    assert int(data.y_train.sum() + data.y_val.sum() + data.y_test.sum()) == POSITIVES[site]
    assert set(np.unique(np.concatenate([data.y_train, data.y_val, data.y_test]))) <= {0.0, 1.0}
    assert abs(len(data.y_test) / ROWS[site] - SPEC.split.test_fraction) < 0.01
    rest = len(data.y_train) + len(data.y_val)
    assert abs(len(data.y_val) / rest - SPEC.split.validation_fraction) < 0.01
    assert data.x_train.shape[1] == data.x_val.shape[1] == len(SPEC.encoded_feature_names()) == 22


def test_split_is_seeded_and_stratified():
    first = load_site(site_file(SPEC, "cleveland"), SPEC, "cleveland")
    again = load_site(site_file(SPEC, "cleveland"), SPEC, "cleveland")

    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert abs(first.y_test.mean() - first.y_train.mean()) < 0.02


def test_question_marks_and_zero_cholesterol_are_missing():
    data = load_site(site_file(SPEC, "switzerland"), SPEC, "switzerland")
    chol = SPEC.encoded_feature_names().index("chol")

    # Every Switzerland row records cholesterol as 0, which the spec declares missing.
    assert np.isnan(data.x_train[:, chol]).all()
    frame = read_site_frame(site_file(SPEC, "hungary"), SPEC)
    assert frame["ca"].isna().sum() == 291


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_site(tmp_path / "nope.csv", SPEC, "x")


def test_non_numeric_value_names_file_column_and_row(tmp_path):
    source = site_file(SPEC, "cleveland").read_text().splitlines()
    source[4] = source[4].replace("63.0", "abc", 1) if "63.0" in source[4] else "abc" + source[4][4:]
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(source) + "\n")

    with pytest.raises(DataError, match=r"bad.csv: column 'age' row 5 has non-numeric value 'abc'"):
        load_site(bad, SPEC, "bad")
