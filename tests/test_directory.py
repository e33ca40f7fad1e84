"""
Tests for L{p2pool.core.directory}: every transition keeps the point indexes
right by itself, connections and own points change only through the
directory, and restoring and trimming work as the peers file needs.
"""

from __future__ import annotations

import collections
import operator
import random

import attrs
from twisted.trial.unittest import SynchronousTestCase

from p2pool.config import PoolConfig, ReconnectionConfig
from p2pool.core.addressing import PeerId, Point
from p2pool.core.directory import MY_POINTS_SIZE, Directory
from p2pool.core.states import PeerInfo, PeerState, PointInfo, PointState


def _point(i: int, port: int = 9732) -> Point:
    return Point(f"10.0.{i // 256}.{i % 256}", port)


def _peer(i: int) -> PeerId:
    return PeerId(i.to_bytes(16, "big"))


def _never_banned(ip: str) -> bool:
    return False


@attrs.define(eq=False)
class _Conn:
    """
    The parts of a connection the directory reads.
    """

    peer_id: PeerId
    point: Point | None
    private: bool = False
    incoming: bool = False
    remote_ip: str = "192.0.2.1"


def _directory(**config: object) -> Directory:
    settings: dict[str, object] = {"reconnection": ReconnectionConfig(jitter=0.0)}
    settings.update(config)
    return Directory.from_config(PoolConfig(**settings), random.Random(0))  # type: ignore[arg-type]


class PointTransitionTests(SynchronousTestCase):
    """
    Each point transition updates the indexes that listing and GC use.
    """

    def test_unknown_points(self) -> None:
        """
        The points of a list neither known nor our own, in the list's order.
        """
        directory = _directory()
        directory.add_point(PointInfo(_point(1)), now=0.0)
        directory.add_own_point(_point(2))
        listed = [_point(3), _point(1), _point(2), _point(4), _point(3)]
        self.assertEqual(directory.unknown_points(listed), [_point(3), _point(4), _point(3)])

    def test_lifecycle_keeps_indexes(self) -> None:
        directory = _directory()
        info = PointInfo(_point(1))
        self.assertEqual(directory.add_point(info, now=0.0), [])
        directory.set_known_public(info, True)
        self.assertEqual(directory.list_known_points(True, 5, _never_banned), [_point(1)])
        directory.point_requested(info, 1.0)
        directory.point_accepted(info, _peer(1), 2.0)
        directory.point_running(info, _peer(1), 3.0)
        self.assertEqual(info.state, PointState.RUNNING)
        self.assertEqual(directory.index_errors(), [])
        directory.point_disconnected(info, 4.0, requested=True)
        self.assertEqual(info.state, PointState.DISCONNECTED)
        self.assertEqual(info.last_disconnection, (_peer(1), 4.0))
        self.assertEqual(info.reconnection_time, 4.0 + PoolConfig().reconnection.disconnection_delay)
        self.assertEqual(directory.index_errors(), [])
        directory.set_known_public(info, False)
        self.assertEqual(directory.list_known_points(True, 5, _never_banned), [])
        self.assertEqual(directory.index_errors(), [])

    def test_stale_record_does_not_touch_indexes(self) -> None:
        """
        A record of a point forgotten and known again is not the table's:
        changing it leaves the new record's indexes alone.
        """
        directory = _directory()
        old = PointInfo(_point(1))
        directory.add_point(old, now=0.0)
        directory.remove_point(_point(1))
        new = PointInfo(_point(1))
        directory.add_point(new, now=0.0)
        directory.point_requested(old, 1.0)
        directory.set_known_public(old, True)
        self.assertEqual(directory.index_errors(), [])
        self.assertEqual(directory.list_known_points(True, 5, _never_banned), [])

    def test_add_point_collects_first(self) -> None:
        directory = _directory(max_known_points=(3, 2))
        for i in range(3):
            directory.add_point(PointInfo(_point(i)), now=0.0)
        removed = directory.add_point(PointInfo(_point(9)), now=0.0)
        self.assertEqual(len(removed), 2)
        self.assertEqual(directory.point_count(), 2)
        self.assertTrue(directory.knows_point(_point(9)))
        self.assertEqual(directory.index_errors(), [])

    def test_trusted_and_pins(self) -> None:
        directory = _directory()
        info = PointInfo(_point(1))
        directory.add_point(info, now=0.0)
        directory.set_point_trusted(info, True)
        directory.set_expected_peer_id(info, _peer(4))
        self.assertEqual((info.trusted, info.expected_peer_id), (True, _peer(4)))


class OwnPointTests(SynchronousTestCase):
    def test_own_points_are_forgotten_and_bounded(self) -> None:
        directory = _directory()
        directory.add_point(PointInfo(_point(0)), now=0.0)
        for i in range(MY_POINTS_SIZE + 2):
            directory.add_own_point(_point(i))
        self.assertFalse(directory.knows_point(_point(0)))
        self.assertEqual(list(directory.own_points), [_point(i) for i in range(2, MY_POINTS_SIZE + 2)])
        self.assertTrue(directory.is_own_point(_point(5)))
        self.assertFalse(directory.is_own_point(_point(0)))
        self.assertRaises(TypeError, operator.setitem, directory.own_points, _point(50), None)

    def test_restore_skips_known_and_own(self) -> None:
        directory = _directory()
        directory.add_own_point(_point(1))
        directory.add_point(PointInfo(_point(2), trusted=True), now=0.0)
        self.assertFalse(directory.restore_point(PointInfo(_point(1))))
        self.assertFalse(directory.restore_point(PointInfo(_point(2))))
        self.assertTrue(directory.restore_point(PointInfo(_point(3), known_public=True)))
        self.assertTrue(directory.point(_point(2)).trusted)  # type: ignore[union-attr]
        self.assertEqual(directory.list_known_points(True, 5, _never_banned), [_point(3)])
        self.assertEqual(directory.index_errors(), [])

    def test_restore_points_skips_known_own_and_repeats(self) -> None:
        directory = _directory()
        directory.add_own_point(_point(1))
        live = PointInfo(_point(2), trusted=True)
        directory.add_point(live, now=0.0)
        first, fresh = PointInfo(_point(3), known_public=True), PointInfo(_point(4))
        loaded = [PointInfo(_point(1)), PointInfo(_point(2)), first, fresh, PointInfo(_point(3))]
        self.assertEqual(directory.restore_points(loaded), [first, fresh])
        self.assertIs(directory.point(_point(2)), live)
        self.assertIs(directory.point(_point(3)), first)
        self.assertFalse(directory.knows_point(_point(1)))
        self.assertEqual(directory.list_known_points(True, 5, _never_banned), [_point(3)])
        self.assertEqual(directory.restore_points([]), [])
        self.assertEqual(directory.index_errors(), [])


class PeerTests(SynchronousTestCase):
    def test_peer_transitions(self) -> None:
        directory = _directory()
        info = PeerInfo(_peer(1), created=0.0)
        self.assertEqual(directory.add_peer(info, lambda i: 0.0), [])
        directory.peer_accepted(info, _point(1), 1.0)
        directory.peer_running(info, _point(1), 2.0)
        self.assertEqual((info.state, info.current_point), (PeerState.RUNNING, _point(1)))
        directory.peer_disconnected(info, 3.0)
        self.assertEqual(info.last_disconnection, (_point(1), 3.0))
        directory.set_peer_trusted(info, True)
        directory.set_peer_metadata(info, {"score": 3})
        self.assertEqual((info.trusted, info.metadata), (True, {"score": 3}))

    def test_restore_peers_skips_known_and_repeats(self) -> None:
        directory = _directory()
        live = PeerInfo(_peer(1), created=5.0)
        directory.add_peer(live, lambda i: 0.0)
        first, fresh = PeerInfo(_peer(2), created=1.0), PeerInfo(_peer(3), created=2.0)
        loaded = [PeerInfo(_peer(1), created=0.0), first, fresh, PeerInfo(_peer(2), created=0.0)]
        self.assertEqual(directory.restore_peers(loaded), [first, fresh])
        self.assertEqual([directory.peer(_peer(i)) for i in (1, 2, 3)], [live, first, fresh])
        self.assertEqual(directory.peer_count(), 3)

    def test_restore_and_trim(self) -> None:
        directory = _directory(max_known_points=(3, 1), max_known_peer_ids=(3, 1))
        for i in range(5):
            self.assertTrue(directory.restore_peer(PeerInfo(_peer(i), created=float(i))))
            self.assertTrue(directory.restore_point(PointInfo(_point(i))))
        self.assertFalse(directory.restore_peer(PeerInfo(_peer(0), created=9.0)))
        self.assertEqual(len(directory.trim_peers(lambda i: 0.0)), 5)
        self.assertEqual(len(directory.trim_points(now=10.0)), 5)
        self.assertEqual((directory.peer_count(), directory.point_count()), (0, 0))
        self.assertEqual(directory.trim_points(now=10.0), [])
        self.assertEqual(directory.index_errors(), [])


