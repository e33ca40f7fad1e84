"""
An application callback that raises: the error is logged, and neither the
connection's state nor the pool's is left half-updated.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider

from p2pool.core.addressing import Point
from p2pool.core.states import PointState
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork
from p2pool.transport.connection import Connection
from tests.helpers import RecordingApp

A, B = "10.2.0.1", "10.3.0.1"


class _RaisingApp(RecordingApp):
    """
    Records what happens to it, then raises from the callbacks named in
    C{failing}.
    """

    def __init__(self, *failing: str) -> None:
        super().__init__()
        self.failing = set(failing)

    def connection_made(self, conn: Any) -> None:
        super().connection_made(conn)
        if "connection_made" in self.failing:
            raise ValueError("connection_made broke")

    def message_received(self, conn: Any, data: bytes) -> None:
        super().message_received(conn, data)
        if "message_received" in self.failing:
            raise ValueError("message_received broke")

    def connection_lost(self, conn: Any, reason: Any) -> None:
        super().connection_lost(conn, reason)
        if "connection_lost" in self.failing:
            raise ValueError("connection_lost broke")


class RaisingCallbackTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=1)
        self.addCleanup(self.network.stop)
        self.logged: list[LogEvent] = []

        @provider(ILogObserver)
        def observer(event: LogEvent) -> None:
            self.logged.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def assertBlamed(self, count: int) -> None:
        """
        C{count} errors of the application were logged as such, naming the
        peer.
        """
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), count)
        blamed = [e for e in self.logged if "the application failed" in e.get("log_format", "")]
        self.assertEqual(len(blamed), count)

    def connect(self, app_a: RecordingApp, app_b: RecordingApp) -> tuple[Pool, Pool, Connection]:
        """
        Pools at A and B with these applications, A dialing B.
        """
        a = self.network.add_pool(A, app=app_a, maintenance_idle_time=None)
        b = self.network.add_pool(B, app=app_b, maintenance_idle_time=None)
        d = a.connect(Point(B, 9732))
        self.network.advance(1.0)
        return a, b, self.successResultOf(d)

    def test_connection_made_of_the_dialer(self) -> None:
        """
        The dial still succeeds, the connection runs, and the pool stops.
        """
        app = _RaisingApp("connection_made")
        a, b, conn = self.connect(app, RecordingApp())
        self.assertBlamed(1)
        self.assertEqual(app.made, [conn])
        self.assertTrue(conn.is_open)
        conn.send(b"hello")
        self.network.advance(0.5)
        self.assertEqual([m for _, m in b.app.messages], [b"hello"])
        stopped = self.network.remove_pool(A)
        self.network.advance(1.0)
        self.successResultOf(stopped)

    def test_connection_made_of_the_accepting_side(self) -> None:
        app = _RaisingApp("connection_made")
        a, b, conn = self.connect(RecordingApp(), app)
        self.assertBlamed(1)
        self.assertEqual(b.active_connections(), 1)
        self.assertTrue(conn.is_open)
        stopped = self.network.remove_pool(B)
        self.network.advance(1.0)
        self.successResultOf(stopped)
        self.assertEqual(len(app.lost), 1)

    def test_message_received(self) -> None:
        """
        A message the application failed on is logged as one that failed
        asynchronously is; the next messages are delivered.
        """
        app = _RaisingApp("message_received")
        a, b, conn = self.connect(RecordingApp(), app)
        conn.send(b"one")
        conn.send(b"two")
        self.network.advance(0.5)
        self.assertEqual([m for _, m in app.messages], [b"one", b"two"])
        self.assertBlamed(2)
        self.assertTrue(conn.is_open)
        self.assertEqual(b.active_connections(), 1)

    def test_connection_lost(self) -> None:
        """
        The point is released and can be dialed again.
        """
        app = _RaisingApp("connection_lost")
        a, b, conn = self.connect(app, RecordingApp())
        closed = conn.disconnect()
        self.network.advance(1.0)
        self.successResultOf(closed)
        self.assertBlamed(1)
        self.assertEqual(len(app.lost), 1)
        self.assertEqual(a.points.info(Point(B, 9732)).state, PointState.DISCONNECTED)  # type: ignore[union-attr]
        d = a.connect(Point(B, 9732))
        self.network.advance(1.0)
        self.assertTrue(self.successResultOf(d).is_open)
        app.failing.clear()


class _BrokenMetadata(RecordingApp):
    """
    An application whose C{initial_metadata} or C{score} raises.
    """

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    def initial_metadata(self) -> Any:
        if self.failing == "initial_metadata":
            raise ValueError("initial_metadata broke")
        return 0

    def score(self, metadata: Any) -> float:
        if self.failing == "score":
            raise ValueError("score broke")
        return 0.0


class RaisingMetadataTests(SynchronousTestCase):
    """
    A peer the application cannot give metadata to, or score, is accepted
    all the same: the failure is logged.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=1)
        self.addCleanup(self.network.stop)

    def accept_peers(self, app: RecordingApp, count: int, **config: Any) -> Pool:
        """
        A pool at A with C{app}, which C{count} pools dial one after the
        other, each disconnecting before the next.
        """
        a = self.network.add_pool(A, app=app, maintenance_idle_time=None, **config)
        for i in range(count):
            dialer = self.network.add_pool(f"10.{10 + i}.0.1", maintenance_idle_time=None)
            d = dialer.connect(Point(A, 9732))
            self.network.advance(1.0)
            self.successResultOf(d).disconnect()
            self.network.advance(1.0)
        return a

    def test_initial_metadata(self) -> None:
        app = _BrokenMetadata("initial_metadata")
        a = self.accept_peers(app, 2)
        self.assertEqual(len(app.made), 2)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)
        self.assertEqual([info.metadata for info in a.peers], [None, None])

    def test_score_when_the_table_is_full(self) -> None:
        app = _BrokenMetadata("score")
        a = self.accept_peers(app, 4, max_known_peer_ids=(3, 2))
        self.assertEqual(len(app.made), 4)
        self.assertGreater(len(self.flushLoggedErrors(ValueError)), 0)
        self.assertLessEqual(len(a.peers), 3)


