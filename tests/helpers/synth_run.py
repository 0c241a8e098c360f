"""A tiny synth cohort written by ``lhsfed synth`` with every option it offers, and a finished
one-round run on it (text levels: smoker never/former/current, admission type).

The run is the real ServerApp loop and ClientApp in this process
(``federation.coordinator.inprocess``, no Ray), a few seconds; its ``.hydra/config.yaml`` is
what ``lhsfed-train --config-dir OUT data=synth federation.data_dir=OUT`` would save.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from federation.cli.main import main as lhsfed
from federation.coordinator.flwr_app_config import compose_config
from federation.core.settings import flatten_config

# Every synth option the CLI offers (tests/unit/test_synth_options.py tests each one).
SYNTH_OPTIONS = [
    "--sites", "3", "--rows", "450", "--heterogeneity", "0.3", "--seed", "2", "--name", "synth",
    "--subgroups", "--prevalence", "0.3", "--signal", "0.8", "--missing", "1.5",
    "--informative-missing", "0.5", "--noise-features", "2", "--min-site-rows", "100",
    "--max-site-rows", "200", "--shift", "hospital_002=0.5", "--subgroup-shift", "1.2",
]  # fmt: skip


def write_synth_cohort(folder: Path, *extra: str) -> Path:
    """``lhsfed synth`` with every option into ``folder``; returns the spec's path."""
    assert lhsfed(["synth", *SYNTH_OPTIONS, "--out", str(folder), *extra]) == 0
    return folder / "data" / "synth.yaml"


def synth_run(data: Path, run: Path) -> Path:
    """A finished one-round run (DP off) on the cohort in ``data``; returns ``run``."""
    from federation.coordinator.inprocess import run_in_process

    plain = compose_config(["privacy=off", "rounds=1"])
    plain["data"] = yaml.safe_load((data / "data" / "synth.yaml").read_text())
    plain["federation"]["data_dir"] = str(data)
    plain["output_dir"] = str(run)
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(plain), run / ".hydra" / "config.yaml")
    before = os.environ.get("LHSFED_SITE_DATA_DIR")
    os.environ["LHSFED_SITE_DATA_DIR"] = str(data.resolve())
    try:
        run_in_process(flatten_config(plain), run_dir=run, num_nodes=3)
    finally:
        if before is None:
            del os.environ["LHSFED_SITE_DATA_DIR"]
        else:
            os.environ["LHSFED_SITE_DATA_DIR"] = before
    return run
