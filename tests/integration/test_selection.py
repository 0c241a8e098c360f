"""Best-round selection and early stopping read the validation rows only, never the test rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch
from flwr.app import Message, MetricRecord

from federation.core import wire
from federation.core.records import RoundRecord, read_rounds
from federation.core.settings import EarlyStoppingSettings
from federation.modeler.run_loader import round_record
from server.selection import chosen_round, select, should_stop
from tests.helpers.overfit_cohort import overfit_run_config, write_overfit_cohort
from tests.helpers.privacy_runs import rdp_epsilon

POISON_FROM = 2  # the test split's metrics lie from this round on


def _record(
    server_round: int, val_loss: float | None, test_loss: float = 0.5, *, aggregated: bool = True
) -> RoundRecord:
    validation = {"pooled": {} if val_loss is None else {"loss": val_loss, "auroc": 1 - val_loss}}
    return RoundRecord.from_json(
        {
            "round": server_round,
            "aggregated": ["a"] if aggregated else [],
            "discarded": False,
            "validation": validation,
            "evaluate": {"pooled": {"loss": test_loss}},
        }
    )


# ---- pure rules ------------------------------------------------------------------------------


def test_the_lowest_validation_loss_is_selected_and_a_tie_keeps_the_earlier_round():
    records = [_record(1, 0.6), _record(2, 0.4), _record(3, 0.5), _record(4, 0.4)]

    assert select(records, "loss").round == 2
    assert select(records, "loss").rounds_since == 2
    assert select(records, "auroc").round == 2  # auroc = 1 - loss here: highest is best


def test_the_test_split_takes_no_part_in_the_choice():
    records = [_record(1, 0.6, test_loss=0.1), _record(2, 0.4, test_loss=0.9)]

    assert select(records, "loss").round == 2


def test_rounds_without_validation_or_before_any_aggregation_are_not_candidates():
    records = [_record(1, 0.1, aggregated=False), _record(2, None), _record(3, 0.5)]

    assert select(records, "loss").round == 3
    assert chosen_round([_record(1, None), _record(2, None)], "loss") == 2  # no validation: the last


def test_patience_stops_after_that_many_rounds_without_improvement():
    records = [_record(1, 0.5), _record(2, 0.6), _record(3, 0.7)]
    rules = EarlyStoppingSettings(patience=2)

    assert should_stop(records, "loss", rules)
    assert not should_stop(records[:2], "loss", rules)
    assert not should_stop(records, "loss", EarlyStoppingSettings(patience=0))  # 0: off
    assert not should_stop(records, "loss", EarlyStoppingSettings(patience=2, min_rounds=4))
    assert not should_stop([_record(1, None), _record(2, None), _record(3, None)], "loss", rules)


# ---- an overfitting cohort, the test split poisoned mid-run ------------------------------------


def _poison_test_metrics(message: Message, context, call_next) -> Message:
    """From round POISON_FROM on, the site's test numbers claim a perfect model (loss 0)."""
    reply = call_next(message, context)
    if message.metadata.message_type != "evaluate" or reply.has_error():
        return reply
    server_round = int(message.content[wire.CONFIG][wire.SERVER_ROUND])
    if server_round < POISON_FROM:
        return reply
    metrics = dict(reply.content[wire.METRICS])
    metrics.update({wire.EVAL_LOSS: 0.0, wire.AUROC: 1.0})
    reply.content[wire.METRICS] = MetricRecord(metrics)
    return reply


@pytest.fixture(scope="module")
def overfit_runs(tmp_path_factory):
    from federation.coordinator.inprocess import run_in_process

    data = tmp_path_factory.mktemp("overfit")
    spec = write_overfit_cohort(data)
    patch = pytest.MonkeyPatch()
    patch.setenv("LHSFED_SITE_DATA_DIR", str(data))
    runs = {}
    try:
        for name, mods in (("clean", []), ("poisoned", [_poison_test_metrics])):
            run_dir = data / name
            config = overfit_run_config(spec, run_dir, "early_stopping.patience=0")
            runs[name] = (run_dir, run_in_process(config, run_dir=run_dir, num_nodes=3, mods=mods))
    finally:
        patch.undo()
    return runs


