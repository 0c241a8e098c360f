"""The arithmetic of ``model=glm``: an exact federated logistic regression by Newton/IRLS.

Why exact: the pooled L2-penalized log-likelihood's gradient and Hessian are sums over rows,
so each site's sums over its own training rows, added by the server, are exactly what pooled
data would give; a Newton step on them is the pooled step. After convergence the coefficients
equal those of a pooled fit (sklearn's ``LogisticRegression``) on the same design matrix.

The design matrix is the logreg :class:`~federation.core.model.RiskModel`'s own input: the
``Preprocess`` buffers' standardization (missing values at the mean) and one missing flag per
column, computed here in float64 from those buffers; a leading column of ones is the
intercept. Column ``j > 0`` of a coefficient row is weight ``j - 1`` of the model's
``nn.Linear`` head and column 0 its bias (:func:`head_state`), so the fit is a logreg model.

The objective for one L2 strength λ, over the pooled training rows i (intercept unpenalized)::

    f(w) = Σ_i log-loss_i(w) + (λ / 2) · ‖w[1:]‖²

which is sklearn's ``C · Σ_i log-loss_i + ½ ‖w‖²`` with **C = 1 / λ** (its lbfgs, newton-cg and
newton-cholesky solvers leave the intercept unpenalized too). Pure numpy, float64 throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from federation.core.glm_grid import parse_grid  # noqa: F401  (re-exported)

COEFFICIENTS = "coefficients"  # the server's message: one row of coefficients per λ


def design_matrix(
    mean: torch.Tensor | np.ndarray, std: torch.Tensor | np.ndarray, x: np.ndarray
) -> np.ndarray:
    """[1, z, missing flags] per row: the logreg head's input (``Preprocess``) plus the intercept.

    ``mean`` and ``std`` are the model's buffers (float32, std already floored at 1 where ~0);
    widened to float64 here, so every site and any pooled check build the same numbers.
    """
    mean64 = np.asarray(mean, dtype=np.float64)
    std64 = np.asarray(std, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    missing = np.isnan(x)
    z = np.where(missing, 0.0, (np.where(missing, 0.0, x) - mean64) / std64)
    return np.hstack([np.ones((len(x), 1)), z, missing.astype(np.float64)])


def _log_loss_terms(eta: np.ndarray, y: np.ndarray) -> np.ndarray:
    """−log-likelihood of each row from its logits, stable for large |η|."""
    return np.logaddexp(0.0, eta) - y * eta


def site_sums(design: np.ndarray, y: np.ndarray, coefficients: np.ndarray) -> dict[str, np.ndarray]:
    """One site's sums over its training rows, for every coefficient row (one per λ).

    ``gradient`` Σ (p_i − y_i) h_i (λ × width), ``hessian`` Σ p_i (1 − p_i) h_i h_iᵀ
    (λ × width × width), ``loss`` Σ log-loss_i (λ): unpenalized, the server adds the penalty.
    """
    y = np.asarray(y, dtype=np.float64)
    eta = design @ coefficients.T  # rows × λ
    p = 1.0 / (1.0 + np.exp(-eta))
    weights = p * (1.0 - p)
    return {
        "gradient": ((p - y[:, None]).T @ design),
        "hessian": np.stack([(design * weights[:, [k]]).T @ design for k in range(eta.shape[1])]),
        "loss": _log_loss_terms(eta, y[:, None]).sum(axis=0),
    }


def validation_loss_sums(design: np.ndarray, y: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """Σ log-loss over a site's validation rows for every coefficient row (one per λ)."""
    eta = design @ coefficients.T
    return _log_loss_terms(eta, np.asarray(y, dtype=np.float64)[:, None]).sum(axis=0)


def _penalty_mask(width: int) -> np.ndarray:
    mask = np.ones(width)
    mask[0] = 0.0  # the intercept is not penalized (sklearn's convention)
    return mask


