"""Durations as people type them: ``90m``, ``26h``, ``2d``, ``1w``, ``30s`` (one number and
one unit; a bare number is refused, since seconds, hours and days all have a claim to it)."""

from __future__ import annotations

import argparse
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION = re.compile(r"^(\d{1,9})([smhdw])\Z")
LIMIT = 100 * 365 * 86400  # a hundred years: anything longer is a typo


def parse(text: str) -> int:
    """Seconds in a duration (``26h`` -> 93600); ValueError names what is wrong."""
    found = DURATION.match(text.strip().lower())
    if not found:
        raise ValueError(
            f"{text[:40]!r} is not a duration: a whole number and a unit, s m h d or w "
            "(90m, 26h, 2d)"
        )
    seconds = int(found.group(1)) * UNITS[found.group(2)]
    if not 0 < seconds <= LIMIT:
        raise ValueError(f"{text[:40]!r}: give a duration above 0 and at most 100 years")
    return seconds


def duration(text: str) -> int:
    """An argparse type: :func:`parse`, its problem as argparse's one-line error."""
    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
