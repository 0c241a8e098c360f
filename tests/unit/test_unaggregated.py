"""ε a site paid for an update no aggregate used is named (server.unaggregated), from the
sites' own charged-round lists and the rounds' aggregates: lost replies, re-done rounds,
rejected or discarded updates, and sites that went silent."""

from __future__ import annotations

from federation.core.records import RoundRecord
from server.unaggregated import (
    charged_not_aggregated,
    silent_rounds,
    unaggregated_lines,
    unaggregated_summary,
)


def _round(n, charged, aggregated, discarded=False, failures=()):
    return RoundRecord(
        round=n,
        train={site: {"epsilon": 1.0, "charged_rounds": rounds} for site, rounds in charged.items()},
        aggregated=list(aggregated),
        discarded=discarded,
        failures=list(failures),
    )


def _no_reply(site, node=7):
    return {"stage": "train", "node": node, "site": site, "code": None, "reason": "no reply within ..."}


def test_every_charge_used_says_nothing():
    records = [_round(1, {"a": [1], "b": [1]}, "ab"), _round(2, {"a": [1, 2], "b": [1, 2]}, "ab")]
    assert charged_not_aggregated(records) == {} and silent_rounds(records) == {}
    assert unaggregated_lines({"privacy": unaggregated_summary(records)}) == []


def test_a_lost_reply_then_a_later_reply_names_the_round_paid_for_nothing():
    # b trained round 2 but its reply was lost; its round-3 reply lists both charges
    records = [
        _round(1, {"a": [1], "b": [1]}, "ab"),
        _round(2, {"a": [1, 2]}, "a", failures=[_no_reply("b")]),
        _round(3, {"a": [1, 2, 3], "b": [1, 2, 3]}, "ab"),
    ]
    assert charged_not_aggregated(records) == {"b": [2]}
    assert silent_rounds(records) == {}  # b answered again: its list is the truth
    (line,) = unaggregated_lines({"privacy": unaggregated_summary(records)})
    assert line.startswith("ε charged for updates no aggregate used: site b round 2 ")


def test_a_round_redone_after_a_resume_is_paid_twice_and_used_once():
    # the records of a resumed run: round 2 re-done; both sites were charged in the lost attempt too
    records = [_round(1, {"a": [1], "b": [1]}, "ab"), _round(2, {"a": [1, 2, 2], "b": [1, 2]}, "ab")]
    assert charged_not_aggregated(records) == {"a": [2]}


def test_discarded_and_rejected_updates_count_as_unused():
    records = [
        _round(1, {"a": [1]}, "", discarded=True),  # too few updates: discarded
        _round(2, {"a": [1, 2], "b": [2]}, "a"),  # b's update rejected by the screen
    ]
    assert charged_not_aggregated(records) == {"a": [1], "b": [2]}


def test_a_site_silent_to_the_end_is_unconfirmed_with_each_silent_round():
    records = [
        _round(1, {"a": [1], "b": [1]}, "ab"),
        _round(2, {"a": [1, 2]}, "a", failures=[_no_reply("b")]),
        _round(3, {"a": [1, 2, 3]}, "a", failures=[_no_reply("b"), {**_no_reply("c"), "code": 4001}]),
    ]
    assert silent_rounds(records) == {"b": [2, 3]}  # a refusal (code 4001) is not silence
    lines = unaggregated_lines({"privacy": unaggregated_summary(records)})
    assert lines == [
        "ε charged unknown, no reply since: site b rounds 2, 3; if it trained, its ledger holds that ε "
        "though no aggregate used it (lhsfed site ledger at the site shows it)"
    ]


def test_a_release_left_unanswered_after_the_last_reply_is_unconfirmed_too():
    from federation.core.records import Evaluation

    answered = _round(1, {"a": [1], "b": [1]}, "ab")
    answered = RoundRecord(
        round=1,
        train=answered.train,
        aggregated=["a", "b"],
        validation=Evaluation(sites={"a": {"n_test": 20}}),
        failures=[{**_no_reply("b"), "stage": "evaluate"}],
    )
    assert silent_rounds([answered]) == {"b": [1]}  # trained, then silent to its validation release
    later = _round(2, {"a": [1, 2], "b": [1, 2]}, "ab")
    assert silent_rounds([answered, later]) == {}  # its round-2 reply carried its ledger's ε


def test_a_resumed_runs_ledger_word_names_the_in_flight_round_and_counts_it():
    from server.ledger_word import in_flight_lines

    word = {
        "a": {"charged_rounds": [1, 2], "epsilon": 2.699, "site_epsilon": 2.699},
        "b": {"charged_rounds": [1], "epsilon": 2.034, "site_epsilon": 2.034},
    }
    assert in_flight_lines(word, resumed_after=1) == [
        "resumed after round 1: ε charged at site a for round(s) 2 of the stopped attempt (its ε of "
        "this run is now 2.699); an update it kept is sent again at no charge, and the run's last "
        "lines name any charge no aggregate used"
    ]
    # b was asked and answered [1]: a shorter list than a later reply's does not hide that reply
    records = [_round(1, {"a": [1], "b": [1]}, "ab"), _round(2, {"b": [1, 2]}, "b")]
    reported = {site: w["charged_rounds"] for site, w in word.items()}
    assert charged_not_aggregated(records, reported) == {"a": [2]}


def test_a_lost_superlink_is_one_line_with_the_resume_command(tmp_path):
    from federation.coordinator.deployment import superlink_lost

    assert superlink_lost("127.0.0.1:9093", 7, tmp_path) == (
        f"the SuperLink at 127.0.0.1:9093 stopped answering during run 7; no round was checkpointed in "
        f"{tmp_path}; once it answers again, start the run again (the sites keep what their ledgers "
        "charged; the resumed run's last lines name any charge no aggregate used)"
    )
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    (tmp_path / "metrics.jsonl").write_text('{"round": 1}\n{"round": 2}\n')
    line = superlink_lost("127.0.0.1:9093", 7, tmp_path)
    assert f"2 round(s) are checkpointed in {tmp_path}; once it answers again, continue with " in line
    assert f"lhsfed-train resume={tmp_path} " in line and "\n" not in line


def test_a_site_of_the_stopped_attempt_that_does_not_answer_the_resume_is_unconfirmed():
    word = {"c": {"unanswered_after": 1}}
    silent = [_round(1, {"a": [1], "c": [1]}, "ac"), _round(2, {"a": [1, 2]}, "a")]
    assert unaggregated_summary(silent, word)["unconfirmed"] == {"c": [2]}
    answered = [_round(1, {"a": [1], "c": [1]}, "ac"), _round(2, {"a": [1, 2], "c": [1, 2]}, "ac")]
    assert unaggregated_summary(answered, word)["unconfirmed"] == {}
