"""Federated standardization through the real ClientApp query handler equals pooled statistics."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from client.app import app as client_app
from federation.coordinator.flwr_app_config import compose_config
from federation.core import wire
from federation.core.data import load_site, site_file
from federation.core.feature_stats import combine_statistics
from federation.core.settings import RunSettings, flatten_config

RUN_CONFIG = flatten_config(compose_config(["privacy=off"]))
SPEC = RunSettings.from_run_config(RUN_CONFIG).data


@pytest.fixture(autouse=True)
def _as_the_server_process():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None


def _query(partition: int) -> Message:
    content = RecordDict({wire.CONFIG: ConfigRecord({wire.QUERY_KIND: wire.QUERY_FEATURE_STATS})})
    message = Message(content, dst_node_id=10 + partition, message_type=MessageType.QUERY)
    context = Context(
        run_id=1,
        node_id=10 + partition,
        node_config={"partition-id": partition, "lhsfed-mode": "simulation"},
        state=RecordDict(),
        run_config=dict(RUN_CONFIG),
    )
    return client_app(message, context)


def test_federated_statistics_of_the_four_uci_sites_equal_pooled_training_rows(monkeypatch):
    monkeypatch.setenv("LHSFED_MIN_CELL_SIZE", "1")  # every cell released: exact pooling
    replies = [_query(i) for i in range(len(SPEC.sites))]
    parts = [
        (m[wire.STATS_COUNT], m[wire.STATS_SUM], m[wire.STATS_SUMSQ])
        for m in (r.content[wire.METRICS] for r in replies)
    ]

    mean, std = combine_statistics(parts)

    rows = [load_site(site_file(SPEC, s), SPEC, s).x_train.astype("float64") for s in SPEC.site_names]
    # A column a site withholds (at k=1: one that holds a single value at that site) is
    # pooled over the sites that released it.
    released = np.array([np.asarray(p[0]) > 0 for p in parts])
    pooled = np.concatenate([np.where(keep, x, np.nan) for keep, x in zip(released, rows)])
    assert [str(r.content[wire.SITE][wire.SITE_NAME]) for r in replies] == SPEC.site_names
    assert mean.shape == (len(SPEC.encoded_feature_names()),)
    # Nearly every cell is released at k=1 (7 of 88 withheld since the validation rows left training).
    assert released.sum() >= released.size - 8
    np.testing.assert_allclose(mean, np.nanmean(pooled, axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(std, np.nanstd(pooled, axis=0), rtol=0, atol=1e-9)
    # The sites differ (Switzerland records no cholesterol): pooling is not any one site's view.
    chol = SPEC.encoded_feature_names().index("chol")
    assert [m[wire.STATS_COUNT][chol] for m in (r.content[wire.METRICS] for r in replies)][2] == 0


def test_no_site_able_to_answer_stops_the_run_with_the_sites_reason(tmp_path, monkeypatch):
    """Every site's file repeats its header: the run stops with one error naming why."""
    from federation.coordinator.inprocess import run_config_for, run_in_process
    from federation.core.errors import FederationError

    header = ",".join(SPEC.columns)
    for site in SPEC.sites:
        source = site_file(SPEC, site)
        (tmp_path / source.name).write_text(header + "\n" + source.read_text())
    monkeypatch.setenv("LHSFED_SITE_DATA_DIR", str(tmp_path))
    config = run_config_for(["privacy=off", "rounds=1"], tmp_path / "run")
    with pytest.raises(
        FederationError,
        match=r"4 of 4 failed.*data check failed: 1 problem "
        r"\(details in the site's log\)",
    ):
        run_in_process(config, run_dir=tmp_path / "run", num_nodes=4)
    assert not (tmp_path / "run" / "summary.json").exists()
    # The reason stays at the site (here the simulated sites' log beside their ledgers).
    assert "repeats the column names" in (tmp_path / "run" / "ledgers" / "site.log").read_text()
