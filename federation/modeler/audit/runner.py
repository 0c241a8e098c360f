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

from federation.core import atomic
from federation.core.data import SiteData
from federation.core.model import predict_risk
from federation.core.run_layout import AUDIT
from federation.core.settings import RunSettings
from federation.modeler.audit.attacks import (
    attack_metrics,
    lira_offline_scores,
    logit_confidence,
    loss_per_record,
)
from federation.modeler.audit.shadows import train_shadows
from federation.modeler.run_loader import (
    data_dir_of,
    load_saved_model,
    load_settings,
    saved_model_path,
    sites_data,
)

log = logging.getLogger(__name__)
ALL_SITES = "all_sites"


def _sites(run_dir: Path, settings: RunSettings, data_dir: str | None) -> list[SiteData]:
    """The sites' records: ``data_dir``, else the run's own data folder, else the embedded copy."""
    folder = data_dir or data_dir_of(run_dir) or os.environ.get("LHSFED_SITE_DATA_DIR")
    return sites_data(settings.data, Path(folder) if folder else None)


def _attack(
    scores: np.ndarray, members: np.ndarray, groups: np.ndarray, names: list[str]
) -> dict[str, dict[str, float]]:
    result = {
        name: attack_metrics(scores[(groups == i) & members], scores[(groups == i) & ~members])
        for i, name in enumerate(names)
    }
    result[ALL_SITES] = attack_metrics(scores[members], scores[~members])
    return result


def audit_run(
    run_dir: Path, *, shadows: int = 8, seed: int = 0, data_dir: str | None = None
) -> dict[str, Any]:
    """Run both attacks on every site; write and return ``audit.json``."""
    run_dir = Path(run_dir)
    settings = load_settings(run_dir)
    saved = load_saved_model(saved_model_path(run_dir))  # weights_only: a crafted file runs nothing
    spec, model = saved.spec, saved.model
    sites = _sites(run_dir, settings, data_dir)
    x = np.concatenate([a for s in sites for a in (s.x_train, s.x_test)])
    y = np.concatenate([a for s in sites for a in (s.y_train, s.y_test)])
    members = np.concatenate([np.r_[np.ones(len(s.y_train)), np.zeros(len(s.y_test))] for s in sites]).astype(
        bool
    )
    groups = np.concatenate([np.full(len(s.y_train) + len(s.y_test), i) for i, s in enumerate(sites)])
    risk = predict_risk(model, x)
    log.info("training %s shadow models for LiRA", shadows)
    shadow_risk, shadow_in = train_shadows(
        spec, model.preprocess.state_dict(), x, y, groups, settings, shadows=shadows, seed=seed
    )
    shadow_conf = np.array([logit_confidence(r, y) for r in shadow_risk])
    names = [s.name for s in sites]
    report = {
        "run": str(run_dir),
        "privacy": {
            "enabled": settings.privacy.enabled,
            "target_epsilon": settings.privacy.target_epsilon if settings.privacy.enabled else None,
            "delta": settings.privacy.delta,
        },
        "members": "each site's training records",
        "non_members": "each site's held-out test records",
        "shadows": shadows,
        "seed": seed,
        "attacks": {
            "loss_threshold": _attack(-loss_per_record(risk, y), members, groups, names),
            "lira_offline": _attack(
                lira_offline_scores(logit_confidence(risk, y), shadow_conf, shadow_in), members, groups, names
            ),
        },
    }
    atomic.write_json(run_dir / AUDIT, report)
    return report
