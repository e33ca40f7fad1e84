"""
Tests for the known-point and known-peer tables.
"""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from p2pool.config import ReconnectionConfig
from p2pool.core import tables
from p2pool.core.addressing import PeerId, Point
from p2pool.core.states import PeerInfo, PointInfo, PointState
from p2pool.core.tables import IndexedSet, PeerTable, PointTable

_POLICY = ReconnectionConfig(jitter=0.0)


def _point(i: int) -> Point:
    return Point(f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", 9732)


def _peer(i: int) -> PeerId:
    return PeerId(i.to_bytes(16, "big"))


def _never_banned(ip: str) -> bool:
    return False


def _times(table: PointTable, points: list[Point]) -> list[tuple[bool, float | None]]:
    """
    Whether each point is connecting or connected, and its last seen time.
    """
    infos = [table.get(p) for p in points]
    return [(i.state is not PointState.DISCONNECTED, i.last_seen) for i in infos if i is not None]


class IndexedSetTests(SynchronousTestCase):
    def test_add_discard_choice(self) -> None:
        s: IndexedSet[int] = IndexedSet()
        for i in range(10):
            s.add(i)
        s.add(3)
        self.assertEqual(len(s), 10)
        s.discard(0)
        s.discard(9)
        s.discard(42)
        self.assertEqual(sorted(s), list(range(1, 9)))
        rng = random.Random(1)
        self.assertEqual({s.choice(rng) for _ in range(200)}, set(range(1, 9)))

    def _assert_same(self, bulk: IndexedSet[int], reference: IndexedSet[int], rng: random.Random) -> None:
        """
        C{bulk} holds the items of C{reference} in the same places: the
        same order, and the same after each of their items is discarded
        (a discard moves the last item into the place its index says).
        """
        self.assertEqual(list(bulk), list(reference))
        self.assertEqual(len(bulk), len(reference))
        order = list(reference)
        rng.shuffle(order)
        for item in order:
            self.assertIn(item, bulk)
            bulk.discard(item)
            reference.discard(item)
            self.assertEqual(list(bulk), list(reference))
        self.assertEqual(len(bulk), 0)

    def test_add_many_is_add_one_at_a_time(self) -> None:
        """
        C{add_many} leaves the set as C{add} of each item in turn would,
        items present already and repeated ones included.
        """
        rng = random.Random(2)
        batches = [
            [],
            list(range(10)),
            [10, 11, 12],
            [3, 20, 5, 21],
            [30, 31, 30, 32, 31],
            [1, 40, 40, 2, 1],
            [7, 8],
            [],
        ]
        for count in range(1, len(batches) + 1):
            bulk: IndexedSet[int] = IndexedSet()
            reference: IndexedSet[int] = IndexedSet()
            for batch in batches[:count]:
                bulk.add_many(iter(batch))
                for item in batch:
                    reference.add(item)
            self._assert_same(bulk, reference, rng)

    def test_add_many_after_discards(self) -> None:
        s: IndexedSet[int] = IndexedSet()
        reference: IndexedSet[int] = IndexedSet()
        for item in range(6):
            s.add(item)
            reference.add(item)
        for item in (0, 4):
            s.discard(item)
            reference.discard(item)
        s.add_many([5, 6, 0, 6])
        for item in (5, 6, 0, 6):
            reference.add(item)
        self._assert_same(s, reference, random.Random(3))


class PointGCTests(SynchronousTestCase):
    def _table(self, limits: tuple[int, int]) -> PointTable:
        return PointTable(limits, random.Random(0))

    def _miss(self, table: PointTable, info: PointInfo, at: float) -> None:
        table.set_requested(info, at)
        table.set_disconnected(info, at, _POLICY, random.Random(0))

    def test_gc_reaches_target_and_prefers_oldest_miss(self) -> None:
        table = self._table((5, 3))
        infos = [PointInfo(_point(i)) for i in range(5)]
        for i, info in enumerate(infos):
            table.add(info)
            if i < 3:
                self._miss(table, info, at=10.0 + i)
        removed = table.gc(now=100.0)
        # 5 known, target 3: three go so that the next point makes 3.
        self.assertEqual(removed, [_point(0), _point(1), _point(2)])
        table.add(PointInfo(_point(99)))
        self.assertEqual(len(table), 3)

    def test_never_missed_go_last(self) -> None:
        table = self._table((3, 2))
        fresh, old = PointInfo(_point(1)), PointInfo(_point(2))
        table.add(fresh)
        table.add(old)
        table.add(PointInfo(_point(3)))
        self._miss(table, old, at=1.0)
        removed = table.gc(now=50.0)
        self.assertEqual(removed[0], _point(2))

    def test_trusted_and_connected_are_kept(self) -> None:
        table = self._table((0, 0))
        trusted = PointInfo(_point(1), trusted=True)
        running = PointInfo(_point(2))
        running.set_running(_peer(1), 1.0)
        plain = PointInfo(_point(3))
        for info in (trusted, running, plain):
            table.add(info)
        self.assertEqual(table.gc(now=2.0), [_point(3)])
        self.assertEqual({i.point for i in table}, {_point(1), _point(2)})

    def test_no_limits_no_gc(self) -> None:
        table = PointTable(None, random.Random(0))
        for i in range(50):
            table.add(PointInfo(_point(i)))
        self.assertEqual(table.gc(now=1.0), [])
        self.assertEqual(len(table), 50)


class SourceGroupTests(SynchronousTestCase):
    """
    The never-connected points learnt from each source group: indexed by
    the table's transitions, bounded per group, and never displacing
    points that have connected.
    """

    def _table(self, limits: tuple[int, int] | None = (20, 15), share: float | None = 0.25) -> PointTable:
        return PointTable(limits, random.Random(0), share)

    def _learn(self, table: PointTable, i: int, group: str, now: float = 0.0) -> list[Point] | None:
        removed = table.make_room_for(group, now)
        if removed is not None:
            table.add(PointInfo(_point(i), source_group=group))
        return removed

    def _connect(self, table: PointTable, info: PointInfo, at: float) -> None:
        table.set_requested(info, at)
        table.set_running(info, _peer(1), at)
        table.set_disconnected(info, at + 1, _POLICY, random.Random(0))

    def test_cap_is_a_share_of_max(self) -> None:
        self.assertEqual(self._table().group_cap, 5)
        self.assertEqual(self._table((3, 2), 0.1).group_cap, 1)
        self.assertIsNone(self._table(None).group_cap)
        self.assertIsNone(self._table(share=None).group_cap)

    def test_flood_from_one_group_evicts_its_own_oldest(self) -> None:
        table = self._table()
        self._learn(table, 100, "honest")
        for i in range(5):
            self.assertEqual(self._learn(table, i, "attacker"), [])
        self.assertEqual(self._learn(table, 5, "attacker"), [_point(0)])
        self.assertEqual(self._learn(table, 6, "attacker"), [_point(1)])
        self.assertEqual(table.learnt_groups(), {"honest": 1, "attacker": 5})
        self.assertIn(_point(100), table)
        self.assertEqual(table.index_errors(), [])

    def test_points_being_dialed_are_not_evicted(self) -> None:
        table = self._table()
        for i in range(5):
            self._learn(table, i, "g")
        for info in table:
            table.set_requested(info, 1.0)
        self.assertIsNone(self._learn(table, 9, "g"), "refused: nothing of the group can go")
        table.set_disconnected(table.get(_point(3)), 2.0, _POLICY, random.Random(0))  # type: ignore[arg-type]
        self.assertEqual(self._learn(table, 9, "g"), [_point(3)])

    def test_connected_points_stop_counting_and_are_kept(self) -> None:
        table = self._table()
        for i in range(5):
            self._learn(table, i, "g")
        first = table.get(_point(0))
        assert first is not None
        self._connect(table, first, 1.0)
        self.assertEqual(table.learnt_count("g"), 4)
        self.assertEqual(self._learn(table, 5, "g"), [])
        self.assertEqual(self._learn(table, 6, "g"), [_point(1)], "the oldest never connected one")
        self.assertIn(_point(0), table)
        self.assertEqual(table.index_errors(), [])

    def test_full_table_refuses_rather_than_displace_connected_points(self) -> None:
        table = self._table((4, 2), share=None)
        for i in range(4):
            info = PointInfo(_point(i))
            table.add(info)
            self._connect(table, info, float(i))
        self.assertIsNone(self._learn(table, 10, "g", now=10.0))
        self.assertEqual(len(table), 4)
        # A never connected point can make room.
        fresh = PointInfo(_point(5))
        table.remove(_point(3))
        table.add(fresh)
        self.assertEqual(self._learn(table, 10, "g", now=10.0), [_point(5)])
        self.assertEqual(table.index_errors(), [])

    def test_gc_takes_never_connected_points_first(self) -> None:
        table = self._table((3, 2), share=None)
        connected = PointInfo(_point(1))
        table.add(connected)
        self._connect(table, connected, 1.0)
        fresh = PointInfo(_point(2))
        table.add(fresh)
        table.add(PointInfo(_point(3)))
        # The connected point missed long ago; the fresh ones never did.
        self.assertEqual(set(table.gc(now=50.0)), {_point(2), _point(3)})
        self.assertIn(_point(1), table)

    def test_remove_and_unbounded(self) -> None:
        table = self._table(None)
        for i in range(50):
            self.assertEqual(self._learn(table, i, "g"), [])
        self.assertEqual(table.learnt_count("g"), 50)
        for i in range(50):
            table.remove(_point(i))
        self.assertEqual(table.learnt_groups(), {})
        self.assertEqual(table.index_errors(), [])


class ListKnownPointsTests(SynchronousTestCase):
    def _public(self, table: PointTable, i: int, seen_at: float | None = None, running: bool = False) -> PointInfo:
        info = PointInfo(_point(i), known_public=True)
        table.add(info)
        if seen_at is not None:
            table.set_running(info, _peer(i), seen_at)
            if not running:
                table.set_disconnected(info, seen_at, _POLICY, random.Random(0))
        return info

    def test_negative_size(self) -> None:
        table = PointTable(None, random.Random(0))
        self.assertRaises(ValueError, table.list_known_points, True, -1, _never_banned)

    def test_small_table_lists_everything_eligible(self) -> None:
        table = PointTable(None, random.Random(0))
        for i in range(5):
            self._public(table, i, seen_at=float(i))
        table.add(PointInfo(_point(50)))  # not known public
        listed = table.list_known_points(True, 50, lambda ip: ip == str(_point(4).ip))
        self.assertEqual(set(listed), {_point(i) for i in range(4)})
        everything = table.list_known_points(False, 50, _never_banned)
        self.assertEqual(len(everything), 6)

    def test_best_then_random(self) -> None:
        table = PointTable(None, random.Random(3))
        for i in range(200):
            self._public(table, i, seen_at=float(i))
        running = [self._public(table, 1000 + i, seen_at=500.0 + i, running=True) for i in range(3)]
        listed = table.list_known_points(True, 10, _never_banned)
        self.assertEqual(len(listed), 10)
        self.assertEqual(len(set(listed)), 10)
        # 6 best: the 3 running ones (longest standing first), then the
        # most recently seen disconnected points.
        self.assertEqual(listed[:3], [r.point for r in running])
        self.assertEqual(listed[3:6], [_point(199), _point(198), _point(197)])
        self.assertTrue(set(listed[6:]).isdisjoint(listed[:6]))

    def test_banned_never_listed(self) -> None:
        table = PointTable(None, random.Random(0))
        for i in range(300):
            self._public(table, i, seen_at=float(i))
        banned = {p.ip for p in table.list_known_points(True, 50, _never_banned)}
        listed = table.list_known_points(True, 50, lambda ip: ip in banned)
        self.assertTrue(banned.isdisjoint(p.ip for p in listed))
        self.assertGreater(len(listed), 0)

    def test_private_points_not_listed(self) -> None:
        table = PointTable(None, random.Random(0))
        for i in range(100):
            info = PointInfo(_point(i))
            table.add(info)
        for i in range(100, 103):
            self._public(table, i, seen_at=1.0)
        self.assertEqual(set(table.list_known_points(True, 50, _never_banned)), {_point(i) for i in range(100, 103)})

    def test_remove_forgets_orders(self) -> None:
        table = PointTable(None, random.Random(0))
        info = self._public(table, 1, seen_at=1.0)
        table.remove(info.point)
        self.assertEqual(table.list_known_points(False, 5, _never_banned), [])
        self.assertNotIn(info.point, table)

    def test_loaded_older_times_keep_order(self) -> None:
        table = PointTable(None, random.Random(0))
        for i, seen in enumerate([5.0, 9.0, 1.0, 7.0] * 20):
            self._public(table, i, seen_at=seen)
        listed = table.list_known_points(False, 10, _never_banned)
        seen_times = [table.get(p).last_seen for p in listed[:6]]  # type: ignore[union-attr]
        self.assertEqual(seen_times, sorted(seen_times, reverse=True))

    def _random_table(self, seed: int) -> PointTable:
        """
        A table whose points went through random transitions: connected,
        connecting, accepted, disconnected after running or after a failed
        dial, public or not, never seen, with times that repeat.
        """
        rng = random.Random(seed)
        table = PointTable(None, random.Random(seed))
        infos = []
        for i in range(120):
            info = PointInfo(_point(i), known_public=rng.random() < 0.7)
            table.add(info)
            infos.append(info)
        for step in range(600):
            info = rng.choice(infos)
            now = float(rng.randrange(50))
            if info.state is PointState.DISCONNECTED:
                move = rng.choice(["request", "accept", "run", "public"])
            else:
                move = (
                    rng.choice(["run", "disconnect", "public"])
                    if info.state is not PointState.RUNNING
                    else "disconnect"
                )
            if move == "request":
                table.set_requested(info, now)
            elif move == "accept":
                table.set_accepted(info, _peer(step), now)
            elif move == "run":
                table.set_running(info, info.current_peer_id or _peer(step), now)
            elif move == "disconnect":
                table.set_disconnected(info, now, _POLICY, rng)
            else:
                table.set_known_public(info, not info.known_public)
            self.assertEqual(table.index_errors(), [], (seed, step, move))
        return table

    def _documented_best(self, table: PointTable, ignore_private: bool, best: int) -> list[Point]:
        """
        The "best" part of a listing as its docstring defines it, from the
        records alone: connecting or connected points (never seen first,
        then by last seen, oldest first), then disconnected points seen
        most recently first, then disconnected points never seen.
        """
        infos = [i for i in table if i.known_public or not ignore_private]
        active = [i for i in infos if i.state is not PointState.DISCONNECTED]
        rest = [i for i in infos if i.state is PointState.DISCONNECTED]
        ordered = sorted(active, key=lambda i: (i.last_seen is not None, i.last_seen or 0.0))
        ordered += sorted((i for i in rest if i.last_seen is not None), key=lambda i: -(i.last_seen or 0.0))
        ordered += [i for i in rest if i.last_seen is None]
        return [i.point for i in ordered[:best]]

    def test_best_follows_the_documented_order(self) -> None:
        """
        The best part of a listing, which comes from the orders the
        transitions keep (no time computed at listing), is the documented
        selection, up to the order of points with equal times.
        """
        self._check_documented_order()

    def test_active_points_sorted_or_walked_alike(self) -> None:
        """
        The connected and connecting points come in the documented order
        whether they are sorted by their times or read from the seen order.
        """
        for factor in (0, 10**9):
            self.patch(tables, "WALK_SEEN_ABOVE", factor)
            self._check_documented_order()

    def _check_documented_order(self) -> None:
        for seed in range(8):
            table = self._random_table(seed)
            for ignore_private in (True, False):
                for size in (5, 20, 60):
                    listed = table.list_known_points(ignore_private, size, _never_banned)
                    eligible = {i.point for i in table if i.known_public or not ignore_private}
                    if len(eligible) <= size:
                        self.assertEqual(sorted(listed), sorted(eligible))
                        continue
                    best = size - size * 2 // 5
                    expected = self._documented_best(table, ignore_private, best)
                    got = listed[:best]
                    self.assertEqual(len(got), len(expected))

                    self.assertEqual(_times(table, got), _times(table, expected), (seed, ignore_private, size))
                    self.assertEqual(len(set(listed)), len(listed))
                    if ignore_private:
                        self.assertTrue(all(table.get(p).known_public for p in listed))  # type: ignore[union-attr]

    def test_active_points_never_seen_come_first(self) -> None:
        table = PointTable(None, random.Random(0))
        for i in range(100):
            self._public(table, i, seen_at=float(i))
        running = self._public(table, 200, seen_at=300.0, running=True)
        dialing = PointInfo(_point(201), known_public=True)
        table.add(dialing)
        table.set_requested(dialing, 301.0)
        private = PointInfo(_point(202))
        table.add(private)
        table.set_requested(private, 301.0)
        listed = table.list_known_points(True, 10, _never_banned)
        self.assertEqual(listed[:3], [dialing.point, running.point, _point(99)])
        self.assertNotIn(private.point, listed)
        # Both never seen: in no set order.
        self.assertEqual(set(table.list_known_points(False, 10, _never_banned)[:2]), {dialing.point, private.point})

    def test_banned_active_points_skipped(self) -> None:
        table = PointTable(None, random.Random(0))
        for i in range(100):
            self._public(table, i, seen_at=float(i))
        first = self._public(table, 200, seen_at=300.0, running=True)
        second = self._public(table, 201, seen_at=301.0, running=True)
        listed = table.list_known_points(True, 10, lambda ip: ip == first.point.ip)
        self.assertEqual(listed[:2], [second.point, _point(99)])
        self.assertNotIn(first.point, listed)

    def test_no_ban_function_lists_as_never_banned(self) -> None:
        """
        C{banned=None} (nothing is banned) lists what a check that bans
        nothing lists, from the same random state.
        """
        for ignore_private in (True, False):
            listings = []
            for banned in (None, _never_banned):
                table = self._random_table(3)
                listings.append([table.list_known_points(ignore_private, size, banned) for size in (5, 20, 60, 200)])
            self.assertEqual(listings[0], listings[1])

    def test_known_public_unchanged_is_no_change(self) -> None:
        table = PointTable(None, random.Random(0))
        info = self._public(table, 1, seen_at=1.0)
        table.set_known_public(info, True)
        table.set_known_public(info, False)
        table.set_known_public(info, False)
        self.assertEqual(table.list_known_points(True, 5, _never_banned), [])
        self.assertEqual(table.index_errors(), [])

    def test_transitions_of_a_forgotten_record_change_no_index(self) -> None:
        table = PointTable(None, random.Random(0))
        info = PointInfo(_point(1), known_public=True)
        table.add(info)
        table.remove(info.point)
        table.set_requested(info, 1.0)
        table.set_running(info, _peer(1), 2.0)
        table.set_known_public(info, False)
        table.set_disconnected(info, 3.0, _POLICY, random.Random(0))
        self.assertEqual(len(table), 0)
        self.assertEqual(table.list_known_points(False, 5, _never_banned), [])
        self.assertEqual(table.index_errors(), [])

    def test_unknown(self) -> None:
        table = PointTable(None, random.Random(0))
        self._public(table, 1)
        self.assertEqual(table.unknown([_point(2), _point(1), _point(3), _point(2)]), [_point(2), _point(3), _point(2)])


class AddManyTests(SynchronousTestCase):
    """
    L{PointTable.add_many} and L{PeerTable.add_many} leave a table as
    adding each record in turn would (a known one and a repeat skipped).
    """

    def _record(self, i: int, rng: random.Random, seen: list[float]) -> PointInfo:
        """
        A point record with what the indexes look at drawn at random: public
        or not, never seen or seen at the next of C{seen}'s times, learnt
        from a source group (connected once or not), connecting, running.
        """
        info = PointInfo(
            _point(i),
            known_public=rng.random() < 0.6,
            source_group=rng.choice([None, "10.1", "10.2"]),
            last_disconnection=(_peer(i), seen.pop()) if rng.random() < 0.7 else None,
        )
        if rng.random() < 0.3:
            info.last_established_connection = (_peer(i), seen.pop())
        move = rng.random()
        if move < 0.1:
            info.set_requested(seen.pop())
        elif move < 0.15:
            info.set_running(_peer(i), seen.pop())
        return info

    def _one_at_a_time(self, table: PointTable, infos: list[PointInfo]) -> list[PointInfo]:
        added = []
        for info in infos:
            if info.point not in table:
                table.add(info)
                added.append(info)
        return added

    def _assert_same(self, bulk: PointTable, reference: PointTable) -> None:
        self.assertEqual(bulk.index_errors(), [])
        self.assertEqual(reference.index_errors(), [])
        self.assertEqual([(i.point, id(i)) for i in bulk], [(i.point, id(i)) for i in reference])
        self.assertEqual(bulk.learnt_groups(), reference.learnt_groups())
        for ignore_private in (False, True):
            for size in (0, 3, 10, 40, 500):
                self.assertEqual(
                    bulk.list_known_points(ignore_private, size, None),
                    reference.list_known_points(ignore_private, size, None),
                    (ignore_private, size),
                )

    def test_points_as_one_at_a_time(self) -> None:
        """
        Batches in any order of times, with points known already and
        points given twice, into a table that holds points of its own.
        """
        for seed in range(6):
            rng = random.Random(seed)
            # Distinct times: points with equal times are in no set order.
            seen = [float(t) for t in rng.sample(range(10_000), 1000)]
            bulk, reference = PointTable(None, random.Random(seed)), PointTable(None, random.Random(seed))
            for i in range(20):
                info = self._record(i, rng, seen)
                bulk.add(info)
                reference.add(info)
            records = [self._record(i, rng, seen) for i in range(20, 300)]
            if seed % 2:
                records.sort(key=lambda i: (i.last_seen is not None, i.last_seen or 0.0))
            for start in range(0, len(records), 50):
                batch = records[start : start + 50]
                batch += [PointInfo(_point(rng.randrange(start + 70)), known_public=True) for _ in range(seed)]
                added = bulk.add_many(iter(batch))
                self.assertEqual(added, self._one_at_a_time(reference, batch), (seed, start))
            self._assert_same(bulk, reference)

    def test_known_and_repeated_points(self) -> None:
        table = PointTable(None, random.Random(0))
        known = PointInfo(_point(1), last_disconnection=(_peer(1), 5.0))
        table.add(known)
        first, again = PointInfo(_point(2), known_public=True), PointInfo(_point(2), last_disconnection=(_peer(2), 1.0))
        fresh = PointInfo(_point(3), last_disconnection=(_peer(3), 3.0))
        loaded = PointInfo(_point(1), known_public=True)
        self.assertEqual(table.add_many([first, loaded, fresh, again]), [first, fresh])
        self.assertIs(table.get(_point(1)), known, "a known point keeps its record")
        self.assertIs(table.get(_point(2)), first, "the first record of a point given twice")
        self.assertEqual(table.list_known_points(True, 5, None), [_point(2)])
        self.assertEqual(table.add_many([]), [])
        self.assertEqual(table.index_errors(), [])

    def test_equal_times(self) -> None:
        """
        Times equal to each other and to known ones keep the seen order
        in order of times.
        """
        table = PointTable(None, random.Random(0))
        for i in range(5):
            table.add(PointInfo(_point(i), last_disconnection=(_peer(i), float(i % 3))))
        table.add_many(PointInfo(_point(i), last_disconnection=(_peer(i), float(i % 4))) for i in range(5, 40))
        self.assertEqual(table.index_errors(), [])
        listed = table.list_known_points(False, 10, None)
        times = [table.get(p).last_seen for p in listed[:6]]  # type: ignore[union-attr]
        self.assertEqual(times, sorted(times, reverse=True))

    def test_peers(self) -> None:
        table = PeerTable(None)
        known = PeerInfo(_peer(1), created=1.0)
        table.add(known)
        first, again, fresh = PeerInfo(_peer(2), created=2.0), PeerInfo(_peer(2), created=0.0), PeerInfo(_peer(3), 3.0)
        loaded = PeerInfo(_peer(1), created=0.0)
        self.assertEqual(table.add_many(iter([first, loaded, fresh, again])), [first, fresh])
        self.assertIs(table.get(_peer(1)), known)
        self.assertIs(table.get(_peer(2)), first)
        self.assertEqual([i.peer_id for i in table], [_peer(1), _peer(2), _peer(3)])
        self.assertEqual(table.add_many([PeerInfo(_peer(4), created=4.0)]), [table.get(_peer(4))])
        self.assertEqual(table.add_many([]), [])
        self.assertEqual(len(table), 4)


class PeerGCTests(SynchronousTestCase):
    def test_lowest_score_then_newest_first(self) -> None:
        table = PeerTable((4, 2))
        scores = {_peer(1): 5.0, _peer(2): 1.0, _peer(3): 1.0, _peer(4): 9.0}
        for i in range(1, 5):
            table.add(PeerInfo(_peer(i), created=float(i)))
        removed = table.gc(lambda info: scores[info.peer_id])
        # Three go (4 known, target 2, one more to come): lowest scores,
        # and of the two equal ones the newer first.
        self.assertEqual(removed, [_peer(3), _peer(2), _peer(1)])
        self.assertEqual([i.peer_id for i in table], [_peer(4)])

    def test_trusted_and_connected_peers_kept(self) -> None:
        table = PeerTable((2, 0))
        trusted = PeerInfo(_peer(1), created=0.0, trusted=True)
        running = PeerInfo(_peer(2), created=0.0)
        running.set_running(None, 1.0)
        table.add(trusted)
        table.add(running)
        self.assertEqual(table.gc(lambda info: 0.0), [])
        self.assertEqual(len(table), 2)


class StateMachineTests(SynchronousTestCase):
    def test_point_backoff_grows_and_caps(self) -> None:
        info = PointInfo(_point(1))
        policy = ReconnectionConfig(factor=2.0, initial_delay=1.0, increase_cap=5.0, jitter=0.0)
        ends = []
        for t in range(5):
            info.set_requested(float(t * 100))
            info.set_disconnected(float(t * 100), policy, random.Random(0))
            assert info.reconnection_time is not None
            ends.append(info.reconnection_time - t * 100)
        self.assertEqual(ends, [1.0, 2.0, 4.0, 5.0, 5.0])
        self.assertEqual(info.last_failed_connection, 400.0)
        self.assertTrue(info.cannot_reconnect_yet(404.0))
        self.assertFalse(info.cannot_reconnect_yet(406.0))

    def test_disconnection_blocks_then_resets(self) -> None:
        info = PointInfo(_point(1))
        policy = ReconnectionConfig(initial_delay=1.0, disconnection_delay=60.0, jitter=0.0)
        info.set_running(_peer(1), 10.0)
        info.set_disconnected(20.0, policy, random.Random(0))
        self.assertEqual(info.state, PointState.DISCONNECTED)
        self.assertEqual(info.reconnection_time, 80.0)
        self.assertEqual(info.last_disconnection, (_peer(1), 20.0))
        self.assertEqual(info.last_seen, 20.0)
        self.assertEqual(info.last_miss, 20.0)
        self.assertEqual([e.kind for e in info.events], ["connection_established", "external_disconnection"])

    def test_jitter_spreads_backoff(self) -> None:
        policy = ReconnectionConfig(initial_delay=10.0, jitter=0.5)
        rng = random.Random(7)
        ends = set()
        for i in range(20):
            info = PointInfo(_point(i))
            info.set_requested(0.0)
            info.set_disconnected(0.0, policy, rng)
            assert info.reconnection_time is not None
            self.assertTrue(5.0 <= info.reconnection_time <= 15.0)
            ends.add(info.reconnection_time)
        self.assertGreater(len(ends), 10)

    def test_invalid_transitions_refused(self) -> None:
        from p2pool.core.states import InvalidTransition

        info = PointInfo(_point(1))
        error = self.assertRaises(InvalidTransition, info.set_disconnected, 0.0, _POLICY, random.Random(0))
        self.assertEqual(str(error), f"point {_point(1)}: cannot disconnect from disconnected")
        info.set_accepted(_peer(1), 0.0)
        self.assertRaises(InvalidTransition, info.set_running, _peer(2), 1.0)
        peer = PeerInfo(_peer(1), created=0.0)
        error = self.assertRaises(InvalidTransition, peer.set_disconnected, 0.0)
        self.assertEqual(str(error), f"peer {_peer(1)}: cannot disconnect from disconnected")

    def test_events_are_untracked_values(self) -> None:
        """
        The events a connection records are values (equal by their fields)
        that the cyclic garbage collector does not track.
        """
        import gc

        from p2pool.core.states import StateEvent

        info = PointInfo(_point(1))
        info.set_accepted(_peer(1), 1.0)
        info.set_running(_peer(1), 2.0)
        self.assertEqual(
            list(info.events),
            [StateEvent("accepting_request", 1.0, _peer(1)), StateEvent("connection_established", 2.0, _peer(1))],
        )
        self.assertEqual([gc.is_tracked(event) for event in info.events], [False, False])

    def test_last_seen_is_the_latest_stamp(self) -> None:
        """
        A point's and a peer's last seen time is the latest of their
        rejected, established and disconnected stamps, whichever are set
        (None when none is).
        """
        import itertools

        times = (None, 1.0, 2.0, 3.0)
        for rejected, established, disconnected in itertools.product(times, repeat=3):
            set_times = [t for t in (rejected, established, disconnected) if t is not None]
            expected = max(set_times) if set_times else None
            point = PointInfo(_point(1))
            point.last_rejected_connection = None if rejected is None else (_peer(1), rejected)
            point.last_established_connection = None if established is None else (_peer(1), established)
            point.last_disconnection = None if disconnected is None else (_peer(1), disconnected)
            peer = PeerInfo(_peer(1), created=0.0)
            peer.last_rejected_connection = None if rejected is None else (None, rejected)
            peer.last_established_connection = None if established is None else (_point(1), established)
            peer.last_disconnection = None if disconnected is None else (_point(1), disconnected)
            self.assertEqual((point.last_seen, peer.last_seen), (expected, expected))

    def test_established_times(self) -> None:
        """
        The times of many points' C{last_established_connection}, as each
        reads it.
        """
        running = PointInfo(_point(1))
        running.set_running(_peer(1), 7.0)
        loaded = PointInfo(_point(2), last_established_connection=(_peer(2), 5.0))
        never = PointInfo(_point(3), last_disconnection=(_peer(3), 9.0))
        infos = [running, loaded, never]
        self.assertEqual(PointInfo.established_times(iter(infos)), [7.0, 5.0, None])
        loaded.last_established_connection = None
        self.assertEqual(PointInfo.established_times(infos), [7.0, None, None])
        self.assertEqual(PointInfo.established_times([]), [])

    def test_event_ring_bounded(self) -> None:
        info = PointInfo(_point(1))
        for t in range(150):
            info.set_requested(float(t))
            info.set_disconnected(float(t), _POLICY, random.Random(0))
        self.assertEqual(len(info.events), 100)
        self.assertEqual(info.events[-1].timestamp, 149.0)
