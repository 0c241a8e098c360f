"""What a hospital sends back: model-shaped arrays and scalar metrics, never rows or ids."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    RecordDict,
)
from flwr.supercore.task_identity import TaskIdentity

from client.site import load_this_site
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.histogram_metrics import RELEASE_GROUPS
from federation.core.metrics import HIST_BINS
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config
from federation.core.subgroups import spec_levels
from server.federation_loop import model_spec
from tests.helpers.simulated_site import send_to_site

RUN_CONFIG = flatten_config(compose_config(["rounds=2"]))
SETTINGS = RunSettings.from_run_config(RUN_CONFIG)
EXACT_RUN = flatten_config(compose_config(["rounds=2", "privacy=off"]))  # a simulated site allows it


@pytest.fixture(autouse=True)
def _as_the_server_process(tmp_path, monkeypatch):
    """Messages are stamped with the sending process's identity, as the ServerApp's are; the
    simulated site keeps its ledger in the test's folder."""
    monkeypatch.setenv("LHSFED_LEDGER_DIR", str(tmp_path / "ledgers"))
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None


def _ask(
    message_type: str, site_index: int = 2, *, run_config: dict = RUN_CONFIG, **config
) -> tuple[Message, ArrayRecord]:
    arrays = ArrayRecord(build_model(model_spec(SETTINGS), seed=SETTINGS.seed).state_dict())
    content = RecordDict({wire.ARRAYS: arrays, wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: 1, **config})})
    return send_to_site(run_config, message_type, content, partition=site_index), arrays


def test_train_reply_holds_only_model_arrays_and_scalar_metrics():
    """Scalars, and the ledger's charged rounds: one round number per training of this run
    (accounting, not a value of any row)."""
    reply, sent = _ask(MessageType.TRAIN)

    content = reply.content
    assert set(content.array_records) == {wire.ARRAYS}
    returned = content[wire.ARRAYS].to_numpy_ndarrays()
    assert [a.shape for a in returned] == [a.shape for a in sent.to_numpy_ndarrays()]
    assert list(content[wire.ARRAYS].keys()) == list(sent.keys())
    metrics = dict(content[wire.METRICS])
    assert metrics.pop(wire.CHARGED_ROUNDS) == [1]
    assert all(isinstance(v, (int, float)) for v in metrics.values()), metrics
    assert set(content.config_records) == {wire.SITE}
    assert dict(content[wire.SITE]) == {wire.SITE_NAME: "switzerland"}


def test_evaluate_reply_holds_scalars_and_fixed_size_score_histograms():
    """Under DP the test split's reply is one release of its class histograms in coarse bins
    (each spread evenly over the wire's bins), as released (a noisy count may be negative):
    noisy, not the split's counts."""
    _ask(MessageType.TRAIN)  # a site evaluates only a round it trained
    reply, _ = _ask(MessageType.EVALUATE, **{wire.EVAL_SPLIT: "test"})
    site = load_this_site({"partition-id": 2, "lhsfed-mode": "simulation"}, SETTINGS.data)

    content = reply.content
    assert not content.array_records
    metrics = dict(content[wire.METRICS])
    lists = {k: v for k, v in metrics.items() if isinstance(v, list)}
    levels = [  # the spec's subgroup levels (the embedded spec marks sex and age bands): theirs too
        f"{wire.SUBGROUP_PREFIX}{feature}={level}/"
        for feature, names in spec_levels(SETTINGS.data).items()
        for level in names
    ]
    histograms = (wire.SCORE_HIST_POS, wire.SCORE_HIST_NEG)
    assert set(lists) == {prefix + key for prefix in ("", *levels) for key in histograms}
    width = HIST_BINS // RELEASE_GROUPS
    for counts in (lists[key] for key in histograms):
        assert len(counts) == HIST_BINS != len(site.y_test)
        assert all(isinstance(c, (int, float)) for c in counts)
        groups = np.asarray(counts).reshape(RELEASE_GROUPS, width)
        assert np.allclose(groups, groups[:, :1])  # one released value per coarse bin
    assert metrics[wire.RELEASE_NOISE_STD] > 1.0 and metrics[wire.N_TEST] == len(site.y_test)
    assert metrics[wire.N_POSITIVE] != int(site.y_test.sum())  # noisy (equal with probability 0)
    assert all(isinstance(v, (int, float)) for k, v in metrics.items() if k not in lists)


def test_evaluate_scores_each_split_in_one_metrics_pass(monkeypatch):
    """(Exact releases: a run without DP.) AUROC, AUPRC and Brier are computed once per scored
    split (test, validation), not once
    for the reply's headline keys and again for the modeler's metrics: every project module
    holding one of scikit-learn's functions gets a counting one."""
    import sklearn.metrics

    calls = {"roc_auc_score": 0, "average_precision_score": 0, "brier_score_loss": 0}
    for name in calls:
        real = getattr(sklearn.metrics, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        for module in list(sys.modules.values()):
            if (
                module.__name__.split(".")[0] in ("client", "federation")
                and getattr(module, name, None) is real
            ):
                monkeypatch.setattr(module, name, counted)
    _ask(MessageType.TRAIN, site_index=0, run_config=EXACT_RUN)
    for name in calls:
        calls[name] = 0

    reply, _ = _ask(MessageType.EVALUATE, site_index=0, run_config=EXACT_RUN)

    scored = dict(reply.content[wire.METRICS])
    splits = 1 + (wire.VALIDATION_PREFIX + wire.AUROC in scored)
    assert splits == 2  # this site releases its validation split: both are counted
    assert calls == {name: splits for name in calls}
