"""
Tests for L{p2pool.pool.dns_refresh}: named trusted and bootstrap points are
re-resolved with an injected resolver on a fake clock (60 s doubling to
1 h while unchanged, back to 60 s on a change), and a real pool re-resolves
its configured names.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point, PointSpec
from p2pool.core.identity import Identity
from p2pool.core.states import TrustSource
from p2pool.events import EventKind, EventLog, PoolEvent
from p2pool.pool.dns_refresh import RERESOLVE_CAP, RERESOLVE_INITIAL, Reresolver
from p2pool.pool.service import Pool
from tests.helpers import async_test, identity, wait_for

PEER_ID = Identity.generate(0).peer_id


class _Info:
    def __init__(self, trusted: bool) -> None:
        self.trusted = trusted


class FakePool:
    """
    The parts of a pool a L{Reresolver} uses.
    """

    def __init__(self, trusted_points: tuple[PointSpec, ...] = ()) -> None:
        self.recorded: list[PoolEvent] = []
        self.events = EventLog(self.recorded.append)
        self.config = PoolConfig(trusted_points=trusted_points)
        self.calls: list[tuple[Point, bool | None, PeerId | None]] = []
        self.known: dict[Point, _Info] = {}
        self.points = self

    def info(self, point: Point) -> _Info | None:
        return self.known.get(point)

    def register_point(
        self,
        point: Point,
        trusted: bool | None = None,
        expected_peer_id: PeerId | None = None,
        *,
        source: TrustSource | None = None,
    ) -> None:
        self.calls.append((point, trusted, expected_peer_id))
        assert source is TrustSource.CONFIG, "configured points are trusted from the configuration"
        info = self.known.setdefault(point, _Info(bool(trusted)))
        if trusted is not None:
            info.trusted = trusted

    def changes(self) -> list[dict[str, Any]]:
        return [e.fields for e in self.recorded if e.event == EventKind.POINT_ADDRESS_CHANGED]


class ReresolverTests(SynchronousTestCase):
    """
    Re-resolution timing, changes and failures.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.answers: dict[str, Any] = {"seed.test": "10.0.0.1"}
        self.queries: list[tuple[float, str]] = []

    def resolve(self, name: str) -> Deferred[str]:
        self.queries.append((self.clock.seconds(), name))
        answer = self.answers[name]
        return fail(answer) if isinstance(answer, Exception) else succeed(answer)

    def make(self, *specs: tuple[str, bool]) -> tuple[FakePool, Reresolver]:
        parsed = tuple((PointSpec.parse(text), trusted) for text, trusted in specs)
        pool = FakePool(tuple(s for s, t in parsed if t))
        reresolver = Reresolver(pool, parsed, resolve=self.resolve, clock=self.clock, rng=random.Random(3))
        reresolver.start()
        self.addCleanup(reresolver.stop)
        return pool, reresolver

    def test_ip_points_are_ignored(self) -> None:
        pool, reresolver = self.make(("10.0.0.9:1", True))
        self.assertEqual(reresolver.named, [])
        self.clock.advance(RERESOLVE_CAP * 2)
        self.assertEqual(self.queries, [])

    def test_backoff_while_unchanged(self) -> None:
        pool, _ = self.make(("seed.test:9732", False))
        for _ in range(int(RERESOLVE_CAP * 12 / 10)):
            self.clock.advance(10)
        gaps = [b[0] - a[0] for a, b in zip(self.queries, self.queries[1:])]
        self.assertTrue(RERESOLVE_INITIAL * 0.9 <= self.queries[0][0] <= RERESOLVE_INITIAL * 1.1, self.queries[0])
        self.assertTrue(all(later >= earlier * 0.8 for earlier, later in zip(gaps, gaps[1:])), gaps)
        self.assertTrue(gaps[-1] <= RERESOLVE_CAP * 1.2 + 1, gaps)
        self.assertGreater(gaps[-1], RERESOLVE_CAP * 0.8)
        self.assertEqual(pool.changes(), [])
        self.assertEqual(pool.calls, [(Point("10.0.0.1", 9732), None, None)])

    def test_change_registers_and_resets(self) -> None:
        pool, reresolver = self.make((f"seed.test:9732#{PEER_ID}", True))
        self.clock.advance(RERESOLVE_INITIAL * 1.2)
        self.clock.advance(RERESOLVE_INITIAL * 2.4)
        self.assertEqual(len(self.queries), 2)
        self.assertEqual(reresolver.named[0].delay, RERESOLVE_INITIAL * 4)
        self.answers["seed.test"] = "10.0.0.2"
        self.clock.advance(RERESOLVE_INITIAL * 4.8)
        self.assertEqual(len(self.queries), 3)
        self.assertEqual(
            pool.changes(), [{"spec": f"seed.test:9732#{PEER_ID}", "old": "10.0.0.1:9732", "new": "10.0.0.2:9732"}]
        )
        self.assertIn((Point("10.0.0.2", 9732), True, PEER_ID), pool.calls)
        self.assertFalse(pool.known[Point("10.0.0.1", 9732)].trusted, "the old address is no longer trusted")
        self.assertTrue(pool.known[Point("10.0.0.2", 9732)].trusted)
        self.assertEqual(reresolver.named[0].delay, RERESOLVE_INITIAL)
        self.clock.advance(RERESOLVE_INITIAL * 1.2)
        self.assertEqual(len(self.queries), 4, "back to 60 s after a change")

    def test_failure_backs_off_and_recovers(self) -> None:
        self.answers["seed.test"] = OSError("no such host")
        pool, reresolver = self.make(("seed.test:9732", True))
        self.clock.advance(RERESOLVE_INITIAL * 1.2)
        self.assertEqual(reresolver.named[0].delay, RERESOLVE_INITIAL * 2)
        self.assertEqual(pool.calls, [])
        self.answers["seed.test"] = "10.0.0.5"
        self.clock.advance(RERESOLVE_INITIAL * 2.4)
        self.assertEqual(pool.calls, [(Point("10.0.0.5", 9732), True, None)], "found once DNS answers")

    def test_stop(self) -> None:
        pool, reresolver = self.make(("seed.test:9732", True))
        reresolver.stop()
        self.clock.advance(RERESOLVE_CAP * 3)
        self.assertEqual(self.queries, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class PoolTests(TestCase):
    """
    A pool re-resolves its configured named points.
    """

    @async_test
    async def test_pool_follows_a_moved_trusted_point(self) -> None:
        clock_answers = {"seed.test": "10.0.0.1"}
        config = PoolConfig(
            listen=Point("127.0.0.1", 0),
            expected_proof_of_work=0,
            maintenance_idle_time=None,
            data_dir=self.mktemp(),
            trusted_points=(PointSpec.parse("seed.test:9732"),),
        )
        events: list[PoolEvent] = []
        pool = Pool(config, identity=identity(0), log=events.append)
        self.assertEqual([n.spec.host for n in pool.reresolver.named], ["seed.test"])
        clock = Clock()
        pool.reresolver = Reresolver(
            pool, [(config.trusted_points[0], True)], resolve=lambda name: clock_answers[name], clock=clock
        )
        pool.startService()
        self.addCleanup(lambda: pool.stopService() if pool.running else None)
        await pool.when_started()
        clock.advance(RERESOLVE_INITIAL * 1.2)
        await wait_for(lambda: pool.points.info(Point("10.0.0.1", 9732)) is not None)
        clock_answers["seed.test"] = "10.0.0.2"
        clock.advance(RERESOLVE_INITIAL * 2.4)
        info = pool.points.info(Point("10.0.0.2", 9732))
        self.assertIsNotNone(info)
        self.assertTrue(info.trusted)
        self.assertFalse(pool.points.info(Point("10.0.0.1", 9732)).trusted)
        self.assertEqual(
            [e.fields["new"] for e in events if e.event == EventKind.POINT_ADDRESS_CHANGED], ["10.0.0.2:9732"]
        )
        await pool.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])
