"""The round loop: the only server code that talks to the network (through Flower's Grid).

Each round: configure -> send -> aggregate (the strategy's pure hooks), then evaluate on
the validation and the held-out test split of every site that trained, then write the
checkpoint, the round record (discarded or not, each failure with its site) and the global
model. Updates are screened first (strategies.validated); ``resume`` starts from the
checkpoint. The pooled validation metric alone chooses the round handed out (``model.pt``)
and stops the run when ``early_stopping.patience`` runs out (:mod:`server.selection`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid

from federation.core import wire
from federation.core.errors import ConfigError, FederationError
from federation.core.model import build_model
from federation.core.privacy import TEST, VALIDATION
from federation.core.records import RoundRecord
from federation.core.run_layout import json_safe
from federation.core.settings import (  # re-exported for callers of this module
    RunSettings,
    model_spec,
)
from federation.core.weights_text import KEY as WEIGHTS_KEY
from federation.core.weights_text import decode_state_dict
from server.checkpoint import (
    ResumeState,
    load_resume_state,
    remove_stale_temporaries,
    save_resume_state,
)
from server.exchange import Exchange, exchange, only_nodes
from server.feature_stats import query_statistics, spec_prior
from server.ledger_word import ask_charges, in_flight_lines
from server.personalization import personalize_sites, trained_nodes
from server.progress import show_lines, show_round, show_stop, show_summary, show_test
from server.round_records import (
    evaluation_record,
    failures,
    sites_by_node,
    train_by_site,
)
from server.run_folder import RunFolder
from server.secure_aggregation import secure_train_round
from server.selection import chosen_round, should_stop
from server.summary import aggregated_any, build_summary, no_aggregation_reason, with_later_spend
from server.unaggregated import unaggregated_lines
from strategies import ValidatedStrategy, build_validated_strategy

log = logging.getLogger(__name__)


def wait_for_nodes(grid: Grid, minimum: int, timeout: float) -> list[int]:
    """Node ids once at least ``minimum`` sites are connected (deployments join over time)."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= minimum:
            return nodes
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(nodes)} of {minimum} sites connected in {timeout:.0f}s")
        time.sleep(1.0)


def nodes_to_wait_for(settings: RunSettings) -> int:
    """Flower's ``min_available_nodes``, raised to every site a simulation started.

    Simulated nodes register while the ServerApp already runs: waiting for only the minimum
    would compute the feature statistics (hence the initial model) from whichever came first.
    """
    return max(int(settings.strategy.params.get("min_available_nodes", 2)), settings.expected_nodes)


def initial_arrays(
    grid: Grid, settings: RunSettings, nodes: list[int], timeout: float, sites: dict[int, str] | None = None
) -> ArrayRecord:
    """Seeded model whose preprocessing uses the federated feature statistics; the node id ->
    site names learnt from the replies go into ``sites``. A warm start instead begins from the
    parent's weights (:func:`warm_start_arrays`) and asks the sites nothing."""
    if settings.initial_weights:
        return warm_start_arrays(settings)
    # A feature no site may release (a cell under its k) is scaled from the spec's ranges.
    mean, std, answered = query_statistics(grid, nodes, timeout, prior=spec_prior(settings.data))
    log.info("feature statistics combined from sites %s", sorted(answered.values()))
    if sites is not None:
        sites.update(answered)
    model = build_model(model_spec(settings), seed=settings.seed)
    model.preprocess.set_statistics(mean, std)
    return ArrayRecord(model.state_dict())


def warm_start_arrays(settings: RunSettings) -> ArrayRecord:
    """The parent model of ``lhsfed-train init=``, preprocessing buffers included.

    No feature-statistics query: the parent's weights were trained on inputs scaled by the
    parent's mean and std, and new statistics would change what every weight multiplies (a
    population that has moved is drift, to be measured, not silently re-scaled away); the
    sites release nothing before round 1 (so a site whose first reply is an error is named
    only once it has answered). Loading into the run's model checks every shape.
    """
    model = build_model(model_spec(settings), seed=settings.seed)
    try:
        model.load_state_dict(decode_state_dict(settings.initial_weights))
    except RuntimeError as err:
        raise ConfigError(
            f"{WEIGHTS_KEY}: the warm-start weights do not fit the run's model "
            f"({(str(err).splitlines() or [''])[-1].strip()}); launch through lhsfed-train init=RUN_DIR"
        ) from None
    log.info("warm start: round 0 is the parent model (no feature-statistics query)")
    return ArrayRecord(model.state_dict())


