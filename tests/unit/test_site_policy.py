"""What a deployed site enforces whatever the coordinator's run config says (the real
ClientApp in this process, a node config as the entrypoint writes it)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from flwr.common.serde import message_to_proto

from client.ledger import SiteLedger
from client.node_identity import NodeIdentity
from client.site_policy import SitePolicy
from federation.core import wire
from federation.core.settings import RunSettings
from tests.helpers.privacy_runs import rdp_epsilon
from tests.helpers.site_nodes import (
    SPEC_FILE,
    deployed_node,
    initial_arrays,
    message,
    run_config,
    send,
)


def _ledger(node: dict) -> SiteLedger:
    return SiteLedger(
        node["ledger-path"], identity=NodeIdentity.of_key(node["node-key"]), site=node["site-name"]
    )


def _train(node, config, server_round=1):
    return send(node, config, message("train", initial_arrays(config), server_round))[0]


def test_epsilon_is_composed_from_the_ledger_not_memory(tmp_path):
    node, config = deployed_node(tmp_path / "va", "va"), run_config(tmp_path, "rounds=3")
    replies = [_train(node, config, r) for r in (1, 2, 3)]  # a fresh Context every round

    history = _ledger(node).history()
    assert len(history) == 3 and not any(r.has_error() for r in replies)
    eps = [r.content[wire.METRICS][wire.EPSILON] for r in replies]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(rdp_epsilon(history), rel=1e-9)
    assert eps[-1] <= 3.0  # the run's target, over all its rounds
    assert replies[-1].content[wire.METRICS][wire.STEPS] == sum(n for _, _, n in history)


def test_a_capped_site_refuses_without_sending_arrays(tmp_path):
    node, config = deployed_node(tmp_path / "va", "va"), run_config(tmp_path, "rounds=3")
    spent = _train(node, config, 1).content[wire.METRICS][wire.SITE_EPSILON]
    cap = round(spent * 1.05, 3)  # hospital IT lowers the cap: one more round would pass it

    second = _train({**node, "max-epsilon": cap}, config, 2)

    assert second.has_error() and second.error.code == wire.BUDGET_REFUSED
    assert "site va refuses round 2: ε would reach" in second.error.reason
    assert f"> cap {cap:.4g} (spent {spent:.4g}" in second.error.reason
    assert len(_ledger(node).entries()) == 1  # nothing spent


def test_the_coordinators_delta_changes_nothing_at_the_site(tmp_path):
    """privacy.delta=0.5 from the coordinator changes nothing: the site's δ decides ε and cap."""
    honest, greedy = (deployed_node(tmp_path / name, max_epsilon=3.0) for name in ("a", "b"))
    replies = [
        _train(honest, run_config(tmp_path, "rounds=10")),
        _train(greedy, run_config(tmp_path, "rounds=10", "privacy.delta=0.5")),
    ]

    metrics = [r.content[wire.METRICS] for r in replies]
    assert metrics[0][wire.NOISE_MULTIPLIER] == metrics[1][wire.NOISE_MULTIPLIER]
    assert metrics[0][wire.EPSILON] == metrics[1][wire.EPSILON] > 0
    assert metrics[1][wire.DELTA] == 1e-5
    # The greedy run's rounds after the tenth are refused exactly as the honest run's would be.
    assert _ledger(greedy).history() == _ledger(honest).history()


def test_a_node_without_its_policy_refuses_every_message(tmp_path):
    config = run_config(tmp_path)
    for missing in ("max-epsilon", "ledger-path", "node-key"):
        node = deployed_node(tmp_path / missing)
        del node[missing]
        reply = _train(node, config)
        assert reply.has_error() and reply.error.code == wire.SITE_CONFIG_ERROR
        assert reply.error.reason == "site configuration error (details in the site's log)"


def test_require_dp_refuses_privacy_off(tmp_path):
    reply = _train(deployed_node(tmp_path / "s"), run_config(tmp_path, "privacy=off"))
    assert reply.has_error() and reply.error.code == wire.BUDGET_REFUSED
    assert "requires DP (require-dp)" in reply.error.reason


