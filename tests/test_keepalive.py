"""
Keepalive on the in-memory network: quiet but healthy connections stay,
a peer lost behind a silent cut is closed after three silent intervals;
and over real TLS, where closing must not wait for the silent peer.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase, TestCase

from p2pool.core.addressing import Point
from p2pool.errors import DisconnectReason
from p2pool.events import EventKind
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
        never answers the TLS close: the close does not wait for it.
        """
        a = await start_node(self, "127.0.0.2", 0, keepalive_interval=0.2)
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
