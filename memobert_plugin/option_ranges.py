"""Numeric options checked against their allowed range before any work, with one line naming both.

:func:`check_range` is for options that arrive parsed (fairseq task configs: checked in the task's
setup, before any data is read); :func:`ranged` makes an argparse ``type`` for console scripts, so
``--pool 0`` stops in argument parsing (``argument --pool: 0 is out of range: allowed >= 1``).
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional, Union

__all__ = ["OptionRangeError", "allowed_range", "check_range", "ranged"]

Number = Union[int, float]


class OptionRangeError(ValueError):
    """A numeric option outside its allowed range."""


def allowed_range(low: Optional[Number], high: Optional[Number], low_open: bool = False) -> str:
    """``1..10``, ``>= 1``, ``> 0``, ``(0, 1]``: how the messages write a range."""
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    if low_open:
        return f"({low}, {high}]"
    return f"{low}..{high}"


def _problem(value: Number, low: Optional[Number], high: Optional[Number], low_open: bool) -> Optional[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not finite: allowed {allowed_range(low, high, low_open)}"
    below = low is not None and (value <= low if low_open else value < low)
    if below or (high is not None and value > high):
        return f"{value} is out of range: allowed {allowed_range(low, high, low_open)}"
    return None


def check_range(option: str, value: Number, low: Optional[Number] = None, high: Optional[Number] = None,
                low_open: bool = False) -> None:
    """Raise :class:`OptionRangeError` (``--option VALUE is out of range: allowed RANGE``) unless
    ``low <= value <= high`` (``low < value`` with ``low_open``); None: no bound; NaN and infinities fail."""
    problem = _problem(value, low, high, low_open)
    if problem:
        raise OptionRangeError(f"--{option.replace('_', '-')} {problem}")


def ranged(kind: Callable[[str], Number], low: Optional[Number] = None, high: Optional[Number] = None,
           low_open: bool = False) -> Callable[[str], Number]:
    """An argparse ``type``: ``kind`` (int or float) of the text, within the range."""
    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}: allowed "
                f"{allowed_range(low, high, low_open)}") from None
        problem = _problem(value, low, high, low_open)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse
