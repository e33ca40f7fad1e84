"""
The seed API of L{Pool} (Tezos C{P2p_pool}), driven on a memory reactor
and a fake clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point
from p2pool.core.states import PointState
from p2pool.errors import ConnectionEnded, PendingConnection, PointBanned, PrivateMode, Timeout, TooManyConnections
from p2pool.events import EventKind, PoolEvent
from p2pool.interfaces import BasePoolApplication
from p2pool.pool.service import Pool
from tests.helpers import identity


def _point(i: int) -> Point:
    return Point(f"10.0.{i // 256}.{i % 256}", 9732)


def _peer(i: int) -> PeerId:
    return PeerId(i.to_bytes(16, "big"))


class _ScoredApp(BasePoolApplication):
    def initial_metadata(self) -> Any:
        return {"useful": 0}

    def score(self, metadata: Any) -> float:
        return float(metadata["useful"])


class _PoolTestCase(SynchronousTestCase):
    def make_pool(self, start: bool = False, app: Any = None, **config: Any) -> Pool:
        settings: dict[str, Any] = dict(
            listen=Point("127.0.0.2", 0),
            expected_proof_of_work=0,
            maintenance_idle_time=None,
            data_dir=self.mktemp(),
        )
        settings.update(config)
        self.reactor = MemoryReactorClock()
        self.events: list[PoolEvent] = []
        pool = Pool(PoolConfig(**settings), app, reactor=self.reactor, identity=identity(0), log=self.events.append)
        if start:
            pool.startService()
            self.successResultOf(pool.when_started())
            self.addCleanup(pool.stopService)
        return pool

    def named(self, event: EventKind) -> list[PoolEvent]:
        return [e for e in self.events if e.event == event]


class RegistrationTests(_PoolTestCase):
    def test_register_point(self) -> None:
        pool = self.make_pool()
        info = pool.register_point(_point(1))
        self.assertFalse(info.trusted)
        self.assertEqual([e.fields["point"] for e in self.named(EventKind.NEW_POINT)], [str(_point(1))])
        self.assertIs(pool.register_point(_point(1), trusted=True), info)
        self.assertTrue(info.trusted)
        pool.register_point(_point(1))
        self.assertTrue(info.trusted, "trusted=None leaves the flag")
        pool.register_point(_point(1), trusted=False)
        self.assertFalse(info.trusted)
        self.assertEqual(len(self.named(EventKind.NEW_POINT)), 1)
        pool.unregister_point(_point(1))
        self.assertIsNone(pool.points.info(_point(1)))

    def test_register_new_point_skips_own_points(self) -> None:
        pool = self.make_pool()
        pool.register_point(_point(2))
        pool.add_to_id_points(_point(2))
        self.assertIsNone(pool.points.info(_point(2)))
        self.assertIsNone(pool.register_new_point(_point(2)))
        self.assertIsNotNone(pool.register_new_point(_point(3)))
        pool.register_list_of_new_points([_point(2), _point(4)], medium="advertise", source="x")
        self.assertEqual(
            self.named(EventKind.GET_POINTS)[0].fields, {"medium": "advertise", "source": "x", "points": 2}
        )
        self.assertIsNone(pool.points.info(_point(2)))
        self.assertIsNotNone(pool.points.info(_point(4)))

    def test_own_points_remembered_up_to_seven(self) -> None:
        pool = self.make_pool()
        for i in range(9):
            pool.add_to_id_points(_point(i))
        self.assertIsNotNone(pool.register_new_point(_point(0)))
        self.assertIsNone(pool.register_new_point(_point(8)))

    def test_register_peer_and_metadata(self) -> None:
        pool = self.make_pool(app=_ScoredApp())
        self.assertEqual(pool.peers.get_peer_metadata(_peer(1)), {"useful": 0})
        self.assertIsNone(pool.peers.info(_peer(1)), "reading metadata does not register")
        pool.peers.set_peer_metadata(_peer(1), {"useful": 3})
        self.assertEqual(pool.peers.get_score(_peer(1)), 3.0)
        self.assertEqual(len(self.named(EventKind.NEW_PEER)), 1)
        self.assertIs(pool.register_peer(_peer(1)), pool.peers.info(_peer(1)))
        self.assertEqual(pool.score({"useful": 7}), 7.0)

    def test_points_gc_keeps_trusted(self) -> None:
        """
        Tezos O9/O10: with max_known_points [0, 0] only trusted points stay.
        """
        pool = self.make_pool(max_known_points=(0, 0))
        for i in range(6):
            pool.points.trust(_point(i))
        self.assertEqual({i.point for i in pool.points}, {_point(i) for i in range(6)})
        for i in range(1, 4):
            pool.points.untrust(_point(i))
        pool.points.trust(_point(10))
        self.assertEqual({i.point for i in pool.points}, {_point(0), _point(4), _point(5), _point(10)})
        self.assertTrue(self.named(EventKind.GC_POINTS))

    def test_peers_gc_lowest_score_first(self) -> None:
        pool = self.make_pool(app=_ScoredApp(), max_known_peer_ids=(3, 2))
        for i in range(3):
            pool.peers.set_peer_metadata(_peer(i), {"useful": 10 - i})
        pool.register_peer(_peer(9))
        self.assertEqual({i.peer_id for i in pool.peers}, {_peer(0), _peer(9)})
        self.assertEqual(self.named(EventKind.GC_PEER_IDS)[0].fields["removed"], 2)

    def test_set_expected_peer_id(self) -> None:
        pool = self.make_pool()
        pool.set_expected_peer_id(_point(1), _peer(1))
        self.assertIsNone(pool.points.info(_point(1)), "unknown points are left alone")
        pool.register_point(_point(1), expected_peer_id=_peer(1))
        self.assertEqual(pool.points.info(_point(1)).expected_peer_id, _peer(1))  # type: ignore[union-attr]
        pool.register_point(_point(1), expected_peer_id=_peer(2))
        self.assertEqual(pool.points.info(_point(1)).expected_peer_id, _peer(2))  # type: ignore[union-attr]

    def test_list_known_points_validates_size(self) -> None:
        pool = self.make_pool()
        self.assertRaises(ValueError, pool.list_known_points, True, -1)
        self.assertEqual(pool.list_known_points(ignore_private=False), [])


class ACLTests(_PoolTestCase):
    def test_greylist_addr_expires_with_countdown(self) -> None:
        pool = self.make_pool(start=True, ip_greylist_cleanup_delay=160.0)
        pool.greylist_addr("10.0.0.1")
        self.assertTrue(pool.points.banned(_point(1)))
        self.assertEqual(pool.points.get_greylisted_list(), ["10.0.0.1"])
        self.reactor.advance(10.0 * 14)
        self.assertTrue(pool.points.banned(_point(1)))
        self.reactor.advance(10.0)
        self.assertFalse(pool.points.banned(_point(1)))
        self.assertEqual(pool.points.get_greylisted_list(), [])

    def test_clear_greylist_and_acl_clear(self) -> None:
        pool = self.make_pool()
        pool.greylist_addr("10.0.0.1")
        pool.clear_greylist()
        self.assertFalse(pool.points.banned(_point(1)))
        self.assertEqual(pool.points.get_greylisted_list(), [])
        pool.points.ban(_point(2))
        pool.peers.ban(_peer(2))
        pool.greylist_peer(_peer(3))
        self.assertTrue(pool.points.banned(_point(2)))
        self.assertTrue(pool.peers.banned(_peer(2)))
        self.assertTrue(pool.peers.banned(_peer(3)))
        self.assertEqual(pool.peers.get_greylisted_list(), [_peer(3)])
        pool.acl_clear()
        self.assertFalse(pool.points.banned(_point(2)))
        self.assertFalse(pool.peers.banned(_peer(2)))
        self.assertFalse(pool.peers.banned(_peer(3)))

    def test_gc_greylist_ages_one_step(self) -> None:
        pool = self.make_pool(ip_greylist_cleanup_delay=16.0)
        pool.greylist_addr("10.0.0.1")
        for _ in range(14):
            pool.gc_greylist()
        self.assertTrue(pool.points.banned(_point(1)))
        pool.gc_greylist()
        self.assertFalse(pool.points.banned(_point(1)))

    def test_trust_unbans(self) -> None:
        pool = self.make_pool()
        pool.points.ban(_point(1))
        pool.points.trust(_point(1))
        self.assertFalse(pool.points.banned(_point(1)))
        self.assertTrue(pool.points.get_trusted(_point(1)))
        pool.peers.ban(_peer(1))
        pool.peers.trust(_peer(1))
        self.assertFalse(pool.peers.banned(_peer(1)))
        self.assertTrue(pool.peers.get_trusted(_peer(1)))
        pool.peers.untrust(_peer(1))
        self.assertFalse(pool.peers.get_trusted(_peer(1)))
        self.assertFalse(pool.peers.get_trusted(_peer(2)))

    def test_banned_points_never_listed(self) -> None:
        pool = self.make_pool()
        for i in range(3):
            info = pool.register_point(_point(i))
            pool.directory.set_known_public(info, True)
        pool.points.ban(_point(1))
        self.assertEqual(set(pool.list_known_points(ignore_private=True)), {_point(0), _point(2)})

    def test_banned_address_refused_before_tls(self) -> None:
        pool = self.make_pool(start=True)
        factory = pool.server_factory()
        pool.points.ban(Point("10.9.9.9", 1))
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "10.9.9.9", 5555)))
        self.assertEqual(self.named(EventKind.INCOMING_CONNECTION_BANNED)[0].fields["addr"], "10.9.9.9")
        pool.greylist_addr("10.9.9.8")
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "10.9.9.8", 5555)))
        self.assertIsNotNone(factory.buildProtocol(IPv4Address("TCP", "10.9.9.7", 5555)))


class DialTests(_PoolTestCase):
    def test_connect_refusals(self) -> None:
        pool = self.make_pool(start=True)
        pool.points.ban(_point(1))
        self.failureResultOf(pool.connect(_point(1)), PointBanned)
        d = pool.connect(_point(2))
        self.assertEqual(pool.points.info(_point(2)).state, PointState.REQUESTED)  # type: ignore[union-attr]
        self.failureResultOf(pool.connect(_point(2)), PendingConnection)
        host, port, _, _, bind = self.reactor.tcpClients[-1][:5]
        self.assertEqual((host, port, bind), ("10.0.0.2", 9732, ("127.0.0.2", 0)))
        self.assertNoResult(d)
        # The dial is cancelled when the pool stops at clean-up.
        d.addErrback(lambda f: f.trap(ConnectionEnded))

    def test_private_mode_dials_only_trusted(self) -> None:
        pool = self.make_pool(start=True, private_mode=True)
        self.failureResultOf(pool.connect(_point(1)), PrivateMode)
        self.assertEqual(self.reactor.tcpClients, [])
        pool.points.trust(_point(2))
        self.reactor.advance(0.1)
        self.assertEqual([c[:2] for c in self.reactor.tcpClients], [("10.0.0.2", 9732)])

    def test_connect_timeout_backs_off(self) -> None:
        pool = self.make_pool(start=True, connection_timeout=3.0)
        d = pool.connect(_point(1))
        self.reactor.advance(3.0)
        self.failureResultOf(d, Timeout)
        info = pool.points.info(_point(1))
        assert info is not None
        self.assertEqual(info.state, PointState.DISCONNECTED)
        self.assertEqual(info.last_failed_connection, 3.0)
        self.assertTrue(info.cannot_reconnect_yet(3.5))
        self.assertEqual(self.named(EventKind.CONNECTION_FAILED)[0].fields["error"], "Timeout")

    def test_too_many_connections(self) -> None:
        pool = self.make_pool(start=True, min_connections=0, expected_connections=0, max_connections=0)
        self.failureResultOf(pool.connect(_point(1)), TooManyConnections)

    def test_tear_down_and_destroy_fire(self) -> None:
        pool = self.make_pool(start=True)
        self.successResultOf(pool.tear_down_connections())
        self.successResultOf(pool.destroy())
        self.assertEqual(self.named(EventKind.SAVE_METADATA)[0].fields["path"], pool.config.peers_path)
        self.assertEqual(pool.connected_peer_ids(), [])
        self.assertEqual(pool.active_connections(), 0)

    def test_trusted_points_redialed_after_start(self) -> None:
        pool = self.make_pool(start=False)
        pool.register_point(_point(7), trusted=True)
        pool.startService()
        self.addCleanup(pool.stopService)
        self.successResultOf(pool.when_started())
        self.reactor.advance(0.3)
        self.assertEqual([c[:2] for c in self.reactor.tcpClients], [("10.0.0.7", 9732)])
