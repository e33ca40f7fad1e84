# -*- test-case-name: tests.test_eviction -*-
"""
Which running incoming connection gives way to a newcomer when the
connection slots are full (sans-I/O; Bitcoin Core's C{SelectNodeToEvict}):
some peers are protected by network-group diversity, ping latency, the
application's score and uptime, then the youngest of the most represented
group among the others is evicted. L{p2pool.pool.connect} applies it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, TypeVar

import attrs

from p2pool.core.admission import displacement_victim

__all__ = ["Candidate", "Protection", "eviction_victim"]

K = TypeVar("K", bound=Hashable)


@attrs.frozen
class Candidate(Generic[K]):
    """
    A running incoming connection that might be evicted.

    @ivar key: what identifies it to the caller (returned when evicted).
    @ivar group: its admission group (L{p2pool.core.admission.admission_group}).
    @ivar connected_at: when it was established (smaller is older).
    @ivar score: the application's score of its peer (higher is better;
        C{-inf} when the application could not score it).
    @ivar latency: its lowest measured ping round trip in seconds, None
        when none was measured.
    @ivar trusted: its peer or point is trusted: never evicted.
    """

    key: K
    group: str
    connected_at: float
    score: float = 0.0
    latency: float | None = None
    trusted: bool = False


@attrs.frozen
class Protection:
    """
    How many candidates each criterion protects, in the order applied: the
    oldest candidate of each of C{netgroups} groups chosen by a keyed hash,
    the C{latency} lowest round trips, the C{score} best scores (only scores
    above the lowest, so that equal scores protect nobody), then the
    C{uptime} fraction of those left, oldest first.
    """

    netgroups: int = attrs.field(default=4, validator=attrs.validators.ge(0))
    latency: int = attrs.field(default=8, validator=attrs.validators.ge(0))
    score: int = attrs.field(default=4, validator=attrs.validators.ge(0))
    uptime: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])

    @classmethod
    def scaled(cls, count: int) -> Protection:
        """
        C{count} by network group and by score, twice as many by latency,
        and half the rest by uptime (Bitcoin Core's 4, 8, 4 and half for
        C{count = 4}).
        """
        return cls(netgroups=count, latency=2 * count, score=count)


def eviction_victim(
    candidates: Sequence[Candidate[K]], newcomer_group: str, protection: Protection, secret: bytes
) -> K | None:
    """
    The connection to close so that a newcomer from C{newcomer_group} may
    take its slot, or None when no candidate may give way.

    Trusted candidates are never evicted. Of the others, in turn:

      1. the oldest candidate of each of C{protection.netgroups} groups is
         protected, the groups ranked by a hash keyed with C{secret} (so an
         attacker cannot tell which groups are protected);
      2. the C{protection.latency} lowest round trips (measured ones only);
      3. the C{protection.score} best scores, among scores above the lowest;
      4. the oldest C{protection.uptime} fraction of those left.

    Then the youngest candidate of the most represented group left is
    evicted (between groups as large, the one whose youngest is youngest),
    provided that group is not the newcomer's and holds at least two more
    candidates than the newcomer's (L{displacement_victim}): eviction makes
    room for another group, it never rotates equals. So without two
    candidates in one group other than the newcomer's there is no victim,
    whatever the protection (a caller may skip building the candidates).

    @param candidates: the running incoming connections; between equal
        times, the later in the sequence counts as the younger, and ties
        in the other criteria go to the earlier.
    @param secret: the key of the group ranking, secret to the node (at
        most 64 bytes).
    """
    pool = [c for c in candidates if not c.trusted]
    position = {id(c): i for i, c in enumerate(pool)}

    def age(c: Candidate[K]) -> tuple[float, int]:
        return (c.connected_at, position[id(c)])

    def rank(group: str) -> bytes:
        return hashlib.blake2b(group.encode("utf-8"), key=secret, digest_size=8).digest()

    def protect(chosen: Iterable[Candidate[K]]) -> None:
        ids = {id(c) for c in chosen}
        pool[:] = [c for c in pool if id(c) not in ids]

    groups = sorted({c.group for c in pool}, key=rank)[: protection.netgroups]
    protect([min((c for c in pool if c.group == group), key=age) for group in groups])
    measured = [c for c in pool if c.latency is not None]
    protect(sorted(measured, key=lambda c: (c.latency, position[id(c)]))[: protection.latency])
    scores = [c.score for c in pool if not math.isnan(c.score)]
    if scores:
        lowest = min(scores)
        better = [c for c in pool if c.score > lowest]
        protect(sorted(better, key=lambda c: (-c.score, age(c)))[: protection.score])
    protect(sorted(pool, key=age)[: int(len(pool) * protection.uptime)])
    youngest_first = sorted(pool, key=age, reverse=True)
    return displacement_victim([(c.key, c.group) for c in youngest_first], newcomer_group)
