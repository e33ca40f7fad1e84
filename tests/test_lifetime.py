"""
Memory that returns (issue 13): a stopped pool that its application drops
is freed by reference counting alone, with its connections, protocols, TLS
transports and tables, without waiting for the cyclic garbage collector.
Each test disables the collector around the weak-reference check.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from twisted.internet.defer import fail, succeed
from twisted.trial.unittest import SynchronousTestCase, TestCase

from p2pool.config import PoolConfig
from p2pool.core.addressing import Point, PointSpec
from p2pool.core.lifetime import value_on, weak_method, weak_owner, without_traceback
from p2pool.core.wire import encode_message
from p2pool.errors import ConnectionEnded, DisconnectReason
from p2pool.events import EventKind
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork
from tests.helpers import async_test, identity, start_node, wait_for


def _held(pool: Any, conn: Any) -> dict[str, weakref.ref[Any]]:
    """
    Weak references to a pool and what it holds.
    """
    protocol = conn._protocol
    return {
        "pool": weakref.ref(pool),
        "connection": weakref.ref(conn),
        "protocol": weakref.ref(protocol),
        "tls transport": weakref.ref(protocol.transport),
        "connect handler": weakref.ref(pool.connect_handler),
        "acl": weakref.ref(pool.acl),
        "directory": weakref.ref(pool.directory),
    }


class HelperTests(SynchronousTestCase):
    def test_weak_owner(self) -> None:
        class Owner:
            value = 3

        owner = Owner()
        proxy = weak_owner(owner)
        self.assertEqual(proxy.value, 3)
        self.assertIs(weak_owner(proxy), proxy)
        ref = weakref.ref(owner)
        del owner
        self.assertIsNone(ref())

    def test_weak_method(self) -> None:
        calls: list[int] = []

        class Timer:
            def tick(self, n: int) -> int:
                calls.append(n)
                return n

        timer = Timer()
        tick = weak_method(timer.tick)
        self.assertEqual(tick(1), 1)
        del timer
        self.assertIsNone(tick(2))
        self.assertEqual(calls, [1])

    def test_without_traceback(self) -> None:
        try:
            raise ValueError("bad")
        except ValueError as e:
            error = e
        self.assertIsNotNone(error.__traceback__)
        self.assertIs(without_traceback(error), error)
        self.assertIsNone(error.__traceback__)

    def test_value_on(self) -> None:
        """
        The listed failures become the value; others go on.
        """
        errback = value_on(False, KeyError, ValueError)
        self.assertIs(self.successResultOf(fail(ValueError("x")).addErrback(errback)), False)
        self.failureResultOf(fail(TypeError("y")).addErrback(errback), TypeError)
        self.assertEqual(self.successResultOf(succeed(3).addErrback(errback)), 3)


class MemoryNetworkLifetimeTests(SynchronousTestCase):
    def test_stopped_pool_is_freed_without_the_collector(self) -> None:
        network = MemoryNetwork(seed=4, latency=0.01)
        self.addCleanup(network.stop)
        gc.collect()
        gc.disable()
        try:
            a = network.add_pool("10.1.0.1", maintenance_idle_time=None)
            network.add_pool("10.2.0.1", maintenance_idle_time=None)
            d = a.connect(Point("10.2.0.1", 9732))
            network.advance(1.0)
            conn = self.successResultOf(d)
            conn.send(b"x" * 100_000)
            network.advance(1.0)
            refs = _held(a, conn)
            stopped = network.remove_pool("10.1.0.1")
            network.advance(5.0)
            self.successResultOf(stopped)
            del a, conn, d, stopped
            alive = [name for name, ref in refs.items() if ref() is not None]
        finally:
            gc.enable()
        self.assertEqual(alive, [])

    def test_connections_receiving_large_frames_are_freed(self) -> None:
        """
        A pool stops while one connection holds a reservation of the
        receive budget and another waits for one: their protocols are
        freed by reference counting, and nothing stays reserved.
        """
        network = MemoryNetwork(seed=4, latency=0.01)
        self.addCleanup(network.stop)
        gc.collect()
        gc.disable()
        try:
            hub = network.add_pool(
                "10.1.0.1", maintenance_idle_time=None, max_message_size=256 * 1024, receive_buffer_budget=300_000
            )
            budget = hub.flow.receive_budget
            for ip in ("10.2.0.1", "10.3.0.1"):
                peer = network.add_pool(ip, maintenance_idle_time=None)
                d = peer.connect(Point("10.1.0.1", 9732))
                network.advance(1.0)
                self.successResultOf(d)._protocol.write(encode_message(b"l" * 200_000)[:1000])
                network.advance(0.1)
                del d, peer
            self.assertEqual((budget.used, budget.waiting), (200_005, 1))
            refs = {f"protocol {i}": weakref.ref(c._protocol) for i, c in enumerate(hub.connections.list())}
            stopped = network.remove_pool("10.1.0.1")
            network.advance(5.0)
            self.successResultOf(stopped)
            del hub, stopped
            alive = [name for name, ref in refs.items() if ref() is not None]
        finally:
            gc.enable()
        self.assertEqual(alive, [])
        self.assertEqual((budget.used, budget.waiting), (0, 0))


class ErrorCycleTests(SynchronousTestCase):
    """
    Errors do not tie a stopped pool's parts into reference cycles: a
    refused dial's error, kept as its connection's reason and given to the
    maintenance that dialed, and the cancellation of a maintenance pause,
    are not raised through frames that would keep the maintenance (and its
    ACL, with its greylist filter) alive until a full collection.
    """

    def _stop_and_check(self, network: MemoryNetwork, held: list[Pool]) -> list[str]:
        """
        Stop and drop the pool in C{held} (its only reference); the names
        of what it held that are still alive, the collector being off.
        """
        pool = held.pop()
        assert pool.maintenance is not None
        refs = {
            "pool": weakref.ref(pool),
            "maintenance": weakref.ref(pool.maintenance),
            "acl": weakref.ref(pool.acl),
            "directory": weakref.ref(pool.directory),
        }
        stopped = network.remove_pool(str(pool.config.listen.ip))
        network.advance(5.0)
        self.successResultOf(stopped)
        del pool, stopped
        return [name for name, ref in refs.items() if ref() is not None]

    def test_refused_dial(self) -> None:
        """
        The maintenance dials a node that speaks no common application
        version: the dial fails with L{RejectedNoCommonProtocol}; once the
        pool stops, its parts are freed by reference counting.
        """
        network = MemoryNetwork(seed=4, latency=0.01)
        self.addCleanup(network.stop)
        events: list[Any] = []
        network.add_pool("10.2.0.1", maintenance_idle_time=None, pool_options={"application_versions": (7,)})
        gc.collect()
        gc.disable()
        try:
            held = [
                network.add_pool(
                    "10.1.0.1",
                    log=events.append,
                    bootstrap_points=(PointSpec("10.2.0.1", 9732),),
                    maintenance_idle_time=60.0,
                )
            ]
            network.advance(3.0)
            self.assertIn(EventKind.REJECTING_REQUEST, [e.event for e in events])
            alive = self._stop_and_check(network, held)
        finally:
            gc.enable()
        self.assertEqual(alive, [])

    def test_stopped_during_a_pause(self) -> None:
        """
        The pool stops while its maintenance waits before a dial: the
        cancelled wait does not keep the maintenance alive.
        """
        network = MemoryNetwork(seed=4, latency=0.01)
        self.addCleanup(network.stop)
        network.add_pool("10.2.0.1", maintenance_idle_time=None)
        gc.collect()
        gc.disable()
        try:
            held = [
                network.add_pool(
                    "10.1.0.1", bootstrap_points=(PointSpec("10.2.0.1", 9732),), maintenance_idle_time=60.0
                )
            ]
            self.assertEqual(held[0].active_connections(), 0)
            alive = self._stop_and_check(network, held)
        finally:
            gc.enable()
        self.assertEqual(alive, [])


class LateConnectionTests(SynchronousTestCase):
    def test_dial_under_way_when_the_pool_stops(self) -> None:
        """
        A dial whose TCP connection is not up when its pool stops is
        cancelled: its Deferred fails with C{pool_destroyed}, and nothing
        reaches the pool once it is gone.
        """
        network = MemoryNetwork(seed=4, latency=0.05)
        self.addCleanup(network.stop)
        a = network.add_pool("10.1.0.1", maintenance_idle_time=None)
        network.add_pool("10.2.0.1", maintenance_idle_time=None)
        d = a.connect(Point("10.2.0.1", 9732))
        ref = weakref.ref(a)
        stopped = network.remove_pool("10.1.0.1")
        network.advance(5.0)
        self.successResultOf(stopped)
        failure = self.failureResultOf(d, ConnectionEnded)
        self.assertIs(failure.value.reason, DisconnectReason.POOL_DESTROYED)
        del a, stopped
        network.advance(5.0)
        self.assertIsNone(ref())
        self.assertEqual(self.flushLoggedErrors(), [])


class LoopbackLifetimeTests(TestCase):
    @async_test
    async def test_stopped_pool_is_freed_without_the_collector(self) -> None:
        b = await start_node(self, "127.0.0.3", 1)
        gc.collect()
        gc.disable()
        try:
            config = PoolConfig(
                listen=Point("127.0.0.2", 0),
                expected_proof_of_work=0,
                maintenance_idle_time=None,
                data_dir=self.mktemp(),
            )
            pool = Pool(config, identity=identity(0))
            pool.startService()
            await pool.when_started()
            conn = await pool.connect(b.point)
            conn.send(b"x" * 100_000)
            await wait_for(lambda: len(b.app.messages) == 1)
            refs = _held(pool, conn)
            await pool.stopService()
            await wait_for(lambda: b.pool.active_connections() == 0)
            del pool, conn
            alive = [name for name, ref in refs.items() if ref() is not None]
        finally:
            gc.enable()
        self.assertEqual(alive, [])
