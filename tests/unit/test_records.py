"""Round records and evaluations read back exactly as written; older records still load."""

from __future__ import annotations

import json
import math

from federation.core.records import Evaluation, RoundRecord, read_round_records
from federation.core.run_layout import METRICS, jsonl_line

# A metrics.jsonl line as the server writes it (SecAgg+ round: secure_aggregation present).
LINE = {
    "round": 2,
    "train": {"va": {"loss": 0.61, "num_examples": 120, "epsilon": 0.8, "site_epsilon": 2.4}},
    "evaluate": {
        "sites": {"va": {"auroc": 0.74, "n_test": 40, "auroc_ci_low": None}},
        "pooled": {"auroc": 0.74, "brier": 0.2, "loss": 0.55, "n_test": 40},
    },
    "validation": {"sites": {}, "pooled": {}},
    "failures": [{"stage": "train", "node": 7, "site": "hungary", "code": 4001, "reason": "cap"}],
    "rejected": [],
    "aggregated": ["va"],
    "discarded": False,
    "discard_reason": None,
    "secure_aggregation": {"sites": 1},
}


def test_a_written_line_reads_back_to_the_same_json():
    record = RoundRecord.from_json(json.loads(json.dumps(LINE)))

    assert record.to_json() == LINE
    assert record.evaluate.pooled["auroc"] == 0.74 and record.changed_model


def test_a_plain_round_has_no_secure_aggregation_key_and_nan_is_null():
    record = RoundRecord(round=1, evaluate=Evaluation(pooled={"auroc": math.nan}), aggregated=["a"])

    document = record.to_json()
    assert "secure_aggregation" not in document
    assert document["evaluate"] == {"sites": {}, "pooled": {"auroc": None}}
    assert record.normalized().evaluate.pooled == {"auroc": None}  # what a resume decides from


def test_an_older_record_without_validation_or_discarded_loads(tmp_path):
    old = {"round": 1, "train": {}, "evaluate": {"sites": {}, "pooled": {}}, "failures": []}
    (tmp_path / METRICS).write_text(jsonl_line(old) + "\n\n" + jsonl_line(LINE) + "\n")

    first, second = read_round_records(tmp_path)

    assert first.validation == Evaluation() and not first.discarded and not first.changed_model
    assert second.to_json() == LINE
