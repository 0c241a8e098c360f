"""The hospital's Flower ClientApp: unpack a Message, apply the site's rules, pack the reply.

The site decides everything it does with patient data: its policy (:mod:`client.site_policy`),
its dataset spec and split (:mod:`client.site_spec`), its randomness
(:mod:`client.site_randomness`) and its ledger (:mod:`client.budget`). Replies carry only the
model's arrays and aggregate numbers (counts, ε, metric histograms with no bin under the
site's minimum cell size); never a row, a label, an identifier, nor, under DP, an exact loss.
Any failure answers with a code and a category (:mod:`client.site_errors`).
"""

from __future__ import annotations

# isort: off
import federation.core.eager_imports  # noqa: F401 - first, before Flower's threads race (its docstring)
# isort: on

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from client.budget import FINE_TUNING_ROUND, SiteBudget, run_folder, run_identity
from client.comparison import checked_spec, comparison_metrics, model_refusal, split_refusal
from client.dp_release import charged_training, release_guard_mod
from client.drift import drift_scores
from client.drift_reference import load_reference, record_reference, site_rows
from client.glm_round import coefficients_of, glm_sums
from client.kept_updates import keep_update, kept_update
from client.model_record import (
    ONE_PER_ROUND,
    model_digest,
    record_model,
    record_training,
    sent_in_run,
    trainings,
    was_sent,
)
from client.personalize import (
    NOT_RECORDED,
    ONCE_PER_RUN,
    compared_metrics,
    fine_tune,
    personalized_path,
    recalibrate,
    save_personalized,
    trained_refusal,
)
from client.release_replies import (
    difference_interval,
    drift_release,
    exact_release,
    query_noise,
    split_release,
    two_model_release,
)
from client.releases import (
    evaluation_refusal,
    released_feature_statistics,
    released_score_histograms,
)
from client.run_plan import plan_refusal, recorded_plan
from client.secure_aggregation import secure_aggregation_mod
from client.site import load_this_site, site_location
from client.site_errors import EvaluationRefused, RunConfigError, site_error_mod
from client.site_policy import SitePolicy, site_policy
from client.site_randomness import SiteRandomness
from client.site_spec import site_spec
from client.subgroup_release import subgroup_release
from client.subgroups import shared_test_histograms, site_subgroups, subgroup_wire_metrics
from client.training import train_locally
from federation.core import wire
from federation.core.data import SiteData
from federation.core.dataspec import DatasetSpec
from federation.core.errors import ConfigError, PrivacyBudgetError
from federation.core.metrics import site_wire_metrics
from federation.core.model import build_model, predict_risk, unwrapped_state_dict
from federation.core.privacy import TEST, VALIDATION
from federation.core.settings import GLM, RunSettings, model_spec

log = logging.getLogger(__name__)
# The error mod is outermost: nothing raised below it leaves the site as text. The release
# guard inside it: no reply key leaves unless a charged release covers it (client.dp_release).
app = ClientApp(mods=[site_error_mod, release_guard_mod])


@dataclass(frozen=True)
class SiteView:
    """One message's view of this site: the run's settings, the site's policy and data."""

    settings: RunSettings
    policy: SitePolicy
    spec: DatasetSpec  # the site's own (equal to the run's, or the run was refused)
    data: SiteData

    def budget(self, context: Context) -> SiteBudget:
        return SiteBudget.open(context, self.settings, self.policy, self.data.name, len(self.data.y_train))


def _settings(context: Context) -> RunSettings:
    try:
        return RunSettings.from_run_config(dict(context.run_config))
    except ConfigError as err:
        raise RunConfigError(str(err)) from None


def _open_site(context: Context) -> SiteView:
    """Settings, then the site's own policy and spec, then its data read with that spec."""
    settings = _settings(context)
    node_config = dict(context.node_config)
    name, _ = site_location(node_config, settings.data)
    policy = site_policy(node_config, name, run_folder=run_folder(settings, context))
    spec = site_spec(policy.spec_path, settings.data)
    return SiteView(settings, policy, spec, load_this_site(node_config, spec))


