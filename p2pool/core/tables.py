# -*- test-case-name: tests.test_tables -*-
"""
The tables of known points and known peers: lookup, garbage collection
when over capacity, and the choice of points to advertise
(C{list_known_points}), each cheap at any table size.
"""

from __future__ import annotations

import heapq
import operator
import random
from collections.abc import Callable, Container, Hashable, Iterable, Iterator, KeysView, Mapping
from itertools import compress, repeat
from typing import Generic, TypeVar, cast

from p2pool.config import ReconnectionConfig
from p2pool.core.addressing import PeerId, Point
from p2pool.core.states import (
    PeerInfo,
    PeerState,
    PointInfo,
    PointState,
    known_public_of,
    peer_id_of,
    point_of,
    source_group_of,
)

__all__ = ["IndexedSet", "PeerTable", "PointTable"]

T = TypeVar("T", bound=Hashable)
K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

#: L{PointTable.list_known_points} sorts the connected and connecting points
#: by their times when the seen order holds more than this many times as
#: many points, and walks the seen order otherwise.
WALK_SEEN_ABOVE = 8


class IndexedSet(Generic[T]):
    """
    A set with O(1) add, remove and uniform random choice.
    """

    __slots__ = ("_items", "_index")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._index: dict[T, int] = {}

    def add(self, item: T) -> None:
        if item not in self._index:
            self._index[item] = len(self._items)
            self._items.append(item)

    def add_many(self, items: Iterable[T]) -> None:
        """
        Add each of C{items} not present yet, in their order (an item given
        twice is added once), as L{add} would one at a time, in C loops.
        Meant for new items: one present already costs a pass over the
        whole set.
        """
        index, members = self._index, self._items
        start = len(members)
        new = list(items)
        index.update(zip(new, range(start, start + len(new))))
        if len(index) != start + len(new):
            # Some were present (their places, overwritten, are put back)
            # or repeat (each is placed once).
            index.update(zip(members, range(start)))
            new = [item for item in dict.fromkeys(new) if index[item] >= start]
            index.update(zip(new, range(start, start + len(new))))
        members.extend(new)

    def discard(self, item: T) -> None:
        position = self._index.pop(item, None)
        if position is None:
            return
        last = self._items.pop()
        if position < len(self._items):
            self._items[position] = last
            self._index[last] = position

    def choice(self, rng: random.Random) -> T:
        return self._items[rng.randrange(len(self._items))]

    def members(self) -> KeysView[T]:
        """
        The items as a read-only set-like view (membership and set
        operations at C speed; it follows later changes).
        """
        return self._index.keys()

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items))


def _gc_count(size: int, limits: tuple[int, int] | None) -> int:
    """
    How many entries to collect before adding one to a table of C{size},
    so that afterwards it holds at most C{target} entries (Tezos collects
    one too few, its issue #3175; we do not).
    """
    if limits is None:
        return 0
    maximum, target = limits
    if size < maximum:
        return 0
    return size - max(target, 1) + 1


_STATE = operator.attrgetter("state")
_LAST_SEEN = operator.attrgetter("last_seen")
_TIME = operator.itemgetter(1)


def _new_by_key(records: Iterable[R], key: Callable[[R], K], known: Mapping[K, object]) -> dict[K, R]:
    """
    C{records} by their C{key}, but those whose key is in C{known}, and of
    records with the same key the first only; in C loops when no key is
    known or repeats.
    """
    records = list(records)
    batch = dict(zip(map(key, records), records))
    if len(batch) != len(records) or not known.keys().isdisjoint(batch.keys()):
        batch = {}
        for record in records:
            value = key(record)
            if value not in known:
                batch.setdefault(value, record)
    return batch


def _collectable(info: PointInfo) -> bool:
    return info.state is PointState.DISCONNECTED and not info.trusted


def _miss_key(info: PointInfo, now: float) -> tuple[bool, float]:
    """
    The order in which GC forgets points: never connected first, then by
    last miss (never missed counts as C{now}).
    """
    return (info.has_connected, info.last_miss if info.last_miss is not None else now)