def _plain_train(
    grid: Grid,
    strategy: ValidatedStrategy,
    server_round: int,
    arrays: ArrayRecord,
    timeout: float,
    sites: dict[int, str],
) -> tuple[ArrayRecord, Exchange, str | None, dict[str, Any]]:
    messages = strategy.configure_train(server_round, arrays, ConfigRecord(), grid)
    train = exchange(grid, messages, timeout=timeout, stage="train", sites=sites)
    new_arrays, _ = strategy.aggregate_train(server_round, train.replies)
    if new_arrays is None:
        why = getattr(strategy, "discarded", None) or "no update was aggregated"
        return arrays, train, why, {}
    return new_arrays, train, None, {}


def _secure_train(
    grid: Grid,
    settings: RunSettings,
    server_round: int,
    arrays: ArrayRecord,
    timeout: float,
    sites: dict[int, str],
) -> tuple[ArrayRecord, Exchange, str | None, dict[str, Any]]:
    new_arrays, replies, secagg = secure_train_round(grid, settings, server_round, arrays, timeout)
    sites.update(sites_by_node(replies))
    train = Exchange(replies, failures(replies, stage="train", sites=sites))
    # SecAgg+ hands back the very arrays it was given when the round did not complete.
    discarded = (
        (
            f"secure aggregation did not complete ({secagg.get('sites', 0)} site(s) could "
            "train); the global model is kept"
        )
        if new_arrays is arrays
        else None
    )
    return new_arrays, train, discarded, secagg


def _run_round(
    grid: Grid,
    strategy: ValidatedStrategy,
    server_round: int,
    arrays: ArrayRecord,
    timeout: float,
    settings: RunSettings,
    sites: dict[int, str],
) -> tuple[ArrayRecord, RoundRecord]:
    if settings.privacy.secure_aggregation:
        arrays, train, discarded, secagg = _secure_train(grid, settings, server_round, arrays, timeout, sites)
    else:
        arrays, train, discarded, secagg = _plain_train(grid, strategy, server_round, arrays, timeout, sites)
    # The test CI every round: with early stopping no round is known to be the last one, and
    # the bootstrap costs a site ~0.4 s at 10k test rows (0.02 s at 100). Under DP each round
    # asks a release of the validation split only; the test split is released once, for the
    # round handed out (_final_test).
    with_ci = ConfigRecord({wire.WITH_CI: True, wire.EVAL_SPLIT: VALIDATION})
    # Only the nodes that trained: a node that let the train timeout pass is not waited for a
    # second time, and a site that did not train the round refuses to score it anyway.
    messages = only_nodes(strategy.configure_evaluate(server_round, arrays, with_ci, grid), train.ok_nodes)
    evaluate = exchange(grid, messages, timeout=timeout, stage="evaluate", sites=sites)
    trained = train_by_site(train.replies)
    record = RoundRecord(
        round=server_round,
        train=trained,
        evaluate=evaluation_record(evaluate.replies),  # test rows: reported, never chosen by
        validation=evaluation_record(evaluate.replies, prefix=wire.VALIDATION_PREFIX),
        failures=train.failures + evaluate.failures,
        # Under SecAgg+ the server sees only the sum: no per-site validation is possible.
        rejected=[] if secagg else [r.to_dict() for r in strategy.rejected],
        aggregated=([] if discarded else sorted(trained) if secagg else strategy.aggregated_sites),
        discarded=discarded is not None,
        discard_reason=discarded,
        secure_aggregation=secagg or None,
    )
    for failure in record.failures:  # e.g. a site refusing to pass its own ε cap
        log.warning(
            "round %s: %s of site %s (node %s) failed: %s",
            server_round,
            failure["stage"],
            failure["site"] or "unknown",
            failure["node"],
            failure["reason"],
        )
    return arrays, record.normalized()