def _model(settings: RunSettings, arrays: ArrayRecord):
    model = build_model(model_spec(settings), seed=settings.seed)
    model.load_state_dict(arrays.to_torch_state_dict())
    return model


def _round(message: Message) -> int:
    return int(message.content.get(wire.CONFIG, ConfigRecord()).get(wire.SERVER_ROUND, 1))


def _reply(message: Message, site: str, metrics: dict, arrays: ArrayRecord | None = None) -> Message:
    content = RecordDict(
        {wire.METRICS: MetricRecord(metrics), wire.SITE: ConfigRecord({wire.SITE_NAME: site})}
    )
    if arrays is not None:
        content[wire.ARRAYS] = arrays
    return Message(content=content, reply_to=message)


@app.query(wire.QUERY_BUDGET)
def budget(message: Message, context: Context) -> Message:
    """Will this site train the coming round? (asked before a secure-aggregation round)."""
    site = _open_site(context)
    site_budget = site.budget(context)
    refusal = site_budget.refusal(
        site.settings, site_budget.noise(site.settings, _round(message)), _round(message)
    )
    if refusal:
        raise PrivacyBudgetError(refusal)
    return _reply(
        message,
        site.data.name,
        {wire.NUM_EXAMPLES: len(site.data.y_train), wire.SITE_EPSILON: site_budget.site_epsilon()},
    )


@app.query(wire.QUERY_CHARGES)
def charges(message: Message, context: Context) -> Message:
    """What this site's ledger charged the run so far: the round of each training and the
    run's and the site's ε. Asked by a resumed run, whose stopped attempt may have had a
    round trained here that no aggregate will use (server.unaggregated). Accounting only:
    no patient value, no charge."""
    site = _open_site(context)
    site_budget = site.budget(context)
    return _reply(
        message,
        site.data.name,
        {
            wire.CHARGED_ROUNDS: site_budget.charged_rounds(),
            wire.EPSILON: site_budget.run_epsilon(),
            wire.SITE_EPSILON: site_budget.site_epsilon(),
        },
    )


@app.query()
def query(message: Message, context: Context) -> Message:
    """Per-feature count, sum and sum of squares of observed training values, only in a run
    the site allows without DP (an exact release, charged as such; a feature with a cell under
    the site's minimum cell size is withheld). Under DP the site withholds them all: the
    spec's ranges standardize instead, at no ε (server.feature_stats.spec_prior)."""
    site = _open_site(context)
    settings = site.settings
    if settings.privacy.enabled or site.policy.require_dp:
        return _reply(message, site.data.name, {})
    stats = released_feature_statistics(site.data.x_train, site.spec, min_cell=site.policy.min_cell_size)
    exact_release(site.budget(context), settings, 0, "feature statistics (exact: DP off)", stats)
    return _reply(message, site.data.name, stats)


