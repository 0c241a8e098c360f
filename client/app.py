"""The hospital's Flower ClientApp: unpack a Message, call local logic, pack the reply.

Replies carry only the model's arrays and aggregate numbers (losses, counts, ε, metric
histograms); never a row, a label or a patient identifier.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.budget import SiteBudget
from client.faults import mods_from_env
from client.secure_aggregation import secure_aggregation_mod
from client.site import load_this_site
from client.training import train_locally
from federation import keys
from federation.data import SiteData
from federation.evaluation import site_wire_metrics
from federation.metrics import binary_metrics, score_histograms
from federation.model import build_model, predict_risk, unwrapped_state_dict
from federation.privacy import History, calibrate_noise, planned_steps, sample_rate
from federation.settings import RunSettings, model_spec

app = ClientApp(mods=mods_from_env())  # no mod unless a test sets LHSFED_TEST_FAULTS


def _setup(message: Message, context: Context) -> tuple[RunSettings, SiteData]:
    settings = RunSettings.from_run_config(dict(context.run_config))
    return settings, load_this_site(dict(context.node_config), settings.data)


def _model(settings: RunSettings, arrays: ArrayRecord):
    model = build_model(model_spec(settings), seed=settings.seed)
    model.load_state_dict(arrays.to_torch_state_dict())
    return model


def _reply(message: Message, site: str, metrics: dict, arrays: ArrayRecord | None = None) -> Message:
    content = RecordDict({keys.METRICS: MetricRecord(metrics),
                          keys.SITE: ConfigRecord({keys.SITE_NAME: site})})
    if arrays is not None:
        content[keys.ARRAYS] = arrays
    return Message(content=content, reply_to=message)


def noise_for_run(settings: RunSettings, n_train: int) -> float:
    """One noise multiplier for the whole run, calibrated to the ε target over all rounds."""
    t, p = settings.train, settings.privacy
    steps = planned_steps(n_train=n_train, batch_size=t.batch_size, local_epochs=t.local_epochs,
                          rounds=settings.rounds, local_steps=t.local_steps)
    return calibrate_noise(target_epsilon=p.target_epsilon, delta=p.delta,
                           rate=sample_rate(n_train=n_train, batch_size=t.batch_size),
                           steps=steps, accountant=p.accountant)


def planned_round(settings: RunSettings, n_train: int, noise: float | None) -> History:
    """The accountant steps one round will take (σ = 0: DP off, no finite ε)."""
    t = settings.train
    steps = planned_steps(n_train=n_train, batch_size=t.batch_size, local_epochs=t.local_epochs,
                          rounds=1, local_steps=t.local_steps)
    return [(noise or 0.0, sample_rate(n_train=n_train, batch_size=t.batch_size), steps)]


def _budget_check(message: Message, context: Context):
    """Settings, site, noise, ledger and the site's refusal (None = may train) for this round."""
    settings, site = _setup(message, context)
    config = message.content.get(keys.CONFIG, ConfigRecord())
    server_round = int(config.get(keys.SERVER_ROUND, 1))
    noise = noise_for_run(settings, len(site.y_train)) if settings.privacy.enabled else None
    budget = SiteBudget.open(context, settings, site.name)
    refusal = budget.refusal(planned_round(settings, len(site.y_train), noise), server_round)
    return settings, site, noise, budget, server_round, refusal


def _refuse(message: Message, reason: str) -> Message:
    return Message(Error(code=keys.BUDGET_REFUSED, reason=reason), reply_to=message)


@app.query(keys.QUERY_BUDGET)
def budget(message: Message, context: Context) -> Message:
    """Will this site train the coming round? (asked before a secure-aggregation round)."""
    _, site, _, site_budget, _, refusal = _budget_check(message, context)
    if refusal:
        return _refuse(message, refusal)
    return _reply(message, site.name, {keys.NUM_EXAMPLES: len(site.y_train),
                                       keys.SITE_EPSILON: site_budget.site_epsilon()})


@app.query()
def query(message: Message, context: Context) -> Message:
    """Per-feature count, sum and sum of squares of observed training values."""
    _, site = _setup(message, context)
    observed = ~np.isnan(site.x_train)
    values = np.where(observed, site.x_train, 0.0).astype("float64")
    return _reply(message, site.name, {
        keys.STATS_COUNT: observed.sum(0).astype(float).tolist(),
        keys.STATS_SUM: values.sum(0).tolist(),
        keys.STATS_SUMSQ: (values**2).sum(0).tolist(),
    })


@app.train(mods=[secure_aggregation_mod])
def train(message: Message, context: Context) -> Message:
    """Local epochs (DP-SGD by default) from the global model; returns weights and ε so far.

    Refuses (error reply, no arrays) if the round would take the site past its ε cap.
    """
    settings, site, noise, budget, server_round, refusal = _budget_check(message, context)
    if refusal:
        return _refuse(message, refusal)
    config = message.content.get(keys.CONFIG, ConfigRecord())
    model = _model(settings, message.content[keys.ARRAYS])
    result = train_locally(
        model, site.x_train, site.y_train, train=settings.train, privacy=settings.privacy,
        noise_multiplier=noise, seed=settings.seed * 1000 + server_round,
        proximal_mu=float(config.get(keys.PROXIMAL_MU, 0.0)),
    )
    # Without DP nothing bounds what the update reveals: a σ = 0 entry makes ε infinite.
    rate = sample_rate(n_train=len(site.y_train), batch_size=settings.train.batch_size)
    entry = budget.record(result.history or [(0.0, rate, result.steps)], server_round)
    return _reply(message, site.name, {
        keys.NUM_EXAMPLES: len(site.y_train),
        keys.TRAIN_LOSS: result.loss,
        keys.STEPS: sum(n for _, _, n in budget.ledger.history(budget.run)),
        keys.EPSILON: entry.epsilon_run,
        keys.SITE_EPSILON: entry.epsilon_total,
        keys.DELTA: settings.privacy.delta,
        keys.NOISE_MULTIPLIER: noise or 0.0,
        keys.SAMPLE_RATE: rate,
    }, ArrayRecord(unwrapped_state_dict(model)))


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Global model on the site's held-out test split: metrics and score histograms."""
    settings, site = _setup(message, context)
    risk = predict_risk(_model(settings, message.content[keys.ARRAYS]), site.x_test)
    with_ci = bool(message.content.get(keys.CONFIG, ConfigRecord()).get(keys.WITH_CI, True))
    scores = binary_metrics(site.y_test, risk)
    pos, neg = score_histograms(site.y_test, risk)
    return _reply(message, site.name, {
        keys.NUM_EXAMPLES: len(site.y_test),
        keys.N_TEST: len(site.y_test),
        keys.N_POSITIVE: int(site.y_test.sum()),
        keys.EVAL_LOSS: scores["loss"],
        keys.AUROC: scores["auroc"],
        keys.AUPRC: scores["auprc"],
        keys.BRIER: scores["brier"],
        keys.SCORE_HIST_POS: pos,
        keys.SCORE_HIST_NEG: neg,
        **site_wire_metrics(site.y_test, risk, with_ci=with_ci),
    })
