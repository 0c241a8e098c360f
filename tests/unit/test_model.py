"""The risk model is Opacus-compatible and imputes missing values inside the module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.validators import ModuleValidator

from federation.core.model import (
    ModelSpec,
    build_model,
    predict_risk,
    unwrapped_state_dict,
)


@pytest.mark.parametrize("name", ["mlp", "logreg"])
def test_models_pass_opacus_validation(name):
    model = build_model(ModelSpec(name=name, n_features=5))

    assert ModuleValidator.validate(model, strict=False) == []


def test_missing_values_are_imputed_at_the_mean_and_flagged():
    model = build_model(ModelSpec(name="logreg", n_features=2))
    model.preprocess.set_statistics(np.array([10.0, 0.0]), np.array([2.0, 1.0]))

    out = model.preprocess(torch.tensor([[np.nan, 3.0], [14.0, np.nan]]))

    torch.testing.assert_close(out, torch.tensor([[0.0, 3.0, 1.0, 0.0], [2.0, 0.0, 0.0, 1.0]]))
    assert np.isfinite(predict_risk(model, np.array([[np.nan, np.nan]], dtype="float32"))).all()


def test_weights_are_exchanged_without_the_opacus_prefix():
    model = build_model(ModelSpec(name="mlp", n_features=3))
    wrapped = GradSampleModule(model)

    keys = set(unwrapped_state_dict(wrapped))

    assert keys == set(model.state_dict())
    assert not any(k.startswith("_module.") for k in keys)
