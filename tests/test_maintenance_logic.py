"""
Unit tests of maintenance's pure parts: candidate choice with netgroup
diversity, the advertisement token bucket, maintenance bounds.
"""

from __future__ import annotations

import collections
import random

from twisted.trial.unittest import SynchronousTestCase

from p2pool.config import PoolConfig, ReconnectionConfig
from p2pool.core.addressing import Point
from p2pool.core.flow import TokenBucket
from p2pool.core.states import PointInfo
from p2pool.pool.maintenance import choose_candidates


def _info(ip: str, trusted: bool = False, missed_at: float | None = None) -> PointInfo:
    info = PointInfo(Point(ip, 9732), trusted=trusted)
    if missed_at is not None:
        info.set_requested(missed_at)
        info.set_disconnected(missed_at, ReconnectionConfig(jitter=0.0), random.Random(0))
    return info


def _no_shuffle(items: list[PointInfo]) -> None:
    """
    Keep the order, so the sort alone decides.
    """


class ChooseCandidatesTests(SynchronousTestCase):
    def test_trusted_then_never_missed_then_oldest_miss(self) -> None:
        infos = [
            _info("10.1.0.1", missed_at=50.0),
            _info("10.2.0.1", missed_at=10.0),
            _info("10.3.0.1"),
            _info("10.4.0.1", trusted=True, missed_at=90.0),
        ]
        chosen = choose_candidates(infos, 4, collections.Counter(), _no_shuffle)
        self.assertEqual([i.point.ip for i in chosen], ["10.4.0.1", "10.3.0.1", "10.2.0.1", "10.1.0.1"])

    def test_count_limits(self) -> None:
        infos = [_info(f"10.{i}.0.1") for i in range(10)]
        self.assertEqual(len(choose_candidates(infos, 3, collections.Counter(), _no_shuffle)), 3)
        self.assertEqual(choose_candidates(infos, 0, collections.Counter(), _no_shuffle), [])

    def test_one_per_netgroup_while_others_exist(self) -> None:
        attacker = [_info(f"66.6.{i}.{j}") for i in range(10) for j in range(5)]
        honest = [_info(f"{20 + i}.0.0.1", missed_at=float(i)) for i in range(5)]
        chosen = choose_candidates(attacker + honest, 6, collections.Counter(), random.Random(1).shuffle)
        groups = [i.point.ip.split(".")[:2] for i in chosen]
        self.assertEqual(sum(1 for g in groups if g == ["66", "6"]), 1, "never-missed attacker points do not crowd out")
        self.assertEqual(len(chosen), 6)

    def test_existing_outbound_groups_count(self) -> None:
        infos = [_info("10.1.0.5"), _info("10.2.0.5")]
        chosen = choose_candidates(infos, 1, collections.Counter({"10.1.0.0/16": 1}), _no_shuffle)
        self.assertEqual([i.point.ip for i in chosen], ["10.2.0.5"])

    def test_same_group_when_no_alternative(self) -> None:
        infos = [_info(f"127.0.0.{i}") for i in range(2, 8)]
        chosen = choose_candidates(infos, 4, collections.Counter({"127.0.0.0/16": 3}), _no_shuffle)
        self.assertEqual(len(chosen), 4)

    def test_refused_points_are_passed_over(self) -> None:
        infos = [_info(f"10.{i}.0.1") for i in range(6)]
        refused = {"10.1.0.1", "10.3.0.1"}
        asked: list[str] = []

        def allow(info: PointInfo) -> bool:
            asked.append(info.point.ip)
            return info.point.ip not in refused

        chosen = choose_candidates(infos, 3, collections.Counter(), _no_shuffle, allow)
        self.assertEqual([i.point.ip for i in chosen], ["10.0.0.1", "10.2.0.1", "10.4.0.1"])
        self.assertEqual(asked, ["10.0.0.1", "10.1.0.1", "10.2.0.1", "10.3.0.1", "10.4.0.1"])

    def test_diversity_waits_for_the_budget(self) -> None:
        """
        While a point of a new group is refused, points of a group that
        already has an outbound connection are not chosen in its place.
        """
        honest = _info("20.0.0.1")
        attacker = [_info(f"66.6.0.{i}") for i in range(1, 6)]
        outbound = collections.Counter({"66.6.0.0/16": 1})
        chosen = choose_candidates([honest, *attacker], 3, outbound, _no_shuffle, lambda i: i is not honest)
        self.assertEqual(chosen, [])
        chosen = choose_candidates([honest, *attacker], 3, outbound, _no_shuffle)
        self.assertEqual(len(chosen), 3)

    def test_shuffle_breaks_ties(self) -> None:
        firsts = set()
        for seed in range(20):
            infos = [_info(f"10.{i}.0.1") for i in range(10)]
            firsts.add(choose_candidates(infos, 1, collections.Counter(), random.Random(seed).shuffle)[0].point)
        self.assertGreater(len(firsts), 3)


class TokenBucketTests(SynchronousTestCase):
    def test_burst_then_rate(self) -> None:
        bucket = TokenBucket(capacity=100.0, rate=10.0, now=0.0)
        self.assertEqual(bucket.take(80, now=0.0), 80)
        self.assertEqual(bucket.take(80, now=0.0), 20)
        self.assertEqual(bucket.take(80, now=0.5), 5)
        self.assertEqual(bucket.take(500, now=100.0), 100, "refill is capped")


class BoundsTests(SynchronousTestCase):
    def test_tezos_bounds(self) -> None:
        self.assertEqual(PoolConfig().maintenance_bounds(), (23, 36, 68, 84))
        config = PoolConfig(min_connections=3, expected_connections=6, max_connections=9)
        self.assertEqual(config.maintenance_bounds(), (4, 5, 7, 8))
