# -*- test-case-name: tests.test_admission -*-
"""
Fair sharing of the incoming handshake slots (sans-I/O): the group an
address counts in, which pending handshake gives way to a newcomer when
the slots are full, and which addresses stall handshakes often enough to
be greylisted. L{p2pool.pool.connect} applies them.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Hashable, Sequence
from typing import TypeVar

from p2pool.core.addressing import Reach, netgroup, reach

__all__ = ["STALL_WINDOW", "StallTracker", "admission_group", "displacement_victim"]

K = TypeVar("K", bound=Hashable)

#: Seconds over which an address's stalled handshakes are counted.
STALL_WINDOW = 600.0
#: Addresses whose stalls are remembered (the least recent is forgotten).
STALL_MEMORY = 4096
#: Addresses whose admission group is remembered (an address's group never
#: changes; the least recently used is forgotten).
GROUP_MEMORY = 65536


@functools.lru_cache(maxsize=GROUP_MEMORY)
def admission_group(ip: str, exempt_loopback: bool) -> str:
    """
    The group C{ip} is counted in for the per-group caps and fairness: its
    network group (IPv4 /16, IPv6 /32), or the address itself for a
    loopback address when loopback is exempt from the netgroup caps (many
    nodes on one host, each its own group).
    """
    if exempt_loopback and reach(ip) is Reach.LOOPBACK:
        return ip
    return netgroup(ip)


def displacement_victim(pending: Sequence[tuple[K, str]], group: str) -> K | None:
    """
    Which pending handshake gives way to a newcomer from C{group} when the
    slots are full: the oldest of the most represented group, provided
    that group is not the newcomer's and holds at least two more
    handshakes than the newcomer's (so that giving way never leaves the
    newcomer's group more represented than the victim's); else none.

    @param pending: the pending handshakes, oldest first, with their groups.
    """
    counts = collections.Counter(g for _, g in pending)
    if not counts:
        return None
    # The most represented group; between equals, the one whose oldest
    # handshake is oldest (the first met in order).
    crowded = max(counts, key=lambda g: counts[g])
    if crowded == group or counts[crowded] < counts.get(group, 0) + 2:
        return None
    return next(key for key, g in pending if g == crowded)


class StallTracker:
    """
    Counts the stalled handshakes of each address over L{STALL_WINDOW}
    seconds (at most L{STALL_MEMORY} addresses remembered) and says when an
    address reaches C{threshold} of them.
    """

    def __init__(self, threshold: int, window: float = STALL_WINDOW, memory: int = STALL_MEMORY) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be >= 1, got {threshold}")
        self.threshold = threshold
        self.window = window
        self.memory = memory
        self._stalls: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._stalls)

    def stalled(self, ip: str, now: float) -> bool:
        """
        Count a stalled handshake from C{ip} at time C{now}; whether that
        makes C{threshold} within the window (the address is then
        forgotten, to be greylisted by the caller).
        """
        times = self._stalls.pop(ip, None) or collections.deque(maxlen=self.threshold)
        while times and times[0] <= now - self.window:
            times.popleft()
        times.append(now)
        if len(times) >= self.threshold:
            return True
        self._stalls[ip] = times
        while len(self._stalls) > self.memory:
            self._stalls.popitem(last=False)
        return False
