"""Issue P, acceptance 3: nothing leaves a site uncharged, and ε shown is the ledger's.

Every query kind is sent to the real ClientApp of one simulated site under DP (feature
statistics, train, validation and test evaluation with the spec's subgroups, personalize with
fine-tuning, compare, drift, the budget query); each reply that carries a statistic of the
site's rows has its own ledger row written before it was sent, and the replies that carry none
have none. ε is then recomputed from every ledger row with Opacus's own RDP accountant (not
the project's composition) and equals the site's reported lifetime ε. The wire guard refuses
a reply holding a key no release covers, whichever handler made it.
"""

from __future__ import annotations

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from opacus.accountants import RDPAccountant

from client.ledger import open_site_ledger
from client.site_policy import simulated_policy
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.model import build_model
from federation.core.settings import RunSettings, flatten_config, model_spec
from federation.core.weights_text import encode_state_dict
from server.comparison import Candidate, compare_content
from tests.helpers.simulated_site import send_to_site

SITE, NAME = 2, "switzerland"
pytestmark = pytest.mark.usefixtures("as_the_server_process")  # tests/unit/conftest.py


def _config(run: str, *overrides: str) -> dict:
    """A DP run with evaluation, personalize and subgroups (sex, age bands, chest pain type)."""
    cfg = compose_config(["rounds=2", "personalize=finetune", "personalize_steps=3", *overrides])
    features = {f["name"]: f for f in cfg["data"]["features"]}
    features["sex"]["subgroup"] = features["cp"]["subgroup"] = True
    features["age"]["subgroup_bins"] = [55]
    return flatten_config(cfg) | {"run.output_dir": run}


def _send(run_config: dict, message_type: str, content: RecordDict) -> Message:
    return send_to_site(run_config, message_type, content, partition=SITE)


def _content(arrays: ArrayRecord | None, server_round: int = 1, **config) -> RecordDict:
    content = RecordDict({wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: server_round, **config})})
    if arrays is not None:
        content[wire.ARRAYS] = arrays
    return content


def _ledger(tmp_path):
    return open_site_ledger(simulated_policy(NAME, run_folder=tmp_path), NAME, create_key=True)


