"""
Starting and stopping a pool in the orders an embedding application may
get wrong: twice, stop before start, start after stop.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pool.config import PoolConfig
from p2pool.core.addressing import AddressError, Point
from p2pool.core.states import PointState
from p2pool.interfaces import BasePoolApplication
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork
from tests.helpers import RecordingApp, identity

A, B = "10.2.0.1", "10.3.0.1"


class LifecycleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=1)
        self.addCleanup(self.network.stop)
        self.b = self.network.add_pool(B, maintenance_idle_time=None)

    def assertConnects(self, ip: str) -> None:
        """
        The pool at C{ip} can dial B.
        """
        d = self.network.pools[ip].connect(Point(B, 9732))
        self.network.advance(1.0)
        self.assertTrue(self.successResultOf(d).is_open)

    def test_stop_before_start(self) -> None:
        """
        Stopping a pool that has not started does nothing: it starts and
        connects afterwards.
        """
        a = self.network.add_pool(A, maintenance_idle_time=None, start=False)
        self.successResultOf(a.stopService())
        self.assertFalse(a.running)
        a.startService()
        self.network.advance(0.1)
        self.successResultOf(a.when_started())
        self.assertConnects(A)

    def test_start_twice(self) -> None:
        a = self.network.add_pool(A, maintenance_idle_time=None)
        error = self.assertRaises(RuntimeError, a.startService)
        self.assertEqual(str(error), "the pool service is already running")
        self.assertConnects(A)

    def test_start_after_stop(self) -> None:
        """
        A stopped pool says it cannot start again, rather than listening
        with every connection failing.
        """
        a = self.network.add_pool(A, maintenance_idle_time=None)
        stopped = a.stopService()
        self.network.advance(1.0)
        self.successResultOf(stopped)
        error = self.assertRaises(RuntimeError, a.startService)
        self.assertIn("make a new Pool", str(error))
        self.assertFalse(a.running)


class WrongArgumentTests(SynchronousTestCase):
    """
    A wrong type is refused with a C{TypeError} naming what was expected,
    before anything is sent.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=1)
        self.addCleanup(self.network.stop)
        self.b = self.network.add_pool(B, app=RecordingApp(), maintenance_idle_time=None)
        self.a = self.network.add_pool(A, maintenance_idle_time=None)
        d = self.a.connect(Point(B, 9732))
        self.network.advance(1.0)
        self.conn = self.successResultOf(d)

    def test_connect_to_a_string(self) -> None:
        error = self.assertRaises(TypeError, self.a.connect, f"{B}:9732")
        self.assertEqual(str(error), "point must be a Point, not str '10.3.0.1:9732' (parse text with Point.parse)")

    def test_send_to_a_string(self) -> None:
        error = self.assertRaises(TypeError, self.a.send, str(self.conn.peer_id), b"x")
        self.assertIn("peer_id must be a PeerId, not str", str(error))

    def test_text_messages(self) -> None:
        for send in (self.conn.send, self.conn.send_when_room, self.a.broadcast, lambda m: self.conn.send_many([m])):
            error = self.assertRaises(TypeError, send, "hello")
            self.assertEqual(str(error), "an application message is bytes, not str 'hello'")
        error = self.assertRaises(TypeError, self.a.send, self.conn.peer_id, None)
        self.assertEqual(str(error), "an application message is bytes, not NoneType None")
        self.conn.send(b"bytes")
        self.network.advance(1.0)
        self.assertEqual([m for _, m in self.b.app.messages], [b"bytes"])

    def test_broadcast_text_without_peers(self) -> None:
        """
        A pool with no peer connected refuses a text broadcast all the
        same (it used to return 0).
        """
        lone = self.network.add_pool("10.3.0.9", maintenance_idle_time=None)
        error = self.assertRaises(TypeError, lone.broadcast, "hello")
        self.assertEqual(str(error), "an application message is bytes, not str 'hello'")
        self.assertEqual(lone.broadcast(bytearray(b"x")), 0)

    def test_disconnect_with_a_string(self) -> None:
        """
        Nothing is done: no goodbye is sent with the connection left open.
        """
        error = self.assertRaises(TypeError, self.conn.disconnect, "requested")
        self.assertEqual(str(error), "reason must be a DisconnectReason, not str 'requested'")
        self.network.advance(1.0)
        self.assertTrue(self.conn.is_open)
        self.assertEqual(self.b.active_connections(), 1)

    def test_registering_strings(self) -> None:
        """
        A point or peer id given as text is refused before it enters the
        tables (where it would be a record that no Point or PeerId finds,
        and that the peers file and maintenance choke on).
        """
        a, peer_id = self.a, self.conn.peer_id
        points, peers = len(a.points), len(a.peers)
        for call, expected in [
            (lambda: a.register_point("10.4.0.1:9732"), "point must be a Point, not str"),
            (lambda: a.register_new_point("10.4.0.1:9732"), "point must be a Point, not str"),
            (lambda: a.register_point(Point("10.4.0.1", 9732), expected_peer_id="id"), "expected_peer_id must be"),
            (lambda: a.register_peer(str(peer_id)), "peer_id must be a PeerId, not str"),
            (lambda: a.peers.trust(str(peer_id)), "peer_id must be a PeerId, not str"),
            (lambda: a.peers.set_peer_metadata(str(peer_id), 1), "peer_id must be a PeerId, not str"),
            (lambda: a.set_expected_peer_id(Point(B, 9732), str(peer_id)), "peer_id must be a PeerId, not str"),
        ]:
            error = self.assertRaises(TypeError, call)
            self.assertIn(expected, str(error))
        self.assertEqual((len(a.points), len(a.peers)), (points, peers))
        self.assertIsNone(a.points.info(Point(B, 9732)).expected_peer_id)  # type: ignore[union-attr]

    def test_views_given_strings(self) -> None:
        """
        Every method of C{Pool.points} and C{Pool.peers} that takes a point
        or a peer id refuses its text, changing nothing (C{ban} used to
        fail with an C{AttributeError} deep inside, after part of its work).
        """
        a, point, peer_id = self.a, Point(B, 9732), self.conn.peer_id
        point_methods = ("info", "banned", "ban", "unban", "get_trusted", "trust", "untrust")
        peer_methods = ("info", "get_peer_metadata", "get_score", "ban", "unban", "banned", "get_trusted", "trust")
        calls = [(getattr(a.points, name), str(point), "point must be a Point") for name in point_methods]
        calls += [(getattr(a.peers, name), str(peer_id), "peer_id must be a PeerId") for name in peer_methods]
        calls += [(a.peers.untrust, str(peer_id), "peer_id must be a PeerId")]
        for method, text, expected in calls:
            error = self.assertRaises(TypeError, method, text)
            self.assertIn(f"{expected}, not str", str(error), method.__name__)
        self.network.advance(1.0)
        self.assertTrue(self.conn.is_open, "nothing was banned")
        self.assertFalse(a.points.banned(point) or a.peers.banned(peer_id))

    def test_connect_with_a_bad_timeout(self) -> None:
        """
        Refused before anything is dialed: the point stays disconnected.
        """
        point = Point("10.4.0.1", 9732)
        for timeout, error in (("5", TypeError), (True, TypeError), (0, ValueError), (-1.0, ValueError)):
            raised = self.assertRaises(error, self.a.connect, point, timeout)
            self.assertIn("timeout must be", str(raised))
        self.assertIsNone(self.a.points.info(point))

    def test_greylist_peer_with_a_bad_address(self) -> None:
        """
        Nothing is greylisted: neither the peer nor an address.
        """
        self.assertRaises(AddressError, self.a.greylist_peer, self.conn.peer_id, "nonsense")
        self.assertEqual(self.a.peers.get_greylisted_list(), [])
        self.assertEqual(self.a.points.get_greylisted_list(), [])