@app.train(mods=[secure_aggregation_mod])
def train(message: Message, context: Context) -> Message:
    """Local epochs (DP-SGD by default) from the global model; returns weights and ε so far.

    The round's ε is reserved against the site's cap before any step (refused: an error
    reply, no arrays). Under DP no training loss is sent: it is an exact function of the
    sampled rows.
    """
    site = _open_site(context)
    settings, data, server_round = site.settings, site.data, _round(message)
    budget = site.budget(context)
    received = model_digest(message.content[wire.ARRAYS])
    # Never under secure aggregation: the same update again, summed with another set of sites,
    # would let the server subtract it out of the sums (a fresh training is a fresh draw).
    keeps = not settings.privacy.secure_aggregation
    kept = kept_update(site.policy, budget.run, server_round, received) if keeps else None
    if kept is not None:  # this round from this model was trained and paid for: send it again
        return _sent_again(message, site, budget, settings, server_round, kept)
    noise = budget.noise(settings, server_round)
    model = _model(settings, message.content[wire.ARRAYS])  # a bad model fails before spending
    planned = budget.reserve(settings, noise, server_round)
    charged_training()  # the reservation covers the weights sent back
    record_training(site.policy, budget.run, server_round)  # each training may have its model
    config = message.content.get(wire.CONFIG, ConfigRecord())
    result = train_locally(
        model,
        data.x_train,
        data.y_train,
        train=settings.train,
        privacy=settings.privacy,
        noise_multiplier=noise,
        seed=settings.seed * 1000 + server_round,  # seed: DP off only
        proximal_mu=float(config.get(wire.PROXIMAL_MU, 0.0)),
    )
    if settings.privacy.enabled and sum(n for *_, n in result.history) != sum(e.steps for e in planned):
        log.error("round %s took %s DP steps, %s were reserved", server_round, result.history, planned)
    metrics = {
        wire.NUM_EXAMPLES: len(data.y_train),
        wire.STEPS: budget.run_steps(),
        wire.EPSILON: planned[-1].epsilon_run,
        wire.SITE_EPSILON: planned[-1].epsilon_total,
        wire.CHARGED_ROUNDS: budget.charged_rounds(),
        wire.DELTA: budget.delta,
        wire.NOISE_MULTIPLIER: noise or 0.0,
        wire.SAMPLE_RATE: budget.rate(settings),
    }
    if not settings.privacy.enabled:
        metrics[wire.TRAIN_LOSS] = result.loss
    # The site's own drift reference of this run (first training message only; kept at the site).
    record_reference(site.policy, run_identity(settings, context), data, site.spec)
    state = unwrapped_state_dict(model)
    if keeps:
        keep_update(site.policy, budget.run, server_round, received, state, metrics)
    return _reply(message, data.name, metrics, ArrayRecord(state))


def _sent_again(
    message: Message, site: SiteView, budget: SiteBudget, settings: RunSettings, server_round: int, kept
) -> Message:
    """The update kept for this round and global model (client.kept_updates), at no new charge.

    The run's plan and the site's policy are checked as for a training (a policy tightened
    since, say require-dp, refuses it too); every accounting number is the ledger's now. In a
    resumed run the round may get one more model to evaluate, once (its aggregate can differ
    from the stopped attempt's, which the site may have evaluated already): as a training
    again would have allowed, never more."""
    state, metrics = kept
    noise = float(metrics.get(wire.NOISE_MULTIPLIER) or 0.0) or None
    refused = budget.plan_refusal(settings) or budget.round_refusal(settings, server_round)
    refused = refused or budget.run_refusal(settings, noise)
    if refused:
        raise PrivacyBudgetError(refused)
    charged_training()  # covered by the reservation of the training that computed it
    if settings.resume and trainings(site.policy, budget.run, server_round) == 1:
        record_training(site.policy, budget.run, server_round)
    log.info("round %s: this model's update was computed before; sent again, nothing charged", server_round)
    metrics = {
        **metrics,
        wire.STEPS: budget.run_steps(),
        wire.EPSILON: budget.run_epsilon(),
        wire.SITE_EPSILON: budget.site_epsilon(),
        wire.CHARGED_ROUNDS: budget.charged_rounds(),
        wire.DELTA: budget.delta,
    }
    return _reply(message, site.data.name, metrics, ArrayRecord(state))


