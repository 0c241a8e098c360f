"""The ``[tool.flwr.app.config]`` table for ``flwr run .``: the flattened default Hydra config.

``python -m federation.coordinator.flwr_app_config`` prints it; a test checks pyproject.toml holds
exactly this, so ``flwr run .`` and ``lhsfed-train`` start from the same defaults.
"""

from __future__ import annotations

from pathlib import Path

import tomli_w
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from federation.core.settings import flatten_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def compose_config(overrides: list[str] | None = None) -> dict:
    """The composed Hydra config as plain data (what ``lhsfed-train`` would run)."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides or [])
    return OmegaConf.to_container(cfg, resolve=True)


def default_run_config() -> dict:
    return flatten_config(compose_config())


def toml_table() -> str:
    return tomli_w.dumps({"tool": {"flwr": {"app": {"config": default_run_config()}}}})


if __name__ == "__main__":
    print(toml_table())