def test_every_query_kind_is_charged_before_it_is_sent_and_epsilon_is_the_ledgers(tmp_path, monkeypatch):
    monkeypatch.setenv("LHSFED_LEDGER_DIR", str(tmp_path / "ledgers"))
    run = str(tmp_path / "run")
    config = _config(run)
    settings = RunSettings.from_run_config(config)
    spec = model_spec(settings)
    arrays = ArrayRecord(build_model(spec, seed=settings.seed).state_dict())
    rows = []

    def ask(message_type: str, content: RecordDict, run_config: dict = config) -> Message:
        before = len(_ledger(tmp_path).entries()) if (tmp_path / "ledgers").exists() else 0
        reply = _send(run_config, message_type, content)
        assert not reply.has_error(), (message_type, reply.error.reason if reply.has_error() else "")
        entries = _ledger(tmp_path).entries()
        rows.append((message_type, [e.release.split(" ")[0] or "training" for e in entries[before:]]))
        return reply

    stats = ask(MessageType.QUERY, _content(None, **{wire.QUERY_KIND: wire.QUERY_FEATURE_STATS}))
    ask(MessageType.TRAIN, _content(arrays, 1))
    val1 = ask(MessageType.EVALUATE, _content(arrays, 1))
    budget = ask(f"{MessageType.QUERY}.{wire.QUERY_BUDGET}", _content(None, 2))  # before a SecAgg+ round
    ask(MessageType.TRAIN, _content(arrays, 2))
    val2 = ask(MessageType.EVALUATE, _content(arrays, 2))
    test = ask(MessageType.EVALUATE, _content(arrays, 2, **{wire.EVAL_SPLIT: "test"}))
    personal = ask(f"{MessageType.QUERY}.{wire.QUERY_PERSONALIZE}", _content(arrays, 2))
    candidates = {
        role: Candidate(encode_state_dict(arrays.to_torch_state_dict()), run, spec.to_dict(), role, None)
        for role in ("champion", "challenger")
    }
    compare_run = config | {"run.output_dir": str(tmp_path / "compare"), "run.task": "compare"}
    compared = ask(f"{MessageType.QUERY}.{wire.QUERY_COMPARE}", compare_content(candidates), compare_run)
    drift_run = config | {"run.output_dir": str(tmp_path / "drift"), "run.task": "drift"}
    drifted = ask(
        f"{MessageType.QUERY}.{wire.QUERY_DRIFT}",
        RecordDict({wire.CONFIG: ConfigRecord({wire.DRIFT_RUN: run})}),
        drift_run,
    )

    assert rows == [
        (MessageType.QUERY, []),  # under DP no feature statistic is released
        (MessageType.TRAIN, ["training"]),
        (MessageType.EVALUATE, ["validation"]),
        (f"{MessageType.QUERY}.{wire.QUERY_BUDGET}", []),  # a yes and ε: the ledger's own numbers
        (MessageType.TRAIN, ["training"]),
        (MessageType.EVALUATE, ["validation"]),
        (MessageType.EVALUATE, ["subgroups", "test"]),  # the levels' release, then the split's
        (f"{MessageType.QUERY}.{wire.QUERY_PERSONALIZE}", ["training", "test"]),  # fine-tuning, metrics
        (f"{MessageType.QUERY}.{wire.QUERY_COMPARE}", ["compare"]),
        (f"{MessageType.QUERY}.{wire.QUERY_DRIFT}", ["drift"]),
    ]
    assert not dict(stats.content[wire.METRICS])
    for reply in (val1, val2, test, personal, compared, drifted):
        assert reply.content[wire.METRICS][wire.RELEASE_NOISE_STD] > 0
    assert set(budget.content[wire.METRICS]) == {wire.NUM_EXAMPLES, wire.SITE_EPSILON}
    levels = {k.rsplit("/", 1)[0] for k in test.content[wire.METRICS].keys() if k.startswith("subgroup/")}
    assert len(levels) == 2 + 4 + 2  # every level of the spec: sex, cp, age bands
    assert test.content[wire.METRICS][wire.SUBGROUP_NOISE_STD] > 0

    entries = _ledger(tmp_path).entries()
    # the test message's two releases: its reply's ε is the ledger's right after the second
    test_row = next(e for e in entries if e.release.startswith("test split of"))
    assert test.content[wire.METRICS][wire.SITE_EPSILON] == test_row.epsilon_total
    accountant = RDPAccountant()
    accountant.history = [e.accountant_step for e in entries]
    recomputed = accountant.get_epsilon(delta=entries[-1].delta)
    assert drifted.content[wire.METRICS][wire.SITE_EPSILON] == pytest.approx(recomputed, rel=1e-6)
    # the training run's own ε: its rows only, within its target, as its last reply said
    mine = RDPAccountant()
    mine.history = [e.accountant_step for e in entries if e.run == run]
    assert personal.content[wire.METRICS][wire.EPSILON] == pytest.approx(
        mine.get_epsilon(delta=entries[-1].delta), rel=1e-6
    )
    assert mine.get_epsilon(delta=entries[-1].delta) <= settings.privacy.target_epsilon * (1 + 1e-6)


def test_the_wire_guard_refuses_a_reply_key_no_release_covers(tmp_path, monkeypatch):
    """Attack on the project itself: a handler change that adds an exact number to a reply. The
    guard (one place for every reply kind) refuses the reply; control: unchanged, it is sent."""
    import client.app

    monkeypatch.setenv("LHSFED_LEDGER_DIR", str(tmp_path / "ledgers"))
    config = _config(str(tmp_path / "run"))
    settings = RunSettings.from_run_config(config)
    arrays = ArrayRecord(build_model(model_spec(settings), seed=settings.seed).state_dict())
    _send(config, MessageType.TRAIN, _content(arrays, 1))
    sent = _send(config, MessageType.EVALUATE, _content(arrays, 1))  # control
    assert not sent.has_error()

    real = client.app._reply

    def leaky(message, site, metrics, arrays=None):
        return real(message, site, {**metrics, "exact-positives": 7.0}, arrays)

    monkeypatch.setattr(client.app, "_reply", leaky)
    _send(config, MessageType.TRAIN, _content(arrays, 2))
    refused = _send(config, MessageType.EVALUATE, _content(arrays, 2))

    assert refused.has_error() and refused.error.code == wire.UNCHARGED_RELEASE
    assert "exact" not in refused.error.reason and "7" not in refused.error.reason
