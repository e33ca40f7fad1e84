"""
Maintenance, discovery and swaps on the in-memory network: the Tezos
scenarios D1/D2 (triggers), O3, O4, O5 (expected connections), O6/O7
(swaps), O12 (trusted ring), O15/O16 (discovery), private mode, and the
eclipse defences.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from p2pool.core.addressing import Point, PointSpec
from p2pool.core.states import PointState
from p2pool.errors import MaintenanceDisabled
from p2pool.events import EventKind
from p2pool.pool import maintenance as maintenance_module
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork

PORT = 9732


def ip(i: int) -> str:
    """
    Test hosts, each in a network group of its own.
    """
    return f"10.{i}.0.1"


class _NetworkTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=7, latency=0.002)
        self.addCleanup(self.network.stop)
        self.log: list[tuple[float, str, str, dict[str, Any]]] = []
        self.network.observe(lambda t, host, e: self.log.append((t, host, e.event, e.fields)))

    def add(self, i: int, **config: Any) -> Pool:
        return self.network.add_pool(ip(i), **config)

    def point(self, i: int) -> Point:
        return Point(ip(i), PORT)

    def events(self, i: int, name: EventKind) -> list[tuple[float, dict[str, Any]]]:
        return [(t, f) for t, host, e, f in self.log if host == ip(i) and e == name]

    def run_until(self, predicate: Callable[[], object], timeout: float = 60.0) -> None:
        self.assertTrue(self.network.run_until(predicate, timeout=timeout), "condition not met in simulated time")

    def connect(self, a: Pool, b: int) -> None:
        d = a.connect(self.point(b))
        self.run_until(lambda: d.called, timeout=10)
        self.successResultOf(d)


class TriggerTests(_NetworkTestCase):
    def test_too_few_connections_triggers_maintenance(self) -> None:
        """
        Tezos D1: after the first pass, closing connections below
        min_connections logs too_few_connections then maintenance_started.
        """
        others = [self.add(i, maintenance_idle_time=None) for i in range(1, 13)]
        target = self.add(
            0, min_connections=4, expected_connections=8, max_connections=12, maintenance_idle_time=36000.0
        )
        for i in range(1, 13):
            target.register_point(self.point(i))
        self.run_until(lambda: bool(self.events(0, EventKind.MAINTENANCE_ENDED)))
        active = target.active_connections()
        self.assertGreaterEqual(active, 6, "min_target reached")
        self.assertLessEqual(active, 10, "max_target respected")
        mark = self.network.seconds()
        for conn in target.connections.list()[: active - 4 + 1]:
            conn.disconnect()
        self.run_until(lambda: any(t > mark for t, _ in self.events(0, EventKind.MAINTENANCE_STARTED)), timeout=10)
        few = [t for t, _ in self.events(0, EventKind.TOO_FEW_CONNECTIONS) if t >= mark]
        started = [t for t, _ in self.events(0, EventKind.MAINTENANCE_STARTED) if t >= mark]
        self.assertTrue(few and started and few[0] <= started[0])
        # Back in range (min_threshold 5) with the points not yet tried.
        self.run_until(lambda: target.active_connections() >= 5, timeout=30)
        self.assertEqual(len(others), 12)

    def test_too_many_connections_triggers_maintenance(self) -> None:
        """
        Tezos D2: reaching max_connections logs too_many_connections, then
        a pass closes connections down to max_target.
        """
        for i in range(1, 11):
            self.add(i, maintenance_idle_time=None)
        target = self.add(
            0, min_connections=0, expected_connections=4, max_connections=9, maintenance_idle_time=36000.0
        )
        self.assertEqual(target.config.maintenance_bounds(), (1, 2, 7, 8))
        self.run_until(
            lambda: bool(self.events(0, EventKind.MAINTENANCE_ENDED)) or self.network.seconds() > 1, timeout=5
        )
        for i in range(1, 8):
            self.connect(target, i)
        # Handshakes under way together all find a free slot (only running
        # connections count), so three at once overshoot max_connections.
        for i in range(8, 11):
            self.network.pools[ip(i)].connect(self.point(0))
        self.run_until(lambda: bool(self.events(0, EventKind.TOO_MANY_CONNECTIONS)), timeout=5)
        # The pass closes n - max_target; a connection that completes
        # meanwhile may leave it at max_threshold, which is in range.
        self.run_until(
            lambda: 7 <= target.active_connections() <= 8 and bool(self.events(0, EventKind.MAINTENANCE_ENDED)),
            timeout=10,
        )
        self.assertTrue(self.events(0, EventKind.MAINTENANCE_STARTED))
        lost = [f for _, host, e, f in self.log if host == ip(0) and e == EventKind.DISCONNECTION]
        self.assertEqual({f["reason"] for f in lost}, {"maintenance_too_many"})

    def test_explicit_maintain_returns_when_in_range(self) -> None:
        a = self.add(1, min_connections=0, expected_connections=0, max_connections=5)
        d = a.maintain()
        self.run_until(lambda: d.called, timeout=1)
        self.successResultOf(d)
        disabled = self.add(2, maintenance_idle_time=None)
        self.failureResultOf(disabled.maintain(), MaintenanceDisabled)


class ConnectionCountTests(_NetworkTestCase):
    def test_one_connection_still_reaches_its_peer(self) -> None:
        """
        Tezos O3: with --connections 1 (min 0, expected 1, max 1) a node
        still connects to its trusted peer.
        """
        self.add(1, maintenance_idle_time=None)
        node = self.add(
            0, min_connections=0, expected_connections=1, max_connections=1, trusted_points=(PointSpec(ip(1), PORT),)
        )
        self.run_until(lambda: node.active_connections() == 1, timeout=10)
        self.assertEqual(node.connections.list()[0].point, self.point(1))

    def test_banned_points_are_not_dialed(self) -> None:
        """
        Maintenance skips a greylisted or blacklisted known point, and
        dials the others (and the banned one once it is no longer banned).
        """
        for i in range(1, 5):
            self.add(i, maintenance_idle_time=None)
        node = self.add(0, min_connections=4, expected_connections=4, max_connections=8, maintenance_idle_time=5.0)
        dialed: list[Point] = []
        connect = node.connect

        def recording_connect(point: Point, *args: Any, **kwargs: Any) -> Any:
            dialed.append(point)
            return connect(point, *args, **kwargs)

        node.connect = recording_connect  # type: ignore[method-assign]
        node.acl.ip_blacklist.ban(ip(1))
        node.greylist_addr(ip(2))
        for i in range(1, 5):
            node.register_point(self.point(i))
        self.run_until(lambda: node.active_connections() == 2, timeout=10)
        self.network.advance(3.0)
        self.assertEqual(sorted(c.remote_ip for c in node.connections.list()), [ip(3), ip(4)])
        self.assertIn(self.point(3), dialed)
        self.assertNotIn(self.point(1), dialed)
        self.assertNotIn(self.point(2), dialed)
        node.acl.ip_blacklist.unban(ip(1))
        self.run_until(lambda: node.active_connections() == 3, timeout=30)
        self.assertIn(ip(1), {c.remote_ip for c in node.connections.list()})

    def test_maintenance_disabled_never_runs(self) -> None:
        """
        Tezos O4: a node without maintenance never starts a pass, while a
        normal node runs one at start and again when its peer restarts.
        """
        quiet = self.add(1, maintenance_idle_time=None)
        normal = self.add(
            0,
            maintenance_idle_time=5.0,
            min_connections=1,
            expected_connections=1,
            max_connections=2,
            trusted_points=(PointSpec(ip(1), PORT),),
        )
        self.run_until(lambda: normal.active_connections() == 1, timeout=10)
        self.network.advance(10.0)
        self.assertEqual(self.events(1, EventKind.MAINTENANCE_STARTED), [])
        self.assertTrue(self.events(0, EventKind.MAINTENANCE_STARTED))
        before = len(self.events(0, EventKind.MAINTENANCE_STARTED))
        self.network.remove_pool(ip(1))
        self.network.advance(1.0)
        self.add(1, maintenance_idle_time=None)
        self.run_until(lambda: len(self.events(0, EventKind.MAINTENANCE_STARTED)) > before, timeout=10)
        self.run_until(lambda: normal.active_connections() == 1, timeout=120)
        self.assertIsNotNone(quiet)

    def test_expected_connections_in_a_clique(self) -> None:
        """
        Tezos O5: expected 6 (min 3, max 9: thresholds 4/5/7/8) joined to a
        clique of 9 reaches at least 5 connections and, once maintenance
        has ended, keeps at most 7.
        """
        clique = [self.add(i, maintenance_idle_time=None) for i in range(1, 10)]
        for a in clique:
            for i in range(1, 10):
                if ip(i) != str(a.config.listen.ip):
                    a.register_point(self.point(i))
        target = self.add(
            0, min_connections=3, expected_connections=6, max_connections=9, trusted_points=(PointSpec(ip(1), PORT),)
        )
        for i in range(1, 10):
            target.register_point(self.point(i))
        self.run_until(lambda: bool(self.events(0, EventKind.MAINTENANCE_ENDED)), timeout=30)
        self.assertGreaterEqual(target.active_connections(), 5)
        self.assertLessEqual(target.active_connections(), 7)


class SwapTests(_NetworkTestCase):
    def _topology(self, **leaf_config: Any) -> tuple[Pool, dict[str, Pool]]:
        """
        Tezos O6: 1b - 1a - S - 2a - 2b, discovery off everywhere, only S
        running maintenance (in range with 2 connections).
        """
        names = {"1b": 1, "1a": 2, "2a": 3, "2b": 4}
        leaves = {
            name: self.add(i, maintenance_idle_time=None, disable_peer_discovery=True, **leaf_config)
            for name, i in names.items()
        }
        s = self.add(
            0,
            min_connections=1,
            expected_connections=2,
            max_connections=3,
            maintenance_idle_time=20.0,
            disable_peer_discovery=True,
        )
        self.connect(leaves["1b"], 2)
        self.connect(leaves["2b"], 3)
        self.connect(s, 2)
        self.connect(s, 3)
        return s, leaves

    def test_swap_exchanges_peers(self) -> None:
        """
        The first request offers a point the receiver does not know: it
        learns it and ignores the swap; a later request for the same point
        swaps (the receiver's first swap frame waits out its 60 s cooldown).
        """
        s, leaves = self._topology()
        self.run_until(lambda: bool(self.events(0, EventKind.SWAP_SUCCESS)), timeout=180)
        receivers = self.events(2, EventKind.SWAP_REQUEST_RECEIVED) + self.events(3, EventKind.SWAP_REQUEST_RECEIVED)
        self.assertTrue(receivers)
        ignored = self.events(2, EventKind.SWAP_REQUEST_IGNORED) + self.events(3, EventKind.SWAP_REQUEST_IGNORED)
        self.assertIn("new_point", [fields["reason"] for _, fields in ignored])
        self.assertTrue(self.events(0, EventKind.SWAP_ACK_RECEIVED))
        self.run_until(
            lambda: bool(self.events(2, EventKind.SWAP_SUCCESS) or self.events(3, EventKind.SWAP_SUCCESS)), timeout=10
        )
        self.network.advance(1.0)
        peers_of_s = {str(c.point) for c in s.connections.list()}
        self.assertEqual(len(peers_of_s), 2)
        # S swapped one side's neighbour for the far leaf of that side.
        self.assertIn(peers_of_s, [{str(self.point(2)), str(self.point(1))}, {str(self.point(3)), str(self.point(4))}])

    def test_swap_disabled(self) -> None:
        """
        Tezos O7: with swaps disabled on the leaves, S never receives a
        swap ack.
        """
        s, leaves = self._topology(swap_linger=None)
        self.network.advance(60.0)
        self.assertTrue(self.events(0, EventKind.SWAP_REQUEST_SENT))
        self.assertEqual(self.events(0, EventKind.SWAP_ACK_RECEIVED), [])
        self.assertEqual(s.active_connections(), 2)

    def test_swap_disabled_sends_no_request(self) -> None:
        s, _ = self._topology()
        quiet = self.add(
            5,
            swap_linger=None,
            min_connections=1,
            expected_connections=1,
            max_connections=2,
            trusted_points=(PointSpec(ip(0), PORT),),
        )
        self.network.advance(60.0)
        self.assertTrue(self.events(5, EventKind.MAINTENANCE_ENDED) or quiet.active_connections() == 1)
        self.assertEqual(self.events(5, EventKind.SWAP_REQUEST_SENT), [])


class DiscoveryTests(_NetworkTestCase):
    def test_trusted_ring_learns_everything(self) -> None:
        """
        Tezos O12: five nodes each trusting the next end fully connected,
        each with one trusted point, never running its own point.
        """
        pools = [self.add(i, maintenance_idle_time=5.0) for i in range(5)]
        for i, pool in enumerate(pools):
            pool.points.trust(self.point((i + 1) % 5))
        self.run_until(lambda: all(p.active_connections() == 4 for p in pools), timeout=120)
        for i, pool in enumerate(pools):
            trusted = [info.point for info in pool.points if info.trusted]
            self.assertEqual(trusted, [self.point((i + 1) % 5)])
            self.assertEqual({info.point for info in pool.points}, {self.point(j) for j in range(5) if j != i})
            self.assertNotIn(pool.peer_id, {info.peer_id for info in pool.peers})
            self.assertEqual(len(pool.peers), 4)

    def test_discovery_through_a_common_peer(self) -> None:
        """
        Tezos O15: A and B, connected only through C, learn each other's
        point from an advertisement.
        """
        self.add(3, maintenance_idle_time=None)
        a = self.add(1, maintenance_idle_time=5.0, trusted_points=(PointSpec(ip(3), PORT),))
        b = self.add(2, maintenance_idle_time=5.0, trusted_points=(PointSpec(ip(3), PORT),))
        self.run_until(lambda: a.points.info(self.point(2)) is not None, timeout=60)
        self.assertTrue(self.events(1, EventKind.ADVERTISE_RECEIVED))
        self.run_until(lambda: a.connections.find_by_peer_id(b.peer_id) is not None, timeout=60)

    def test_discovery_disabled_on_the_common_peer(self) -> None:
        """
        Tezos O16: with discovery disabled on C, A and B receive neither
        Bootstrap nor Advertise.
        """
        self.add(3, maintenance_idle_time=None, disable_peer_discovery=True)
        self.add(1, maintenance_idle_time=5.0, trusted_points=(PointSpec(ip(3), PORT),))
        self.add(2, maintenance_idle_time=5.0, trusted_points=(PointSpec(ip(3), PORT),))
        self.network.advance(10.0)
        for i in (1, 2):
            self.assertEqual(self.events(i, EventKind.BOOTSTRAP_RECEIVED), [])
            self.assertEqual(self.events(i, EventKind.ADVERTISE_RECEIVED), [])
        self.assertTrue(self.events(3, EventKind.BOOTSTRAP_RECEIVED), "C was asked, and did not answer")

    def test_private_node(self) -> None:
        """
        A private node dials only trusted points, never bootstraps or
        swaps, and its peers never advertise it.
        """
        self.add(1, maintenance_idle_time=None)
        hub = self.add(2, maintenance_idle_time=None)
        private = self.add(0, private_mode=True, maintenance_idle_time=5.0, trusted_points=(PointSpec(ip(2), PORT),))
        private.register_point(self.point(1))
        self.network.advance(30.0)
        self.assertEqual([str(c.point) for c in private.connections.list()], [str(self.point(2))])
        self.assertEqual(self.events(0, EventKind.BOOTSTRAP_SENT), [])
        self.assertEqual(self.events(0, EventKind.SWAP_REQUEST_SENT), [])
        self.assertNotIn(self.point(0), hub.list_known_points(ignore_private=True))
        info = private.points.info(self.point(1))
        assert info is not None
        self.assertEqual(info.state, PointState.DISCONNECTED)


class BootstrapTests(_NetworkTestCase):
    def test_bootstrap_to_every_peer_in_chunks(self) -> None:
        """
        With too few connections and no point left to dial, every connected
        peer is asked for points, L{BOOTSTRAP_CHUNK} at a time with the
        reactor free in between: all of them, each once.
        """
        self.patch(maintenance_module, "BOOTSTRAP_CHUNK", 1)
        peers = [self.add(i, maintenance_idle_time=None) for i in range(1, 4)]
        node = self.add(0, min_connections=6, expected_connections=8, max_connections=12, maintenance_idle_time=36000.0)
        for i in range(1, 4):
            self.connect(node, i)
        mark = self.network.seconds()
        self.run_until(lambda: len([t for t, _ in self.events(0, EventKind.BOOTSTRAP_SENT) if t >= mark]) >= 3)
        asked = [f["peer_id"] for t, f in self.events(0, EventKind.BOOTSTRAP_SENT) if t >= mark][:3]
        self.assertEqual(sorted(asked), sorted(str(p.peer_id) for p in peers))


class EclipseTests(_NetworkTestCase):
    def test_outbound_slots_spread_over_netgroups(self) -> None:
        honest = [self.add(i, maintenance_idle_time=None) for i in range(1, 9)]
        attackers = [
            self.network.add_pool(f"66.{g}.0.{h}", maintenance_idle_time=None) for g in (1, 2) for h in range(1, 9)
        ]
        node = self.add(0, min_connections=6, expected_connections=8, max_connections=12)
        for pool in attackers:
            node.register_point(Point(str(pool.config.listen.ip), PORT))
        for i in range(1, 9):
            node.register_point(self.point(i))
        self.run_until(lambda: node.active_connections() >= 8, timeout=60)
        outbound = [c for c in node.connections.list() if not c.incoming]
        hostile = [c for c in outbound if c.remote_ip.startswith("66.")]
        self.assertLessEqual(len(hostile), 2, "one outbound connection per attacker netgroup")
        self.assertEqual(len(honest), 8)

    def test_incoming_capped_per_netgroup(self) -> None:
        target = self.add(0, maintenance_idle_time=None)
        crowd = [self.network.add_pool(f"10.200.0.{h}", maintenance_idle_time=None) for h in range(1, 14)]
        for pool in crowd:
            pool.connect(self.point(0)).addErrback(lambda f: None)
        self.network.advance(5.0)
        self.assertEqual(target.active_connections(), 10)
        self.assertEqual(len(self.events(0, EventKind.INCOMING_CONNECTION_NETGROUP_FULL)), 3)

    def test_loopback_exemption_is_opt_in(self) -> None:
        target = self.network.add_pool("127.0.0.2", maintenance_idle_time=None, netgroup_cap_exempts_loopback=True)
        crowd = [self.network.add_pool(f"127.0.1.{h}", maintenance_idle_time=None) for h in range(1, 13)]
        for pool in crowd:
            pool.connect(Point("127.0.0.2", PORT)).addErrback(lambda f: None)
        self.network.advance(5.0)
        self.assertEqual(target.active_connections(), 12)
