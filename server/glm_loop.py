"""``model=glm``'s loop: an exact federated logistic regression by Newton/IRLS (DP off only).

Round 0 is the usual federated standardization (the logreg model's preprocessing buffers).
Each round then sends every site the coefficients of every λ of ``model.l2_grid``; each site
replies its exact gradient, Hessian and log-loss sums over its training rows and its
validation log-loss sums (client.glm_round); the server adds them and takes one damped Newton
step per λ (federation.core.glm.NewtonFit) until every step is below ``model.tolerance`` or
``rounds`` run out. λ is the one with the lowest pooled validation loss (summed log-loss over
the validation rows of the sites that released them), and its coefficients become the logreg
model's head: model.pt, then one exact evaluation of it (test and validation, as a DP-off
round's) by the sites of the last round, so everything downstream reads it as a logreg run.
``glm.json`` keeps the grid, each λ's coefficients and validation loss, and the choice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from federation.core import atomic, wire
from federation.core.errors import FederationError
from federation.core.glm import COEFFICIENTS, NewtonFit, head_state, parse_grid, pooled_validation_loss
from federation.core.privacy import VALIDATION
from federation.core.records import RoundRecord
from federation.core.run_layout import GLM_RECORD, json_safe
from federation.core.settings import RunSettings, model_spec
from server.exchange import exchange
from server.federation_loop import initial_arrays, nodes_to_wait_for, wait_for_nodes
from server.progress import show_glm, show_lines, show_round
from server.round_records import evaluation_record, site_of, train_by_site
from server.run_folder import RunFolder
from server.summary import aggregated_any, build_summary, no_aggregation_reason
from server.unaggregated import unaggregated_lines

log = logging.getLogger(__name__)
GLM_MESSAGE = f"{MessageType.TRAIN}.{wire.GLM_ACTION}"


@dataclass(frozen=True)
class PooledSums:
    """One round's sums over the sites that answered (in site order: the sums are exact and
    do not depend on arrival order up to float addition, which this fixes too)."""

    sites: list[str]
    gradient: np.ndarray
    hessian: np.ndarray
    loss: np.ndarray
    validation_loss: np.ndarray | None  # pooled mean per λ; None: no site released validation


def pooled_sums(replies: list[Message], n_lambdas: int, width: int) -> PooledSums | None:
    """The sum of the sites' statistics (None: no site answered with them)."""
    ok = sorted((r for r in replies if not r.has_error()), key=site_of)
    if not ok:
        return None
    metrics = [r.content[wire.METRICS] for r in ok]

    def total(key: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.sum([np.asarray(m[key], dtype=np.float64).reshape(shape) for m in metrics], axis=0)

    released = [m for m in metrics if wire.GLM_VALIDATION_LOSS in m]
    return PooledSums(
        sites=[site_of(r) for r in ok],
        gradient=total(wire.GLM_GRADIENT, (n_lambdas, width)),
        hessian=total(wire.GLM_HESSIAN, (n_lambdas, width, width)),
        loss=total(wire.GLM_LOSS, (n_lambdas,)),
        validation_loss=pooled_validation_loss(
            [np.asarray(m[wire.GLM_VALIDATION_LOSS], dtype=np.float64) for m in released],
            [int(m[wire.VALIDATION_PREFIX + wire.N_TEST]) for m in released],
        ),
    )


def _round_messages(nodes: list[int], start: ArrayRecord, fit: NewtonFit, server_round: int) -> list[Message]:
    return [
        Message(
            RecordDict(
                {
                    wire.ARRAYS: start,
                    wire.GLM_COEFFICIENTS: ArrayRecord({COEFFICIENTS: Array(fit.coefficients.copy())}),
                    wire.CONFIG: ConfigRecord({wire.SERVER_ROUND: server_round}),
                }
            ),
            dst_node_id=node,
            message_type=GLM_MESSAGE,
        )
        for node in nodes
    ]


def run_glm(grid: Grid, settings: RunSettings, default_dir: Path) -> dict[str, Any]:
    """Fit every λ, hand out the one of lowest pooled validation loss; returns the summary."""
    folder = RunFolder(Path(settings.output_dir) if settings.output_dir else default_dir)
    timeout = float(settings.strategy.params.get("round_timeout", 600))
    nodes, sites = wait_for_nodes(grid, nodes_to_wait_for(settings), timeout), {}
    start = initial_arrays(grid, settings, nodes, timeout, sites)
    lambdas = parse_grid(settings.model.l2_grid)
    fit = NewtonFit(
        lambdas, width=1 + 2 * model_spec(settings).n_features, tolerance=settings.model.tolerance
    )
    records: list[RoundRecord] = []
    answered, validation = None, None
    for server_round in range(1, settings.rounds + 1):
        train = exchange(
            grid,
            _round_messages(nodes, start, fit, server_round),
            timeout=timeout,
            stage="train",
            sites=sites,
        )
        pooled = pooled_sums(train.replies, len(lambdas), fit.width)
        record = RoundRecord(
            round=server_round,
            train=_train_record(train.replies, pooled),
            failures=train.failures,
            aggregated=pooled.sites if pooled else [],
            discarded=pooled is None,
            discard_reason=None if pooled else "no site sent its sums",
        ).normalized()
        records.append(record)
        folder.append_round(record)
        show_round(record.to_json(), settings.rounds)
        if pooled is None:
            break
        if pooled.sites != answered:  # another set of sites: another objective
            fit.restart_descent_check()
        answered, validation = pooled.sites, pooled.validation_loss
        if fit.update(pooled.gradient, pooled.hessian, pooled.loss):
            break
        log.info("glm round %s: largest Newton step %.3g", server_round, fit.last_step)
    if not aggregated_any(records):
        folder.write_summary(json_safe(build_summary(settings, records, {}, _roster(nodes, sites))))
        raise FederationError(no_aggregation_reason(records, folder.path))
    if not fit.converged:
        log.warning(
            "model=glm did not converge in %s rounds (largest step %.3g > tolerance %g): raise rounds",
            len(records),
            fit.last_step,
            settings.model.tolerance,
        )
    chosen = int(np.argmin(validation)) if validation is not None else 0
    best = ArrayRecord({**start.to_torch_state_dict(), **head_state(fit.coefficients[chosen])})
    records[-1] = _evaluated(grid, records[-1], best, timeout, sites, nodes=_nodes_of(sites, answered or []))
    folder.rewrite_rounds(records)
    folder.save_model(best, model_spec(settings), settings, records[-1].round)
    glm = _glm_record(settings, fit, lambdas, validation, chosen, answered or [], len(records))
    atomic.write_json(folder.path / GLM_RECORD, json_safe(glm))
    show_glm(records[-1].to_json(), glm)
    epsilon_by_site = {site: None for r in records for site in r.train}  # DP off: unbounded
    summary = json_safe(build_summary(settings, records, epsilon_by_site, _roster(nodes, sites)))
    summary["glm"] = {
        k: glm[k] for k in ("selected_lambda", "selected_C", "selected_by", "converged", "rounds")
    }
    folder.write_summary(summary)
    show_lines(unaggregated_lines(summary))
    return summary


def _train_record(replies: list[Message], pooled: PooledSums | None) -> dict[str, dict[str, float]]:
    """Each site's train metrics, with its mean training log-loss ("loss") at the λ of lowest
    pooled validation loss this round (the first λ without validation): the console's line."""
    train = train_by_site(replies)
    if pooled is None:
        return train
    best = int(np.argmin(pooled.validation_loss)) if pooled.validation_loss is not None else 0
    for reply in (r for r in replies if not r.has_error()):
        metrics, entry = reply.content[wire.METRICS], train[site_of(reply)]
        entry["loss"] = float(metrics[wire.GLM_LOSS][best]) / max(int(metrics[wire.NUM_EXAMPLES]), 1)
    return train


def _roster(nodes: list[int], sites: dict[int, str]) -> dict[int, str]:
    return {node: sites.get(node) or f"node {node}" for node in nodes}


def _nodes_of(sites: dict[int, str], names: list[str]) -> list[int]:
    return sorted(node for node, site in sites.items() if site in names)


def _evaluated(
    grid: Grid,
    record: RoundRecord,
    best: ArrayRecord,
    timeout: float,
    sites: dict[int, str],
    *,
    nodes: list[int],
) -> RoundRecord:
    """The last round's record with the handed-out model's exact evaluation by the sites that
    trained it (the sites' evaluate handler: test and validation splits, as in a DP-off run)."""
    config = {wire.SERVER_ROUND: record.round, wire.WITH_CI: True, wire.EVAL_SPLIT: VALIDATION}
    messages = [
        Message(
            RecordDict({wire.ARRAYS: best, wire.CONFIG: ConfigRecord(config)}),
            dst_node_id=node,
            message_type=MessageType.EVALUATE,
        )
        for node in nodes
    ]
    evaluate = exchange(grid, messages, timeout=timeout, stage="evaluate", sites=sites)
    return replace(
        record,
        evaluate=evaluation_record(evaluate.replies),
        validation=evaluation_record(evaluate.replies, prefix=wire.VALIDATION_PREFIX),
        failures=record.failures + evaluate.failures,
    ).normalized()


def _glm_record(
    settings: RunSettings,
    fit: NewtonFit,
    lambdas: np.ndarray,
    validation: np.ndarray | None,
    chosen: int,
    sites: list[str],
    rounds: int,
) -> dict[str, Any]:
    """glm.json: what was fitted and why this λ (float64 coefficients: JSON keeps them exact)."""
    names = settings.data.encoded_feature_names()
    errors = fit.standard_errors(chosen)
    return {
        "objective": "sum of log-loss over the pooled training rows + lambda/2 * ||w||^2 "
        "(intercept unpenalized): sklearn LogisticRegression(C=1/lambda)",
        "columns": ["intercept", *names, *(f"{name} missing" for name in names)],
        "lambdas": lambdas.tolist(),
        "C": (1.0 / lambdas).tolist(),
        "coefficients": fit.coefficients.tolist(),
        "selected_coefficients": fit.coefficients[chosen].tolist(),
        # Wald errors of the selected λ's coefficients (NewtonFit.standard_errors): the report's
        # odds-ratio intervals.
        "standard_errors": None if errors is None else errors.tolist(),
        "validation_loss": None if validation is None else validation.tolist(),
        "selected_lambda": float(lambdas[chosen]),
        "selected_C": float(1.0 / lambdas[chosen]),
        "selected_by": "pooled validation loss"
        if validation is not None
        else "no validation released: first λ",
        "converged": fit.converged,
        "largest_last_step": fit.last_step,
        "halved_steps": fit.halvings,
        "tolerance": settings.model.tolerance,
        "rounds": rounds,
        "sites": sites,
    }