class PointTable:
    """
    The known points.

    Besides the mapping, it keeps the orders C{list_known_points} needs, so
    that no call sorts or scans the whole table: the points not
    disconnected, the disconnected points in order of C{last_seen}, the
    never-seen ones, and indexable sets for random choices. A point in the
    table changes state or C{known_public} only through the transitions
    below (L{set_requested}, L{set_accepted}, L{set_running},
    L{set_disconnected}, L{set_known_public}), each of which keeps these
    orders right.

    It also keeps, for each source group, the learnt points (those with a
    C{source_group}) that never connected, oldest learnt first: one source
    group may hold at most C{group_cap} of them (see L{make_room_for}).
    """

    def __init__(
        self, limits: tuple[int, int] | None, rng: random.Random, source_group_share: float | None = None
    ) -> None:
        """
        @param limits: C{(max, target)} of the table, or None (unbounded).
        @param source_group_share: the share of C{max} that the never
            connected points learnt from one source group may hold; None
            (or an unbounded table): no such bound.
        """
        self.limits = limits
        self.group_cap: int | None = (
            max(1, int(source_group_share * limits[0])) if limits is not None and source_group_share else None
        )
        self._rng = rng
        self._learnt: dict[str, dict[Point, None]] = {}
        self._learnt_group: dict[Point, str] = {}
        self._points: dict[Point, PointInfo] = {}
        self._all: IndexedSet[Point] = IndexedSet()
        self._public: IndexedSet[Point] = IndexedSet()
        self._active: set[Point] = set()
        self._seen: dict[Point, float] = {}
        self._unseen: dict[Point, None] = {}

    def __len__(self) -> int:
        return len(self._points)

    def __contains__(self, point: object) -> bool:
        return point in self._points

    def __iter__(self) -> Iterator[PointInfo]:
        return iter(list(self._points.values()))

    def get(self, point: Point) -> PointInfo | None:
        return self._points.get(point)

    def unknown(self, points: Iterable[Point]) -> list[Point]:
        """
        Those of C{points} not in the table, in their order.
        """
        known = self._points
        return [point for point in points if point not in known]

    def needs_gc(self) -> int:
        """
        How many points must be collected before one more is added.
        """
        return _gc_count(len(self._points), self.limits)

    def add(self, info: PointInfo) -> None:
        point = info.point
        if point in self._points:
            self._points[point] = info
            self._reindex(info)
            return
        last_seen = self._index_new(info)
        if last_seen is not None:
            self._insert_seen(point, last_seen)

    def add_many(self, infos: Iterable[PointInfo]) -> list[PointInfo]:
        """
        Add the points of C{infos} that are not known, as L{add} would each
        in turn (a known point keeps its record; of a point given twice,
        the first record is added), a column at a time in C loops.
        Cheapest when they come ordered by C{last_seen}, never-seen ones
        first, as a loaded file's do (each batch costs what placing its
        times among the newest known ones does, never a sort of the
        table).

        @return: the records added, in their order.
        """
        batch = _new_by_key(infos, point_of, self._points)
        self._points.update(batch)
        points, added = list(batch), list(batch.values())
        self._all.add_many(points)
        self._public.add_many(compress(points, map(known_public_of, added)))
        self._active.update(compress(points, map(operator.is_not, map(_STATE, added), repeat(PointState.DISCONNECTED))))
        for info in compress(added, map(operator.is_not, map(source_group_of, added), repeat(None))):
            if not info.has_connected:
                self._learn(info)
        times = list(map(_LAST_SEEN, added))
        self._unseen.update(dict.fromkeys(compress(points, map(operator.is_, times, repeat(None)))))
        # The times left are not None.
        seen = cast(
            "list[tuple[Point, float]]", list(compress(zip(points, times), map(operator.is_not, times, repeat(None))))
        )
        # Stable, and linear on times already in order.
        seen.sort(key=_TIME)
        self._insert_seen_many(seen)
        return added

    def _index_new(self, info: PointInfo) -> float | None:
        """
        Put a new point in the mapping and every order but the one of
        C{last_seen}, which is returned for the caller to place (a new
        point is in none of the orders yet: no removals, as in
        L{_reindex}).
        """
        point = info.point
        self._points[point] = info
        self._all.add(point)
        if info.source_group is not None and not info.has_connected:
            self._learn(info)
        if info.known_public:
            self._public.add(point)
        if info.state is not PointState.DISCONNECTED:
            self._active.add(point)
        last_seen = info.last_seen
        if last_seen is None:
            self._unseen[point] = None
        return last_seen

    def absorb(self, info: PointInfo, loaded: PointInfo) -> None:
        """
        Add a loaded record of a known point to what is known of it (see
        L{PointInfo.absorb}).
        """
        info.absorb(loaded)
        self._reindex(info)

    def remove(self, point: Point) -> PointInfo | None:
        info = self._points.pop(point, None)
        if info is not None:
            self._all.discard(point)
            self._public.discard(point)
            self._active.discard(point)
            self._seen.pop(point, None)
            self._unseen.pop(point, None)
            self._unlearn(point)
        return info

    def learnt_count(self, group: str) -> int:
        """
        How many points learnt from C{group} never connected.
        """
        points = self._learnt.get(group)
        return len(points) if points is not None else 0

    def learnt_groups(self) -> dict[str, int]:
        """
        For each source group, how many points learnt from it never
        connected.
        """
        return {group: len(points) for group, points in self._learnt.items()}

    def make_room_for(self, group: str, now: float) -> list[Point] | None:
        """
        Forget what must go for one more point learnt from C{group} to be
        added; None when it must be refused instead.

        When C{group} holds C{group_cap} never connected points, its oldest
        learnt one that is disconnected and untrusted goes (refused when
        none is). When the table is full, never connected disconnected
        untrusted points go as in L{gc}, but no point that has connected:
        refused when too few can go.
        """
        victims: list[PointInfo] = []
        learnt = self._learnt.get(group)
        if self.group_cap is not None and learnt is not None and len(learnt) >= self.group_cap:
            victim = next((i for i in map(self._points.__getitem__, learnt) if _collectable(i)), None)
            if victim is None:
                return None
            victims.append(victim)
        if self.limits is not None:
            maximum, target = self.limits
            size = len(self._points) - len(victims)
            needed = max(0, size - maximum + 1)
            if needed:
                wanted = size - max(target, 1) + 1
                candidates = (i for i in self.collectable() if not i.has_connected and i not in victims)
                oldest = heapq.nsmallest(wanted, candidates, key=lambda i: _miss_key(i, now))
                if len(oldest) < needed:
                    return None
                victims.extend(oldest)
        for info in victims:
            self.remove(info.point)
        return [info.point for info in victims]

    # -- transitions: each changes a point and keeps the orders right --------
    #
    # Each transition re-indexes only what it can change: a dial or an
    # accepted handshake changes the state (the active set), an established
    # connection also the last seen time and whether the point has
    # connected, a disconnection the state and the last seen time, and
    # C{known_public} the public set.

    def set_requested(self, info: PointInfo, now: float) -> None:
        """
        We dial C{info}'s point (see L{PointInfo.set_requested}).
        """
        info.set_requested(now)
        if self._points.get(info.point) is info:
            self._active.add(info.point)

    def set_accepted(self, info: PointInfo, peer_id: PeerId, now: float) -> None:
        """
        A handshake with C{peer_id} at C{info}'s point was accepted.
        """
        info.set_accepted(peer_id, now)
        if self._points.get(info.point) is info:
            self._active.add(info.point)

    def set_running(self, info: PointInfo, peer_id: PeerId, now: float) -> None:
        """
        The connection to C{peer_id} at C{info}'s point runs.
        """
        info.set_running(peer_id, now)
        point = info.point
        if self._points.get(point) is info:
            self._active.add(point)
            if point in self._learnt_group:
                self._unlearn(point)
            self._reindex_seen(point, info.last_seen)

    def set_disconnected(
        self, info: PointInfo, now: float, policy: ReconnectionConfig, rng: random.Random, requested: bool = False
    ) -> None:
        """
        C{info}'s point is back to Disconnected (see
        L{PointInfo.set_disconnected}).
        """
        info.set_disconnected(now, policy, rng, requested)
        point = info.point
        if self._points.get(point) is info:
            self._active.discard(point)
            self._reindex_seen(point, info.last_seen)

    def set_known_public(self, info: PointInfo, known_public: bool) -> None:
        """
        Whether C{info}'s point is known to be a public node (only public
        points are advertised to others).
        """
        if info.known_public is known_public:
            return
        info.known_public = known_public
        if self._points.get(info.point) is info:
            if known_public:
                self._public.add(info.point)
            else:
                self._public.discard(info.point)

    def index_errors(self) -> list[str]:
        """
        Where the orders disagree with the points (empty when they agree);
        for tests and debugging, it scans the whole table.
        """
        errors = []
        if len(self._all) != len(self._points):
            errors.append(f"{len(self._all)} points indexed, {len(self._points)} known")
        for point, info in self._points.items():
            if (point in self._active) != (info.state is not PointState.DISCONNECTED):
                errors.append(f"{point}: active index wrong for state {info.state.value}")
            if (point in self._public) != info.known_public:
                errors.append(f"{point}: public index wrong (known_public={info.known_public})")
            if (point in self._unseen) != (info.last_seen is None):
                errors.append(f"{point}: unseen index wrong (last_seen={info.last_seen})")
            if info.last_seen is not None and self._seen.get(point) != info.last_seen:
                errors.append(f"{point}: seen index has {self._seen.get(point)}, not {info.last_seen}")
            learnt = info.source_group if info.source_group is not None and not info.has_connected else None
            if self._learnt_group.get(point) != learnt or (learnt is not None and point not in self._learnt[learnt]):
                errors.append(f"{point}: source group index has {self._learnt_group.get(point)}, not {learnt}")
        times = list(self._seen.values())
        if any(earlier > later for earlier, later in zip(times, times[1:])):
            errors.append("seen index: not in order of last_seen")
        if sum(len(points) for points in self._learnt.values()) != len(self._learnt_group):
            errors.append("source group index: counts disagree with the points")
        return errors

    def _learn(self, info: PointInfo) -> None:
        """
        Count C{info}'s point among those learnt from its source group that
        never connected.
        """
        group = info.source_group
        assert group is not None
        self._learnt_group[info.point] = group
        self._learnt.setdefault(group, {})[info.point] = None

    def _unlearn(self, point: Point) -> None:
        group = self._learnt_group.pop(point, None)
        if group is not None:
            points = self._learnt[group]
            del points[point]
            if not points:
                del self._learnt[group]

    def _reindex(self, info: PointInfo) -> None:
        """
        Update the orders after C{info} changed.
        """
        point = info.point
        if self._points.get(point) is not info:
            return
        if info.source_group is not None and not info.has_connected:
            if point not in self._learnt_group:
                self._learn(info)
        elif point in self._learnt_group:
            self._unlearn(point)
        if info.known_public:
            self._public.add(point)
        else:
            self._public.discard(point)
        if info.state is PointState.DISCONNECTED:
            self._active.discard(point)
        else:
            self._active.add(point)
        self._reindex_seen(point, info.last_seen)

    def _reindex_seen(self, point: Point, last_seen: float | None) -> None:
        """
        Place C{point} in the orders of last seen time after its time
        became C{last_seen}.
        """
        if last_seen is None:
            self._unseen[point] = None
            self._seen.pop(point, None)
        else:
            self._unseen.pop(point, None)
            if self._seen.get(point) != last_seen:
                self._seen.pop(point, None)
                self._insert_seen(point, last_seen)

    def _insert_seen(self, point: Point, last_seen: float) -> None:
        seen = self._seen
        if not seen or last_seen >= next(reversed(seen.values())):
            seen[point] = last_seen
        else:
            self._insert_seen_many([(point, last_seen)])

    def _insert_seen_many(self, items: list[tuple[Point, float]]) -> None:
        """
        Place points, none of them in the order of C{last_seen}, given
        with their times in ascending order.
        """
        if not items:
            return
        seen = self._seen
        # Times almost always move forward, so appending keeps the order;
        # older times (a loaded table, a merged record) are placed by
        # lifting off the newer end and putting it back: what costs is
        # only what is newer than them.
        oldest = items[0][1]
        newer: list[tuple[Point, float]] = []
        while seen:
            point, time = seen.popitem()
            if time <= oldest:
                seen[point] = time
                break
            newer.append((point, time))
        newer.reverse()
        seen.update(heapq.merge(items, newer, key=_TIME) if newer else items)

    def collectable(self) -> Iterator[PointInfo]:
        """
        The points GC may remove: disconnected and not trusted.
        """
        return (i for i in self._points.values() if _collectable(i))

    def gc(self, now: float) -> list[Point]:
        """
        Forget enough disconnected untrusted points for one more point to
        fit within the target: points that never connected first, then
        those that missed longest ago (never missed counts as now).
        """
        count = self.needs_gc()
        if count <= 0:
            return []
        oldest = heapq.nsmallest(count, self.collectable(), key=lambda i: _miss_key(i, now))
        for info in oldest:
            self.remove(info.point)
        return [info.point for info in oldest]

    def _active_longest_standing_first(self, members: Container[Point] | None) -> Iterator[Point]:
        """
        The connected and connecting points (those in C{members} only, when
        given): the never-seen ones first, then the others in order of
        C{last_seen}, oldest first, as the seen order holds them (no time is
        computed). The seen ones are sorted when they are few against the
        seen order, which is walked otherwise.
        """
        seen, active = self._seen, self._active
        for point in active:
            if point not in seen and (members is None or point in members):
                yield point
        if len(active) * WALK_SEEN_ABOVE < len(seen):
            in_order: Iterable[Point] = sorted(
                [p for p in active if p in seen and (members is None or p in members)], key=seen.__getitem__
            )
        else:
            in_order = (p for p in seen if p in active and (members is None or p in members))
        yield from in_order

    def list_known_points(self, ignore_private: bool, size: int, banned: Callable[[str], bool] | None) -> list[Point]:
        """
        Up to C{size} points to tell others about: 3/5 "best" (connected
        or connecting points, longest-standing first, then disconnected
        points, most recently seen first), 2/5 chosen at random among the
        other eligible points. Banned points are never listed (C{banned}
        None: no address is banned); with C{ignore_private}, only points
        known to be public nodes are.

        Connected or connecting points never seen come first among them,
        then the others in order of C{last_seen}; points with equal times
        in no set order.

        @raise ValueError: C{size} is negative.
        """
        if size < 0:
            raise ValueError("list_known_points: size must not be negative")
        pool = self._public if ignore_private else self._all
        # Every point of the public set is known public: eligible is
        # "not banned".
        if len(pool) <= size:
            return [p for p in pool if banned is None or not banned(p.ip)]
        members = pool.members()
        other = size * 2 // 5
        best = size - other
        chosen: dict[Point, None] = {}
        seen, active = self._seen, self._active
        # The active points in the order of the best part, made as it is
        # read: a node flooded with handshakes has thousands, and the list
        # needs a few dozen.
        ordered = self._active_longest_standing_first(members if ignore_private else None)
        # Banned points are skipped, within a budget: when most are banned
        # the best list comes out shorter, never slower.
        budget = 4 * size + 16
        for point in ordered:
            if len(chosen) >= best or budget <= 0:
                break
            budget -= 1
            if banned is None or not banned(point.ip):
                chosen[point] = None
        for source in (reversed(seen), self._unseen):
            for point in source:
                if len(chosen) >= best or budget <= 0:
                    break
                if point in active or point not in members:
                    continue
                budget -= 1
                if banned is None or not banned(point.ip):
                    chosen[point] = None
        wanted = len(chosen) + other
        for _ in range(4 * other + 16):
            if len(chosen) >= wanted or len(chosen) >= len(pool):
                break
            point = pool.choice(self._rng)
            if point not in chosen and (banned is None or not banned(point.ip)):
                chosen[point] = None
        return list(chosen)