def objective(loss: np.ndarray, coefficients: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """f(w) per λ from the pooled loss sums: loss + (λ / 2) ‖w[1:]‖²."""
    return loss + 0.5 * lambdas * ((coefficients * _penalty_mask(coefficients.shape[1])) ** 2).sum(axis=1)


def newton_steps(
    coefficients: np.ndarray, gradient: np.ndarray, hessian: np.ndarray, lambdas: np.ndarray
) -> np.ndarray:
    """The Newton step Δ per λ (w_new = w − Δ) of the penalized objective from pooled sums."""
    mask = _penalty_mask(coefficients.shape[1])
    steps = np.empty_like(coefficients)
    for k, lam in enumerate(lambdas):
        g = gradient[k] + lam * mask * coefficients[k]
        h = hessian[k] + lam * np.diag(mask)
        try:
            steps[k] = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:  # only if no row reached the intercept: least squares
            steps[k] = np.linalg.lstsq(h, g, rcond=None)[0]
    return steps


@dataclass
class NewtonFit:
    """Damped Newton on every λ of the grid at once, one federated round per iteration.

    Each round the sites evaluate the sums at :attr:`coefficients`; :meth:`update` takes them.
    A step that raised a λ's objective is halved from the last accepted point instead (the
    sites then evaluate that point next round): plain Newton can overshoot on nearly separable
    data, and the halving keeps every accepted iterate descending. Converged once every λ's
    accepted step is below ``tolerance`` (max-abs); the step is then applied, so the result is
    within about tolerance² of the optimum (quadratic convergence).
    """

    lambdas: np.ndarray
    width: int
    tolerance: float
    coefficients: np.ndarray = field(init=False)
    _accepted: np.ndarray = field(init=False)  # last accepted point, its objective and step
    _objective: np.ndarray = field(init=False)
    _step: np.ndarray = field(init=False)
    converged: bool = field(init=False, default=False)
    last_step: float = field(init=False, default=np.inf)
    halvings: int = field(init=False, default=0)  # steps halved (over every λ): glm.json says
    hessian: np.ndarray | None = field(init=False, default=None)  # pooled, at the last point evaluated

    def __post_init__(self) -> None:
        self.lambdas = np.asarray(self.lambdas, dtype=np.float64)
        shape = (len(self.lambdas), self.width)
        self.coefficients = np.zeros(shape)
        self._accepted = np.zeros(shape)
        self._objective = np.full(len(self.lambdas), np.inf)
        self._step = np.zeros(shape)

    def update(self, gradient: np.ndarray, hessian: np.ndarray, loss: np.ndarray) -> bool:
        """Take the pooled sums at :attr:`coefficients`; returns whether the fit converged."""
        current = objective(loss, self.coefficients, self.lambdas)
        steps = newton_steps(self.coefficients, gradient, hessian, self.lambdas)
        self.hessian = np.asarray(hessian, dtype=np.float64)
        worse = current > self._objective + 1e-12 * np.abs(self._objective)
        self.halvings += int(worse.sum())
        for k in range(len(self.lambdas)):
            if worse[k]:  # back to the last accepted point, half its step
                self._step[k] = self._step[k] / 2
            else:
                self._accepted[k], self._objective[k], self._step[k] = (
                    self.coefficients[k],
                    current[k],
                    steps[k],
                )
        self.coefficients = self._accepted - self._step
        self.last_step = float(np.abs(self._step).max())
        self.converged = bool(not worse.any() and self.last_step < self.tolerance)
        return self.converged

    def standard_errors(self, index: int) -> np.ndarray | None:
        """Wald standard errors of λ ``index``'s coefficients: √diag((H + λ·P)⁻¹), H the pooled
        Hessian of the log-loss at the last point the sites evaluated (within ``tolerance`` of
        the fit once converged), P the penalty's mask. For the penalized fit these are the
        usual approximate (Bayesian, Gaussian-prior) errors; with a small λ, the MLE's."""
        if self.hessian is None:
            return None
        h = self.hessian[index] + self.lambdas[index] * np.diag(_penalty_mask(self.width))
        try:
            return np.sqrt(np.clip(np.diag(np.linalg.inv(h)), 0.0, None))
        except np.linalg.LinAlgError:
            return None

    def restart_descent_check(self) -> None:
        """The sites answering changed: objectives of different sums are not comparable."""
        self._objective = np.full(len(self.lambdas), np.inf)


def pooled_validation_loss(loss_sums: list[np.ndarray], rows: list[int]) -> np.ndarray | None:
    """Mean validation log-loss per λ over every site's released validation rows (None: none)."""
    total = int(sum(rows))
    return np.sum(loss_sums, axis=0) / total if total else None


def head_state(coefficients: np.ndarray) -> dict[str, torch.Tensor]:
    """One coefficient row as the logreg model's head (``head.0.weight``, ``head.0.bias``)."""
    row = np.asarray(coefficients, dtype=np.float64)
    return {
        "head.0.weight": torch.as_tensor(row[1:][None, :], dtype=torch.float32),
        "head.0.bias": torch.as_tensor(row[:1], dtype=torch.float32),
    }
