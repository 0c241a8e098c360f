"""Closed-form DP-SGD for the logreg model is Opacus's DP-SGD: same per-sample gradients, same
clipped and scaled step, same accounting, noise from the site's randomness only."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant
from opacus.optimizers import DPOptimizer
from torch import nn

from client.linear_dp import (
    CLOSED_FORM,
    ClosedFormDPStep,
    linear_head,
    per_sample_gradients,
    per_sample_norms,
)
from client.site_randomness import SiteRandomness, use_site_noise
from client.training import GRAD_SAMPLE_MODE, default_grad_sample_mode, local_optimizer, train_locally
from federation.core.model import ModelSpec, build_model
from federation.core.privacy import epsilon_spent
from federation.core.settings import PrivacySettings, TrainSettings

D = 6


def _rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = (3 * rng.normal(size=(n, D))).astype("float32")
    x[::5, 2] = np.nan  # missing values: the missing-flag half of the features is non-zero
    return x, (rng.random(n) < 0.4).astype("float32")


def _model():
    model = build_model(ModelSpec("logreg", D), seed=1)
    with torch.no_grad():
        model.preprocess.set_statistics(np.full(D, 0.5), np.full(D, 2.0))
        model.head[0].weight.normal_(0, 0.5)
    return model


def _opacus_grad_samples(model, xb, yb):
    gsm = GradSampleModule(model, loss_reduction="mean")  # hooks mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "full backward hook ... no inputs require gradients"
        nn.BCEWithLogitsLoss()(gsm(xb), yb).backward()
    return gsm, [p.grad_sample for p in gsm.parameters() if p.requires_grad]


def test_closed_form_per_sample_gradients_equal_opacus_hooks_and_torch_func():
    x, y = map(torch.as_tensor, _rows(32))
    model = _model()
    with torch.no_grad():
        features = model.preprocess(x)
        residual = torch.sigmoid(model(x)) - y
    closed = per_sample_gradients(features, residual)

    plain = _model()  # torch.func on a model without Opacus's hooks
    params = {name: p.detach() for name, p in plain.named_parameters()}

    def loss_of_row(p, xi, yi):
        logit = torch.func.functional_call(plain, p, (xi[None],))
        return nn.functional.binary_cross_entropy_with_logits(logit, yi[None])

    func = torch.func.vmap(torch.func.grad(loss_of_row), in_dims=(None, 0, 0))(params, x, y)
    _, opacus = _opacus_grad_samples(model, x, y)
    for ours, theirs, name in zip(closed, opacus, ("head.0.weight", "head.0.bias"), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(ours, func[name], atol=1e-6, rtol=1e-6)
    # the norms the step clips by, from the product form, are those of Opacus's gradients
    flat = torch.cat([g.reshape(len(g), -1) for g in opacus], dim=1)
    torch.testing.assert_close(per_sample_norms(features, residual), flat.norm(dim=1), atol=1e-6, rtol=1e-6)


def _closed_form_steps(model, optimizer, batches, *, sigma, clip, key, ebs):
    step = ClosedFormDPStep(
        model,
        optimizer,
        noise_multiplier=sigma,
        max_grad_norm=clip,
        sample_rate=0.25,
        expected_batch_size=ebs,
        randomness=SiteRandomness(key=key),
        accountant=RDPAccountant(),
    )
    return [step(xb, yb) for xb, yb in batches], step.accountant


def _opacus_steps(model, optimizer, batches, *, sigma, clip, key, ebs):
    gsm = GradSampleModule(model, loss_reduction="mean")
    dp = DPOptimizer(optimizer, noise_multiplier=sigma, max_grad_norm=clip, expected_batch_size=ebs)
    use_site_noise(dp, SiteRandomness(key=key))
    for xb, yb in batches:
        dp.zero_grad(set_to_none=True)
        logits = gsm(xb)
        loss = nn.BCEWithLogitsLoss()(logits, yb) if len(yb) else logits.sum() * 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss.backward()
        dp.step()


@pytest.mark.parametrize("sigma", [0.0, 1.3])  # 1.3: both draw the same site noise (same key)
@pytest.mark.parametrize(
    "train",
    [
        TrainSettings(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.01),
        TrainSettings(optimizer="adam", lr=0.05, weight_decay=0.01),
    ],
    ids=["sgd-momentum", "adam"],
)
def test_closed_form_steps_update_the_weights_as_opacus_dp_optimizer(sigma, train):
    x, y = map(torch.as_tensor, _rows(24))
    # clip 1.0: some rows' gradients are clipped, some are not; an empty Poisson batch in between
    batches = [(x[:10], y[:10]), (x[:0], y[:0]), (x[10:], y[10:])]
    grads = torch.cat([g.reshape(len(g), -1) for g in _opacus_grad_samples(_model(), x, y)[1]], dim=1)
    assert 0 < int((grads.norm(dim=1) > 1.0).sum()) < len(y)
    kwargs = {"sigma": sigma, "clip": 1.0, "key": bytes(range(32)), "ebs": 6}

    ours = _model()
    losses, _ = _closed_form_steps(ours, local_optimizer(ours, train), batches, **kwargs)
    theirs = _model()
    _opacus_steps(theirs, local_optimizer(theirs, train), batches, **kwargs)

    assert losses[1] == 0.0 and losses[0] > 0
    for name, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, atol=1e-6, rtol=1e-6)
    assert not torch.equal(ours.head[0].weight, _model().head[0].weight)


def _train(mode=None, *, key=bytes(32), torch_seed=0, model="logreg", epochs=3, sigma=1.1):
    x, y = _rows(40)
    net = build_model(ModelSpec(model, D), seed=1)
    torch.manual_seed(torch_seed)
    result = train_locally(
        net,
        x,
        y,
        train=TrainSettings(local_epochs=epochs, batch_size=4, optimizer="sgd", lr=0.1),
        privacy=PrivacySettings(max_grad_norm=0.5),
        noise_multiplier=sigma,
        seed=5,
        proximal_mu=0.1,
        grad_sample_mode=mode,
        randomness=SiteRandomness(key=key),
    )
    return result, net.state_dict()


def test_logreg_defaults_to_the_closed_form_and_trains_as_opacus_hooks():
    assert default_grad_sample_mode(build_model(ModelSpec("logreg", D))) == CLOSED_FORM
    assert default_grad_sample_mode(build_model(ModelSpec("mlp", D))) == GRAD_SAMPLE_MODE
    assert linear_head(build_model(ModelSpec("mlp", D))) is None

    closed, closed_weights = _train()  # default mode; same site key as the Opacus run below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hooks, hooks_weights = _train("hooks")

    assert closed.steps == hooks.steps == 30
    assert closed.history == hooks.history
    assert abs(closed.loss - hooks.loss) < 1e-6
    for name, value in hooks_weights.items():
        torch.testing.assert_close(closed_weights[name], value, atol=1e-5, rtol=1e-5)


def test_closed_form_history_and_epsilon_are_opacus_accountants():
    result, _ = _train(epochs=3, sigma=1.1)  # 40 rows, batch 4: q = 0.1, 10 steps an epoch

    accountant = RDPAccountant()
    for _ in range(30):
        accountant.step(noise_multiplier=1.1, sample_rate=0.1)
    assert result.history == accountant.history == [(1.1, 0.1, 30)]
    expected = accountant.get_epsilon(delta=1e-5)
    assert math.isclose(epsilon_spent(result.history, delta=1e-5), expected, rel_tol=1e-12)


def test_closed_form_noise_comes_from_the_site_key_not_torchs_seed():
    _, weights = _train(key=bytes(32), torch_seed=0)
    _, same_key_other_torch_seed = _train(key=bytes(32), torch_seed=123)
    _, other_key = _train(key=bytes([1] * 32), torch_seed=0)

    for name, value in weights.items():
        assert torch.equal(same_key_other_torch_seed[name], value)
    assert not torch.allclose(other_key["head.0.weight"], weights["head.0.weight"], atol=1e-3)


def test_closed_form_refuses_a_model_with_hidden_layers():
    with pytest.raises(ValueError, match="only trainable layer"):
        _train(CLOSED_FORM, model="mlp", epochs=1)
