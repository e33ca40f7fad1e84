# -*- test-case-name: tests.test_traffic -*-
"""
Tests for the traffic history (L{p2pool.admin.traffic.TrafficHistory}):
its intervals, its bound, late and backward clocks, and the sampler that
feeds it, driven by a L{Clock}.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from p2pool.admin import traffic
from p2pool.admin.traffic import HISTORY_INTERVAL, HISTORY_LENGTH, TrafficHistory, TrafficInterval, TrafficSampler

START = 1_700_000_000.0


class HistoryTests(SynchronousTestCase):
    """
    L{TrafficHistory} fed with byte totals by hand.
    """

    def test_defaults(self) -> None:
        """
        One hour of 10-second intervals, as docs/ADMIN.md says.
        """
        history = TrafficHistory(START, 0, 0)
        self.assertEqual((history.interval, history.length), (HISTORY_INTERVAL, HISTORY_LENGTH))
        self.assertEqual((HISTORY_INTERVAL, HISTORY_LENGTH), (10.0, 360))
        self.assertEqual(history.since, START)
        self.assertEqual(history.intervals(), [])

    def test_an_interval_counts_the_bytes_since_the_last(self) -> None:
        history = TrafficHistory(START, 100, 200, interval=10)
        history.observe(START + 5, 150, 260)
        self.assertEqual(len(history), 0, "an interval ends only once it has lasted long enough")
        history.observe(START + 10, 400, 300)
        history.observe(START + 15, 450, 300)
        history.observe(START + 20, 500, 1300)
        self.assertEqual(
            history.intervals(),
            [
                TrafficInterval(seq=1, end=START + 10, seconds=10, sent=300, received=100),
                TrafficInterval(seq=2, end=START + 20, seconds=10, sent=100, received=1000),
            ],
        )

    def test_bounded(self) -> None:
        """
        At most C{length} intervals are kept: the oldest go first.
        """
        history = TrafficHistory(START, 0, 0, interval=1, length=3)
        for second in range(1, 11):
            history.observe(START + second, second * 10, 0)
        self.assertEqual(len(history), 3)
        self.assertEqual([entry.seq for entry in history.intervals()], [8, 9, 10])
        self.assertEqual({entry.sent for entry in history.intervals()}, {10})

    def test_after(self) -> None:
        """
        C{intervals(after)} gives those numbered above C{after} only.
        """
        history = TrafficHistory(START, 0, 0, interval=1, length=5)
        for second in range(1, 8):
            history.observe(START + second, 0, 0)
        self.assertEqual([e.seq for e in history.intervals(0)], [3, 4, 5, 6, 7])
        self.assertEqual([e.seq for e in history.intervals(5)], [6, 7])
        self.assertEqual(history.intervals(7), [])
        self.assertEqual(history.intervals(1000), [])

    def test_a_late_observation_makes_a_longer_interval(self) -> None:
        """
        When the observations stop for a while (a busy reactor), the
        interval lasts until the next one, and says how long it was.
        """
        history = TrafficHistory(START, 0, 0, interval=10)
        history.observe(START + 95, 9500, 0)
        [entry] = history.intervals()
        self.assertEqual((entry.end, entry.seconds, entry.sent), (START + 95, 95, 9500))

    def test_a_clock_going_back_counts_nothing_twice(self) -> None:
        history = TrafficHistory(START, 0, 0, interval=10)
        history.observe(START - 100, 50, 50)
        history.observe(START - 95, 60, 60)
        self.assertEqual(len(history), 0)
        history.observe(START - 90, 80, 90)
        [entry] = history.intervals()
        self.assertEqual((entry.end, entry.seconds, entry.sent, entry.received), (START - 90, 10, 30, 40))

    def test_totals_going_down_count_zero(self) -> None:
        history = TrafficHistory(START, 1000, 1000, interval=1)
        history.observe(START + 1, 10, 2000)
        [entry] = history.intervals()
        self.assertEqual((entry.sent, entry.received), (0, 1000))

    def test_bad_parameters(self) -> None:
        for interval in (0, -1.0, float("nan")):
            self.assertRaises(ValueError, TrafficHistory, START, 0, 0, interval=interval)
        self.assertRaises(ValueError, TrafficHistory, START, 0, 0, length=0)


class _Pool:
    """
    What the sampler reads of a pool: its byte totals and its connections.
    """

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.connections: list[Any] = []

    def bytes_totals(self) -> tuple[int, int]:
        return (self.sent, self.received)


class SamplerHistoryTests(SynchronousTestCase):
    """
    The sampler feeds the history at each sample, on its clock.
    """

    def test_sampled_every_second_into_intervals(self) -> None:
        clock = Clock()
        clock.advance(START)
        pool = _Pool()
        sampler = TrafficSampler(cast(Any, pool), clock, history_interval=10, history_length=4)
        sampler.start()
        self.addCleanup(sampler.stop)
        for _ in range(60):
            pool.sent += 100
            pool.received += 7
            clock.advance(1)
        history = sampler.history
        self.assertEqual(history.since, START)
        self.assertEqual([e.seq for e in history.intervals()], [3, 4, 5, 6])
        for entry in history.intervals():
            self.assertEqual((entry.seconds, entry.sent, entry.received), (10, 1000, 70))
        self.assertEqual(history.intervals()[-1].end, START + 60)
        self.assertEqual((sampler.outflow, sampler.inflow), (100, 7))

    def test_stopped_sampler_records_nothing(self) -> None:
        clock = Clock()
        pool = _Pool()
        sampler = TrafficSampler(cast(Any, pool), clock, history_interval=1)
        sampler.start()
        for _ in range(3):
            clock.advance(1)
        sampler.stop()
        kept = len(sampler.history)
        pool.sent += 10
        clock.advance(30)
        self.assertEqual(len(sampler.history), kept)
        self.assertEqual(kept, 3)


class _Conn:
    """
    A connection's counters, noting each time they are read.
    """

    def __init__(self, peer_id: str, reads: list[str]) -> None:
        self.peer_id = peer_id
        self.sent = 0
        self.bytes_received = 0
        self._reads = reads

    @property
    def bytes_sent(self) -> int:
        self._reads.append(self.peer_id)
        return self.sent


class SamplerSliceTests(SynchronousTestCase):
    """
    A sample reads L{traffic.SAMPLE_SLICE} connections per reactor turn,
    and each connection's rate is over the time since its own last reading.
    """

    def test_connections_read_in_slices(self) -> None:
        self.patch(traffic, "SAMPLE_SLICE", 2)
        clock = Clock()
        clock.advance(START)
        pool = _Pool()
        reads: list[str] = []
        pool.connections = [_Conn(f"p{i}", reads) for i in range(5)]
        sampler = TrafficSampler(cast(Any, pool), clock)
        sampler.sample()  # every connection gets its first reading
        clock.advance(0)
        self.assertEqual(reads, [f"p{i}" for i in range(5)])
        del reads[:]
        for conn in pool.connections:
            conn.sent += 1000
            conn.bytes_received += 10
        clock.advance(1)
        sampler.sample()
        self.assertEqual(reads, ["p0", "p1"], "one slice in this turn")
        self.assertEqual(len(clock.getDelayedCalls()), 1, "the rest in the next turns")
        clock.advance(0)
        self.assertEqual(reads, [f"p{i}" for i in range(5)])
        self.assertEqual([sampler.connection_rates(cast(Any, c)) for c in pool.connections], [(10, 1000)] * 5)

    def test_stop_ends_a_pass(self) -> None:
        self.patch(traffic, "SAMPLE_SLICE", 1)
        clock = Clock()
        pool = _Pool()
        pool.connections = [_Conn(f"p{i}", []) for i in range(3)]
        sampler = TrafficSampler(cast(Any, pool), clock)
        sampler.start()
        sampler.stop()
        self.assertEqual(clock.getDelayedCalls(), [], "no slice left pending")
