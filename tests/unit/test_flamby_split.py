"""The ``data=uci_heart_flamby`` preset reproduces FLamby's Fed-Heart-Disease split exactly.

FLamby's train part is our train + validation (``split.validation_fraction`` of it is held
out to choose the round); its test part is ours, row for row.
"""

from __future__ import annotations

import numpy as np
import pytest

from federation.coordinator.flwr_app_config import compose_config
from federation.core.data import load_site, site_file
from federation.core.dataspec import parse_dataset_spec

SPEC = parse_dataset_spec(compose_config(["data=uci_heart_flamby"])["data"])
# FLamby's published per-centre (train, test) sizes; our train + validation is its train.
SIZES = {"cleveland": (199, 104), "hungary": (172, 89), "switzerland": (30, 16), "va": (85, 45)}


@pytest.fixture(scope="module")
def sites():
    return {name: load_site(site_file(SPEC, name), SPEC, name) for name in SPEC.site_names}


def test_thirteen_features_dummy_coded_without_the_first_level():
    names = SPEC.encoded_feature_names()
    assert len(names) == 13
    assert "cp=1" not in names and "restecg=0" not in names
    assert {"cp=2", "cp=3", "cp=4", "restecg=1", "restecg=2"} <= set(names)


@pytest.mark.parametrize("site", list(SIZES))
def test_per_centre_train_test_sizes_match_flamby(sites, site):
    data = sites[site]
    assert (len(data.y_train) + len(data.y_val), len(data.y_test)) == SIZES[site]
    assert data.x_train.shape[1] == data.x_val.shape[1] == data.x_test.shape[1] == 13
    assert not np.isnan(data.x_train).any() and not np.isnan(data.x_test).any()
    assert not np.isnan(data.x_val).any()


def test_each_centre_is_standardized_by_its_own_training_rows(sites):
    for data in sites.values():
        spread = data.x_train.std(axis=0, ddof=1)
        assert np.allclose(data.x_train.mean(axis=0), 0.0, atol=1e-5)
        # constant columns (Switzerland's cholesterol is all 0) stay 0, the rest have std 1
        assert np.all((np.abs(spread - 1.0) < 1e-4) | (spread < 1e-6))


def test_switzerland_with_one_negative_is_split_unstratified_the_others_stratified(sites):
    swiss = sites["switzerland"]
    assert swiss.y_train.sum() + swiss.y_val.sum() + swiss.y_test.sum() == 45  # 46 rows, 1 negative
    cleveland = sites["cleveland"]
    train_rate, test_rate = cleveland.y_train.mean(), cleveland.y_test.mean()
    assert abs(train_rate - test_rate) < 0.01