@app.train(wire.GLM_ACTION)
def glm_round(message: Message, context: Context) -> Message:
    """One Newton round of ``model=glm`` (DP off only): the site's exact gradient, Hessian and
    loss sums over its training rows at each λ's coefficients, and its validation loss sums.

    A training round in the ledger (z = 0, as DP-off training is: the round's model may then be
    evaluated) and an exact release covering the sums, both refused where the site requires DP.
    """
    site = _open_site(context)
    settings, data, server_round = site.settings, site.data, _round(message)
    if settings.model.name != GLM or settings.privacy.enabled:
        raise RunConfigError("a glm round is for a model=glm run without DP; launch through lhsfed-train")
    model = _model(settings, message.content[wire.ARRAYS])  # its preprocessing: the design matrix
    width = 1 + 2 * model.spec.n_features
    coefficients = coefficients_of(message.content.array_records.get(wire.GLM_COEFFICIENTS), width)
    budget = site.budget(context)  # bad arrays fail above, before anything is recorded
    # The round in the ledger as one exact pass over the training rows (no DP-SGD step).
    planned = budget.reserve(settings, budget.noise(settings, server_round), server_round, [(0.0, 1.0, 1)])
    record_training(site.policy, budget.run, server_round)
    released = glm_sums(
        model, data, coefficients, min_rows=site.policy.min_eval_rows, min_cell=site.policy.min_cell_size
    )
    exact_release(
        budget, settings, server_round, f"glm sums of round {server_round} (exact: DP off)", released
    )
    metrics = {
        wire.NUM_EXAMPLES: len(data.y_train),
        wire.EPSILON: planned[-1].epsilon_run,
        wire.SITE_EPSILON: planned[-1].epsilon_total,
        wire.CHARGED_ROUNDS: budget.charged_rounds(),
        **released,
    }
    record_reference(site.policy, run_identity(settings, context), data, site.spec)
    return _reply(message, data.name, metrics)


def _evaluation_refusal(site: SiteView, context: Context, message: Message) -> str | None:
    """Why this site will not score the model this round (None: it will).

    A round the site trained has one model: the first one it is sent to evaluate is recorded
    (client.model_record, so compare and personalize may use it later), any other refused.
    It is recorded even when the test split is too small to release: nothing is released.
    """
    budget, server_round = site.budget(context), _round(message)
    if not budget.trained(server_round):  # the fine-tuning entry (round 0) is no trained round
        return f"site did not train round {server_round}"
    digest = model_digest(message.content[wire.ARRAYS])
    allowed = max(1, trainings(site.policy, budget.run, server_round))  # a resume may redo a round
    if not record_model(site.policy, budget.run, server_round, digest, allowed=allowed):
        return ONE_PER_ROUND
    if site.settings.privacy.enabled:  # a DP release: noise, not a split's size, bounds it
        return None
    exact_refused = budget.exact_refusal(site.settings)
    if exact_refused:  # before the split's counts are read: the refusal's wording is a bit too
        return exact_refused
    too_small = evaluation_refusal(
        site.data.y_test, min_rows=site.policy.min_eval_rows, min_cell=site.policy.min_cell_size
    )
    if too_small:
        return too_small.removeprefix("evaluation refused ").replace("(", "", 1).replace(")", "", 1)
    return None


def _scores(y, risk, *, min_cell: int, with_ci: bool) -> dict:
    """What a site releases about one split: metrics and k-anonymous score histograms."""
    pos, neg = released_score_histograms(y, risk, min_cell=min_cell)
    return {
        wire.NUM_EXAMPLES: len(y),
        wire.N_TEST: len(y),
        wire.N_POSITIVE: int(y.sum()),
        wire.SCORE_HIST_POS: pos,
        wire.SCORE_HIST_NEG: neg,
        **site_wire_metrics(y, risk, min_cell=min_cell, with_ci=with_ci, seed=SiteRandomness().seed()),
    }


def _validation_scores(site: SiteView, model) -> dict:
    """The validation split's metrics under ``val-`` keys; none if it is too small to release."""
    data, policy = site.data, site.policy
    if evaluation_refusal(data.y_val, min_rows=policy.min_eval_rows, min_cell=policy.min_cell_size):
        return {}
    scores = _scores(
        data.y_val, predict_risk(model, data.x_val), min_cell=policy.min_cell_size, with_ci=False
    )
    return {wire.VALIDATION_PREFIX + k: v for k, v in scores.items() if k != wire.NUM_EXAMPLES}


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """Global model on the site's validation rows (chooses the round) and its held-out test
    rows (reported, never used for a choice): metrics and score histograms of each."""
    site = _open_site(context)
    settings, data = site.settings, site.data
    refusal = _evaluation_refusal(site, context, message)
    if refusal:
        raise EvaluationRefused(refusal)
    model = _model(settings, message.content[wire.ARRAYS])
    with_ci = bool(message.content.get(wire.CONFIG, ConfigRecord()).get(wire.WITH_CI, True))
    budget, server_round = site.budget(context), _round(message)
    if settings.privacy.enabled:
        return _reply(message, data.name, _dp_evaluation(site, budget, model, message, with_ci))
    risk = predict_risk(model, data.x_test)
    test = _scores(data.y_test, risk, min_cell=site.policy.min_cell_size, with_ci=with_ci)
    released = {**test, **_subgroup_scores(site, risk), **_validation_scores(site, model)}
    exact_release(budget, settings, server_round, f"evaluate round {server_round} (exact: DP off)", released)
    return _reply(message, data.name, released)


