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

from twisted.trial.unittest import SynchronousTestCase, TestCase

from p2pool.config import PoolConfig
from p2pool.core.addressing import Point
from p2pool.core.lifetime import weak_method, weak_owner
from p2pool.errors import ConnectionEnded, DisconnectReason
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