@pytest.mark.slow
def test_overfitting_run_hands_out_the_round_with_the_lowest_validation_loss(overfit_runs):
    run_dir, summary = overfit_runs["clean"]
    records = read_rounds(run_dir)
    losses = {r["round"]: r["validation"]["pooled"]["loss"] for r in records}
    chosen = summary["selection"]["round"]

    assert len(records) == 6 and not summary["selection"]["stopped_early"]
    assert chosen != records[-1]["round"]  # the cohort overfits: later rounds are worse
    assert losses[chosen] == min(losses.values())
    assert losses[records[-1]["round"]] > losses[chosen]
    assert summary["selection"]["validation"]["loss"] == losses[chosen]
    selected = records[chosen - 1]
    assert summary["metrics"]["pooled"]["auroc"] == selected["evaluate"]["pooled"]["auroc"]
    assert all(site.get("auroc_ci_low") is not None for site in selected["evaluate"]["sites"].values())
    model = torch.load(run_dir / "model.pt", weights_only=True)
    kept = torch.load(run_dir / "rounds" / f"round_{chosen:03d}.pt", weights_only=True)
    assert model["round"] == chosen
    assert all(torch.equal(model["state_dict"][k], v) for k, v in kept["state_dict"].items())
    assert round_record(run_dir).round == chosen  # lhsfed evaluate's default round


@pytest.mark.slow
def test_a_poisoned_test_split_does_not_change_the_choice(overfit_runs):
    (clean_dir, clean), (poisoned_dir, poisoned) = overfit_runs["clean"], overfit_runs["poisoned"]
    poisoned_records = read_rounds(poisoned_dir)

    assert poisoned["selection"] == clean["selection"]
    assert [r["validation"] for r in poisoned_records] == [r["validation"] for r in read_rounds(clean_dir)]
    # Control: the poison is real, and choosing by the test split would have followed it.
    assert poisoned_records[-1]["evaluate"]["pooled"]["loss"] == 0.0
    by_test = [RoundRecord.from_json({**r, "validation": r["evaluate"]}) for r in poisoned_records]
    assert select(by_test, "loss").round == POISON_FROM != poisoned["selection"]["round"]


# ---- early stopping under DP leaves budget unspent ------------------------------------------


def _ledger_steps(ledgers: Path) -> dict[str, list[tuple[int, float, float, int, str]]]:
    found = {}
    for path in sorted(ledgers.glob("*.sqlite")):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            found[path.stem] = conn.execute(
                "SELECT server_round, noise_multiplier, sample_rate, steps, release FROM spend ORDER BY id"
            ).fetchall()
    return found


@pytest.mark.slow
def test_early_stopping_stops_and_the_ledgers_hold_only_the_rounds_taken(tmp_path, monkeypatch):
    from federation.coordinator.inprocess import run_in_process

    spec = write_overfit_cohort(tmp_path)
    monkeypatch.setenv("LHSFED_SITE_DATA_DIR", str(tmp_path))
    # What the ledgers hold when a run stops early, not when the releases' noise lets it stop
    # (that rule: tests/unit/test_histogram_metrics.py): ties within the noise are off here, so
    # the noisy validation losses stop the run as exact ones would.
    monkeypatch.setattr("server.selection.TIE_Z", 0.0)
    run_dir, rounds = tmp_path / "run", 12
    # A step size far too large for DP-SGD's noise: the validation loss stops improving early.
    config = overfit_run_config(
        spec,
        run_dir,
        "privacy=dp",
        f"rounds={rounds}",
        "train.lr=0.3",
        "train.local_epochs=2",
        "early_stopping.patience=2",
    )
    summary = run_in_process(config, run_dir=run_dir, num_nodes=3)

    taken = summary["rounds"]
    assert summary["selection"]["stopped_early"] and taken < rounds
    assert taken - summary["selection"]["round"] == 2  # patience ran out, not the rounds
    ledgers = _ledger_steps(run_dir / "ledgers")
    assert sorted(ledgers) == sorted(summary["privacy"]["sites"])
    for site, rows in ledgers.items():
        spent = summary["privacy"]["sites"][site]
        training = [r for r in rows if not r[4]]  # DP-SGD rows; the others are releases
        assert [r[0] for r in training] == list(range(1, taken + 1))
        history = [(sigma, q, steps) for _, sigma, q, steps, _ in training]
        # this run's ε: its training and its releases (validation each round, the test split once)
        everything = [(sigma, q, steps) for _, sigma, q, steps, _ in rows]
        assert [r[4].split(" ")[0] for r in rows if r[4]] == ["validation"] * taken + ["test"]
        delta = summary["privacy"]["delta"] or 1e-5
        assert spent["epsilon"] == pytest.approx(rdp_epsilon(everything, delta=delta), rel=1e-6)
        assert spent["epsilon"] < spent["planned_epsilon"] == 3.0
        assert spent["unspent_epsilon"] == pytest.approx(3.0 - spent["epsilon"])
        # Control: the steps of all planned rounds would have reached the planned ε.
        full = rdp_epsilon([(sigma, q, steps * rounds) for sigma, q, steps in history[:1]], delta=delta)
        assert full > spent["epsilon"]
    assert json.loads((run_dir / "summary.json").read_text())["selection"]["stopped_early"]


