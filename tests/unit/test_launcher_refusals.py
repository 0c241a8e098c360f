"""``lhsfed-train`` refuses bad input before the runtime starts, in one line, and leaves no
``outputs/runs/DATE/TIME`` folder behind (Hydra makes it before the task runs)."""

from __future__ import annotations

import os
import subprocess

import pytest
from hydra import compose, initialize_config_dir

from federation.coordinator.launcher import CONFIG_DIR, train
from federation.core.dataspec import parse_dataset_spec, unknown_keys
from federation.core.errors import ConfigError, LhsFedError
from federation.core.settings import number
from tests.helpers.bad_input_cases_launcher import CASES
from tests.helpers.runs import LAUNCHER


def _launch(tmp, argv: list[str]) -> subprocess.CompletedProcess:
    """As a user would: in ``tmp``, the default run folder (under ``tmp/outputs``)."""
    (tmp / "afile").write_text("not a folder\n")
    args = [str(LAUNCHER), *(a.format(tmp=tmp) for a in argv)]
    return subprocess.run(
        args,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0"},
    )


# Each lhsfed-train start costs seconds of imports: the real command for one case of each kind,
# every case through the launcher's train() in this process.
CLI_KINDS = (
    "federation.num_nodes=10",
    "strategy.min_train_nodes=10",
    "+data.strict_vaules",
    "rounds=abc",
    "hydra.run.dir",
    "federation.data_dir",
    "resume",
    "federation.ray_address=127",
)
CLI_CASES = [case for case in CASES if case[0][0].startswith(CLI_KINDS)]


def _ids(cases):
    return [" ".join(argv) for argv, _ in cases]


@pytest.mark.parametrize("argv, expected", CLI_CASES, ids=_ids(CLI_CASES))
def test_refused_before_the_runtime_in_one_line_and_no_folder_left(tmp_path, argv, expected):
    proc = _launch(tmp_path, argv)

    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lhsfed-train: error: ") and expected.format(tmp=tmp_path) in last
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "round " not in proc.stdout  # no round ran: refused before the runtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no outputs/runs/DATE/TIME


IN_PROCESS = [case for case in CASES if not case[0][0].startswith("hydra.")]  # Hydra's own key


@pytest.mark.parametrize("argv, expected", IN_PROCESS, ids=_ids(IN_PROCESS))
def test_train_refuses_each_case_before_the_runtime(tmp_path, argv, expected):
    overrides = [a.format(tmp=tmp_path) for a in argv]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)

    with pytest.raises(LhsFedError) as err:
        train(cfg, tmp_path / "run", overrides)

    assert expected.format(tmp=tmp_path) in str(err.value)
    assert not (tmp_path / "run").exists()  # nothing written: refused before the runtime


def test_the_control_a_run_that_started_keeps_its_folder(tmp_path):
    """The folder check above can fail: a run that trained keeps Hydra's folder, its record."""
    proc = _launch(tmp_path, ["rounds=1", "privacy=off", "federation.runtime=inprocess"])

    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("*/*")
    assert (run_dir / "metrics.jsonl").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()


def test_every_unknown_key_anywhere_in_a_spec_is_named_with_the_closest_valid_one():
    raw = {
        "name": "x",
        "columns": ["age", "y"],
        "label": {"column": "y", "positve_values": [1]},
        "features": [{"name": "age", "type": "numeric", "mni": 18}],
        "sites": {"a": "a.csv"},
        "split": {"test_fraction": 0.3, "validation_fraction": 0.1, "sed": 1},
        "strict_vaules": True,
    }

    problems = unknown_keys(raw)

    assert problems == [
        "data.strict_vaules: unknown key in the dataset spec; did you mean 'strict_values'?",
        "data.label.positve_values: unknown key in the dataset spec; did you mean 'positive_values'?",
        "data.split.sed: unknown key in the dataset spec; did you mean 'seed'?",
        "data.features[0] (age).mni: unknown key in the dataset spec; did you mean 'min'?",
    ]
    with pytest.raises(ConfigError, match="strict_vaules.*; data.label.positve_values"):
        parse_dataset_spec(raw)


def test_validation_fraction_is_a_valid_split_key():
    raw = {
        "name": "x",
        "label": {"column": "y", "positive_values": [1]},
        "features": [{"name": "age"}],
        "sites": {"a": "a.csv"},
        "split": {"test_fraction": 0.3, "validation_fraction": 0.1},
    }
    assert parse_dataset_spec(raw).split.test_fraction == 0.3


@pytest.mark.parametrize(
    "value, kind, ok",
    [
        ("10", int, 10),
        (3.0, int, 3),
        (0.5, float, 0.5),
        ("1e-3", float, 1e-3),
        ("abc", int, None),
        (2.5, int, None),
        (True, int, None),
        ("nan", float, None),
        (float("inf"), float, None),
        (None, int, None),
    ],
)
def test_number_parses_or_names_the_key(value, kind, ok):
    if ok is None:
        with pytest.raises(ConfigError, match=r"^rounds=.* is not a"):
            number(value, "rounds", kind)
    else:
        assert number(value, "rounds", kind) == ok
