"""
Tests for the per-source-group dial budget of learnt points.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point
from p2pool.core.dial_budget import DialBudget
from p2pool.core.states import PointInfo


def _learnt(i: int, group: str = "10.7.0.0/16") -> PointInfo:
    return PointInfo(Point(f"10.7.0.{i}", 9732), source_group=group)


class DialBudgetTests(SynchronousTestCase):
    def test_burst_then_rate_per_group(self) -> None:
        budget = DialBudget(burst=3, rate=0.5)
        allowed = [budget.allow(_learnt(i), 0.0) for i in range(5)]
        self.assertEqual(allowed, [True, True, True, False, False])
        # Another group has its own bucket.
        self.assertTrue(budget.allow(_learnt(9, "10.8.0.0/16"), 0.0))
        self.assertEqual(budget.wait("10.7.0.0/16", 0.0), 2.0)
        self.assertFalse(budget.allow(_learnt(5), 1.9))
        self.assertTrue(budget.allow(_learnt(5), 2.0))
        self.assertEqual((budget.granted, budget.deferred), (5, 3))

    def test_unbudgeted_dials(self) -> None:
        budget = DialBudget(burst=1, rate=0.001)
        self.assertTrue(budget.allow(_learnt(0), 0.0))
        operator = PointInfo(Point("10.7.0.1", 9732))
        trusted = PointInfo(Point("10.7.0.2", 9732), trusted=True, source_group="10.7.0.0/16")
        connected = _learnt(3)
        connected.last_established_connection = (PeerId(bytes(16)), 1.0)
        for info in (operator, trusted, connected):
            self.assertIsNone(DialBudget.group_of(info))
            self.assertTrue(budget.allow(info, 0.0))
        self.assertFalse(budget.allow(_learnt(4), 0.0))
        self.assertEqual(budget.wait("never seen", 0.0), 0.0)

    def test_memory_is_bounded(self) -> None:
        budget = DialBudget(burst=1, rate=0.001, memory=2)
        for group in ("a", "b", "c"):
            self.assertTrue(budget.allow(_learnt(0, group), 0.0))
        # "a" was forgotten: it starts again with a full bucket.
        self.assertTrue(budget.allow(_learnt(0, "a"), 0.0))
        self.assertFalse(budget.allow(_learnt(0, "c"), 0.0))

    def test_from_config_and_checks(self) -> None:
        budget = DialBudget.from_config(PoolConfig(source_group_dial_rate=2.5, source_group_dial_burst=4))
        self.assertEqual((budget.burst, budget.rate), (4, 2.5))
        self.assertRaises(ValueError, DialBudget, 0, 1.0)
        self.assertRaises(ValueError, DialBudget, 1, 0.0)
