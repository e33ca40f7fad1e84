"""
Keepalive on the in-memory network: quiet but healthy connections stay,
a peer lost behind a silent cut is closed after three silent intervals;
and over real TLS, where closing must not wait for the silent peer.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from p2pool.config import PoolConfig
from p2pool.core.addressing import Point
from p2pool.core.wire import Pong, encode
from p2pool.errors import DisconnectReason
from p2pool.events import EventKind
from p2pool.pool import keepalive
from p2pool.testing.network import MemoryNetwork
from tests.helpers import RecordingApp, async_test, start_node, wait_for


class KeepaliveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=3, latency=0.01)
        self.addCleanup(self.network.stop)
        self.app_a, self.app_b = RecordingApp(), RecordingApp()
        settings = dict(maintenance_idle_time=None, keepalive_interval=10.0)
        self.a = self.network.add_pool("10.1.0.1", app=self.app_a, **settings)
        self.b = self.network.add_pool("10.2.0.1", app=self.app_b, **settings)
        d = self.a.connect(Point("10.2.0.1", 9732))
        self.network.advance(1.0)
        self.successResultOf(d)

    def test_quiet_connection_is_kept(self) -> None:
        self.network.advance(120.0)
        self.assertEqual(self.a.active_connections(), 1)
        self.assertEqual(self.app_a.lost, [])

    def test_silent_peer_is_closed(self) -> None:
        # The peer goes silent without closing (a silent network cut, a hung
        # process): it no longer answers Pings.
        silent = self.b.connections.list()[0]
        silent.send_control = lambda frame: None  # type: ignore[method-assign]
        self.network.advance(25.0)
        self.assertEqual(self.a.active_connections(), 1, "pinged, not yet closed")
        self.network.advance(20.0)
        self.assertEqual(self.a.active_connections(), 0)
        self.assertEqual(self.app_a.lost[0][1].reason, DisconnectReason.IDLE_TIMEOUT)

    def test_disabled(self) -> None:
        pool = self.network.add_pool("10.3.0.1", maintenance_idle_time=None, keepalive_interval=None)
        self.assertIsNone(pool.keepalive)


class RoundTripTests(SynchronousTestCase):
    """
    The keepalive measures each connection's round trip with its Pings.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=4, latency=0.01)
        self.addCleanup(self.network.stop)
        settings = dict(maintenance_idle_time=None, keepalive_interval=10.0)
        self.a = self.network.add_pool("10.1.0.1", **settings)
        # b's Pings are not sent at the same instants as a's: the simulated
        # network carries everything written before a delivery is due with
        # that delivery, so a Pong written the moment b's own Ping leaves
        # would arrive with it, one latency early.
        self.network.advance(0.5)
        self.b = self.network.add_pool("10.2.0.1", **settings)
        d = self.a.connect(Point("10.2.0.1", 9732))
        self.network.advance(1.0)
        self.conn = self.successResultOf(d)
        keepalive = self.a.keepalive
        assert keepalive is not None
        self.keepalive = keepalive

    def test_measured(self) -> None:
        self.assertIsNone(self.keepalive.round_trip(self.conn), "nothing measured before the first check")
        self.network.advance(6.0)
        rtt = self.keepalive.round_trip(self.conn)
        assert rtt is not None
        self.assertAlmostEqual(rtt, 0.02, delta=0.005, msg="two one-way latencies of 10 ms")
        self.assertEqual(self.keepalive.lowest_round_trip(self.conn), rtt)

    def test_busy_connection_measured_every_interval(self) -> None:
        """
        A connection that is never silent still gets a Ping per interval.
        """
        sender = self.b.connections.list()[0]
        pongs = []
        original = self.keepalive.pong_received

        def counting(conn: object) -> None:
            pongs.append(conn)
            original(conn)  # type: ignore[arg-type]

        self.keepalive.pong_received = counting  # type: ignore[method-assign]
        for _ in range(120):
            sender.send(b"busy")
            self.network.advance(0.5)
        self.assertIn(len(pongs), range(5, 8), "about one Ping per 10 s interval over 60 s")
        self.assertIsNotNone(self.keepalive.round_trip(self.conn))

    def test_unsolicited_pong_forgets_the_measurements(self) -> None:
        self.network.advance(6.0)
        self.assertIsNotNone(self.keepalive.round_trip(self.conn))
        self.b.connections.list()[0].send_control(encode(Pong()))
        self.network.advance(0.1)
        self.assertIsNone(self.keepalive.round_trip(self.conn))
        self.assertIsNone(self.keepalive.lowest_round_trip(self.conn))

    def test_closed_connection_forgotten(self) -> None:
        self.network.advance(6.0)
        closed = self.conn.disconnect()
        self.network.advance(6.0)
        self.successResultOf(closed)
        self.assertIsNone(self.keepalive.round_trip(self.conn))


