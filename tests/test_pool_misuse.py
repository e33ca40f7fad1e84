"""
Starting and stopping a pool in the orders an embedding application may
get wrong: twice, stop before start, start after stop.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from p2pool.core.addressing import Point
from p2pool.testing.network import MemoryNetwork

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