def _track_epsilon(epsilon_by_site: dict[str, float | None], record: RoundRecord) -> None:
    """Each site's largest ε of this run so far: its training replies and, under DP, its
    releases' (each says the ledger's ε right after it), so ε shown is ε spent."""
    for part in (record.train, record.validation.sites, record.evaluate.sites):
        for site, metrics in part.items():
            if "epsilon" in metrics or part is record.train:
                epsilon_by_site[site] = _max_epsilon(epsilon_by_site.get(site, 0.0), metrics.get("epsilon"))


def _max_epsilon(known: float | None, reported: float | None) -> float | None:
    """Largest ε a site reported; None (unbounded, DP off) dominates any number."""
    return None if known is None or reported is None else max(known, reported)


def _start(
    grid: Grid,
    settings: RunSettings,
    folder: RunFolder,
    strategy: ValidatedStrategy,
    nodes: list[int],
    timeout: float,
    sites: dict[int, str],
) -> ResumeState:
    """Round 0 of a new run, or the last complete round of the run being resumed."""
    if not settings.resume:
        return ResumeState(
            round=0, arrays=initial_arrays(grid, settings, nodes, timeout, sites).to_torch_state_dict()
        )
    state = load_resume_state(folder.path)
    remove_stale_temporaries(folder.path)
    strategy.load_state_dict(state.strategy)
    folder.rewrite_rounds(state.records)
    log.info("resuming %s after round %s", folder.path, state.round)
    return state


def run_federation(grid: Grid, settings: RunSettings, default_dir: Path) -> dict[str, Any]:
    """Train up to ``settings.rounds`` rounds; returns the summary written to the run folder.

    Raises FederationError (after writing metrics.jsonl and summary.json) if no round
    aggregated an update: the run then has no trained model to hand to anyone.
    """
    folder = RunFolder(Path(settings.output_dir) if settings.output_dir else default_dir)
    strategy = build_validated_strategy(settings.strategy, seed=settings.seed)
    timeout = float(settings.strategy.params.get("round_timeout", 600))
    nodes, sites = wait_for_nodes(grid, nodes_to_wait_for(settings), timeout), {}
    state = _start(grid, settings, folder, strategy, nodes, timeout, sites)
    arrays, spec, metric = state.array_record(), model_spec(settings), settings.selection.metric
    records, epsilon_by_site, best = state.records, state.epsilon_by_site, state.best_arrays
    word = _ledger_word(grid, settings, state.round, nodes, timeout, sites, epsilon_by_site)
    for server_round in range(state.round + 1, settings.rounds + 1):
        if should_stop(records, metric, settings.early_stopping):
            break
        arrays, record = _run_round(grid, strategy, server_round, arrays, timeout, settings, sites)
        _track_epsilon(epsilon_by_site, record)
        records.append(record)
        selected = chosen_round(records, metric) == server_round
        best = arrays.to_torch_state_dict() if selected else best
        # The checkpoint first: a round in metrics.jsonl is always one a resume starts after.
        save_resume_state(
            folder.path,
            ResumeState(
                server_round,
                arrays.to_torch_state_dict(),
                strategy.state_dict(),
                records,
                epsilon_by_site,
                best,
            ),
        )
        folder.append_round(record)
        if aggregated_any(records):  # never a model.pt that no site's update ever changed
            folder.save_model(arrays, spec, settings, server_round, selected=selected)
        show_round(record.to_json(), settings.rounds)
    if settings.privacy.enabled and best is not None and aggregated_any(records):
        records = _final_test(grid, strategy, records, ArrayRecord(best), settings, timeout, sites)
        folder.rewrite_rounds(records)
        for record in records:
            _track_epsilon(epsilon_by_site, record)
    roster = {node: sites.get(node) or f"node {node}" for node in nodes}  # names learnt in the run
    summary = _finish(folder, settings, records, epsilon_by_site, best, roster, word)
    if settings.personalize != "none" and best is not None:  # each site adapts the selected model
        personalized = personalize_sites(
            grid,
            settings,
            folder.path,
            ArrayRecord(best),
            selected_round=summary["selection"]["round"],
            nodes=trained_nodes(records, sites, nodes),
            sites=sites,
            timeout=timeout,
        )
        # ε shown is ε spent: the fine-tuning steps and the metrics' release are the run's too
        summary = with_later_spend(summary, personalized["sites"])
        folder.write_summary(summary)
    show_lines(unaggregated_lines(summary))
    show_summary(summary)  # the last line: summary.json's own numbers
    return summary


