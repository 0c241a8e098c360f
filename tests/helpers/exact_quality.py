"""The handed-out model's exact test metrics, scored here from the sites' files: what a
benchmark or test compares the sites' noisy DP releases with (never a coordinator's view)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from federation.core.errors import ConfigError
from federation.core.model import predict_risk
from federation.modeler.run_loader import data_dir_of, load_saved_model, saved_model_path, sites_data


def exact_pooled_auroc(run_dir: Path) -> float:
    """AUROC of ``model.pt`` over every site's test rows together (simulation only)."""
    saved = load_saved_model(saved_model_path(Path(run_dir)))
    try:
        data_dir = data_dir_of(Path(run_dir))  # the run's data folder
    except ConfigError:  # an in-process run without Hydra's folder: the embedded data
        data_dir = None
    sites = sites_data(saved.dataset, data_dir)
    y = np.concatenate([s.y_test for s in sites]).astype(int)
    p = np.concatenate([predict_risk(saved.model, s.x_test) for s in sites])
    return float(roc_auc_score(y, p))
