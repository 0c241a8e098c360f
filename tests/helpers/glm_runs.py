"""model=glm runs in this process (no Ray: the same ServerApp loop and ClientApp), and the pooled
sklearn fit they must equal: the acceptance test's reference (issue Q, item 1).

The reference is built only from what the run handed out and the sites' own files: the design
matrix of model.pt's preprocessing buffers (federation.core.glm.design_matrix, the logreg
head's input plus the intercept) over every site's training rows together.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml
from sklearn.linear_model import LogisticRegression

from federation.coordinator.flwr_app_config import compose_config
from federation.core.glm import design_matrix
from federation.core.settings import flatten_config
from federation.modeler.run_loader import load_saved_model, saved_model_path, sites_data


def inprocess_run(run: Path, overrides: list[str], *, num_nodes: int, data: Path | None = None) -> dict:
    """``lhsfed-train OVERRIDES`` in process into ``run`` (its ledgers inside it); ``data``: a
    folder ``lhsfed synth`` wrote (its spec and site files) instead of the embedded uci_heart."""
    from federation.coordinator.inprocess import run_in_process

    plain = compose_config(overrides)
    if data is not None:
        plain["data"] = yaml.safe_load((data / "data" / f"{plain_name(data)}.yaml").read_text())
    plain["output_dir"] = str(run)
    saved = {k: os.environ.get(k) for k in ("LHSFED_SITE_DATA_DIR", "LHSFED_LEDGER_DIR")}
    os.environ["LHSFED_LEDGER_DIR"] = str(run / "ledgers")
    if data is not None:
        os.environ["LHSFED_SITE_DATA_DIR"] = str(data.resolve())
    try:
        return run_in_process(flatten_config(plain), run_dir=run, num_nodes=num_nodes)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def plain_name(data: Path) -> str:
    """The one spec ``lhsfed synth`` wrote into ``data/data/``."""
    (spec,) = (data / "data").glob("*.yaml")
    return spec.stem


def pooled_design(run: Path, data: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """model.pt's design matrix (intercept column first) and labels over every site's training rows."""
    saved = load_saved_model(saved_model_path(run))
    pre = saved.model.preprocess
    sites = sites_data(saved.dataset, data)
    x = np.vstack([design_matrix(pre.mean, pre.std, s.x_train) for s in sites])
    return x, np.concatenate([s.y_train for s in sites]).astype(int)


def pooled_sklearn(x: np.ndarray, y: np.ndarray, c: float) -> np.ndarray:
    """[intercept, weights] of sklearn's pooled LogisticRegression(C=c), solved to 1e-12."""
    fit = LogisticRegression(C=c, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(x[:, 1:], y)
    return np.concatenate([fit.intercept_, fit.coef_[0]])


def handed_out(run: Path) -> np.ndarray:
    """model.pt's logreg head as [bias, weights] (float32 weights, widened)."""
    head = load_saved_model(saved_model_path(run)).model.head[0]
    return np.concatenate([head.bias.detach().double().numpy(), head.weight.detach().double().numpy()[0]])
