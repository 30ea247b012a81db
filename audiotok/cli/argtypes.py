"""Numeric command-line options checked as they are parsed: finite, in range, or a one-line
error that names the option (argparse adds the option's name to the message). Nothing
invalid reaches a job's plan or a codec."""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind):
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return value


def _bounded(kind, low, inclusive: bool, high=None):
    def parse(text: str):
        value = _number(text, kind)
        if value < low or (value == low and not inclusive) or (high is not None
                                                                and value > high):
            rule = f"{'at least' if inclusive else 'greater than'} {low}"
            if high is not None:
                rule = f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


positive_float = _bounded(float, 0, inclusive=False)
nonneg_float = _bounded(float, 0, inclusive=True)
positive_int = _bounded(int, 1, inclusive=True)
nonneg_int = _bounded(int, 0, inclusive=True)
port = _bounded(int, 1, inclusive=True, high=65535)
