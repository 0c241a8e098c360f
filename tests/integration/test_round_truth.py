"""Each round tells the truth (discarded rounds, refusals, failures with their site),
a run where nothing aggregated fails, and a deployment run is evaluated from the sites' own
numbers. Real ServerApp loop and ClientApp (``federation.coordinator.inprocess``), one real launcher run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from flwr.app import Error, Message
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.supercore.task_identity import TaskIdentity
from omegaconf import OmegaConf

from client.ledger import SiteLedger
from client.node_identity import NodeIdentity
from federation.cli.main import main as lhsfed
from federation.coordinator.deployment import PROGRESS
from federation.coordinator.flwr_app_config import compose_config
from federation.coordinator.inprocess import (
    InProcessGrid,
    run_config_for,
    run_in_process,
)
from federation.core import wire
from federation.core.records import read_rounds
from federation.core.settings import RunSettings
from server import progress
from server.progress import event_lines, round_line
from tests.helpers.faulty_client import fault_mod, parse_faults
from tests.helpers.runs import REPO, read_json, run_launcher

SITES = ["cleveland", "hungary", "switzerland", "va"]
NODES = {1000 + i: site for i, site in enumerate(SITES)}  # InProcessGrid: node 1000+i plays site i


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


# ---- the console lines (pure) --------------------------------------------------------------


def _record(**changes) -> dict:
    record = {
        "round": 2,
        "train": {"va": {"epsilon": 1.5, "site_epsilon": 4.25}},
        "evaluate": {"pooled": {"auroc": 0.8, "loss": 0.5}, "sites": {}},
        "failures": [],
        "discarded": False,
        "discard_reason": None,
    }
    return record | changes


def test_round_line_shows_this_runs_and_the_sites_lifetime_epsilon():
    line = round_line(_record(), total_rounds=3)

    assert "max ε 1.50 (site total 4.25)" in line
    assert "discarded" not in line and event_lines(_record()) == []


def test_each_failure_and_a_discard_get_a_line_naming_the_site():
    record = _record(
        discarded=True,
        discard_reason="only 1 usable updates (minimum 2); the global model is kept",
        failures=[
            {
                "stage": "train",
                "node": 77,
                "site": "hungary",
                "code": 4001,
                "reason": "budget refused: site hungary refuses round 2: [cap]",
            },
            {
                "stage": "train",
                "node": 78,
                "site": None,
                "code": None,
                "reason": "no reply within strategy.round_timeout (600s)",
            },
        ],
    )

    lines = event_lines(record)

    assert "discarded" in round_line(record, 3)
    assert len(lines) == 3
    assert "round 2 discarded: only 1 usable updates (minimum 2)" in lines[0]
    assert "ε still charged at 1 site(s) that trained (va)" in lines[0]
    assert "site hungary (node 77): budget refused: site hungary refuses round 2" in lines[1]
    assert r"\[cap]" in lines[1]  # a reason's brackets are printed, not read as markup
    assert "node 78 (site unknown): no reply within" in lines[2]


def test_the_deployment_launcher_echoes_every_console_line_of_the_run():
    """``lhsfed-train federation=deployment`` shows only the ServerApp's lines that match
    PROGRESS: each round's line and events, the test release's line and an early stop."""
    discarded = _record(discarded=True, discard_reason="only 1 usable updates (minimum 2)")
    failed = _record(failures=[{"stage": "train", "node": 7, "site": "va", "reason": "refused"}])
    stops = [
        progress.stop_line({"metric": "loss", "patience": 1, "round": 2, "improvement": rule}, 4)
        for rule in ("tie", "clear")
    ]
    lines = [
        round_line(_record(), 3),
        *event_lines(discarded),
        *event_lines(failed),
        progress.test_line(_record()),
        *stops,
    ]

    assert all(PROGRESS.search(line) for line in lines), lines
    assert "no clearly better (beyond its noise) pooled validation loss for 1 round(s)" in stops[1]
    assert not PROGRESS.search("INFO :      Starting Flower ServerApp")


# ---- a discarded round (min_train_nodes) ---------------------------------------------------


@pytest.mark.slow
def test_a_round_short_of_min_train_nodes_is_discarded_shown_and_charged(tmp_path, capsys):
    """va's round-2 update is rejected (NaN), leaving 3 of the 4 updates min_train_nodes=4
    asks for: the round keeps the global model, yet every site that trained paid for it."""
    config = run_config_for(["rounds=2", "strategy.min_train_nodes=4"], tmp_path)

    summary = run_in_process(
        config, run_dir=tmp_path, num_nodes=4, mods=[fault_mod(parse_faults("va:nan@2"))]
    )

    first, second = read_rounds(tmp_path)
    assert (first["discarded"], second["discarded"]) == (False, True)
    assert second["discard_reason"].startswith("only 3 usable updates (minimum 4)")
    assert second["aggregated"] == [] and set(second["train"]) == set(SITES)
    assert summary["discarded_rounds"] == [2] and summary["rounds"] == 2
    # the global model is kept: round 2 saved exactly round 1's weights (control: round 1 moved)
    kept, before = (
        _weights(tmp_path / "rounds" / "round_002.pt"),
        _weights(tmp_path / "rounds" / "round_001.pt"),
    )
    assert all(torch.equal(kept[k], before[k]) for k in kept)
    out = capsys.readouterr().out
    assert (
        "round 2 discarded: only 3 usable updates (minimum 4); the global model is kept; "
        "ε still charged at 4 site(s) that trained (cleveland, hungary, switzerland, va)" in out
    )
    for site in SITES:  # each ledger holds the discarded round: sites reserve before training
        ledgers = tmp_path / "ledgers"
        ledger = SiteLedger(
            ledgers / f"{site}.sqlite", site=site, identity=NodeIdentity.of_key(ledgers / f"{site}.key")
        )
        assert [e.server_round for e in ledger.entries() if not e.is_release] == [1, 2], site
        assert summary["privacy"]["sites"][site]["site_epsilon"] == pytest.approx(
            ledger.last_total(), rel=1e-9
        )
    docs = " ".join((REPO / "docs" / "strategies.md").read_text().split())
    assert "a discarded round is still charged in the sites' ledgers" in docs


# ---- failures name their site --------------------------------------------------------------


class _DeadNodesGrid(InProcessGrid):
    """From round 2, one node never answers and another is answered for by the SuperLink
    (Flower's "Node Unavailable", sent from node 1): both as a node that died."""

    SILENT, UNAVAILABLE, FROM_ROUND = 1002, 1003, 2

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[int, str, int]] = []  # (round, message type, node)

    def push_messages(self, messages):
        ids = []
        for message in messages:
            config = message.content.get(wire.CONFIG)
            server_round = int(config.get(wire.SERVER_ROUND, 0)) if config is not None else 0
            node = int(message.metadata.dst_node_id)
            self.sent.append((server_round, message.metadata.message_type, node))
            if server_round < self.FROM_ROUND or node not in (self.SILENT, self.UNAVAILABLE):
                ids += list(super().push_messages([message]))
                continue
            message.metadata.__dict__["_message_id"] = f"lost-{server_round}-{node}"
            ids.append(message.metadata.message_id)
            if node == self.UNAVAILABLE:
                reply = Message(
                    Error(code=ErrorCode.NODE_UNAVAILABLE, reason="Node Unavailable"), reply_to=message
                )
                reply.metadata.__dict__["_src_node_id"] = SUPERLINK_NODE_ID
                self._replies[message.metadata.message_id] = reply
        return ids


