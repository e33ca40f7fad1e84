# -*- test-case-name: tests.test_metrics -*-
"""
Tests for L{p2pool.admin.metrics}: C{GET /metrics} parsed back with
C{prometheus_client}'s parser, after real pool activity on a
L{MemoryNetwork} and after synthetic events.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

import p2pool
from p2pool.admin.metrics import PoolMetrics, snake_case
from p2pool.core.addressing import PeerId, Point, PointSpec
from p2pool.errors import NackMotive
from p2pool.events import EventKind, PoolEvent
from p2pool.testing.network import MemoryNetwork
from tests.adminhelpers import IP_A, IP_B, MemoryAdmin


class Scrape:
    """
    One parsed scrape: families by name.
    """

    def __init__(self, text: str) -> None:
        self.families = {family.name: family for family in text_string_to_metric_families(text)}

    def value(self, name: str, sample: str | None = None, **labels: str) -> float | None:
        """
        The value of the sample of family C{name} (sample C{sample}, by
        default the family's counter or gauge sample) with these labels.
        """
        family = self.families[name]
        wanted = sample or (name + "_total" if family.type == "counter" else name)
        for s in family.samples:
            if s.name == wanted and s.labels == labels:
                return float(s.value)
        return None


def scrape(h: MemoryAdmin) -> Scrape:
    result = h.request("GET", "/metrics")
    assert result.code == 200, result
    assert result.header("content-type") == CONTENT_TYPE_LATEST
    return Scrape(result.body.decode("utf-8"))


class RouteTests(SynchronousTestCase):
    """
    C{GET /metrics} after pool activity.
    """

    def setUp(self) -> None:
        self.h = MemoryAdmin(self)

    def test_families(self) -> None:
        families = scrape(self.h).families
        expected = {
            "p2pool_info": "gauge",
            "p2pool_connections": "gauge",
            "p2pool_known_points": "gauge",
            "p2pool_known_peers": "gauge",
            "p2pool_trusted_points": "gauge",
            "p2pool_trusted_peers": "gauge",
            "p2pool_ip_greylist_fill_ratio": "gauge",
            "p2pool_greylisted_ips": "gauge",
            "p2pool_greylisted_peers": "gauge",
            "p2pool_banned_ips": "gauge",
            "p2pool_banned_peers": "gauge",
            "p2pool_bytes_sent": "counter",
            "p2pool_bytes_received": "counter",
            "p2pool_events": "counter",
            "p2pool_dials": "counter",
            "p2pool_dial_outcomes": "counter",
            "p2pool_connections_established": "counter",
            "p2pool_incoming_connections": "counter",
            "p2pool_incoming_refused": "counter",
            "p2pool_handshake_failures": "counter",
            "p2pool_disconnections": "counter",
            "p2pool_bans": "counter",
            "p2pool_greylistings": "counter",
            "p2pool_maintenance_runs": "counter",
            "p2pool_maintenance_duration_seconds": "histogram",
            "p2pool_swaps": "counter",
            "p2pool_swap_messages": "counter",
            "p2pool_checkpoint_saves": "counter",
            "p2pool_checkpoint_failures": "counter",
            "p2pool_checkpoint_writing_disabled": "gauge",
        }
        self.assertEqual({name: families[name].type for name in expected}, expected)

    def test_identity_and_empty_pool(self) -> None:
        s = scrape(self.h)
        self.assertEqual(
            s.value("p2pool_info", peer_id=str(self.h.a.peer_id), network="p2pool-mainnet", version=p2pool.__version__),
            1.0,
        )
        self.assertEqual(s.value("p2pool_connections", direction="incoming"), 0.0)
        for state in ("disconnected", "requested", "accepted", "running"):
            self.assertEqual(s.value("p2pool_known_points", state=state), 0.0, state)
        self.assertEqual(s.value("p2pool_ip_greylist_fill_ratio"), 0.0)

    def test_connection(self) -> None:
        self.h.connect()
        s = scrape(self.h)
        self.assertEqual(s.value("p2pool_connections", direction="outgoing"), 1.0)
        self.assertEqual(s.value("p2pool_connections", direction="incoming"), 0.0)
        self.assertEqual(s.value("p2pool_known_points", state="running"), 1.0)
        self.assertEqual(s.value("p2pool_known_peers", state="running"), 1.0)
        self.assertEqual((s.value("p2pool_trusted_points"), s.value("p2pool_trusted_peers")), (0.0, 0.0))
        self.assertEqual(s.value("p2pool_dials"), 1.0)
        self.assertEqual(s.value("p2pool_dial_outcomes", outcome="established"), 1.0)
        self.assertEqual(s.value("p2pool_connections_established", direction="outgoing"), 1.0)
        self.assertEqual(s.value("p2pool_events", event=EventKind.CONNECTION_ESTABLISHED), 1.0)
        sent, received = self.h.a.bytes_totals()
        self.assertGreater(sent, 0)
        self.assertEqual(s.value("p2pool_bytes_sent"), float(sent))
        self.assertEqual(s.value("p2pool_bytes_received"), float(received))

    def test_trusted_counted(self) -> None:
        self.h.connect()
        self.h.a.points.trust(Point(IP_B, 9732))
        self.h.a.peers.trust(self.h.b.peer_id)
        s = scrape(self.h)
        self.assertEqual((s.value("p2pool_trusted_points"), s.value("p2pool_trusted_peers")), (1.0, 1.0))

    def test_incoming_side(self) -> None:
        """
        B's metrics see the same connection as incoming.
        """
        metrics = PoolMetrics(self.h.b)
        metrics.attach()
        self.addCleanup(metrics.detach)
        self.h.connect()
        s = Scrape(metrics.render().decode())
        self.assertEqual(s.value("p2pool_connections", direction="incoming"), 1.0)
        self.assertEqual(s.value("p2pool_incoming_connections"), 1.0)
        self.assertEqual(s.value("p2pool_connections_established", direction="incoming"), 1.0)
        self.assertEqual(s.value("p2pool_dials"), 0.0)

    def test_failed_dials(self) -> None:
        self.h.network.add_pool("10.0.0.3", network="other", maintenance_idle_time=None)
        self.h.network.partition([IP_A], ["10.0.0.9"], drop=True)
        for point, timeout in (("10.0.0.3:9732", None), ("10.0.0.4:9732", None), ("10.0.0.9:9732", 0.5)):
            self.h.a.connect(Point.parse(point), timeout).addErrback(lambda f: None)
        self.h.network.advance(2.0)
        s = scrape(self.h)
        self.assertEqual(s.value("p2pool_dials"), 3.0)
        self.assertEqual(s.value("p2pool_dial_outcomes", outcome="rejected"), 1.0)
        self.assertEqual(s.value("p2pool_dial_outcomes", outcome="connection_failed"), 1.0)
        self.assertEqual(s.value("p2pool_dial_outcomes", outcome="timeout"), 1.0)
        self.assertEqual(
            s.value("p2pool_handshake_failures", direction="outgoing", reason="refused_unknown_chain_name"), 1.0
        )

    def test_disconnections_bans_greylists(self) -> None:
        self.h.connect()
        self.h.request("DELETE", f"/network/connections/{self.h.b.peer_id}?wait=true")
        self.h.a.greylist_addr("10.5.5.5")
        self.h.request("PATCH", "/network/points/10.6.6.6:1", {"acl": "ban"})
        self.h.request("PATCH", f"/network/peers/{self.h.b.peer_id}", {"acl": "ban"})
        s = scrape(self.h)
        self.assertEqual(s.value("p2pool_disconnections", reason="requested"), 1.0)
        self.assertEqual(s.value("p2pool_bans", kind="ip"), 1.0)
        self.assertEqual(s.value("p2pool_bans", kind="peer"), 1.0)
        self.assertEqual(s.value("p2pool_banned_ips"), 1.0)
        self.assertEqual(s.value("p2pool_banned_peers"), 1.0)
        self.assertEqual(s.value("p2pool_greylistings", kind="ip"), 1.0)
        self.assertEqual(s.value("p2pool_greylisted_ips"), 1.0)
        fill = s.value("p2pool_ip_greylist_fill_ratio")
        assert fill is not None
        self.assertTrue(0.0 < fill < 0.01, fill)
        self.assertEqual(s.value("p2pool_known_points", state="disconnected"), 1.0, "a ban registers no point")

    def test_checkpoints(self) -> None:
        self.h.a.save_peers()
        self.h.network.advance(0.1)
        s = scrape(self.h)
        saves = s.value("p2pool_checkpoint_saves")
        assert saves is not None
        self.assertGreaterEqual(saves, 1.0)
        self.assertEqual(s.value("p2pool_checkpoint_failures"), 0.0)
        duration = s.value("p2pool_checkpoint_last_duration_seconds")
        assert duration is not None
        self.assertGreaterEqual(duration, 0.0)
        self.assertEqual(
            s.value("p2pool_checkpoint_last_size_bytes"), float(os.path.getsize(self.h.a.config.peers_path))
        )
        self.assertEqual(s.value("p2pool_checkpoint_writing_disabled"), 0.0)

    def test_checkpoint_failure(self) -> None:
        blocker = self.mktemp()
        open(blocker, "w").close()
        self.h.a.persistence.path = os.path.join(blocker, "peers.json")
        self.h.a.save_peers()
        self.h.network.advance(0.1)
        s = scrape(self.h)
        self.assertEqual(s.value("p2pool_checkpoint_failures"), 1.0)
        self.assertEqual(s.value("p2pool_events", event=EventKind.SAVE_ERROR_PEERS), 1.0)

    def test_persistence_read_defensively(self) -> None:
        """
        A C{pool.persistence} without the expected attributes (or with
        values that are not numbers) leaves the checkpoint metrics out.
        """
        self.patch(self.h.a, "persistence", object())
        self.assertNotIn("p2pool_checkpoint_saves", scrape(self.h).families)

        class Odd:
            saves = "many"
            failures = None
            last_save_duration = True

        self.patch(self.h.a, "persistence", Odd())
        families = scrape(self.h).families
        self.assertFalse([name for name in families if name.startswith("p2pool_checkpoint")])

    def test_maintenance(self) -> None:
        """
        A pool whose maintenance reaches its bound (one connection to a
        bootstrap point) counts the run and its duration.
        """
        pool = self.h.network.add_pool(
            "10.0.0.3",
            start=False,
            maintenance_idle_time=30.0,
            bootstrap_points=(PointSpec(IP_B, 9732),),
            min_connections=1,
            expected_connections=1,
            max_connections=2,
        )
        metrics = PoolMetrics(pool)
        metrics.attach()
        pool.startService()
        self.h.network.run_until(lambda: pool.active_connections() == 1, timeout=5)
        self.h.network.advance(0.5)
        s = Scrape(metrics.render().decode())
        self.assertEqual(s.value("p2pool_maintenance_runs", motive="activation"), 1.0)
        count = s.value("p2pool_maintenance_duration_seconds", "p2pool_maintenance_duration_seconds_count")
        self.assertEqual(count, 1.0)
        self.assertEqual(s.value("p2pool_dial_outcomes", outcome="established"), 1.0)


class SyntheticEventTests(SynchronousTestCase):
    """
    L{PoolMetrics.observe} on events fed directly.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=5)
        self.addCleanup(self.network.stop)
        self.pool = self.network.add_pool(IP_A, maintenance_idle_time=None)
        self.metrics = PoolMetrics(self.pool)

    def feed(self, event: EventKind, **fields: Any) -> None:
        self.metrics.observe(PoolEvent(event, fields))

    def scrape(self) -> Scrape:
        return Scrape(self.metrics.render().decode())

    def test_rejection_direction(self) -> None:
        """
        A rejection without an C{incoming} field ends a dial when one to its
        address is in progress; otherwise it ended an incoming handshake.
        """
        self.feed(EventKind.OUTGOING_CONNECTION, point="10.1.1.1:9732")
        self.feed(EventKind.REQUEST_REJECTED, addr="10.1.1.1", error="PeerBanned")
        self.feed(EventKind.REQUEST_REJECTED, addr="10.1.1.1", error="PeerBanned")
        self.feed(EventKind.REJECTING_REQUEST, addr="10.2.2.2", motive=NackMotive.ALREADY_CONNECTED)
        self.feed(EventKind.REJECTING_REQUEST, addr="10.3.3.3", motive=1, incoming=False)
        s = self.scrape()
        self.assertEqual(s.value("p2pool_dial_outcomes", outcome="rejected"), 2.0)
        self.assertEqual(s.value("p2pool_handshake_failures", direction="outgoing", reason="peer_banned"), 1.0)
        self.assertEqual(s.value("p2pool_handshake_failures", direction="incoming", reason="peer_banned"), 1.0)
        self.assertEqual(
            s.value("p2pool_handshake_failures", direction="incoming", reason="refused_already_connected"), 1.0
        )
        self.assertEqual(
            s.value("p2pool_handshake_failures", direction="outgoing", reason="refused_too_many_connections"), 1.0
        )

    def test_authentication_failures(self) -> None:
        self.feed(EventKind.OUTGOING_CONNECTION, point="[::1]:9732")
        self.feed(EventKind.AUTHENTICATION_FAILED, addr="::1", error="Timeout", incoming=False)
        self.feed(EventKind.AUTHENTICATION_FAILED, addr="10.1.1.1", error="InvalidAuth", incoming=True)
        s = self.scrape()
        self.assertEqual(s.value("p2pool_dial_outcomes", outcome="timeout"), 1.0)
        self.assertEqual(s.value("p2pool_handshake_failures", direction="outgoing", reason="timeout"), 1.0)
        self.assertEqual(s.value("p2pool_handshake_failures", direction="incoming", reason="invalid_auth"), 1.0)
        self.assertEqual(self.metrics._dialing, {})

    def test_swaps_and_refusals(self) -> None:
        for event in (
            EventKind.SWAP_REQUEST_SENT,
            EventKind.SWAP_REQUEST_RECEIVED,
            EventKind.SWAP_REQUEST_IGNORED,
            EventKind.SWAP_ACK_SENT,
            EventKind.SWAP_SUCCESS,
            EventKind.SWAP_FAILURE,
            EventKind.SWAP_SUCCESS,
            EventKind.INCOMING_CONNECTION_BANNED,
            EventKind.INCOMING_CONNECTION_NETGROUP_FULL,
            EventKind.INCOMING_CONNECTION_TOO_MANY,
        ):
            self.feed(event)
        s = self.scrape()
        self.assertEqual(s.value("p2pool_swaps", outcome="success"), 2.0)
        self.assertEqual(s.value("p2pool_swaps", outcome="failure"), 1.0)
        self.assertEqual(s.value("p2pool_swap_messages", kind="request_ignored"), 1.0)
        self.assertEqual(s.value("p2pool_incoming_refused", reason="banned"), 1.0)
        self.assertEqual(s.value("p2pool_incoming_refused", reason="netgroup_full"), 1.0)
        # The label of each refusal is the reason the refusal log gives it.
        self.assertEqual(s.value("p2pool_incoming_refused", reason="too_many_pending"), 1.0)

    def test_bad_event_is_logged_not_raised(self) -> None:
        self.feed(EventKind.REJECTING_REQUEST, addr="10.1.1.1", motive="not a number")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.feed(EventKind.MAINTENANCE_ENDED, duration="soon")
        self.feed(EventKind.DISCONNECTION, reason="requested")
        s = self.scrape()
        self.assertEqual(s.value("p2pool_disconnections", reason="requested"), 1.0)
        self.assertEqual(
            s.value("p2pool_maintenance_duration_seconds", "p2pool_maintenance_duration_seconds_count"), 0.0
        )

    def test_registries_are_per_pool(self) -> None:
        other = self.network.add_pool(IP_B, maintenance_idle_time=None)
        mine, theirs = self.metrics, PoolMetrics(other)
        self.feed(EventKind.OUTGOING_CONNECTION, point="10.1.1.1:1")
        self.assertIsNot(mine.registry, theirs.registry)
        self.assertEqual(self.scrape().value("p2pool_dials"), 1.0)
        s = Scrape(theirs.render().decode())
        self.assertEqual(s.value("p2pool_dials"), 0.0)
        self.assertEqual(
            s.value("p2pool_info", peer_id=str(other.peer_id), network="p2pool-mainnet", version=p2pool.__version__),
            1.0,
        )

    def test_attach_and_detach(self) -> None:
        self.metrics.attach()
        self.metrics.attach()
        self.assertEqual(self.pool.events.callbacks.count(self.metrics.observe), 1)
        self.pool.events.emit(EventKind.PEER_BANNED, peer_id=str(PeerId.from_public_key(b"\x02" * 32)))
        self.metrics.detach()
        self.pool.events.emit(EventKind.PEER_BANNED, peer_id="x")
        self.assertEqual(self.scrape().value("p2pool_bans", kind="peer"), 1.0)

    def test_snake_case(self) -> None:
        cases = {
            "TooManyConnections": "too_many_connections",
            "InvalidAuth": "invalid_auth",
            "Timeout": "timeout",
            "IPBanned": "ip_banned",
            "Myself": "myself",
        }
        for name, expected in cases.items():
            self.assertEqual(snake_case(name), expected)
