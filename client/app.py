"""The hospital's Flower ClientApp: unpack a Message, call local logic, pack the reply.

Replies carry only the model's arrays and aggregate numbers (losses, counts, ε, metric
histograms); never a row, a label or a patient identifier.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.budget import load_history, save_history
from client.faults import mods_from_env
from client.site import load_this_site
from client.training import train_locally
from federation import keys
from federation.data import SiteData
from federation.evaluation import site_wire_metrics
from federation.metrics import binary_metrics, score_histograms
from federation.model import ModelSpec, build_model, predict_risk, unwrapped_state_dict
from federation.privacy import calibrate_noise, epsilon_spent, planned_steps, sample_rate
from federation.settings import RunSettings

app = ClientApp(mods=mods_from_env())  # no mod unless a test sets LHSFED_TEST_FAULTS


def _setup(message: Message, context: Context) -> tuple[RunSettings, SiteData]:
    settings = RunSettings.from_run_config(dict(context.run_config))
    return settings, load_this_site(dict(context.node_config), settings.data)


def _model(settings: RunSettings, arrays: ArrayRecord):
    spec = ModelSpec(name=settings.model.name, n_features=len(settings.data.encoded_feature_names()),
                     hidden=settings.model.hidden, dropout=settings.model.dropout)
    model = build_model(spec, seed=settings.seed)
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
                          rounds=settings.rounds)
    return calibrate_noise(target_epsilon=p.target_epsilon, delta=p.delta,
                           rate=sample_rate(n_train=n_train, batch_size=t.batch_size),
                           steps=steps, accountant=p.accountant)


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


@app.train()
def train(message: Message, context: Context) -> Message:
    """Local epochs (DP-SGD by default) from the global model; returns weights and ε so far."""
    settings, site = _setup(message, context)
    model = _model(settings, message.content[keys.ARRAYS])
    config = message.content.get(keys.CONFIG, ConfigRecord())
    server_round = int(config.get(keys.SERVER_ROUND, 1))
    noise = noise_for_run(settings, len(site.y_train)) if settings.privacy.enabled else None
    result = train_locally(
        model, site.x_train, site.y_train, train=settings.train, privacy=settings.privacy,
        noise_multiplier=noise, seed=settings.seed * 1000 + server_round,
        proximal_mu=float(config.get(keys.PROXIMAL_MU, 0.0)),
    )
    history = load_history(context.state) + result.history
    save_history(context.state, history)
    # Without DP nothing bounds what the update reveals: ε is infinite, not 0.
    epsilon = (epsilon_spent(history, delta=settings.privacy.delta, accountant=settings.privacy.accountant)
               if settings.privacy.enabled else float("inf"))
    return _reply(message, site.name, {
        keys.NUM_EXAMPLES: len(site.y_train),
        keys.TRAIN_LOSS: result.loss,
        keys.STEPS: sum(n for _, _, n in history),
        keys.EPSILON: epsilon,
        keys.DELTA: settings.privacy.delta,
        keys.NOISE_MULTIPLIER: noise or 0.0,
        keys.SAMPLE_RATE: sample_rate(n_train=len(site.y_train), batch_size=settings.train.batch_size),
    }, ArrayRecord(unwrapped_state_dict(model)))


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Global model on the site's held-out test split: metrics and score histograms."""
    settings, site = _setup(message, context)
    risk = predict_risk(_model(settings, message.content[keys.ARRAYS]), site.x_test)
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
        **site_wire_metrics(site.y_test, risk),
    })