class PeerTable:
    """
    The known peers.
    """

    def __init__(self, limits: tuple[int, int] | None) -> None:
        self.limits = limits
        self._peers: dict[PeerId, PeerInfo] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def __iter__(self) -> Iterator[PeerInfo]:
        return iter(list(self._peers.values()))

    def get(self, peer_id: PeerId) -> PeerInfo | None:
        return self._peers.get(peer_id)

    def add(self, info: PeerInfo) -> None:
        self._peers[info.peer_id] = info

    def add_many(self, infos: Iterable[PeerInfo]) -> list[PeerInfo]:
        """
        Add the peers of C{infos} that are not known (of a peer given
        twice, its first record), in C loops.

        @return: the records added, in their order.
        """
        batch = _new_by_key(infos, peer_id_of, self._peers)
        self._peers.update(batch)
        return list(batch.values())

    def remove(self, peer_id: PeerId) -> PeerInfo | None:
        return self._peers.pop(peer_id, None)

    def needs_gc(self) -> int:
        return _gc_count(len(self._peers), self.limits)

    def gc(self, score: Callable[[PeerInfo], float]) -> list[PeerId]:
        """
        Forget enough disconnected untrusted peers for one more to fit
        within the target: lowest score first, and among equal scores the
        most recently created first (a flood of new ids goes before
        long-known peers).
        """
        count = self.needs_gc()
        if count <= 0:
            return []
        candidates = (i for i in self._peers.values() if i.state is PeerState.DISCONNECTED and not i.trusted)
        worst = heapq.nsmallest(count, candidates, key=lambda i: (score(i), -i.created))
        for info in worst:
            del self._peers[info.peer_id]
        return [info.peer_id for info in worst]