def _run_with(grid_type, config: dict, run_dir: Path, mods=()) -> tuple[dict, InProcessGrid]:
    """``run_in_process`` with another Grid (same ClientApp, same loop)."""
    from client.app import app as client_app
    from server.federation_loop import run_federation

    torch.set_num_threads(1)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    grid = grid_type(client_app, config, 4, mods)
    return run_federation(grid, RunSettings.from_run_config(dict(config)), default_dir=run_dir), grid


@pytest.mark.slow
def test_failures_name_the_site_and_dead_nodes_are_not_asked_to_evaluate(tmp_path, capsys):
    config = run_config_for(["rounds=2", "privacy=off"], tmp_path)

    _, grid = _run_with(_DeadNodesGrid, config, tmp_path, mods=[fault_mod(parse_faults("hungary:raise@1"))])

    first, second = read_rounds(tmp_path)
    crash = [(f["stage"], f["site"], f["node"]) for f in first["failures"]]
    assert crash == [("train", "hungary", 1001)]
    assert "injected test fault: site hungary crashed" in first["failures"][0]["reason"]
    dead = {(f["site"], f["node"]): f["reason"] for f in second["failures"]}
    assert set(dead) == {("switzerland", 1002), ("va", 1003)}  # not node 1 (the SuperLink)
    assert dead["switzerland", 1002].startswith("no reply within strategy.round_timeout")
    assert dead["va", 1003] == "Node Unavailable"
    assert second["aggregated"] == ["cleveland", "hungary"] and not second["discarded"]
    # evaluate goes to the nodes that trained the round only: not to the dead, nor the crashed
    asked = {(r, node) for r, kind, node in grid.sent if kind == "evaluate"}
    assert asked == {(1, 1000), (1, 1002), (1, 1003), (2, 1000), (2, 1001)}
    out = capsys.readouterr().out
    assert "round 1 train: site hungary (node 1001): " in out
    assert "round 2 train: site switzerland (node 1002): no reply within" in out
    assert "round 2 train: site va (node 1003): Node Unavailable" in out


