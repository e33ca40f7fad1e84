"""
The address book by source (issue 14 item 3) on the in-memory network:
points learnt from peers are accounted to the sender's network group and
bounded per group, points that have connected are not displaced, learnt
points outside the node's reachability class are dropped, an unknown point
in a SwapRequest is learnt and not dialed at once, and dials of learnt
points keep within each source group's budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from p2pool.core.addressing import PeerId, Point
from p2pool.core.wire import Advertise, SwapRequest, encode
from p2pool.events import EventKind
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork
from p2pool.transport.connection import Connection

PORT = 9732


class _BookTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=11, latency=0.002)
        self.addCleanup(self.network.stop)
        self.log: list[tuple[float, str, str, dict[str, Any]]] = []
        self.network.observe(lambda t, host, e: self.log.append((t, host, e.event, e.fields)))

    def events(self, host: str, name: EventKind) -> list[tuple[float, dict[str, Any]]]:
        return [(t, f) for t, h, e, f in self.log if h == host and e == name]

    def run_until(self, predicate: Callable[[], object], timeout: float = 30.0) -> None:
        self.assertTrue(self.network.run_until(predicate, timeout=timeout), "condition not met in simulated time")

    def link(self, source: Pool, target: Pool) -> Connection:
        """
        Connect C{source} to C{target}; the connection at C{source}.
        """
        d = source.connect(Point(str(target.config.listen.ip), PORT))
        self.run_until(lambda: d.called, timeout=10)
        conn: Connection = self.successResultOf(d)
        return conn

    def advertise(self, conn: Connection, points: list[Point]) -> None:
        """
        Send C{points} in Advertise frames of 50, each after the receiver's
        cooldown, and let them be handled.
        """
        for start in range(0, len(points), 50):
            conn.send_control(encode(Advertise(tuple(points[start : start + 50]))))
            self.network.advance(0.2)
        self.network.advance(0.5)


def _points(prefix: str, count: int) -> list[Point]:
    return [Point(f"{prefix}.{i // 250}.{i % 250 + 1}", PORT) for i in range(count)]


class SourceShareTests(_BookTestCase):
    def test_flood_from_one_group_is_capped(self) -> None:
        """
        One /16 advertising 400 points holds at most its share (10 % of
        400) of the table; an honest group's points stay.
        """
        target = self.network.add_pool("10.1.0.1", maintenance_idle_time=None)
        honest = self.network.add_pool("10.2.0.1", maintenance_idle_time=None)
        attacker = self.network.add_pool("10.66.0.1", maintenance_idle_time=None)
        honest_points = _points("10.50", 30)
        self.advertise(self.link(honest, target), honest_points)
        conn = self.link(attacker, target)
        flood = _points("10.100", 400)
        self.advertise(conn, flood)
        self.network.advance(30.0)  # the per-connection Advertise bucket refills
        self.advertise(conn, flood[200:])
        directory = target.directory
        self.assertEqual(directory.learnt_count("10.66.0.0/16"), 40)
        known = {info.point for info in target.points}
        self.assertEqual(len(known & set(flood)), 40)
        self.assertTrue(set(honest_points) <= known)
        self.assertEqual(directory.learnt_count("10.2.0.0/16"), 30)
        self.assertEqual(directory.index_errors(), [])
        dropped = self.events("10.1.0.1", EventKind.POINTS_DROPPED)
        self.assertEqual(dropped, [], "at the bound the group's oldest point gives way; nothing is refused")
        self.assertTrue(self.events("10.1.0.1", EventKind.GC_POINTS))

    def test_connected_points_are_not_displaced(self) -> None:
        """
        With the table nearly full of points that have connected, learnt
        points from two /16s replace only never-connected points: every
        connected one stays.
        """
        target = self.network.add_pool(
            "10.1.0.1", maintenance_idle_time=None, max_known_points=(20, 15), max_source_group_share=0.5
        )
        directory = target.directory
        history = _points("10.30", 16)
        for n, point in enumerate(history):
            info = target.register_point(point)
            directory.point_requested(info, target.now())
            directory.point_running(info, PeerId(n.to_bytes(16, "big")), target.now())
            directory.point_disconnected(info, target.now())
        for i, group in enumerate(("10.66", "10.67")):
            attacker = self.network.add_pool(f"{group}.0.1", maintenance_idle_time=None)
            self.advertise(self.link(attacker, target), _points(f"10.{100 + i}", 50))
        known = {info.point for info in target.points}
        self.assertTrue(set(history) <= known, "every point that has connected is kept")
        self.assertLessEqual(len(known), 20)
        self.assertGreater(len(known - set(history)), 0, "learnt points took the never-connected room")
        self.assertEqual(directory.index_errors(), [])


class ReachabilityTests(_BookTestCase):
    ODD = [
        Point("127.0.0.1", PORT),
        Point("10.0.0.1", PORT),
        Point("169.254.0.1", PORT),
        Point("224.0.0.1", PORT),
        Point("0.0.0.0", PORT),
        Point("8.8.8.8", 0),
    ]

    def test_public_node_drops_non_routable_points(self) -> None:
        target = self.network.add_pool("1.2.3.4", maintenance_idle_time=None)
        peer = self.network.add_pool("5.6.7.8", maintenance_idle_time=None)
        good = Point("9.9.9.9", PORT)
        self.advertise(self.link(peer, target), [*self.ODD, good])
        known = {info.point for info in target.points}
        self.assertIn(good, known)
        self.assertEqual(known & set(self.ODD), set())
        [(_, fields)] = self.events("1.2.3.4", EventKind.POINTS_DROPPED)
        self.assertEqual((fields["medium"], fields["unreachable"], fields["refused"]), ("advertise", 6, 0))
        # The operator's points are never filtered.
        self.assertIsNotNone(target.register_point(Point("10.0.0.9", PORT)))
        self.assertIsNotNone(target.points.info(Point("10.0.0.9", PORT)))

    def test_loopback_node_keeps_loopback_and_private_points(self) -> None:
        target = self.network.add_pool("127.0.0.2", maintenance_idle_time=None)
        peer = self.network.add_pool("127.0.0.3", maintenance_idle_time=None)
        self.advertise(self.link(peer, target), [*self.ODD, Point("9.9.9.9", PORT)])
        known = {info.point for info in target.points}
        self.assertTrue({Point("127.0.0.1", PORT), Point("10.0.0.1", PORT), Point("169.254.0.1", PORT)} <= known)
        [(_, fields)] = self.events("127.0.0.2", EventKind.POINTS_DROPPED)
        self.assertEqual(fields["unreachable"], 3, "multicast, unspecified and port 0 only")


class BudgetTests(_BookTestCase):
    def test_swap_of_an_unknown_point_registers_it_without_a_dial(self) -> None:
        target = self.network.add_pool("10.1.0.1", maintenance_idle_time=None)
        peer = self.network.add_pool("10.2.0.1", maintenance_idle_time=None)
        conn = self.link(peer, target)
        offered = Point("10.9.0.1", PORT)
        conn.send_control(encode(SwapRequest(offered, PeerId(bytes(16)))))
        self.network.advance(10.0)
        [(_, fields)] = self.events("10.1.0.1", EventKind.SWAP_REQUEST_IGNORED)
        self.assertEqual(fields["reason"], "new_point")
        info = target.points.info(offered)
        assert info is not None
        self.assertEqual(info.source_group, "10.2.0.0/16")
        dials = [f for _, f in self.events("10.1.0.1", EventKind.OUTGOING_CONNECTION) if f["point"] == str(offered)]
        self.assertEqual(dials, [])
        self.assertEqual(self.events("10.2.0.1", EventKind.SWAP_ACK_RECEIVED), [])

    def test_maintenance_dials_learnt_points_within_the_budget(self) -> None:
        """
        Maintenance dials the points one /16 advertised no faster than
        C{source_group_dial_burst + source_group_dial_rate * t}; points of
        another group have their own budget.
        """
        burst, rate = 3, 0.5
        target = self.network.add_pool(
            "10.1.0.1",
            maintenance_idle_time=2.0,
            source_group_dial_burst=burst,
            source_group_dial_rate=rate,
        )
        attacker = self.network.add_pool("10.66.0.1", maintenance_idle_time=None)
        flood = _points("10.100", 100)
        start = self.network.seconds()
        self.advertise(self.link(attacker, target), flood)
        self.network.advance(40.0)
        advertised = {str(p) for p in flood}
        times = [t for t, f in self.events("10.1.0.1", EventKind.OUTGOING_CONNECTION) if f["point"] in advertised]
        self.assertGreater(len(times), burst, "learnt points are dialed")
        for n, t in enumerate(sorted(times), start=1):
            self.assertLessEqual(n, burst + rate * (t - start) + 1e-6, f"dial {n} at {t - start:.2f} s")
        self.assertGreater(target.dial_budget.deferred, 0)
        # A point that gave way to a newer one of its group is not brought
        # back, unaccounted, by a dial chosen before it went.
        learnt = [info for info in target.points if info.point in set(flood)]
        self.assertEqual({info.source_group for info in learnt}, {"10.66.0.0/16"})

    def test_swaps_of_learnt_points_spend_the_budget(self) -> None:
        """
        A SwapRequest for a known, never-connected learnt point swaps only
        with a token of the point's source group; without one it is ignored.
        """
        target = self.network.add_pool(
            "10.1.0.1", maintenance_idle_time=None, source_group_dial_burst=1, source_group_dial_rate=0.001
        )
        peer = self.network.add_pool("10.2.0.1", maintenance_idle_time=None)
        other = self.network.add_pool("10.3.0.1", maintenance_idle_time=None)
        conn = self.link(peer, target)
        self.link(other, target)  # a connection the target can offer in return
        learnt = _points("10.9", 2)
        self.advertise(conn, learnt)
        for point in learnt:
            conn.send_control(encode(SwapRequest(point, PeerId(bytes(16)))))
            self.network.advance(61.0)  # the swap-frame cooldown and swap_linger
        acks = self.events("10.1.0.1", EventKind.SWAP_ACK_SENT)
        ignored = [f["reason"] for _, f in self.events("10.1.0.1", EventKind.SWAP_REQUEST_IGNORED)]
        self.assertEqual((len(acks), ignored), (1, ["budget"]))
        dials = {f["point"] for _, f in self.events("10.1.0.1", EventKind.OUTGOING_CONNECTION)}
        self.assertEqual(dials & {str(p) for p in learnt}, {str(learnt[0])})
