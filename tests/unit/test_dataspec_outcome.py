"""Issue 28 (T, 'What to build' 4 and 5): the spec's optional outcome definition and horizon,
and the embedded UCI spec marking sex and age bands as subgroups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from client.site_spec import SpecMismatch, site_spec
from federation.core.dataspec import load_spec_file, parse_dataset_spec, spec_from_json
from federation.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
UCI = REPO / "configs" / "data" / "uci_heart.yaml"


def _raw() -> dict:
    return yaml.safe_load(UCI.read_text())


def test_the_uci_spec_marks_sex_and_age_bands_and_states_its_outcome():
    spec = load_spec_file(UCI)
    assert [(f.name, f.subgroup, f.subgroup_bins) for f in spec.subgroup_features] == [
        ("age", False, (50.0, 65.0)),
        ("sex", True, ()),
    ]
    assert "angiographic coronary artery disease" in spec.outcome_definition
    assert "> 50% diameter narrowing" in spec.outcome_definition
    assert "num 1-4 vs 0" in spec.outcome_definition
    assert "diagnostic" in spec.outcome_horizon and "angiography" in spec.outcome_horizon


def test_a_spec_without_an_outcome_encodes_as_before_and_one_with_it_round_trips():
    raw = _raw()
    del raw["outcome"]
    plain = parse_dataset_spec(raw)
    assert "outcome" not in json.loads(plain.to_json())
    assert plain.outcome_definition is None and plain.outcome_horizon is None

    spec = load_spec_file(UCI)
    again = spec_from_json(spec.to_json())
    assert again == spec and again.outcome_horizon == spec.outcome_horizon
    only_horizon = parse_dataset_spec({**raw, "outcome": {"horizon": "30 days"}})
    assert json.loads(only_horizon.to_json())["outcome"] == {"horizon": "30 days"}


@pytest.mark.parametrize(
    "outcome, message",
    [
        ({"definition": 3}, "data.outcome.definition must be non-empty text (got 3)"),
        ({"horizon": "  "}, "data.outcome.horizon must be non-empty text"),
        (
            {"defintion": "x"},
            "data.outcome.defintion: unknown key in the dataset spec; did you mean 'definition'?",
        ),
        ("angiography", "data.outcome must be a mapping like {definition: TEXT, horizon: TEXT}"),
    ],
)
def test_a_bad_outcome_is_refused_in_one_line_naming_the_key(outcome, message):
    with pytest.raises(ConfigError) as err:
        parse_dataset_spec({**_raw(), "outcome": outcome})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_site_accepts_the_run_spec_with_its_outcome_and_refuses_one_that_changes_it(tmp_path):
    run = spec_from_json(load_spec_file(UCI).to_json())  # as the run config carries it
    assert site_spec(UCI, run) == run

    other = tmp_path / "site.yaml"
    other.write_text(yaml.safe_dump({**_raw(), "outcome": {"definition": "death within 30 days"}}))
    with pytest.raises(SpecMismatch, match="differs from this site's at outcome"):
        site_spec(other, run)
