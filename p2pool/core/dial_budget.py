# -*- test-case-name: tests.test_dial_budget -*-
"""
The dial budget of learnt points (sans-I/O): dials of points that peers told
us about and that never connected are rate-limited per source group, so that
one network group advertising many points cannot make the node dial them
faster than C{source_group_dial_rate} per second (after a burst of
C{source_group_dial_burst}).
"""

from __future__ import annotations

import collections

from p2pool.config import PoolConfig
from p2pool.core.flow import TokenBucket
from p2pool.core.states import PointInfo

__all__ = ["BUDGET_MEMORY", "DialBudget"]

#: Source groups whose bucket is remembered; beyond, the least recently
#: used is forgotten (a forgotten group starts again with a full burst).
BUDGET_MEMORY = 4096


class DialBudget:
    """
    One token bucket per source group: a dial of a learnt, never connected,
    untrusted point takes a token from its source group's bucket; other
    dials take none.

    @ivar granted: dials the budget allowed, in all.
    @ivar deferred: dials it refused (the point stays known, and is tried
        again once its group has a token).
    """

    def __init__(self, burst: int, rate: float, memory: int = BUDGET_MEMORY) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError(f"a dial budget needs burst >= 1 and rate > 0, got {burst} and {rate}")
        self.burst = burst
        self.rate = rate
        self.memory = memory
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()
        self.granted = 0
        self.deferred = 0

    @classmethod
    def from_config(cls, config: PoolConfig) -> DialBudget:
        """
        The budget of C{source_group_dial_burst} and C{source_group_dial_rate}.
        """
        return cls(config.source_group_dial_burst, config.source_group_dial_rate)

    @staticmethod
    def group_of(info: PointInfo) -> str | None:
        """
        The source group whose budget a dial of C{info}'s point spends, or
        None when it spends none (a point given by the operator, trusted, or
        that has connected before).
        """
        if info.source_group is None or info.trusted or info.has_connected:
            return None
        return info.source_group

    def _bucket(self, group: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(group)
        if bucket is None:
            bucket = self._buckets[group] = TokenBucket(self.burst, self.rate, now)
            if len(self._buckets) > self.memory:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(group)
        return bucket

    def allow(self, info: PointInfo, now: float) -> bool:
        """
        Whether C{info}'s point may be dialed now; a budgeted dial that is
        allowed takes its token.
        """
        group = self.group_of(info)
        if group is None:
            return True
        if self._bucket(group, now).take(1, now):
            self.granted += 1
            return True
        self.deferred += 1
        return False

    def wait(self, group: str, now: float) -> float:
        """
        Seconds until C{group} has a token to spend (0: it has one now).
        """
        bucket = self._buckets.get(group)
        return 0.0 if bucket is None else bucket.wait(1, now)