def _dp_evaluation(site: SiteView, budget: SiteBudget, model, message: Message, with_ci: bool) -> dict:
    """The release of the split the message asks (``eval-split``: validation each round, the
    test split once per run: client.release_replies.split_release). With the test split, where
    the spec marks subgroup features, their levels' release too (client.subgroup_release),
    charged first: a message past the plan's one is refused before the test release is spent."""
    data = site.data
    kind = str(message.content.get(wire.CONFIG, ConfigRecord()).get(wire.EVAL_SPLIT, VALIDATION))
    if kind not in (VALIDATION, TEST):
        raise RunConfigError(f"{wire.EVAL_SPLIT} must be {VALIDATION} or {TEST}; launch through lhsfed-train")
    y, x = (data.y_test, data.x_test) if kind == TEST else (data.y_val, data.x_val)
    if len(y) == 0:
        return {}
    risk, server_round = predict_risk(model, x), _round(message)
    subgroups = {}
    if kind == TEST and site.spec.subgroup_features:
        subgroups = subgroup_release(budget, site.settings, site.spec, x, y, risk, server_round=server_round)
    split = split_release(
        budget, site.settings, y, risk, kind=kind, server_round=server_round, with_ci=with_ci
    )
    return subgroups | split  # the split's ε keys: the ledger after both releases


def _subgroup_scores(site: SiteView, risk) -> dict:
    """Per-level metrics of the test rows (none unless the spec marks subgroup features), and
    the test histograms on their own k-grouping, which the levels' partition coarsens (the
    same as _scores': marking subgroups no longer coarsens them, issue T.1)."""
    if not site.spec.subgroup_features:
        return {}
    x, y, k = site.data.x_test, site.data.y_test, site.policy.min_cell_size
    found = site_subgroups(x, y, risk, site.spec, min_cell=k, threshold=0.5, seed=SiteRandomness().seed())
    return subgroup_wire_metrics(found) | shared_test_histograms(x, y, risk, site.spec, min_cell=k)


_COMPARED = (
    (wire.CHAMPION_ARRAYS, wire.CHAMPION_RUN, wire.CHAMPION_MODEL_SPEC),
    (wire.CHALLENGER_ARRAYS, wire.CHALLENGER_RUN, wire.CHALLENGER_MODEL_SPEC),
)


def _compared_model(settings: RunSettings, config: ConfigRecord, arrays: ArrayRecord, spec_key: str):
    """A model of the comparison, built from the spec its query names (the run's by default),
    only once that spec's shapes are the arrays' (client.comparison.checked_spec)."""
    try:
        shapes = {name: tuple(array.shape) for name, array in arrays.items()}
        text = str(config[spec_key]) if spec_key in config else json.dumps(model_spec(settings).to_dict())
        model = build_model(checked_spec(text, shapes), seed=settings.seed)
        model.load_state_dict(arrays.to_torch_state_dict())
    except (TypeError, ValueError, RuntimeError):
        raise RunConfigError(
            f"{spec_key}: not a model spec of these arrays; launch through lhsfed compare"
        ) from None
    return model