class _AsyncApp(RecordingApp):
    """
    C{connection_made} and C{connection_lost} as C{async def}, each waiting
    for a gate, then recording (or raising, when C{fail}).
    """

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.gates: list[Deferred[None]] = []
        self.done: list[str] = []

    async def connection_made(self, conn: Any) -> None:  # type: ignore[override]
        gate: Deferred[None] = Deferred()
        self.gates.append(gate)
        await gate
        if self.fail:
            raise ValueError("async connection_made broke")
        self.done.append("made")

    async def connection_lost(self, conn: Any, reason: Any) -> None:  # type: ignore[override]
        gate: Deferred[None] = Deferred()
        self.gates.append(gate)
        await gate
        self.done.append("lost")


class AsyncCallbackTests(SynchronousTestCase):
    """
    An C{async def connection_made} or C{connection_lost} runs (a coroutine
    called and dropped would not), on its own: the pool does not wait for it.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=1)
        self.addCleanup(self.network.stop)

    def connected(self, app: _AsyncApp) -> Connection:
        """
        A pool running C{app} connected to another; C{app}'s
        C{connection_made} let through.
        """
        a = self.network.add_pool(A, app=app, maintenance_idle_time=None)
        self.network.add_pool(B, maintenance_idle_time=None)
        d = a.connect(Point(B, 9732))
        self.network.advance(1.0)
        conn = self.successResultOf(d)
        app.gates[0].callback(None)
        return conn

    def test_async_callbacks_run(self) -> None:
        app = _AsyncApp()
        conn = self.connected(app)
        self.assertEqual(app.done, ["made"])
        conn.disconnect()
        self.network.advance(1.0)
        app.gates[1].callback(None)
        self.assertEqual(app.done, ["made", "lost"])

    def test_async_failure_is_logged(self) -> None:
        conn = self.connected(_AsyncApp(fail=True))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertTrue(conn.is_open)