# ---- every site refuses: the launcher fails -----------------------------------------------


@pytest.mark.slow
def test_a_run_where_every_site_refuses_exits_non_zero_with_each_sites_reason(tmp_path):
    proc = run_launcher(
        tmp_path, "rounds=1", "federation.runtime=inprocess", env={"LHSFED_MAX_EPSILON": "0.01"}
    )

    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("lhsfed-train: error:")]
    assert len(errors) == 1 and "no round aggregated an update" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for site in SITES:  # one console line per site, with its reason
        lines = [line for line in proc.stdout.splitlines() if f"round 1 train: site {site} " in line]
        assert len(lines) == 1, proc.stdout
        assert f"budget refused: site {site} refuses round 1" in lines[0] and "cap 0.01" in lines[0]
    run = tmp_path / "run"
    (record,) = read_rounds(run)  # the metrics stay for inspection; no untrained model.pt
    assert record["discarded"] and record["train"] == {} and not (run / "model.pt").exists()
    assert read_json(run / "summary.json")["discarded_rounds"] == [1]


# ---- lhsfed evaluate on a deployment run ---------------------------------------------------


@pytest.fixture()
def deployment_run(tmp_path, monkeypatch) -> Path:
    """A run whose switzerland refuses every round (its cap), then marked as a deployment."""
    monkeypatch.setenv("LHSFED_MAX_EPSILON", "switzerland=0.01")
    overrides = ["rounds=2", "privacy.target_epsilon=8"]
    run_in_process(run_config_for(overrides, tmp_path), run_dir=tmp_path, num_nodes=4)
    config = compose_config(overrides)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create(config), tmp_path / ".hydra" / "config.yaml")
    return tmp_path


def _set_mode(run_dir: Path, mode: str) -> None:
    path = run_dir / ".hydra" / "config.yaml"
    config = OmegaConf.load(path)
    config.federation.mode = mode
    OmegaConf.save(config, path)


@pytest.mark.slow
def test_evaluate_on_a_deployment_run_reports_the_sites_own_numbers(
    deployment_run, tmp_path_factory, monkeypatch, capsys
):
    empty = tmp_path_factory.mktemp("no_data")
    monkeypatch.setattr("federation.core.data.embedded_dir", lambda spec: empty)  # no embedded data
    monkeypatch.setenv("LHSFED_SITE_DATA_DIR", str(empty))
    capsys.readouterr()
    # control: as a simulation run, evaluate scores rows here, and there are none
    _set_mode(deployment_run, "simulation")
    assert lhsfed(["evaluate", str(deployment_run)]) == 2
    assert "not found" in capsys.readouterr().err.lower()

    _set_mode(deployment_run, "deployment")
    assert lhsfed(["evaluate", str(deployment_run)]) == 0

    # under DP the sites released their test split once, for the round handed out
    chosen = read_json(deployment_run / "summary.json")["selection"]["round"]
    last = next(r for r in read_rounds(deployment_run) if r["round"] == chosen)["evaluate"]["sites"]
    evaluation = read_json(deployment_run / "evaluation.json")
    assert sorted(last) == ["cleveland", "hungary", "va"]  # switzerland never trained: not scored
    assert sorted(evaluation["sites"]) == sorted(last)
    assert {s: m["n"] for s, m in evaluation["sites"].items()} == {s: m["n_test"] for s, m in last.items()}
    assert {s: d["n_test"] for s, d in evaluation["data"].items()} == {
        s: m["n_test"] for s, m in last.items()
    }
    for site, metrics in last.items():
        scored = evaluation["sites"][site]
        if "auroc" in (scored.get("not_estimable") or {}):  # its released counts are under the floor
            assert scored["auroc"] is None and scored["not_estimable"]["auroc"]["text"].startswith("too few")
        else:
            assert scored["auroc"] == pytest.approx(metrics["auroc"], abs=1e-12)
    assert any(m["auroc"] is not None for m in evaluation["sites"].values())
    assert evaluation["mode"] == f"deployment: the sites' own evaluation, metrics.jsonl round {chosen}"
    assert f"global model, round {chosen} ({evaluation['mode']}):" in capsys.readouterr().out
    assert lhsfed(["evaluate", str(deployment_run), "--baselines"]) == 2
    assert "deployment run" in capsys.readouterr().err