@app.query(wire.QUERY_COMPARE)
def compare(message: Message, context: Context) -> Message:
    """Champion vs challenger on this site's test rows (client.comparison): answered only for
    two global models this site was sent in runs it trained in, and a releasable test split."""
    site = _open_site(context)
    config = message.content.get(wire.CONFIG, ConfigRecord())
    if any(arrays_key not in message.content.array_records for arrays_key, _, _ in _COMPARED):
        raise RunConfigError("a compare query carries both models' arrays; launch through lhsfed compare")
    node_config = dict(context.node_config)
    sent = [
        sent_in_run(node_config, site.data.name, str(config.get(run_key, "")), message.content[arrays_key])
        for arrays_key, run_key, _ in _COMPARED
    ]
    policy, y, dp = site.policy, site.data.y_test, site.settings.privacy.enabled
    budget = site.budget(context)
    exact_refused = None if dp else budget.exact_refusal(site.settings)
    if exact_refused:  # before any check that reads the rows: a refusal's wording is a bit too
        raise PrivacyBudgetError(exact_refused)
    refusal = model_refusal(*sent) or (
        None if dp else split_refusal(y, min_rows=policy.min_eval_rows, min_cell=policy.min_cell_size)
    )
    if refusal:
        raise EvaluationRefused(refusal)
    champion, challenger = (
        predict_risk(_compared_model(site.settings, config, message.content[a], s), site.data.x_test)
        for a, _, s in _COMPARED
    )
    if dp:
        metrics, charged = two_model_release(
            budget,
            site.settings,
            y,
            [champion, challenger],
            [wire.CHAMPION_PREFIX, wire.CHALLENGER_PREFIX],
            z=query_noise(budget),
            server_round=0,
            what="compare of the champion and the challenger",
            in_run_plan=False,
        )
        low, high = difference_interval(metrics, wire.CHAMPION_PREFIX, wire.CHALLENGER_PREFIX)
        extra = {
            wire.AUROC_DIFFERENCE: metrics[wire.CHALLENGER_PREFIX + wire.AUROC]
            - metrics[wire.CHAMPION_PREFIX + wire.AUROC],
            wire.DIFFERENCE_CI_LOW: low,
            wire.DIFFERENCE_CI_HIGH: high,
        }
        charged.covers(extra)
        return _reply(message, site.data.name, metrics | extra)
    metrics = comparison_metrics(
        y, champion, challenger, min_cell=policy.min_cell_size, seed=SiteRandomness().seed()
    )
    exact = exact_release(budget, site.settings, 0, "compare (exact: DP off)", metrics)
    if site.spec.subgroup_features:  # as evaluate releases them beside these models' levels
        for prefix, risk in ((wire.CHAMPION_PREFIX, champion), (wire.CHALLENGER_PREFIX, challenger)):
            shared = shared_test_histograms(
                site.data.x_test, y, risk, site.spec, min_cell=policy.min_cell_size
            )
            metrics |= {prefix + key: value for key, value in shared.items()}
            exact.covers(metrics)
    return _reply(message, site.data.name, metrics)


