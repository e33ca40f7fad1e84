"""
The pool's Tezos views (C{pool.connections}, C{pool.peers}, C{pool.points})
and the pool functions around them, on the memory network: what they count
as connected, ban and trust provenance, C{connected_peers} and
C{set_expected_peer_id}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from p2pool.admin.json_shapes import point_info_json
from p2pool.core.addressing import PeerId, Point, PointSpec
from p2pool.core.states import PeerState, PointState, TrustSource
from p2pool.errors import DisconnectReason, PrivateMode
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork
from tests.helpers import RecordingApp

IP_A, IP_B, IP_C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def _point(ip: str) -> Point:
    return Point(ip, 9732)


def _peer(i: int) -> PeerId:
    return PeerId(i.to_bytes(16, "big"))


def accepted(pool: Pool, remote: Pool) -> bool:
    """
    Whether C{pool} has accepted C{remote}'s handshake and waits for its
    Ack (its point is Accepted).
    """
    info = pool.points.info(_point(remote.config.listen.ip))
    return info is not None and info.state is PointState.ACCEPTED


class _NetworkTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=11)
        self.addCleanup(self.network.stop)
        self.apps: dict[str, RecordingApp] = {}

    def add(self, ip: str, **config: Any) -> Pool:
        app = self.apps[ip] = RecordingApp()
        config.setdefault("maintenance_idle_time", None)
        return self.network.add_pool(ip, app=app, **config)

    def connected(self, a: Pool, b: Pool) -> Any:
        """
        Connect C{a} to C{b}; the connection on C{a}'s side.
        """
        d = a.connect(_point(b.config.listen.ip))
        self.assertTrue(
            self.network.run_until(lambda: d.called and b.connections.find_by_peer_id(a.peer_id), timeout=5)
        )
        return self.successResultOf(d)

    def restart(self, ip: str, **config: Any) -> Pool:
        """
        Stop the pool at C{ip} (saving its peers file) and start it again
        with C{config}.
        """
        d = self.network.remove_pool(ip)
        self.network.run_until(lambda: bool(d.called), timeout=10)
        self.successResultOf(d)
        return self.add(ip, **config)


class ConnectedTests(_NetworkTestCase):
    """
    Tezos counts a peer or point as connected once its connection runs.
    """

    def test_fold_connected_leaves_handshakes_out(self) -> None:
        a, b = self.add(IP_A), self.add(IP_B)

        def points(point: Point, info: Any, acc: list[Point]) -> list[Point]:
            return acc + [point]

        def peers(peer_id: PeerId, info: Any, acc: list[PeerId]) -> list[PeerId]:
            return acc + [peer_id]

        d = a.connect(_point(IP_B))
        self.assertIs(a.points.info(_point(IP_B)).state, PointState.REQUESTED)  # type: ignore[union-attr]
        self.assertEqual(a.points.fold_connected([], points), [], "requested")
        # B accepts A's Hello, then waits one latency for A's Ack.
        self.assertTrue(self.network.run_until(lambda: accepted(b, a), timeout=5, step=0.0001))
        self.assertIs(b.peers.info(a.peer_id).state, PeerState.ACCEPTED)  # type: ignore[union-attr]
        self.assertEqual(b.points.fold_connected([], points), [], "accepted")
        self.assertEqual(b.peers.fold_connected([], peers), [], "accepted")
        self.assertEqual(b.connected_peers(), {})
        self.network.advance(0.1)
        self.successResultOf(d)
        self.assertEqual(a.points.fold_connected([], points), [_point(IP_B)])
        self.assertEqual(a.peers.fold_connected([], peers), [b.peer_id])
        self.assertEqual(b.points.fold_connected([], points), [_point(IP_A)])
        self.assertEqual(b.peers.fold_connected([], peers), [a.peer_id])

    def test_connections_iter_and_fold(self) -> None:
        a, b, c = self.add(IP_A), self.add(IP_B), self.add(IP_C)
        to_b, to_c = self.connected(a, b), self.connected(a, c)
        seen: list[Any] = []
        a.connections.iter(seen.append)
        self.assertEqual({id(conn) for conn in seen}, {id(to_b), id(to_c)})
        folded = a.connections.fold({}, lambda peer_id, conn, acc: {**acc, peer_id: conn})
        self.assertEqual(folded, {b.peer_id: to_b, c.peer_id: to_c})
        self.assertEqual(b.connections.fold(0, lambda peer_id, conn, acc: acc + 1), 1)

    def test_connected_peers(self) -> None:
        """
        C{connected_peers} is Tezos's table: the infos of the running
        peers, by peer id; C{connected_peer_ids} their ids.
        """
        a, b = self.add(IP_A), self.add(IP_B)
        a.register_peer(_peer(1))
        self.assertEqual(a.connected_peers(), {})
        self.connected(a, b)
        self.assertEqual(a.connected_peers(), {b.peer_id: a.peers.info(b.peer_id)})
        self.assertEqual(a.connected_peer_ids(), [b.peer_id])


class KnownTests(_NetworkTestCase):
    def test_iter_and_fold_known(self) -> None:
        a = self.add(IP_A)
        for i in (1, 2):
            a.register_point(Point(f"10.1.0.{i}", 9732))
            a.register_peer(_peer(i))
        seen_points: list[tuple[Point, Any]] = []
        a.points.iter_known(lambda point, info: seen_points.append((point, info)))
        self.assertEqual(sorted(p for p, _ in seen_points), [Point("10.1.0.1", 9732), Point("10.1.0.2", 9732)])
        self.assertTrue(all(info is a.points.info(point) for point, info in seen_points))
        seen_peers: list[tuple[PeerId, Any]] = []
        a.peers.iter_known(lambda peer_id, info: seen_peers.append((peer_id, info)))
        self.assertEqual(sorted(p.raw for p, _ in seen_peers), [_peer(1).raw, _peer(2).raw])
        self.assertTrue(all(info is a.peers.info(peer_id) for peer_id, info in seen_peers))
        self.assertEqual(
            a.points.fold_known(set(), lambda point, info, acc: acc | {point.ip}), {"10.1.0.1", "10.1.0.2"}
        )
        self.assertEqual(a.peers.fold_known(0, lambda peer_id, info, acc: acc + peer_id.raw[-1]), 3)


class ExpectedPeerIdTests(_NetworkTestCase):
    def test_running_point_closed_and_waited_for(self) -> None:
        a, b = self.add(IP_A), self.add(IP_B)
        conn = self.connected(a, b)
        d = a.set_expected_peer_id(_point(IP_B), _peer(9))
        self.assertNoResult(d)
        self.network.advance(1)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(conn.reason.reason, DisconnectReason.UNEXPECTED_PEER_ID)
        self.assertEqual(a.points.get_greylisted_list(), [IP_B])
        self.assertEqual(a.points.info(_point(IP_B)).expected_peer_id, _peer(9))  # type: ignore[union-attr]

    def test_accepted_point_greylisted(self) -> None:
        """
        Tezos: a point whose handshake is accepted but not yet running is
        greylisted (not closed) when another peer id is expected there.
        """
        a, b = self.add(IP_A), self.add(IP_B)
        dial = a.connect(_point(IP_B))
        self.assertTrue(self.network.run_until(lambda: accepted(b, a), timeout=5, step=0.0001))
        d = b.set_expected_peer_id(_point(IP_A), _peer(9))
        self.assertIsNone(self.successResultOf(d), "nothing to wait for")
        self.assertEqual(b.points.get_greylisted_list(), [IP_A])
        self.assertEqual(b.points.info(_point(IP_A)).expected_peer_id, _peer(9))  # type: ignore[union-attr]
        self.assertEqual(b.peers.get_greylisted_list(), [], "only the address")
        # As in Tezos, the handshake goes on (only a running one is closed).
        self.network.advance(1)
        self.assertEqual(self.successResultOf(dial).peer_id, b.peer_id)

    def test_unknown_and_matching_points(self) -> None:
        a, b = self.add(IP_A), self.add(IP_B)
        self.assertIsNone(self.successResultOf(a.set_expected_peer_id(_point(IP_C), _peer(9))))
        self.assertIsNone(a.points.info(_point(IP_C)), "an unknown point is left alone")
        self.connected(a, b)
        self.assertIsNone(self.successResultOf(a.set_expected_peer_id(_point(IP_B), b.peer_id)))
        self.assertEqual((a.active_connections(), a.points.get_greylisted_list()), (1, []))


class GreylistPeerTests(_NetworkTestCase):
    def test_last_seen_address(self) -> None:
        """
        A peer that is not connected is greylisted with the address it was
        seen at last, whatever the kind of that last sighting.
        """
        a = self.add(IP_A)
        info = a.register_peer(_peer(1))
        directory = a.directory
        directory.peer_accepted(info, Point("10.2.0.1", 9732), now=1.0)
        directory.peer_disconnected(info, now=2.0)
        directory.peer_running(info, Point("10.2.0.2", 9732), now=3.0)
        directory.peer_disconnected(info, now=4.0)
        directory.peer_accepted(info, Point("10.2.0.3", 9732), now=5.0)
        directory.peer_disconnected(info, now=6.0)  # rejected: the latest sighting
        a.greylist_peer(_peer(1))
        self.assertEqual(a.points.get_greylisted_list(), ["10.2.0.3"])
        self.assertEqual(a.peers.get_greylisted_list(), [_peer(1)])

    def test_no_address_known(self) -> None:
        a = self.add(IP_A)
        info = a.register_peer(_peer(1))
        a.greylist_peer(_peer(2))
        a.directory.peer_accepted(info, None, now=1.0)
        a.directory.peer_disconnected(info, now=2.0)
        a.greylist_peer(_peer(1))
        self.assertEqual(a.points.get_greylisted_list(), [])
        self.assertEqual(a.peers.get_greylisted_list(), [_peer(2), _peer(1)])

    def test_given_address(self) -> None:
        a, b = self.add(IP_A), self.add(IP_B)
        self.connected(a, b)
        a.greylist_peer(b.peer_id, "10.9.9.9")
        self.assertEqual(a.points.get_greylisted_list(), ["10.9.9.9"])


class PointBanTests(_NetworkTestCase):
    """
    Banning a point bans the peers running there; opening it lifts exactly
    those bans.
    """

    def test_ban_without_peers(self) -> None:
        a, b = self.add(IP_A), self.add(IP_B)
        self.connected(a, b)
        b.points.ban(_point(IP_A), ban_peers=False)
        self.network.advance(1)
        self.assertEqual(b.active_connections(), 0)
        self.assertEqual(self.apps[IP_B].lost[0][1].reason, DisconnectReason.IP_BANNED)
        self.assertTrue(b.points.banned(_point(IP_A)))
        self.assertFalse(b.peers.banned(a.peer_id))
        self.assertEqual(b.acl.peer_blacklist.listing(), [])

    def test_unban_lifts_the_peer_bans_it_placed(self) -> None:
        a, b = self.add(IP_A), self.add(IP_B)
        self.connected(a, b)
        b.points.ban(_point(IP_A))
        self.network.advance(1)
        self.assertTrue(b.peers.banned(a.peer_id))
        self.assertEqual(b.active_connections(), 0)
        b.points.unban(_point(IP_A))
        self.assertFalse(b.peers.banned(a.peer_id))
        self.assertFalse(b.points.banned(_point(IP_A)))
        self.connected(a, b)

    def test_peer_banned_on_its_own_stays_banned(self) -> None:
        a, b, c = self.add(IP_A), self.add(IP_B), self.add(IP_C)
        b.peers.ban(_peer(5))
        self.connected(a, b)
        self.connected(c, b)
        b.points.ban(_point(IP_A))
        b.points.ban(_point(IP_C))
        b.peers.ban(c.peer_id)
        self.network.advance(1)
        b.points.unban(_point(IP_A))
        b.points.unban(_point(IP_C))
        self.assertFalse(b.peers.banned(a.peer_id))
        self.assertTrue(b.peers.banned(c.peer_id))
        self.assertTrue(b.peers.banned(_peer(5)))
        self.assertEqual(b.acl.peer_blacklist.listing(), [_peer(5), c.peer_id])

    def test_unban_addr_lifts_them_too(self) -> None:
        a, b = self.add(IP_A), self.add(IP_B)
        self.connected(a, b)
        b.points.ban(_point(IP_A))
        self.network.advance(1)
        self.assertTrue(b.points.unban_addr(IP_A))
        self.assertFalse(b.peers.banned(a.peer_id))

    def test_provenance_survives_a_restart(self) -> None:
        a, b = self.add(IP_A), self.add(IP_B)
        self.connected(a, b)
        b.points.ban(_point(IP_A))
        b.peers.ban(_peer(5))
        self.network.advance(1)
        b = self.restart(IP_B)
        document = json.loads(Path(b.persistence.path).read_text())
        self.assertEqual(
            document["bans"],
            {"ips": [IP_A], "peers": [str(_peer(5))], "peers_by_ip": [{"ip": IP_A, "peer_id": str(a.peer_id)}]},
        )
        self.assertTrue(b.peers.banned(a.peer_id))
        b.points.unban(_point(IP_A))
        self.assertFalse(b.peers.banned(a.peer_id))
        self.assertTrue(b.peers.banned(_peer(5)))


class TrustTests(_NetworkTestCase):
    """
    Trust from C{trusted_points} follows the configuration; trust given
    through the API is saved.
    """

    def saved_points(self, pool: Pool) -> dict[str, Any]:
        document = json.loads(Path(pool.persistence.path).read_text())
        return {record["point"]: record for record in document["points"]}

    def test_sources(self) -> None:
        a = self.add(IP_A, trusted_points=(PointSpec(IP_B, 9732), PointSpec(IP_C, 9732)))
        self.assertIs(a.points.info(_point(IP_B)).trust, TrustSource.CONFIG)  # type: ignore[union-attr]
        a.points.trust(_point(IP_C))
        a.points.trust(Point("10.1.0.1", 9732))
        a.peers.trust(_peer(1))
        self.assertEqual(a.points.info(_point(IP_C)).trust, TrustSource.CONFIG | TrustSource.API)  # type: ignore[union-attr]
        self.assertIs(a.points.info(Point("10.1.0.1", 9732)).trust, TrustSource.API)  # type: ignore[union-attr]
        self.assertIs(a.peers.info(_peer(1)).trust, TrustSource.API)  # type: ignore[union-attr]
        self.assertEqual(point_info_json(a.points.info(_point(IP_C)))["trusted_by"], ["config", "api"])  # type: ignore[arg-type]
        a.points.untrust(_point(IP_C))
        self.assertFalse(a.points.get_trusted(_point(IP_C)), "untrust removes every source")
        self.assertNotIn("trusted_by", point_info_json(a.points.info(_point(IP_C))))  # type: ignore[arg-type]
        a.register_point(_point(IP_B), trusted=False, source=TrustSource.API)
        self.assertTrue(a.points.get_trusted(_point(IP_B)), "only the source named is removed")

    def test_config_trust_follows_the_config(self) -> None:
        self.add(IP_B)
        configured = (PointSpec(IP_B, 9732), PointSpec(IP_C, 9732))
        a = self.add(IP_A, private_mode=True, trusted_points=configured)
        self.assertTrue(self.network.run_until(lambda: a.active_connections() == 1, timeout=10))
        a.points.trust(_point(IP_C))
        a.peers.trust(_peer(1))
        a = self.restart(IP_A, private_mode=True)
        saved = self.saved_points(a)
        self.assertFalse(saved[f"{IP_B}:9732"]["trusted"], "configured trust is not saved")
        self.assertTrue(saved[f"{IP_C}:9732"]["trusted"])
        self.assertFalse(a.points.get_trusted(_point(IP_B)))
        self.assertIs(a.points.info(_point(IP_C)).trust, TrustSource.API)  # type: ignore[union-attr]
        self.assertTrue(a.peers.get_trusted(_peer(1)))
        self.failureResultOf(a.connect(_point(IP_B)), PrivateMode)
        b = self.network.pools[IP_B]
        d = b.connect(_point(IP_A))
        self.network.advance(1)
        self.assertTrue(d.called)
        self.assertEqual((a.active_connections(), b.active_connections()), (0, 0), "refused in private mode")
        self.failureResultOf(d)
