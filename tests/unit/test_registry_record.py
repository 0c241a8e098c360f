"""What a campaign logs, read from a run folder's documents, and the registry keys (no MLflow store)."""

from __future__ import annotations

import pytest

from federation.coordinator.campaign_record import (
    Bar,
    bar_of,
    final_epsilon,
    flatten,
    git_commit,
    key,
    round_metrics,
)
from federation.coordinator.registry import campaign_request, parse_reference
from federation.core.errors import ConfigError
from federation.core.records import RoundRecord


def test_the_bar_is_the_pooled_validation_auroc_with_its_noise():
    summary = {
        "selection": {"validation": {"auroc": 0.7, "auroc_se": 0.04}},
        "metrics": {"pooled": {"auroc": 0.9, "auroc_se": 0.01}},
    }

    assert bar_of(summary) == Bar(0.7, se=0.04)
    assert bar_of(summary).split == "validation"
    assert bar_of({"selection": {"validation": {"auroc": 0.7}}}) == Bar(0.7)  # exact: no noise


def test_the_test_split_never_decides_the_bar():
    """A run without a validation AUROC registers nothing, however good its test release; a
    validation AUROC below the bar by more than its noise is refused whatever the test says."""
    test = {"auroc": 0.99, "auroc_se": 0.01}
    without = [
        {"selection": {"validation": {}}, "metrics": {"pooled": test}},
        {"selection": {"validation": {"auroc": None, "n_test": 0}}, "metrics": {"pooled": test}},
        {"metrics": {"pooled": test}},
        {},
    ]
    for summary in without:
        assert bar_of(summary) == Bar(None, se=bar_of(summary).se)
        assert not bar_of(summary).reached(0.0)
    below = {"selection": {"validation": {"auroc": 0.5, "auroc_se": 0.01}}, "metrics": {"pooled": test}}
    assert not bar_of(below).reached(0.6)
    assert not Bar(float("nan")).reached(0.0)  # an undefined AUROC is no AUROC


def test_an_auroc_the_dp_noise_left_undefined_cannot_refute_the_bar():
    """A DP release of real validation rows whose noisy class totals left AUROC undefined (NaN,
    written as null) is infinitely uncertain: registered as unchecked, whatever the test says
    (a poor test AUROC does not refuse it either: the test split never decides)."""
    noisy = {"auroc": None, "loss": 0.7, "loss_se": 0.4, "n_test": 130}
    for test in ({"auroc": 0.99}, {"auroc": 0.2}):
        bar = bar_of({"selection": {"validation": noisy}, "metrics": {"pooled": test}})
        assert bar.undefined and bar.auroc is None and bar.reached(0.99)
    exact = {"auroc": None, "loss": 0.7, "n_test": 130}  # no noise: undefined means one class only
    assert not bar_of({"selection": {"validation": exact}}).reached(0.0)


def test_round_metrics_are_by_step_per_split_and_site_with_odd_site_names_made_safe():
    record = RoundRecord.from_json(
        {
            "round": 3,
            "train": {"St. Mary's": {"epsilon": 0.5, "loss": 0.2}},
            "evaluate": {"pooled": {"auroc": 0.8, "n_test": 10}, "sites": {"St. Mary's": {"auroc": None}}},
            "validation": {"pooled": {"auroc": 0.75}},
        }
    )

    rows = round_metrics([record])

    assert sorted(rows) == [
        ("epsilon/St. Mary_s", 0.5, 3),
        ("test/pooled/auroc", 0.8, 3),
        ("test/pooled/n_test", 10.0, 3),
        ("validation/pooled/auroc", 0.75, 3),
    ]
    assert key("a:b", "c") == "a_b/c"


def test_the_config_flattens_to_dotted_params_with_lists_as_one_value():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": [1, 2], "d": None}


def test_git_commit_is_none_outside_a_checkout(tmp_path):
    assert git_commit(tmp_path) is None


def test_references_parse_by_alias_or_version_and_anything_else_is_one_line():
    assert parse_reference("registry:uci_heart-num@champion") == ("uci_heart-num", "champion", None)
    assert parse_reference("registry:uci_heart-num/12") == ("uci_heart-num", None, "12")
    for bad in ("uci_heart-num@champion", "registry:uci_heart-num", "registry:@x", "registry:t/v1"):
        with pytest.raises(ConfigError, match="is not a registry reference; write registry:TASK@ALIAS"):
            parse_reference(bad)


def test_campaign_keys_are_checked_before_a_run():
    off = {"campaign": None, "registry": {"enabled": False}}
    enabled = {"campaign": None, "registry": {"enabled": True, "uri": "sqlite:///r.db"}}

    assert campaign_request(off, "t-y") is None
    request = campaign_request(enabled, "t-y")
    assert (request.campaign, request.uri, request.min_pooled_auroc) == ("t-y", "sqlite:///r.db", 0.6)
    with pytest.raises(ConfigError, match=r"min_pooled_auroc=1.5 is not an AUROC; give one in \[0, 1\]"):
        campaign_request({"campaign": "c", "registry": {"min_pooled_auroc": 1.5}}, "t-y")
    with pytest.raises(ConfigError, match="registry.min_pooled_auroc='high' is not a finite number"):
        campaign_request({"campaign": "c", "registry": {"min_pooled_auroc": "high"}}, "t-y")


def test_mlflows_last_epsilon_step_is_what_the_site_spent_in_the_whole_run():
    """Under DP the test release is logged at the round it tested (here 1 of 2) and comes after
    every round: MLflow's latest ε (the last step) showed round 2's training only."""
    records = [
        RoundRecord.from_json(
            {"round": 1, "train": {"a": {"epsilon": 1.0}}, "evaluate": {"sites": {"a": {"epsilon": 2.9}}}}
        ),
        RoundRecord.from_json({"round": 2, "train": {"a": {"epsilon": 2.5}}}),
    ]
    rows = round_metrics(records)
    assert [r for r in rows if r[0] == "epsilon/a"] == [("epsilon/a", 2.9, 1), ("epsilon/a", 2.5, 2)]

    summary = {"privacy": {"sites": {"a": {"epsilon": 2.9}}}}
    assert [r for r in final_epsilon(rows, summary) if r[0] == "epsilon/a"] == [
        ("epsilon/a", 2.9, 1),
        ("epsilon/a", 2.9, 2),
    ]
    assert final_epsilon(rows, {"privacy": {"sites": {"a": {"epsilon": None}}}}) == rows  # DP off


def test_selection_validation_counts_validation_rows_as_n_validation_and_old_files_still_read():
    """Issue 28, T.9: summary.json's selection.validation held the validation count as n_test."""
    from server.summary import validation_summary

    pooled = {"auroc": None, "loss": 0.7, "loss_se": 0.4, "n_test": 130}  # the round record's shape
    written = validation_summary(pooled)
    assert written == {"auroc": None, "loss": 0.7, "loss_se": 0.4, "n_validation": 130}
    for validation in (written, pooled):  # new files, and files from before the rename
        bar = bar_of({"selection": {"validation": validation}, "metrics": {"pooled": {"auroc": 0.99}}})
        assert bar.undefined and bar.reached(0.99)
