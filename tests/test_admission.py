# -*- test-case-name: tests.test_admission -*-
"""
Pending handshakes shared fairly (issue 14, item 1): the sans-I/O policy
of L{p2pool.core.admission}, and a pool on a L{MemoryNetwork} whose handshake
slots two network groups try to hold with stalled connections: a peer
from a third group still gets in, and addresses that stall again and again
are greylisted.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import SynchronousTestCase

from p2pool.core.addressing import Point
from p2pool.core.admission import STALL_WINDOW, StallTracker, admission_group, displacement_victim
from p2pool.events import PoolEvent
from p2pool.testing.network import MemoryNetwork
from p2pool.transport.connection import Connection

IP_NODE = "10.0.0.1"


class AdmissionGroupTests(SynchronousTestCase):
    def test_groups(self) -> None:
        self.assertEqual(admission_group("10.1.2.3", False), "10.1.0.0/16")
        self.assertEqual(admission_group("2001:db8:1::5", False), "2001:db8::/32")
        self.assertEqual(admission_group("127.0.0.5", False), "127.0.0.0/16")
        self.assertEqual(admission_group("127.0.0.5", True), "127.0.0.5", "exempt loopback: each address its own group")
        self.assertEqual(admission_group("10.1.2.3", True), "10.1.0.0/16")


class DisplacementVictimTests(SynchronousTestCase):
    def test_oldest_of_the_most_represented(self) -> None:
        pending = [("a1", "A"), ("b1", "B"), ("a2", "A"), ("b2", "B"), ("b3", "B")]
        self.assertEqual(displacement_victim(pending, "C"), "b1")
        self.assertEqual(displacement_victim(pending, "A"), None, "B holds 3, A 2: not enough to give way")

    def test_ties_go_to_the_group_of_the_oldest(self) -> None:
        pending = [("b1", "B"), ("a1", "A"), ("a2", "A"), ("b2", "B")]
        self.assertEqual(displacement_victim(pending, "C"), "b1")

    def test_never_for_the_crowd_itself(self) -> None:
        pending = [("a1", "A"), ("a2", "A"), ("a3", "A")]
        self.assertIsNone(displacement_victim(pending, "A"))
        self.assertEqual(displacement_victim(pending, "B"), "a1")

    def test_not_when_spread_evenly(self) -> None:
        pending = [("a", "A"), ("b", "B"), ("c", "C")]
        self.assertIsNone(displacement_victim(pending, "D"), "giving way would only move the crowd")
        self.assertIsNone(displacement_victim([], "D"))


class StallTrackerTests(SynchronousTestCase):
    def test_threshold_within_the_window(self) -> None:
        tracker = StallTracker(3)
        self.assertFalse(tracker.stalled("10.0.0.9", 0.0))
        self.assertFalse(tracker.stalled("10.0.0.9", 10.0))
        self.assertFalse(tracker.stalled("10.0.0.8", 11.0), "counted per address")
        self.assertTrue(tracker.stalled("10.0.0.9", 20.0))
        self.assertFalse(tracker.stalled("10.0.0.9", 21.0), "forgotten once reported")

    def test_old_stalls_expire(self) -> None:
        tracker = StallTracker(2)
        self.assertFalse(tracker.stalled("10.0.0.9", 0.0))
        self.assertFalse(tracker.stalled("10.0.0.9", STALL_WINDOW + 1))
        self.assertTrue(tracker.stalled("10.0.0.9", STALL_WINDOW + 2))

    def test_memory_is_bounded(self) -> None:
        tracker = StallTracker(2, memory=100)
        for i in range(1000):
            tracker.stalled(f"10.0.{i // 256}.{i % 256}", float(i))
        self.assertEqual(len(tracker), 100)
        self.assertFalse(tracker.stalled("10.0.0.0", 1000.0), "the least recent was forgotten")
        self.assertTrue(tracker.stalled("10.0.3.231", 1001.0))

    def test_threshold_must_be_positive(self) -> None:
        self.assertRaises(ValueError, StallTracker, 0)


class _Silent(Protocol):
    """
    Connects and never starts TLS.
    """


class _Factory(ClientFactory):
    protocol = _Silent


class PoolTests(SynchronousTestCase):
    """
    The policy applied by a pool to real (simulated) connections.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=5)
        self.addCleanup(self.network.stop)
        self.events: list[PoolEvent] = []

    def node(self, **config: Any) -> Any:
        pool = self.network.add_pool(IP_NODE, maintenance_idle_time=None, **config)
        pool.events.callbacks.append(self.events.append)
        return pool

    def named(self, name: str) -> list[PoolEvent]:
        return [e for e in self.events if e.event == name]

    def stall(self, *sources: str) -> None:
        for source in sources:
            self.network.reactor(source).connectTCP(IP_NODE, 9732, _Factory())
        self.network.advance(0.05)

    def test_pending_counts_follow_the_handshakes(self) -> None:
        """
        The pending incoming handshakes, in all and by network group
        (running incoming connections included), through stalls,
        displacements, timeouts and a connection that completes.
        """
        node = self.node(max_incoming_connections=5, max_stalled_handshakes=None, authentication_timeout=1.0)
        handler = node.connect_handler
        self.stall("10.1.0.1", "10.1.0.2", "10.2.0.1")
        self.assertEqual(handler.pending_incoming, 3)
        self.assertEqual([handler.incoming_in_netgroup(f"10.{g}.0.0/16") for g in (1, 2, 3)], [2, 1, 0])
        self.stall("10.1.0.3", "10.3.0.1", "10.4.0.1")
        # The sixth found the slots full: 10.1/16's oldest gave way.
        self.assertEqual(handler.pending_incoming, 5)
        self.assertEqual([handler.incoming_in_netgroup(f"10.{g}.0.0/16") for g in (1, 2, 3, 4)], [2, 1, 1, 1])
        self.network.advance(1.5)
        self.assertEqual(handler.pending_incoming, 0, "timed out")
        self.assertEqual([handler.incoming_in_netgroup(f"10.{g}.0.0/16") for g in (1, 2, 3, 4)], [0, 0, 0, 0])
        peer = self.network.add_pool("10.5.0.1", maintenance_idle_time=None)
        d = peer.connect(Point(IP_NODE, 9732))
        self.network.advance(0.004)
        self.assertEqual((handler.pending_incoming, handler.incoming_in_netgroup("10.5.0.0/16")), (1, 1))
        self.network.advance(1.0)
        self.successResultOf(d)
        self.assertEqual((handler.pending_incoming, handler.incoming_in_netgroup("10.5.0.0/16")), (0, 1), "running")

    def test_third_group_gets_in_while_two_groups_hold_the_slots(self) -> None:
        node = self.node(max_incoming_connections=6, max_stalled_handshakes=None)
        self.stall(*[f"10.1.0.{i}" for i in range(1, 4)], *[f"10.2.0.{i}" for i in range(1, 4)])
        self.assertEqual((len(self.named("incoming_connection")), self.named("incoming_connection_too_many")), (6, []))
        self.stall("10.2.0.9")
        self.assertEqual(
            self.named("incoming_connection_too_many")[-1].fields["addr"], "10.2.0.9", "a crowd member waits"
        )
        honest = self.network.add_pool("10.3.0.1", maintenance_idle_time=None)
        done: list[Any] = []
        honest.connect(Point(IP_NODE, 9732)).addBoth(done.append)
        self.network.run_until(lambda: bool(done), timeout=5)
        self.assertEqual(done[0].peer_id, node.peer_id)
        (displaced,) = [e for e in self.named("authentication_failed") if e.fields["error"] == "Displaced"]
        self.assertEqual(displaced.fields["addr"], "10.1.0.1", "the oldest handshake of the crowd gave way")

    def test_honest_peers_keep_getting_in(self) -> None:
        """
        Two groups reopen stalled connections as fast as they are closed;
        every dial of a peer from a third group succeeds.
        """
        node = self.node(max_incoming_connections=8)
        attackers = [f"10.{g}.0.{i}" for g in (1, 2) for i in range(1, 21)]
        honest = self.network.add_pool("10.3.0.1", maintenance_idle_time=None)
        succeeded = 0
        for _ in range(20):
            self.stall(*attackers)
            done: list[Any] = []
            honest.connect(Point(IP_NODE, 9732)).addBoth(done.append)
            self.network.run_until(lambda done=done: bool(done), timeout=5)
            if isinstance(done[0], Connection):
                succeeded += 1
                done[0].disconnect()
            self.network.advance(node.config.authentication_timeout)
        self.assertEqual(succeeded, 20)

    def test_repeated_stalls_greylist_the_address(self) -> None:
        node = self.node(max_stalled_handshakes=3)
        for attempt in range(1, 4):
            self.stall("10.9.0.1")
            self.network.advance(node.config.authentication_timeout + 0.1)
            greylisted = [e.fields["addr"] for e in self.named("greylisted_addr")]
            self.assertEqual(greylisted, ["10.9.0.1"] if attempt == 3 else [], f"after {attempt} stalls")
        self.stall("10.9.0.1")
        self.assertEqual(self.named("incoming_connection_banned")[-1].fields["addr"], "10.9.0.1")
        self.assertTrue(node.acl.banned_addr("10.9.0.1"))

    def test_stalls_of_other_addresses_do_not_add_up(self) -> None:
        node = self.node(max_stalled_handshakes=2)
        self.stall("10.9.0.1", "10.9.0.2")
        self.network.advance(node.config.authentication_timeout + 0.1)
        self.assertEqual(self.named("greylisted_addr"), [])

    def test_stall_greylisting_can_be_turned_off(self) -> None:
        node = self.node(max_stalled_handshakes=None)
        for _ in range(5):
            self.stall("10.9.0.1")
            self.network.advance(node.config.authentication_timeout + 0.1)
        self.assertEqual(self.named("greylisted_addr"), [])
        self.assertEqual(len([e for e in self.named("authentication_failed") if e.fields["error"] == "Timeout"]), 5)
