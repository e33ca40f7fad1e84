# -*- test-case-name: tests.test_refusals -*-
"""
Tests for L{p2pool.pool.refusals}: refusals counted by reason and logged as one
summary per reason per interval (issue 14, item 5), driven by a
L{Clock}, and a pool on a L{MemoryNetwork} staying quiet while it refuses
a flood.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from p2pool.core.addressing import Point
from p2pool.errors import NackMotive
from p2pool.events import EventKind, PoolEvent
from p2pool.pool.refusals import ADDRESS_LIMIT, SAMPLE_SIZE, RefusalLog, RefusalSummary, refusal_of
from p2pool.testing.network import MemoryNetwork
from tests.test_metrics import Scrape

IP_NODE = "10.0.0.1"
IP_ATTACKER = "10.9.0.1"
IP_OTHER = "10.8.0.1"


class RefusalLogTests(SynchronousTestCase):
    """
    L{RefusalLog} counts and reports by windows on its clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.reports: list[RefusalSummary] = []
        self.log = RefusalLog(self.clock, 60.0, self.reports.append)

    def test_one_summary_per_reason_per_interval(self) -> None:
        for i in range(1000):
            self.log.refused("too_many_pending", f"127.0.0.{2 + i % 2}")
        for _ in range(10):
            self.log.refused("banned", "10.1.1.1")
        self.clock.advance(59.9)
        self.assertEqual(self.reports, [], "nothing is logged before the window ends")
        self.clock.advance(0.1)
        by_reason = {s.reason: s for s in self.reports}
        self.assertEqual(len(self.reports), 2)
        self.assertEqual(
            by_reason["too_many_pending"],
            RefusalSummary("too_many_pending", 1000, 2, ("127.0.0.2", "127.0.0.3"), 60.0),
        )
        self.assertEqual(by_reason["banned"], RefusalSummary("banned", 10, 1, ("10.1.1.1",), 60.0))
        self.assertEqual(self.log.totals(), {"too_many_pending": 1000, "banned": 10})
        self.assertEqual(self.clock.getDelayedCalls(), [], "quiet until the next refusal")

    def test_next_window_opens_at_the_next_refusal(self) -> None:
        self.log.refused("netgroup_full", "10.2.0.1")
        self.clock.advance(60)
        self.clock.advance(500)
        self.log.refused("netgroup_full", "10.2.0.2")
        self.clock.advance(30)
        self.assertEqual(len(self.reports), 1)
        self.clock.advance(30)
        self.assertEqual([(s.count, s.sample) for s in self.reports], [(1, ("10.2.0.1",)), (1, ("10.2.0.2",))])
        self.assertEqual(self.log.totals(), {"netgroup_full": 2})

    def test_addresses_are_bounded(self) -> None:
        for i in range(ADDRESS_LIMIT + 10):
            self.log.refused("banned", f"10.{i // 256}.{i % 256}.1")
            self.log.refused("banned", f"10.{i // 256}.{i % 256}.1")
        self.clock.advance(60)
        (summary,) = self.reports
        self.assertEqual(summary.count, 2 * (ADDRESS_LIMIT + 10))
        self.assertEqual(summary.addresses, ADDRESS_LIMIT)
        self.assertTrue(summary.more_addresses)
        self.assertEqual(len(summary.sample), SAMPLE_SIZE)
        self.assertIn(
            f"from {ADDRESS_LIMIT}+ addresses (10.0.0.1, 10.0.1.1, 10.0.2.1, 10.0.3.1, ...)", summary.describe()
        )

    def test_describe(self) -> None:
        self.assertEqual(
            RefusalSummary("too_many_pending", 16674, 2, ("127.0.0.2", "127.0.0.3"), 60.0).describe(),
            "too_many_pending: 16674 in 60 s from 2 addresses (127.0.0.2, 127.0.0.3)",
        )
        self.assertEqual(
            RefusalSummary("banned", 1, 1, ("10.0.0.1",), 0.0).describe(), "banned: 1 in 0 s from 1 address (10.0.0.1)"
        )
        self.assertEqual(RefusalSummary("banned", 3, 0, (), 5.0).describe(), "banned: 3 in 5 s")

    def test_without_interval_each_is_reported(self) -> None:
        log = RefusalLog(self.clock, None, self.reports.append)
        log.refused("banned", "10.1.1.1")
        log.refused("banned", "10.1.1.2")
        self.assertEqual([(s.count, s.sample) for s in self.reports], [(1, ("10.1.1.1",)), (1, ("10.1.1.2",))])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(log.totals(), {"banned": 2})

    def test_stop_reports_and_leaves_nothing_scheduled(self) -> None:
        self.log.refused("banned", "10.1.1.1")
        self.clock.advance(20)
        self.log.stop()
        self.assertEqual([(s.reason, s.count, s.seconds) for s in self.reports], [("banned", 1, 20.0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.log.refused("banned", "10.1.1.2")
        self.assertEqual(len(self.reports), 2, "after stop, reported at once")
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RefusalOfTests(SynchronousTestCase):
    """
    Which pool events are refusals, and their reasons.
    """

    def test_reasons(self) -> None:
        cases = [
            (PoolEvent(EventKind.INCOMING_CONNECTION_BANNED, {"addr": "1.2.3.4"}), ("banned", "1.2.3.4")),
            (PoolEvent(EventKind.INCOMING_CONNECTION_TOO_MANY, {"addr": "1.2.3.4"}), ("too_many_pending", "1.2.3.4")),
            (
                PoolEvent(EventKind.INCOMING_CONNECTION_NETGROUP_FULL, {"addr": "1.2.3.4", "netgroup": "1.2"}),
                ("netgroup_full", "1.2.3.4"),
            ),
            (
                PoolEvent(EventKind.AUTHENTICATION_FAILED, {"addr": "1.2.3.4", "error": "Timeout", "incoming": True}),
                ("handshake_timeout", "1.2.3.4"),
            ),
            (
                PoolEvent(
                    EventKind.AUTHENTICATION_FAILED,
                    {"addr": "1.2.3.4", "error": "NotEnoughProofOfWork", "incoming": True},
                ),
                ("handshake_not_enough_proof_of_work", "1.2.3.4"),
            ),
            (
                PoolEvent(
                    EventKind.REQUEST_REJECTED, {"addr": "1.2.3.4", "error": "ConnectionClosed", "incoming": True}
                ),
                ("handshake_connection_closed", "1.2.3.4"),
            ),
            (
                PoolEvent(
                    EventKind.REJECTING_REQUEST,
                    {"addr": "1.2.3.4", "motive": int(NackMotive.TOO_MANY_CONNECTIONS), "incoming": True},
                ),
                ("nack_too_many_connections", "1.2.3.4"),
            ),
        ]
        for event, expected in cases:
            self.assertEqual(refusal_of(event), expected, event)

    def test_not_refusals(self) -> None:
        for event in (
            PoolEvent(EventKind.AUTHENTICATION_FAILED, {"addr": "1.2.3.4", "error": "Timeout", "incoming": False}),
            PoolEvent(EventKind.REJECTING_REQUEST, {"addr": "1.2.3.4", "motive": 1, "incoming": False}),
            PoolEvent(EventKind.CONNECTION_FAILED, {"point": "1.2.3.4:9732", "error": "Timeout"}),
            PoolEvent(EventKind.INCOMING_CONNECTION, {"addr": "1.2.3.4"}),
            PoolEvent(EventKind.CONNECTION_ESTABLISHED, {"point": "1.2.3.4:9732", "incoming": True}),
        ):
            self.assertIsNone(refusal_of(event), event)

    def test_take_event_quiets_refusals_and_incoming(self) -> None:
        log = RefusalLog(Clock(), 60.0, lambda summary: None)
        self.assertTrue(log.take_event(PoolEvent(EventKind.INCOMING_CONNECTION_BANNED, {"addr": "1.2.3.4"})))
        self.assertTrue(log.take_event(PoolEvent(EventKind.INCOMING_CONNECTION, {"addr": "1.2.3.4"})))
        self.assertFalse(log.take_event(PoolEvent(EventKind.CONNECTION_ESTABLISHED, {"incoming": True})))
        self.assertEqual(log.totals(), {"banned": 1})
        unsummarised = RefusalLog(Clock(), None, lambda summary: None)
        self.assertFalse(unsummarised.take_event(PoolEvent(EventKind.INCOMING_CONNECTION, {"addr": "1.2.3.4"})))


class _Silent(Protocol):
    """
    Connects and sends nothing.
    """


class _Factory(ClientFactory):
    protocol = _Silent

    def __init__(self) -> None:
        self.failed = 0

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.failed += 1


class PoolQuietTests(SynchronousTestCase):
    """
    A pool refusing a flood logs one line per reason per interval; its
    callbacks still get every event, and its metrics count every refusal.
    """

    def setUp(self) -> None:
        self.lines: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "p2pool.events" and "p2pool_event" in event:
                self.lines.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.network = MemoryNetwork(seed=3)
        self.addCleanup(self.network.stop)

    def logged(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["p2pool_event"] == name]

    def flood(self, source: str, count: int) -> None:
        reactor = self.network.reactor(source)
        for _ in range(count):
            reactor.connectTCP(IP_NODE, 9732, _Factory())
        self.network.advance(0.5)

    def test_banned_flood_is_one_line(self) -> None:
        node = self.network.add_pool(IP_NODE, maintenance_idle_time=None)
        events: list[PoolEvent] = []
        node.events.callbacks.append(events.append)
        node.points.ban(Point(IP_ATTACKER, 9732))
        self.flood(IP_ATTACKER, 200)
        self.assertEqual(sum(1 for e in events if e.event == "incoming_connection_banned"), 200, "callbacks see each")
        self.assertEqual(self.logged("incoming_connection_banned"), [], "no line per refusal")
        self.assertEqual(self.logged("connections_refused"), [])
        self.network.advance(60)
        (line,) = self.logged("connections_refused")
        self.assertEqual(
            (line["reason"], line["count"], line["addresses"], line["sample"]), ("banned", 200, 1, IP_ATTACKER)
        )
        self.assertEqual(node.refusals.totals(), {"banned": 200})
        self.assertEqual([e.fields["count"] for e in events if e.event == "connections_refused"], [200])

    def test_stalled_handshakes_are_summarised(self) -> None:
        node = self.network.add_pool(IP_NODE, maintenance_idle_time=None, max_incoming_connections=3)
        self.flood(IP_ATTACKER, 10)
        self.flood(IP_OTHER, 1)
        self.network.advance(node.config.authentication_timeout + 1)
        self.assertEqual(self.logged("authentication_failed"), [])
        self.assertEqual(self.logged("incoming_connection"), [])
        self.assertEqual(self.logged("incoming_connection_too_many"), [])
        self.network.advance(60)
        counts = {line["reason"]: line["count"] for line in self.logged("connections_refused")}
        # The one from another network group took the place of the oldest
        # of the crowd (which holds all the slots).
        self.assertEqual(counts, {"too_many_pending": 7, "handshake_displaced": 1, "handshake_timeout": 3})
        self.assertEqual(len(self.logged("connections_refused")), 3, "one line per reason")

    def test_interval_false_logs_each(self) -> None:
        node = self.network.add_pool(IP_NODE, maintenance_idle_time=None, refusal_log_interval=None)
        node.points.ban(Point(IP_ATTACKER, 9732))
        self.flood(IP_ATTACKER, 5)
        self.assertEqual([line["count"] for line in self.logged("connections_refused")], [1] * 5)
        self.assertEqual(self.network.clock.seconds() < 60, True)

    def test_metrics_count_refusals(self) -> None:
        from p2pool.admin.metrics import PoolMetrics

        node = self.network.add_pool(IP_NODE, maintenance_idle_time=None)
        node.points.ban(Point(IP_ATTACKER, 9732))
        self.flood(IP_ATTACKER, 7)
        scrape = Scrape(PoolMetrics(node).render().decode("utf-8"))
        self.assertEqual(scrape.value("p2pool_refusals", reason="banned"), 7.0, "counted before the summary is logged")

    def test_stopping_reports_the_open_window(self) -> None:
        node = self.network.add_pool(IP_NODE, maintenance_idle_time=None)
        node.points.ban(Point(IP_ATTACKER, 9732))
        self.flood(IP_ATTACKER, 3)
        self.network.remove_pool(IP_NODE)
        self.network.advance(1)
        self.assertEqual([line["count"] for line in self.logged("connections_refused")], [3])
