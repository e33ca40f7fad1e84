"""
Returning freed memory to the system (C{memory_trim_interval},
L{p2pool.pool.memory}).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from p2pool.pool import memory, service
from p2pool.testing.network import MemoryNetwork


def _rss_anon_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise SkipTest("no RssAnon in /proc/self/status")


class TrimTests(SynchronousTestCase):
    def setUp(self) -> None:
        if not memory.trimming_available():
            raise SkipTest("not glibc: trimming does nothing")
        self.patch(memory, "_last_trim", [])

    def test_freed_memory_returns(self) -> None:
        """
        Memory freed below a block still in use stays resident until a
        trim gives it back.
        """
        # Blocks under the mmap threshold come from the heap; every other
        # one stays, so each freed one lies between two in use and cannot
        # go back by itself.
        blocks = [bytes(50_000 + i) for i in range(1600)]
        kept = blocks[1::2]
        del blocks
        before = _rss_anon_kib()
        self.assertTrue(memory.trim_freed_memory())
        returned = before - _rss_anon_kib()
        self.assertGreater(returned, 20_000, f"{returned} KiB returned")  # of about 40 MB freed
        del kept

    def test_one_trim_per_gap(self) -> None:
        """
        A trim less than C{min_gap} seconds after the last one is skipped.
        """
        clock = [100.0]
        self.assertTrue(memory.trim_freed_memory(10.0, lambda: clock[0]))
        clock[0] = 105.0
        self.assertFalse(memory.trim_freed_memory(10.0, lambda: clock[0]))
        clock[0] = 110.5
        self.assertTrue(memory.trim_freed_memory(10.0, lambda: clock[0]))


class PoolTrimTests(SynchronousTestCase):
    def _trims(self, **overrides: Any) -> tuple[MemoryNetwork, list[float]]:
        calls: list[float] = []
        self.patch(service, "trimming_available", lambda: True)
        self.patch(service, "trim_freed_memory", lambda min_gap: calls.append(min_gap))
        network = MemoryNetwork(seed=4)
        self.addCleanup(network.stop)
        network.add_pool("10.1.0.1", maintenance_idle_time=None, **overrides)
        return network, calls

    def test_every_interval(self) -> None:
        """
        A running pool trims every C{memory_trim_interval}, asking for a
        gap just under it (the pools of a process share one trim), and stops
        when it stops.
        """
        network, calls = self._trims(memory_trim_interval=10.0)
        network.advance(35.0)
        self.assertEqual(calls, [9.0, 9.0, 9.0])
        stopped = network.remove_pool("10.1.0.1")
        network.advance(30.0)
        self.successResultOf(stopped)
        self.assertEqual(len(calls), 3)

    def test_never(self) -> None:
        """
        C{memory_trim_interval = false}: no trims.
        """
        network, calls = self._trims(memory_trim_interval=None)
        network.advance(600.0)
        self.assertEqual(calls, [])
