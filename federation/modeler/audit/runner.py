"""``audit.json`` for a finished run: both attacks against its global model, per site.

Members are each site's training records, non-members its held-out test records (never
trained on). This needs the sites' records, so it is a simulation audit, run by whoever holds
the data (the coordinator, on the embedded or ``federation.data_dir`` copy).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from federation.core import atomic
from federation.core.data import SiteData, load_site, site_file
from federation.core.errors import ConfigError
from federation.core.model import predict_risk
from federation.core.settings import RunSettings, flatten_config
from federation.modeler.audit.attacks import (
    attack_metrics,
    lira_offline_scores,
    logit_confidence,
    loss_per_record,
)
from federation.modeler.audit.shadows import train_shadows
from federation.modeler.run_loader import load_checkpoint

log = logging.getLogger(__name__)
AUDIT = "audit.json"
ALL_SITES = "all_sites"


def _run_settings(run_dir: Path) -> tuple[RunSettings, str | None]:
    """The run's settings and its data folder, from the config Hydra saved in the run."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} not found: {run_dir} is not a run folder of lhsfed-train")
    plain = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return (RunSettings.from_run_config(flatten_config(plain)),
            (plain.get("federation") or {}).get("data_dir"))


def _global_model(run_dir: Path):
    path = run_dir / "model.pt"
    if not path.is_file():
        raise ConfigError(f"{path} not found: the run has not finished a round")
    checkpoint = load_checkpoint(path)  # weights_only: a crafted model.pt runs nothing
    return checkpoint.spec, checkpoint.model


def _sites(settings: RunSettings, data_dir: str | None) -> list[SiteData]:
    folder = data_dir or os.environ.get("LHSFED_SITE_DATA_DIR")
    return [load_site(site_file(settings.data, name, Path(folder) if folder else None),
                      settings.data, name) for name in settings.data.site_names]


def _attack(scores: np.ndarray, members: np.ndarray, groups: np.ndarray, names: list[str]
            ) -> dict[str, dict[str, float]]:
    result = {name: attack_metrics(scores[(groups == i) & members], scores[(groups == i) & ~members])
              for i, name in enumerate(names)}
    result[ALL_SITES] = attack_metrics(scores[members], scores[~members])
    return result


def audit_run(run_dir: Path, *, shadows: int = 8, seed: int = 0,
              data_dir: str | None = None) -> dict[str, Any]:
    """Run both attacks on every site; write and return ``audit.json``."""
    run_dir = Path(run_dir)
    settings, run_data_dir = _run_settings(run_dir)
    spec, model = _global_model(run_dir)
    sites = _sites(settings, data_dir or run_data_dir)
    x = np.concatenate([a for s in sites for a in (s.x_train, s.x_test)])
    y = np.concatenate([a for s in sites for a in (s.y_train, s.y_test)])
    members = np.concatenate([np.r_[np.ones(len(s.y_train)), np.zeros(len(s.y_test))]
                              for s in sites]).astype(bool)
    groups = np.concatenate([np.full(len(s.y_train) + len(s.y_test), i) for i, s in enumerate(sites)])
    risk = predict_risk(model, x)
    log.info("training %s shadow models for LiRA", shadows)
    shadow_risk, shadow_in = train_shadows(spec, model.preprocess.state_dict(), x, y, groups,
                                           settings, shadows=shadows, seed=seed)
    shadow_conf = np.array([logit_confidence(r, y) for r in shadow_risk])
    names = [s.name for s in sites]
    report = {
        "run": str(run_dir),
        "privacy": {"enabled": settings.privacy.enabled,
                    "target_epsilon": settings.privacy.target_epsilon if settings.privacy.enabled else None,
                    "delta": settings.privacy.delta},
        "members": "each site's training records", "non_members": "each site's held-out test records",
        "shadows": shadows, "seed": seed,
        "attacks": {
            "loss_threshold": _attack(-loss_per_record(risk, y), members, groups, names),
            "lira_offline": _attack(lira_offline_scores(logit_confidence(risk, y), shadow_conf, shadow_in),
                                    members, groups, names),
        },
    }
    atomic.write_json(run_dir / AUDIT, report)
    return report
