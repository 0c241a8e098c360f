"""A site's part of one ``model=glm`` Newton round: its exact sums at the server's coefficients.

Only in a run without DP that the site allows (the handler charges the reply as an exact
release first): the gradient, Hessian and log-loss sums over the site's training rows are
exact functions of its patients, so under DP they are never computed (``model=glm`` is refused
at config time there too). The validation rows' log-loss sums choose λ at the server; they are
withheld, as an evaluation is, when that split is under the site's minimum rows or cell size.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord

from client.releases import evaluation_refusal
from client.site_errors import RunConfigError
from federation.core import wire
from federation.core.data import SiteData
from federation.core.glm import COEFFICIENTS, design_matrix, site_sums, validation_loss_sums
from federation.core.model import RiskModel

# A grid larger than this many λ is refused: each λ costs the site a width² Hessian.
MAX_GRID = 64


def coefficients_of(record: ArrayRecord | None, width: int) -> np.ndarray:
    """The message's coefficient rows (λ × width, finite), or one refusal naming what is wrong."""
    try:
        rows = np.asarray(record[COEFFICIENTS].numpy(), dtype=np.float64)  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        rows = None
    if rows is None or rows.ndim != 2 or rows.shape[1] != width or not 1 <= len(rows) <= MAX_GRID:
        raise RunConfigError(
            f"{wire.GLM_COEFFICIENTS} must hold 1 to {MAX_GRID} rows of {width} coefficients; "
            "launch through lhsfed-train"
        )
    if not np.all(np.isfinite(rows)):
        raise RunConfigError(f"{wire.GLM_COEFFICIENTS} holds a value that is not finite")
    return rows


def glm_sums(
    model: RiskModel, data: SiteData, coefficients: np.ndarray, *, min_rows: int, min_cell: int
) -> dict:
    """The reply's statistics (wire keys): the training sums, and the validation loss sums
    unless that split is too small to release."""
    mean, std = model.preprocess.mean.numpy(), model.preprocess.std.numpy()
    sums = site_sums(design_matrix(mean, std, data.x_train), data.y_train, coefficients)
    released = {
        wire.GLM_GRADIENT: sums["gradient"].ravel().tolist(),
        wire.GLM_HESSIAN: sums["hessian"].ravel().tolist(),
        wire.GLM_LOSS: sums["loss"].tolist(),
    }
    if evaluation_refusal(data.y_val, min_rows=min_rows, min_cell=min_cell) is None:
        validation = validation_loss_sums(design_matrix(mean, std, data.x_val), data.y_val, coefficients)
        released[wire.GLM_VALIDATION_LOSS] = validation.tolist()
        released[wire.VALIDATION_PREFIX + wire.N_TEST] = len(data.y_val)
    return released