class SlicedPassTests(SynchronousTestCase):
    """
    A keepalive pass checks L{keepalive.CHECK_SLICE} connections per
    reactor turn, its slices spread over L{keepalive.PASS_SPREAD} of the
    time between checks, so thousands of connections do not stall the
    node nor answer its pings all at once.
    """

    def test_pass_in_slices(self) -> None:
        self.patch(keepalive, "CHECK_SLICE", 2)
        network = MemoryNetwork(seed=5, latency=0.01)
        self.addCleanup(network.stop)
        settings = dict(maintenance_idle_time=None, keepalive_interval=10.0)
        hub = network.add_pool("10.1.0.1", **settings)
        pinged: list[object] = []
        for i in range(5):
            network.add_pool(f"10.{i + 2}.0.1", **settings)
            hub.connect(Point(f"10.{i + 2}.0.1", 9732))
        network.advance(1.0)
        self.assertEqual(hub.active_connections(), 5)
        for conn in hub.connections.list():
            original = conn.send_control

            def counting(frame: bytes, conn: object = conn, original: Any = original) -> bool:
                pinged.append(conn)
                return bool(original(frame))

            conn.send_control = counting  # type: ignore[method-assign]
        checker = hub.keepalive
        assert checker is not None
        checker.check()
        self.assertEqual(len(pinged), 2, "the first slice: round trips due on two connections")
        checker.check()
        self.assertEqual(len(pinged), 2, "a pass under way is left to finish")
        network.clock.advance(0)
        self.assertEqual(len(pinged), 2, "the next slice waits: the pass is spread")
        span = 10.0 / keepalive.CHECKS_PER_INTERVAL * keepalive.PASS_SPREAD
        network.clock.advance(span / 2)  # three slices, evenly over the span
        self.assertEqual(len(pinged), 4, "the second slice, half the span later")
        network.clock.advance(span / 2)
        self.assertEqual(sorted(map(id, pinged)), sorted(map(id, hub.connections.list())), "each pinged once")
        network.advance(0.1)
        self.assertTrue(all(checker.round_trip(c) is not None for c in hub.connections.list()))


class RealSocketKeepaliveTests(TestCase):
    """
    Keepalive over real TLS on loopback.
    """

    timeout = 120

    @async_test
    async def test_unresponsive_peer_is_aborted(self) -> None:
        """
        A peer that stops reading and writing (as behind a silent network
        cut) is closed by the keepalive with idle_timeout, although it
        never answers the TLS close: the close does not wait for it longer
        than the library's close grace period.
        """
        a = await start_node(
            self, "127.0.0.2", 0, keepalive_interval=0.2, close_grace_period=PoolConfig().close_grace_period
        )
        b = await start_node(self, "127.0.0.3", 1, keepalive_interval=None)
        await a.pool.connect(b.point)
        await wait_for(lambda: b.pool.active_connections() == 1)
        silent = b.pool.connections.list()[0]
        silent._protocol.write = lambda data: None  # type: ignore[method-assign]
        transport = silent._protocol.transport
        assert transport is not None
        transport.pauseProducing()  # type: ignore[attr-defined]
        self.addCleanup(transport.resumeProducing)  # type: ignore[attr-defined]
        await wait_for(lambda: bool(a.app.lost), what="A closes the connection to the silent peer")
        self.assertEqual(a.app.lost[0][1].reason, DisconnectReason.IDLE_TIMEOUT)
        self.assertEqual(len(a.named(EventKind.IDLE_TIMEOUT)), 1, "closed at the first idle timeout")
        self.assertEqual(a.pool.active_connections(), 0)
