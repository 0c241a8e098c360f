"""Pure checks on one round's client updates, run before any strategy aggregates them.

A reply is kept only if its arrays have the global model's keys, shapes and dtypes, hold
only finite values, and its update (reply minus global) is not abnormally large. The norm
bound is robust by default: ``factor`` times the low median of the round's update norms, so
one huge update cannot raise the bar it is judged by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Rejection:
    """One dropped update: which site, which node, and why (a sentence a human can act on)."""

    site: str
    node: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"site": self.site, "node": self.node, "reason": self.reason}


def structure_problem(update: Arrays, reference: Arrays) -> str | None:
    """Why ``update`` cannot be aggregated with ``reference`` (keys, shape, dtype), or None."""
    missing, extra = sorted(set(reference) - set(update)), sorted(set(update) - set(reference))
    if missing or extra:
        return f"array keys differ from the global model (missing {missing}, unexpected {extra})"
    for key, ref in reference.items():
        got = update[key]
        if got.shape != ref.shape:
            return f"array {key!r} has shape {list(got.shape)}, the global model has {list(ref.shape)}"
        if got.dtype != ref.dtype:
            return f"array {key!r} has dtype {got.dtype}, the global model has {ref.dtype}"
    return None


def finiteness_problem(update: Arrays) -> str | None:
    """Names the first array holding NaN or infinity, or None."""
    for key, value in update.items():
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        if bad:
            return f"array {key!r} holds {bad} non-finite values (NaN or infinity)"
    return None


def update_norm(update: Arrays, reference: Arrays) -> float:
    """L2 norm of (update - reference) over every array, in float64."""
    total = sum(
        float(np.sum((update[k].astype("float64") - ref.astype("float64")) ** 2))
        for k, ref in reference.items()
    )
    return float(np.sqrt(total))


def norm_bound(norms: list[float], *, factor: float, max_norm: float | None) -> float:
    """The round's bound: ``max_norm`` if set, else ``factor`` x the low median of ``norms``.

    The low median (the smaller middle value) keeps the bound honest with two sites, where
    the plain median would average a good norm with a huge one.
    """
    if max_norm is not None:
        return float(max_norm)
    if not norms:
        return float("inf")
    low_median = sorted(norms)[(len(norms) - 1) // 2]
    return factor * low_median if low_median > 0 else float("inf")


def screen(
    updates: list[Arrays], reference: Arrays, *, factor: float, max_norm: float | None
) -> list[str | None]:
    """Per update: None if it may be aggregated, else the reason it must be dropped."""
    reasons = [structure_problem(u, reference) or finiteness_problem(u) for u in updates]
    norms = {i: update_norm(u, reference) for i, u in enumerate(updates) if reasons[i] is None}
    bound = norm_bound(list(norms.values()), factor=factor, max_norm=max_norm)
    for i, norm in norms.items():
        if norm > bound:
            reasons[i] = f"update norm {norm:.4g} exceeds the round's bound {bound:.4g}"
    return reasons