class DialCancelTests(SynchronousTestCase):
    """
    Cancelling the Deferred of C{connect} (as C{addTimeout} does) abandons
    the dial: no connection appears behind the caller's back.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=1, latency=0.05)
        self.addCleanup(self.network.stop)
        self.b = self.network.add_pool(B, maintenance_idle_time=None)
        self.a = self.network.add_pool(A, maintenance_idle_time=None)

    def cancel_after(self, seconds: float) -> None:
        d = self.a.connect(Point(B, 9732))
        self.network.advance(seconds)
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.network.advance(2.0)
        self.assertEqual((self.a.active_connections(), self.b.active_connections()), (0, 0))
        self.assertEqual(self.a.points.info(Point(B, 9732)).state, PointState.DISCONNECTED)  # type: ignore[union-attr]

    def test_before_the_tcp_connection(self) -> None:
        self.cancel_after(0.0)

    def test_during_the_handshake(self) -> None:
        self.cancel_after(0.12)


class ConstructionTests(SynchronousTestCase):
    def test_application_without_the_interface(self) -> None:
        """
        An application that does not declare C{IPoolApplication} is refused
        with a C{TypeError} saying how to declare it, not zope's
        C{('Could not adapt', ...)}.
        """

        class Duck:
            def message_received(self, conn: object, data: bytes) -> None:
                pass

        error = self.assertRaises(TypeError, Pool, PoolConfig(), Duck())
        self.assertIn("app must provide IPoolApplication (subclass p2pool.BasePoolApplication", str(error))

    def test_peer_id_before_the_identity(self) -> None:
        pool = Pool(PoolConfig(), BasePoolApplication())
        error = self.assertRaises(RuntimeError, lambda: pool.peer_id)
        self.assertIn("no identity yet", str(error))
        self.assertEqual(Pool(PoolConfig(), identity=identity(0)).peer_id, identity(0).peer_id)

    def test_clock_as_reactor(self) -> None:
        """
        A C{task.Clock} (time only) is named as what it is missing, not met
        as an C{AttributeError} from inside the pool.
        """
        error = self.assertRaises(TypeError, Pool, PoolConfig(), reactor=Clock())  # type: ignore[arg-type]
        self.assertIn("reactor Clock lacks resolve, listenTCP, connectTCP: a Pool needs", str(error))
