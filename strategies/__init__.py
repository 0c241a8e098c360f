"""Aggregation: Flower 1.41 strategies chosen by name, and what wraps them."""

from strategies.factory import build_strategy, build_validated_strategy
from strategies.validated import ValidatedStrategy

__all__ = ["ValidatedStrategy", "build_strategy", "build_validated_strategy"]