@pytest.mark.parametrize(
    ("policy", "overrides", "reason"),
    [
        ({"max_rounds": 5}, ("rounds=6",), "at most 5 rounds"),
        ({"max_local_epochs": 1}, ("train.local_epochs=2",), "at most 1 local epochs"),
        ({"min_noise_multiplier": 5.0}, ("privacy.target_epsilon=50",), "noise multiplier >= 5"),
        ({"delta": 1e-3}, (), "more than 1/(10·n_train)"),
    ],
)
def test_site_limits_refuse_runs_outside_them(tmp_path, policy, overrides, reason):
    reply = _train(deployed_node(tmp_path / "s", **policy), run_config(tmp_path, *overrides))
    assert reply.has_error() and reason in reply.error.reason
    assert (
        not tmp_path.joinpath("s", "ledger.sqlite").exists()
        or not _ledger(deployed_node(tmp_path / "s")).entries()
    )


def test_two_concurrent_train_messages_with_room_for_one_round_train_once(tmp_path):
    """The cap is checked and the spend written in one transaction: no double spending."""
    config = run_config(tmp_path, "rounds=10")
    probe = deployed_node(tmp_path / "probe")
    one_round = _train(probe, config).content[wire.METRICS][wire.SITE_EPSILON]
    two_rounds = rdp_epsilon(_ledger(probe).history() * 2)
    cap = (one_round + two_rounds) / 2  # room for one round, not two
    node = deployed_node(tmp_path / "site", max_epsilon=cap)
    replies: list = [None, None]
    barrier = threading.Barrier(2)

    def train(i):
        barrier.wait()
        replies[i] = _train(node, config, server_round=1)

    threads = [threading.Thread(target=train, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    assert sorted(r.has_error() for r in replies) == [False, True]
    assert len(_ledger(node).entries()) == 1
    assert _ledger(node).entries()[-1].epsilon_total <= cap


def test_deleting_the_ledger_or_renaming_the_site_refuses_training(tmp_path):
    """The budget follows the node's key, not a file or a name."""
    config = run_config(tmp_path, "rounds=3")
    node = deployed_node(tmp_path / "s")
    assert not _train(node, config, 1).has_error()

    renamed = _train({**node, "site-name": "cleveland-2"}, config, 2)
    moved = _train({**node, "ledger-path": str(tmp_path / "s" / "fresh.sqlite")}, config, 2)
    tmp_path.joinpath("s", "ledger.sqlite").unlink()
    deleted = _train(node, config, 2)

    for reply, reason in (
        (renamed, "site renamed"),
        (moved, "ledger missing or emptied"),
        (deleted, "ledger missing or emptied"),
    ):
        assert reply.has_error() and reply.error.code == wire.BUDGET_REFUSED
        assert reason in reply.error.reason and str(tmp_path) not in reply.error.reason


def _site_file_with_identifiers(tmp_path):
    """A hospital export with identifying columns the site's spec leaves out."""
    import pandas as pd

    from tests.helpers.site_nodes import site_data_file

    spec = yaml.safe_load(SPEC_FILE.read_text())
    frame = pd.read_csv(site_data_file("cleveland"), header=None, names=spec["columns"])
    frame.insert(0, "mrn", [f"MRN{900000 + i}" for i in range(len(frame))])
    frame.insert(1, "name", [f"Patient Surname{i:03d}" for i in range(len(frame))])
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    site_spec = {**spec, "header": True, "columns": ["mrn", "name", *spec["columns"]]}
    spec_path = tmp_path / "site_spec.yaml"
    spec_path.write_text(yaml.safe_dump(site_spec))
    return path, spec_path, frame


def test_a_coordinator_spec_naming_other_columns_is_refused_without_any_value(tmp_path):
    """The coordinator's spec reads `mrn` and `name`; the site refuses, and
    nothing from the file is in the reply's bytes."""
    path, spec_path, frame = _site_file_with_identifiers(tmp_path)
    node = deployed_node(tmp_path / "s", data_path=path, spec_path=str(spec_path))
    honest = run_config(
        tmp_path,
        "data.header=true",
        "data.columns=[mrn,name,age,sex,cp,trestbps,"
        "chol,fbs,restecg,thalach,exang,oldpeak,slope,ca,thal,num]",
    )
    spec = json.loads(honest["data.spec"])
    spec["features"] += [
        {"name": "mrn", "type": "categorical", "levels": ["MRN900001"]},
        {"name": "name", "type": "categorical", "levels": ["x"]},
    ]
    hostile = {**honest, "data.spec": json.dumps(spec)}

    ok = send(node, honest, message("query", None))[0]
    refused = [
        send(node, hostile, message(kind, initial_arrays(honest)))[0]
        for kind in ("query", "train", "evaluate")
    ]

    assert not ok.has_error()  # the site's own spec, sent back by an honest coordinator, works
    on_the_wire = b"".join(message_to_proto(r).SerializeToString() for r in refused)
    for r in refused:
        assert r.has_error() and r.error.code == wire.SPEC_MISMATCH
        assert r.error.reason.startswith(
            "spec mismatch: the run's dataset spec differs from this site's at features"
        )
    values = [*frame["mrn"], *frame["name"], *(str(v) for v in frame["chol"].unique())]
    assert not [v for v in values if str(v).encode() in on_the_wire and len(str(v)) > 3]
    assert str(tmp_path).encode() not in on_the_wire


def test_a_one_or_two_patient_test_split_is_released_only_through_noise(tmp_path):
    """Evaluation uses the site's own split. Under DP a tiny one is released like any other, as
    one Gaussian release charged to the ledger (the noise, not a row count, protects it); a
    second test release of the run is refused (the plan holds one)."""
    spec = yaml.safe_load(SPEC_FILE.read_text())
    spec["split"] = {"test_fraction": 0.005, "seed": 42}
    spec_path = tmp_path / "tiny_split.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    node = deployed_node(tmp_path / "s", spec_path=str(spec_path))
    config = run_config(tmp_path, "data.split.test_fraction=0.005")
    assert not _train(node, config).has_error()
    test = {wire.EVAL_SPLIT: "test"}

    reply, again = send(
        node,
        config,
        message("evaluate", initial_arrays(config), **test),
        message("evaluate", initial_arrays(config), **test),
    )

    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    metrics = reply.content[wire.METRICS]
    assert metrics[wire.N_TEST] <= 2 and metrics[wire.RELEASE_NOISE_STD] > 1.0
    rows = [e for e in _ledger(node).entries() if e.is_release]
    # where the spec marks subgroups, the run's one subgroup release is charged first, then the test's;
    # a second test message is refused at the first of them (nothing more is spent)
    kinds = (["subgroups"] if RunSettings.from_run_config(config).data.subgroup_features else []) + ["test"]
    assert [r.release.split(" ")[0] for r in rows] == kinds and rows[-1].noise_multiplier > 1.0
    refused = f"refuses a {kinds[0]} release: this run's plan holds 1"
    assert again.has_error() and refused in again.error.reason
    assert len([e for e in _ledger(node).entries() if e.is_release]) == len(kinds)


def test_a_site_that_did_not_train_the_round_is_not_evaluated(tmp_path):
    node, config = deployed_node(tmp_path / "s"), run_config(tmp_path)
    reply = send(node, config, message("evaluate", initial_arrays(config), 1))[0]
    assert reply.has_error() and "did not train round 1" in reply.error.reason
    assert not _train(node, config).has_error()
    evaluated = send(node, config, message("evaluate", initial_arrays(config), 1))[0]
    assert not evaluated.has_error()
    metrics = evaluated.content[wire.METRICS]  # its validation release (AUROC may be undefined: noise)
    assert metrics[wire.RELEASE_NOISE_STD] > 0 and wire.VALIDATION_PREFIX + wire.AUROC in metrics


def test_a_two_row_category_is_not_released_by_the_feature_statistics(tmp_path):
    """Feature statistics: Switzerland has 2 training rows with cp=1. Under DP the site releases
    no statistic at all (the spec's ranges standardize); in a run without DP that its policy
    allows, with the site's default minimum cell size (10) the real query handler releases
    nothing of cp."""
    from federation.cli.site import load_dataset_spec
    from federation.core.data import load_site
    from tests.helpers.site_nodes import site_data_file

    spec = load_dataset_spec("uci_heart")
    rows = load_site(site_data_file("switzerland"), spec, "switzerland").x_train
    names = spec.encoded_feature_names()
    assert int(np.nansum(rows[:, names.index("cp=1")])) == 2  # the rare cell exists

    under_dp = send(
        deployed_node(tmp_path / "dp", "switzerland"), run_config(tmp_path), message("query", None)
    )[0]
    node = deployed_node(tmp_path / "ch", "switzerland", **{"require-dp": "false"})
    reply = send(node, run_config(tmp_path, "privacy=off"), message("query", None))[0]

    assert wire.STATS_COUNT not in under_dp.content[wire.METRICS]
    metrics = reply.content[wire.METRICS]
    for level in ("cp=1", "cp=2", "cp=3", "cp=4"):
        i = names.index(level)
        assert metrics[wire.STATS_COUNT][i] == metrics[wire.STATS_SUM][i] == 0.0
    assert metrics[wire.STATS_COUNT][names.index("age")] == len(rows)  # a full cell is released
    # an exact release too is a ledger row (z = 0: no finite ε, as DP-off training)
    assert [e.noise_multiplier for e in _ledger(node).entries() if e.is_release] == [0.0]


def test_a_simulation_shows_what_each_simulated_site_enforced(dp_run):
    """The launcher plays every hospital: their policies are in the run folder, and the sites'
    δ in metrics.jsonl is that policy's."""
    import json

    policies = json.loads((dp_run / "site_policy.json").read_text())
    assert set(policies) == {"cleveland", "hungary", "switzerland", "va"}
    for site, policy in policies.items():
        # δ "auto": each derives its own from its training rows (1e-5 for these small sites)
        assert (policy["max_epsilon"], policy["delta"], policy["require_dp"]) == (10.0, "auto", False)
        # the task's ledgers, shared by its campaigns (federation.coordinator.site_ledgers)
        shared = dp_run.parent / "outputs" / "ledgers" / "uci_heart-num"
        assert policy["ledger_path"] == str(shared / f"{site}.sqlite")
    first = json.loads((dp_run / "metrics.jsonl").read_text().splitlines()[0])
    assert {m["delta"] for m in first["train"].values()} == {1e-5}


def _planned_releases(config: dict, node: dict) -> list[tuple[float, float, int]]:
    """The releases a run's plan holds at this site (validation each round, the test split once)."""
    from federation.core.data import load_site
    from federation.core.privacy import site_noise_for_run

    settings = RunSettings.from_run_config(config)
    n_train = len(load_site(Path(node["data-path"]), settings.data, node["site-name"]).y_train)
    share = SitePolicy.release_epsilon_share
    return site_noise_for_run(
        settings, n_train, delta=1e-5, accountant="rdp", release_share=share
    ).release_history


def test_rounds_past_the_plan_or_sent_again_never_take_the_run_past_its_target(tmp_path):
    """A coordinator numbering rounds past ``rounds`` (the site's old on-plan test counted
    rounds, so they trained at the plan's σ) or re-sending the last one: every reply's run ε,
    recomputed from the ledger, stays within the target; the extra rounds are refused."""
    config = run_config(tmp_path, "rounds=3", "privacy.target_epsilon=1")
    node = deployed_node(tmp_path / "site", max_epsilon=50.0)
    for server_round in (1, 2, 3):
        assert not _train(node, config, server_round).has_error()
    plan = _ledger(node).history()

    past = _train(node, config, server_round=4)
    assert past.has_error() and "rounds 1 to 3" in past.error.reason
    # control: a 4th round at the plan's σ, with the run's planned releases, overspends
    assert rdp_epsilon(plan + plan[-1:] + _planned_releases(config, node)) > 1.0

    for _ in range(3):  # round 3 again (as a resume re-does its interrupted round), and again
        again = _train(node, config, server_round=3)
        assert rdp_epsilon(_ledger(node).history()) <= 1.0 * (1 + 1e-6)
        if again.has_error():
            assert again.error.code == wire.BUDGET_REFUSED
    assert len(_ledger(node).entries()) >= 3
