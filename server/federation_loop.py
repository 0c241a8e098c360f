"""The round loop: the only server code that talks to the network (through Flower's Grid).

Each round: configure -> send -> aggregate (the strategy's pure hooks), then evaluate on
every site's held-out split, then write the checkpoint, the round record and the global
model. Updates are screened first (strategies.validated); ``resume`` starts from the checkpoint.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid

from federation import keys
from federation.model import build_model
from federation.settings import RunSettings, model_spec  # re-exported for callers of this module
from server.checkpoint import Checkpoint, load_checkpoint, remove_stale_temporaries, save_checkpoint
from server.feature_stats import query_statistics, spec_prior
from server.progress import show_round
from server.round_records import evaluation_record, failures, json_safe, train_by_site
from server.run_folder import RunFolder
from server.secure_aggregation import secure_train_round
from server.summary import build_summary
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


def initial_arrays(grid: Grid, settings: RunSettings, nodes: list[int], timeout: float) -> ArrayRecord:
    """Seeded model whose preprocessing uses the federated feature statistics."""
    # A feature no site may release (a cell under its k) is scaled from the spec's ranges.
    mean, std, sites = query_statistics(grid, nodes, timeout, prior=spec_prior(settings.data))
    log.info("feature statistics combined from sites %s", sites)
    model = build_model(model_spec(settings), seed=settings.seed)
    model.preprocess.set_statistics(mean, std)
    return ArrayRecord(model.state_dict())


def _plain_train(grid: Grid, strategy: ValidatedStrategy, server_round: int, arrays: ArrayRecord,
                 timeout: float) -> tuple[ArrayRecord, list, dict[str, Any]]:
    messages = strategy.configure_train(server_round, arrays, ConfigRecord(), grid)
    train_replies = list(grid.send_and_receive(messages, timeout=timeout))
    new_arrays, _ = strategy.aggregate_train(server_round, train_replies)
    return (new_arrays if new_arrays is not None else arrays), train_replies, {}


def _run_round(grid: Grid, strategy: ValidatedStrategy, server_round: int, arrays: ArrayRecord,
               timeout: float, settings: RunSettings) -> tuple[ArrayRecord, dict[str, Any]]:
    if settings.privacy.secure_aggregation:
        arrays, train_replies, secagg = secure_train_round(grid, settings, server_round, arrays, timeout)
    else:
        arrays, train_replies, secagg = _plain_train(grid, strategy, server_round, arrays, timeout)
    last_round = ConfigRecord({keys.WITH_CI: server_round == settings.rounds})
    messages = strategy.configure_evaluate(server_round, arrays, last_round, grid)
    eval_replies = list(grid.send_and_receive(messages, timeout=timeout))
    record = {
        "round": server_round,
        "train": train_by_site(train_replies),
        "evaluate": evaluation_record(eval_replies),
        "failures": failures(train_replies) + failures(eval_replies),
        # Under SecAgg+ the server sees only the sum: no per-site validation is possible.
        "rejected": [] if secagg else [r.to_dict() for r in strategy.rejected],
        "aggregated": sorted(train_by_site(train_replies)) if secagg else strategy.aggregated_sites,
    }
    if secagg:
        record["secure_aggregation"] = secagg
    for failure in record["failures"]:  # e.g. a site refusing to pass its own ε cap
        log.warning("round %s: node %s sent no result: %s", server_round, failure["node"],
                    failure["reason"])
    return arrays, json_safe(record)


def _max_epsilon(known: float | None, reported: float | None) -> float | None:
    """Largest ε a site reported; None (unbounded, DP off) dominates any number."""
    return None if known is None or reported is None else max(known, reported)


def _start(grid: Grid, settings: RunSettings, folder: RunFolder, strategy: ValidatedStrategy,
           nodes: list[int], timeout: float) -> Checkpoint:
    """Round 0 of a new run, or the last complete round of the run being resumed."""
    if not settings.resume:
        return Checkpoint(round=0, arrays=initial_arrays(grid, settings, nodes, timeout)
                          .to_torch_state_dict())
    checkpoint = load_checkpoint(folder.path)
    remove_stale_temporaries(folder.path)
    strategy.load_state_dict(checkpoint.strategy)
    folder.rewrite_rounds(checkpoint.records)
    log.info("resuming %s after round %s", folder.path, checkpoint.round)
    return checkpoint


def run_federation(grid: Grid, settings: RunSettings, default_dir: Path) -> dict[str, Any]:
    """Train up to ``settings.rounds`` rounds; returns the summary written to the run folder."""
    folder = RunFolder(Path(settings.output_dir) if settings.output_dir else default_dir)
    strategy = build_validated_strategy(settings.strategy, seed=settings.seed)
    timeout = float(settings.strategy.params.get("round_timeout", 600))
    nodes = wait_for_nodes(grid, nodes_to_wait_for(settings), timeout)
    state = _start(grid, settings, folder, strategy, nodes, timeout)
    arrays, spec = state.array_record(), model_spec(settings)
    records, epsilon_by_site = state.records, state.epsilon_by_site
    for server_round in range(state.round + 1, settings.rounds + 1):
        arrays, record = _run_round(grid, strategy, server_round, arrays, timeout, settings)
        for site, metrics in record["train"].items():
            epsilon_by_site[site] = _max_epsilon(epsilon_by_site.get(site, 0.0), metrics.get("epsilon"))
        records.append(record)
        # The checkpoint first: a round in metrics.jsonl is always one a resume starts after.
        save_checkpoint(folder.path, Checkpoint(server_round, arrays.to_torch_state_dict(),
                                                strategy.state_dict(), records, epsilon_by_site))
        folder.append_round(record)
        folder.save_model(arrays, spec, settings, server_round)
        show_round(record, settings.rounds)
    summary = json_safe(build_summary(settings, records, epsilon_by_site))
    folder.write_summary(summary)
    return summary