class ConnectionTests(SynchronousTestCase):
    def test_added_and_removed(self) -> None:
        directory = _directory()
        first, second = _Conn(_peer(1), _point(1)), _Conn(_peer(1), _point(1))
        directory.connection_added(first)  # type: ignore[arg-type]
        directory.connection_added(second)  # type: ignore[arg-type]
        directory.connection_removed(first)  # type: ignore[arg-type]
        self.assertIs(directory.connections[_peer(1)], second, "a replaced connection does not remove its successor")
        directory.connection_removed(second)  # type: ignore[arg-type]
        self.assertEqual(dict(directory.connections), {})
        self.assertRaises(TypeError, operator.setitem, directory.connections, _peer(2), second)

    def test_incoming_by_netgroup(self) -> None:
        """
        The count of running incoming connections per network group
        follows additions, replacements and removals; outgoing ones and a
        stale removal do not count.
        """
        directory = _directory()
        a = _Conn(_peer(1), None, incoming=True, remote_ip="198.51.1.1")
        b = _Conn(_peer(2), None, incoming=True, remote_ip="198.51.2.2")
        out = _Conn(_peer(3), _point(3), remote_ip="198.51.3.3")
        other = _Conn(_peer(4), None, incoming=True, remote_ip="203.0.113.4")
        for conn in (a, b, out, other):
            directory.connection_added(conn)  # type: ignore[arg-type]
        directory.connection_added(a)  # type: ignore[arg-type]
        self.assertEqual(directory.incoming_in_netgroup("198.51.0.0/16"), 2)
        self.assertEqual(directory.incoming_in_netgroup("203.0.0.0/16"), 1)
        replacement = _Conn(_peer(1), None, incoming=False, remote_ip="198.51.1.1")
        directory.connection_added(replacement)  # type: ignore[arg-type]
        self.assertEqual(directory.incoming_in_netgroup("198.51.0.0/16"), 1, "replaced by an outgoing one")
        directory.connection_removed(a)  # type: ignore[arg-type]
        self.assertEqual(directory.incoming_in_netgroup("198.51.0.0/16"), 1, "a replaced connection counts no more")
        for conn in (b, out, other, replacement):
            directory.connection_removed(conn)  # type: ignore[arg-type]
        self.assertEqual(directory.incoming_in_netgroup("198.51.0.0/16"), 0)
        self.assertEqual(directory.incoming_in_netgroup("203.0.0.0/16"), 0)

    def test_crowded_netgroup_besides(self) -> None:
        """
        Whether one network group other than the one asked about holds two
        or more running incoming connections, through random additions,
        replacements and removals, as counted from the connections.
        """
        directory = _directory()
        rng = random.Random(4)
        groups = ["198.51", "203.0", "192.0"]
        live: list[_Conn] = []
        for step in range(300):
            if live and rng.random() < 0.4:
                directory.connection_removed(live.pop(rng.randrange(len(live))))  # type: ignore[arg-type]
            else:
                peer = rng.randrange(1, 12)
                conn = _Conn(
                    _peer(peer), None, incoming=rng.random() < 0.8, remote_ip=f"{rng.choice(groups)}.{step % 250}.1"
                )
                directory.connection_added(conn)  # type: ignore[arg-type]
                live = [c for c in live if c.peer_id != conn.peer_id] + [conn]
            counts = collections.Counter(f"{c.remote_ip.rsplit('.', 2)[0]}.0.0/16" for c in live if c.incoming)
            for group in [f"{g}.0.0/16" for g in groups] + ["10.9.9.9"]:
                expected = any(n >= 2 for g, n in counts.items() if g != group)
                self.assertEqual(directory.crowded_netgroup_besides(group), expected, (step, group, counts))

    def test_connection_at_running_point(self) -> None:
        directory = _directory()
        info = PointInfo(_point(1))
        directory.add_point(info, now=0.0)
        conn = _Conn(_peer(1), _point(1))
        directory.connection_added(conn)  # type: ignore[arg-type]
        self.assertIsNone(directory.connection_at(_point(1)), "the point is not running")
        directory.point_running(info, _peer(1), 1.0)
        self.assertIs(directory.connection_at(_point(1)), conn)
        self.assertIsNone(directory.connection_at(_point(2)))

    def test_trusted_by_peer_or_point(self) -> None:
        directory = _directory()
        directory.add_point(PointInfo(_point(1), trusted=True), now=0.0)
        directory.add_peer(PeerInfo(_peer(2), created=0.0, trusted=True), lambda i: 0.0)
        self.assertTrue(directory.is_trusted(_Conn(_peer(1), _point(1))))  # type: ignore[arg-type]
        self.assertTrue(directory.is_trusted(_Conn(_peer(2), None)))  # type: ignore[arg-type]
        self.assertFalse(directory.is_trusted(_Conn(_peer(3), _point(3))))  # type: ignore[arg-type]

    def test_random_choices(self) -> None:
        directory = _directory()
        listening = _Conn(_peer(1), _point(1))
        silent = _Conn(_peer(2), None)
        private = _Conn(_peer(3), _point(3), private=True)
        for conn in (listening, silent, private):
            directory.connection_added(conn)  # type: ignore[arg-type]
        self.assertEqual(
            {directory.random_addr() for _ in range(30)},  # type: ignore[misc]
            {(_point(1), _peer(1)), (_point(3), _peer(3))},
        )
        self.assertEqual(directory.random_addr(different_than=listening, no_private=True), None)  # type: ignore[arg-type]
        self.assertIn(directory.random_connection(no_private=True), (listening, silent))
        # Only the listening peer can be offered, so only to the silent one.
        proposals = {directory.propose_swap_request() for _ in range(30)}
        self.assertEqual(proposals, {None, (_point(1), _peer(1), silent)})