def _ledger_word(
    grid: Grid,
    settings: RunSettings,
    resumed_after: int,
    nodes: list[int],
    timeout: float,
    sites: dict[int, str],
    epsilon_by_site: dict[str, float | None],
) -> dict[str, dict]:
    """A resumed run: each site's ledger word on what this run charged it (server.ledger_word);
    a site paid for a round past the checkpoint is said now, and its ε counts from here on."""
    if not settings.resume:
        return {}
    answered = ask_charges(grid, nodes, timeout, sites)
    word = {site: w for site, w in answered.items() if w["charged_rounds"]}
    show_lines(in_flight_lines(word, resumed_after))
    if settings.privacy.enabled:
        for site, entry in word.items():
            epsilon_by_site[site] = _max_epsilon(epsilon_by_site.get(site, 0.0), entry["epsilon"])
    # A site of the stopped attempt that does not answer may have paid for its round in flight:
    # unconfirmed unless it answers later in this run (server.unaggregated).
    for site in sorted(set(epsilon_by_site) - set(answered)):
        word[site] = {"unanswered_after": resumed_after}
    return word


def _final_test(
    grid: Grid,
    strategy: ValidatedStrategy,
    records: list[RoundRecord],
    best: ArrayRecord,
    settings: RunSettings,
    timeout: float,
    sites: dict[int, str],
) -> list[RoundRecord]:
    """Under DP: the test split's one release per run, of the round handed out, by the sites
    that trained it; it becomes that round's test evaluation (metrics.jsonl is rewritten)."""
    chosen = chosen_round(records, settings.selection.metric)
    index = next((i for i, r in enumerate(records) if r.round == chosen), None)
    if index is None or records[index].evaluate.sites:  # a resumed finished run: already done
        return records
    trained = {node for node, site in sites.items() if site in records[index].train}
    config = ConfigRecord({wire.WITH_CI: True, wire.EVAL_SPLIT: TEST})
    messages = only_nodes(strategy.configure_evaluate(chosen, best, config, grid), trained)
    test = exchange(grid, messages, timeout=timeout, stage="test", sites=sites)
    for failure in test.failures:
        log.warning(
            "test of round %s: site %s (node %s) failed: %s",
            chosen,
            failure["site"] or "unknown",
            failure["node"],
            failure["reason"],
        )
    record = records[index]
    updated = replace(
        record, evaluate=evaluation_record(test.replies), failures=record.failures + test.failures
    )
    show_test(updated.to_json())
    return records[:index] + [updated.normalized()] + records[index + 1 :]


def _finish(
    folder: RunFolder,
    settings: RunSettings,
    records: list[RoundRecord],
    epsilon_by_site: dict[str, float | None],
    best: dict | None,
    roster: dict[int, str],
    word: dict[str, dict],
) -> dict[str, Any]:
    """model.pt from the selected round's arrays (again: a kill may have come between the
    checkpoint and model.pt), then summary.json; raises if no round aggregated. ``word``: a
    resumed run's ledger word, whose charges and site totals count too."""
    summary = build_summary(settings, records, epsilon_by_site, roster, word)
    spent = {site: w for site, w in word.items() if "epsilon" in w}
    summary = json_safe(with_later_spend(summary, spent) if settings.privacy.enabled else summary)
    if summary["selection"]["stopped_early"]:
        show_stop(summary["selection"], settings.rounds)
    if aggregated_any(records) and best is not None:
        folder.save_model(ArrayRecord(best), model_spec(settings), settings, summary["selection"]["round"])
    folder.write_summary(summary)
    if not aggregated_any(records):
        raise FederationError(no_aggregation_reason(records, folder.path))
    return summary