@pytest.mark.slow
def test_a_resumed_run_chooses_and_stops_as_the_uninterrupted_one(overfit_runs, tmp_path, monkeypatch):
    """Killed after round 4 (here: a run of 4 rounds), resumed with 6: patience 2 after the
    best round 3 stops it after round 5; model.pt comes from the checkpoint's best arrays."""
    from federation.coordinator.inprocess import run_in_process

    clean_dir, clean = overfit_runs["clean"]
    spec = write_overfit_cohort(tmp_path)  # seeded: the same files as the clean run's
    monkeypatch.setenv("LHSFED_SITE_DATA_DIR", str(tmp_path))
    run_dir = tmp_path / "run"
    run_in_process(
        overfit_run_config(spec, run_dir, "rounds=4", "early_stopping.patience=2"),
        run_dir=run_dir,
        num_nodes=3,
    )
    (run_dir / "model.pt").unlink()
    resumed = run_in_process(
        overfit_run_config(spec, run_dir, "early_stopping.patience=2") | {"run.resume": True},
        run_dir=run_dir,
        num_nodes=3,
    )

    chosen = clean["selection"]["round"]
    assert resumed["selection"]["round"] == chosen
    assert resumed["selection"]["stopped_early"] and resumed["rounds"] == chosen + 2
    assert resumed["selection"]["validation"] == clean["selection"]["validation"]
    model = torch.load(run_dir / "model.pt", weights_only=True)
    kept = torch.load(clean_dir / "rounds" / f"round_{chosen:03d}.pt", weights_only=True)
    assert model["round"] == chosen
    assert all(torch.equal(model["state_dict"][k], v) for k, v in kept["state_dict"].items())


def test_bad_selection_and_split_values_are_one_clear_line_each():
    from federation.coordinator.flwr_app_config import default_run_config
    from federation.core.errors import ConfigError
    from federation.core.settings import RunSettings

    flat = default_run_config() | {
        "selection.metric": "accuracy",
        "early_stopping.patience": -1,
        "early_stopping.improvement": "soon",
    }
    spec = json.loads(flat["data.spec"])
    spec["split"]["validation_fraction"] = 1.0
    with pytest.raises(ConfigError) as err:
        RunSettings.from_run_config(flat | {"data.spec": json.dumps(spec)})
    assert "data.split.validation_fraction must be in [0, 1) (got 1.0)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        RunSettings.from_run_config(flat)
    assert "selection.metric must be one of loss, auroc (got 'accuracy')" in str(err.value)
    assert "early_stopping.patience must be >= 0" in str(err.value)
    assert "early_stopping.improvement must be one of tie, clear (got 'soon')" in str(err.value)
    assert RunSettings.from_run_config(default_run_config()).early_stopping.improvement == "tie"
