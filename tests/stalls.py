"""
Trial with a reactor that now and then stalls: a blocking sleep, as when a
busy machine deschedules the test process. Timers then come due while
input and output wait in the sockets, and which of the two the reactor
handles first varies (the stall comes before or after its wait for I/O).
A test that passes only on an idle machine fails here within a few runs.
Not part of CI: run it by hand, from the checkout's root, on the
real-socket test modules (the in-memory ones never wait on the reactor).

  PYTHONPATH=. python -m tests.stalls tests.test_integration tests.test_eviction
  STALL_SEED=7 STALL_MAX=6 PYTHONPATH=. python -m tests.stalls --random 7 tests.test_pool_network

Settings (environment): STALL_SEED (0), the random seed; STALL_MIN and
STALL_MAX (0.5 and 4), the bounds of a stall in seconds; STALL_GAP (1), the
least time between two stalls in seconds; STALL_PROB (0.05), the chance of
a stall at each reactor turn once the gap has passed. The number of stalls
and their total are printed to stderr at exit.
"""

from __future__ import annotations

import atexit
import os
import random
import sys
import time
from typing import Any


def _setting(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def install() -> None:
    """
    Make the global reactor stall as the settings say.
    """
    from twisted.internet import reactor

    rng = random.Random(int(_setting("STALL_SEED", 0)))
    low, high = _setting("STALL_MIN", 0.5), _setting("STALL_MAX", 4.0)
    gap, chance = _setting("STALL_GAP", 1.0), _setting("STALL_PROB", 0.05)
    stalls: list[float] = []
    last = [time.monotonic()]
    wait_for_io: Any = reactor.doIteration  # type: ignore[attr-defined]

    def stall() -> None:
        if time.monotonic() - last[0] > gap and rng.random() < chance:
            seconds = rng.uniform(low, high)
            time.sleep(seconds)
            stalls.append(seconds)
            last[0] = time.monotonic()

    def turn(timeout: float | None) -> None:
        before = rng.random() < 0.5
        if before:
            stall()
        wait_for_io(timeout)
        if not before:
            stall()

    reactor.doIteration = turn  # type: ignore[attr-defined]
    atexit.register(lambda: sys.stderr.write(f"stalls: {len(stalls)}, {sum(stalls):.1f} s in all\n"))


if __name__ == "__main__":
    install()
    from twisted.scripts.trial import run

    sys.argv[0] = "trial"
    run()
