"""Aggregation: Flower 1.41 strategies chosen by name, and what wraps them."""

from strategies.factory import build_strategy

__all__ = ["build_strategy"]
