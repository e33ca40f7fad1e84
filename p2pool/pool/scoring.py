"""
The application's scores of peers, as the pool ranks peers by them: when
their table is full (the lowest-scored are forgotten first) and when it
protects incoming peers from eviction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()


def ranking_score(score: Callable[[Any], float], metadata: Any, failures: list[Failure]) -> float:
    """
    C{score(metadata)}, or C{-inf} (ranked last) when it is not a number or
    raises; the failure is added to C{failures}, for L{report_failures}.
    """
    try:
        value = score(metadata)
    except Exception:
        failures.append(Failure())
        return -math.inf
    return value if not math.isnan(value) else -math.inf


def report_failures(failures: list[Failure]) -> None:
    """
    Log the failures of one ranking once, not once per peer: a flood
    stays quiet.
    """
    if failures:
        _log.failure("the application could not score {count} peers", failures[0], count=len(failures))
