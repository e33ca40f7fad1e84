"""
The p2pool test suite.

Hypothesis runs under the C{p2pool-ci} profile: derandomized (every run
tries the same examples, so a run's outcome never depends on chance), with
no per-example deadline and no too-slow health check (both measure wall-clock
time, which a busy machine stretches), and without the example database (a
run does not depend on the ones before it). C{HYPOTHESIS_PROFILE=explore}
searches with fresh random examples instead.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "p2pool-ci", derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "p2pool-ci"))
