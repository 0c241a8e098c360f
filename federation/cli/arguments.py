"""argparse types for numbers with a range, so a bad value is refused by argparse in one line."""

from __future__ import annotations

import argparse


def _number(text: str, kind: type) -> float | int:
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def at_least(minimum: int):
    """An int type that refuses values below ``minimum``."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum} (got {value})")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def open_unit_interval(text: str) -> float:
    """A float strictly between 0 and 1 (a probability threshold)."""
    value = _number(text, float)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), strictly between 0 and 1 (got {text})")
    return value