@app.query(wire.QUERY_PERSONALIZE)
def personalize(message: Message, context: Context) -> Message:
    """After the federation: adapt the selected global model to this site (the run's
    ``personalize`` mode, never the message's), keep it here, reply test metrics of both.

    Only a model this site recorded for this run (a round's model it evaluated), once per run
    (the kept model is never overwritten), under the personalize plan the run had when the
    site first trained in it (client.run_plan).
    """
    site = _open_site(context)
    settings = site.settings
    if settings.personalize == "none":
        raise RunConfigError("this run has personalize=none: the site personalizes nothing")
    budget = site.budget(context)
    kept = personalized_path(site.policy, budget.run)
    refusal = (
        trained_refusal(budget, settings)
        or plan_refusal(recorded_plan(site.policy, budget.run), settings)
        or _personalize_refusal(site, budget.run, message.content[wire.ARRAYS], kept)
    )
    if refusal:
        raise EvaluationRefused(refusal)
    model = _model(settings, message.content[wire.ARRAYS])  # a bad model fails before spending
    spend: dict = {}
    if settings.personalize == "finetune":
        own, spend = fine_tune(model, site.data, settings, budget)
    else:
        own = recalibrate(model, site.data, site.policy)
    # Kept first: a site whose test split is too small to release metrics of still uses its model.
    if not save_personalized(kept, own, budget.run):  # a racing message kept one first
        raise EvaluationRefused(ONCE_PER_RUN)
    if settings.privacy.enabled:
        # Platt's fit is exact on the validation rows: its model's scores are not released under
        # DP (its histograms' sensitivity to one validation patient is unbounded); fine-tuning's
        # model is a DP-SGD output, so both models are.
        models = [(wire.GLOBAL_PREFIX, model)] + (
            [(wire.PERSONALIZED_PREFIX, own)] if settings.personalize == "finetune" else []
        )
        risks = [
            predict_risk(m, site.data.x_test) if prefix == wire.GLOBAL_PREFIX else m.risk(site.data.x_test)
            for prefix, m in models
        ]
        noise = budget.run_noise(settings)
        metrics, charged = two_model_release(
            budget,
            settings,
            site.data.y_test,
            risks,
            [prefix for prefix, _ in models],
            z=noise.release_z[TEST],
            server_round=FINE_TUNING_ROUND,
            what=f"{TEST} split after the run: personalize's global and personalized models",
            in_run_plan=True,
            limit=noise.releases[TEST],
        )
        metrics = {k: v for k, v in metrics.items() if _personalize_key(k)}
    else:
        metrics = compared_metrics(site.data, site.policy, model, own)
        charged = exact_release(
            budget, settings, FINE_TUNING_ROUND, "personalize metrics (exact: DP off)", metrics
        )
    charged.covers(spend)  # the fine-tuning steps' ε (its reservation; public accounting scalars)
    return _reply(message, site.data.name, {**spend, **metrics})  # ε: the ledger after the metrics


def _personalize_key(key: str) -> bool:
    """The personalize reply's keys (wire.PERSONALIZE_METRICS under both prefixes, and the rest)."""
    for prefix in (wire.GLOBAL_PREFIX, wire.PERSONALIZED_PREFIX):
        if key.startswith(prefix):
            return key[len(prefix) :] in wire.PERSONALIZE_METRICS
    return True


def _personalize_refusal(site: SiteView, run: str, arrays: ArrayRecord, kept: Path) -> str | None:
    """Refused: arrays that are not a model this site was sent in this run, or a second time."""
    if not was_sent(site.policy, run, model_digest(arrays)):
        return NOT_RECORDED
    return ONCE_PER_RUN if kept.exists() else None


NO_REFERENCE = "this site holds no reference for that run (it did not train in it)"


@app.query(wire.QUERY_DRIFT)
def drift(message: Message, context: Context) -> Message:
    """Drift of the site's current rows against its OWN reference of the named run: per
    feature SMD, missing-rate change and PSI only (client.drift); the coordinator names the
    run, never the bins or reference numbers."""
    site = _open_site(context)
    run = str(message.content.get(wire.CONFIG, ConfigRecord()).get(wire.DRIFT_RUN, ""))
    # The policy (hence state folder) the site had in that run: in simulation its ledger
    # folder follows the run folder; a deployed node's node config fixes it.
    name, _ = site_location(dict(context.node_config), site.settings.data)
    policy = site_policy(dict(context.node_config), name, run_folder=Path(run)) if run else None
    reference = load_reference(policy, run) if policy else None
    if reference is None:
        raise EvaluationRefused(NO_REFERENCE)
    budget = site.budget(context)
    if site.settings.privacy.enabled:
        scores = drift_release(budget, site.settings, site.data, site.spec, reference)
        return _reply(message, site.data.name, scores)
    scores = drift_scores(site_rows(site.data), site.spec, reference, min_cell=site.policy.min_cell_size)
    exact_release(budget, site.settings, 0, "drift scores (exact: DP off)", scores)
    return _reply(message, site.data.name, scores)
