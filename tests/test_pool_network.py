"""
Pool behaviour across real nodes on loopback: nack lists, expected peer
ids, private mode, pending handshake limits and automatic greylisting
(Tezos tests C, G and O).
"""

from __future__ import annotations

import contextlib
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from p2pool.core.addressing import PeerId, Point
from p2pool.core.wire import HANDSHAKE_MAX_BODY, Kind, frame
from p2pool.errors import (
    DisconnectReason,
    NackMotive,
    P2PError,
    PointBanned,
    PrivateMode,
    RejectedByNack,
)
from p2pool.events import EventKind
from tests import protocol_client as pc
from tests.helpers import Node, async_test, identity, start_node, wait_for

#: The events that end a handshake, one per handshake on each side.
HANDSHAKE_ENDS = frozenset(
    {"connection_established", "rejecting_request", "request_rejected", "connection_failed", "authentication_failed"}
)


def handshakes_ended(node: Node, since: int) -> list[str]:
    """
    The handshake-ending events C{node} logged after its first C{since}
    events.
    """
    return [e.event for e in node.events[since:] if e.event in HANDSHAKE_ENDS]


class _Idle(Protocol):
    def __init__(self) -> None:
        self.closed: Deferred[None] = Deferred()

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(None)


class PoolNetworkTests(TestCase):
    timeout = 120

    @async_test
    async def test_overcrowded_target_nacks_with_known_points(self) -> None:
        """
        Tezos G4: a full target nacks Too_many_connections with its known
        public points, and the client learns them.
        """
        target = await start_node(self, "127.0.0.2", 0, min_connections=0, expected_connections=1, max_connections=1)
        friend = await start_node(self, "127.0.0.3", 1)
        await friend.pool.connect(target.point)
        await wait_for(lambda: target.pool.active_connections() == 1)
        for i in range(5):
            info = target.pool.register_point(Point(f"10.1.0.{i}", 9732))
            target.pool.directory.set_known_public(info, True)
        client = await start_node(self, "127.0.0.4", 2)
        with self.assertRaises(RejectedByNack) as caught:
            await client.pool.connect(target.point)
        self.assertEqual(caught.exception.motive, NackMotive.TOO_MANY_CONNECTIONS)
        listed = set(caught.exception.alternative_points)
        self.assertIn(friend.point, listed)
        self.assertTrue({Point(f"10.1.0.{i}", 9732) for i in range(5)} <= listed)
        for point in listed:
            self.assertIsNotNone(client.pool.points.info(point), f"{point} learnt from the nack")
        self.assertTrue(client.named(EventKind.GET_POINTS))
        self.assertEqual(client.named(EventKind.GET_POINTS)[0].fields["medium"], "nack")

    @async_test
    async def test_expected_peer_id_in_a_clique(self) -> None:
        """
        Tezos O13: expecting the wrong peer at a connected point closes
        that connection and greylists the address.
        """
        ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        nodes = [await start_node(self, ip, i) for i, ip in enumerate(ips)]
        for i, node in enumerate(nodes):
            for other in nodes[i + 1 :]:
                await node.pool.connect(other.point)
        await wait_for(lambda: all(n.pool.active_connections() == 2 for n in nodes))
        a, b, c = nodes
        a.pool.set_expected_peer_id(b.point, b.pool.peer_id)
        self.assertEqual(a.pool.active_connections(), 2, "the right id changes nothing")
        a.pool.set_expected_peer_id(c.point, a.pool.peer_id)
        await wait_for(lambda: a.pool.active_connections() == 1 and c.pool.active_connections() == 1)
        self.assertTrue(a.pool.points.banned(c.point))
        self.assertEqual(a.app.lost[0][1].reason, DisconnectReason.UNEXPECTED_PEER_ID)

    @async_test
    async def test_private_node_accepts_only_trusted(self) -> None:
        private = await start_node(self, "127.0.0.2", 0, private_mode=True)
        stranger = await start_node(self, "127.0.0.3", 1)
        friend = await start_node(self, "127.0.0.4", 2)
        with self.assertRaises(P2PError):
            await stranger.pool.connect(private.point)
        await wait_for(lambda: bool(private.named(EventKind.AUTHENTICATION_FAILED)))
        self.assertEqual(private.named(EventKind.AUTHENTICATION_FAILED)[0].fields["error"], "PrivateMode")
        self.failureResultOf(private.pool.connect(stranger.point), PrivateMode)
        private.pool.peers.trust(friend.pool.peer_id)
        conn = await friend.pool.connect(private.point)
        self.assertEqual(conn.peer_id, private.pool.peer_id)
        self.assertTrue(conn.private)
        # The friend never advertises the private node.
        self.assertNotIn(private.point, friend.pool.list_known_points(ignore_private=True))

    @async_test
    async def test_remote_mode_sets_known_public(self) -> None:
        """
        Whatever the book said, a handshake makes a private remote's point
        not known public and a public one's known public (a point already
        right is left as it is), the indexes following.
        """
        private = await start_node(self, "127.0.0.2", 0, private_mode=True)
        public = await start_node(self, "127.0.0.3", 1)
        friend = await start_node(self, "127.0.0.4", 2)
        private.pool.peers.trust(friend.pool.peer_id)
        wrong = friend.pool.register_point(private.point)
        friend.pool.directory.set_known_public(wrong, True)
        await friend.pool.connect(private.point)
        self.assertFalse(wrong.known_public)
        conn = await friend.pool.connect(public.point)
        info = friend.pool.points.info(public.point)
        assert info is not None
        self.assertTrue(info.known_public)
        await conn.disconnect()
        await friend.pool.connect(public.point)
        self.assertTrue(info.known_public)
        self.assertEqual(friend.pool.list_known_points(ignore_private=True), [public.point])
        self.assertEqual(friend.pool.directory.index_errors(), [])

    @async_test
    async def test_pending_handshakes_capped(self) -> None:
        """
        Tezos C2: pending incoming handshakes count against
        max_incoming_connections until they finish.
        """
        # The idle connections must stay pending for the whole test: an
        # authentication timeout longer than the test's own, so that a busy
        # machine cannot close the first two before the third arrives.
        node = await start_node(self, "127.0.0.2", 0, max_incoming_connections=2, authentication_timeout=600.0)
        idle = []
        for i in range(3):
            endpoint = TCP4ClientEndpoint(reactor, node.point.ip, node.point.port, bindAddress=(f"127.0.1.{i + 1}", 0))
            protocol = _Idle()
            await connectProtocol(endpoint, protocol)
            idle.append(protocol)
        await idle[2].closed
        self.assertEqual(node.pool.connect_handler.pending_incoming, 2)
        self.assertEqual(node.named(EventKind.INCOMING_CONNECTION_TOO_MANY)[0].fields["addr"], "127.0.1.3")
        for protocol in idle[:2]:
            protocol.transport.loseConnection()  # type: ignore[union-attr]
        await wait_for(lambda: node.pool.connect_handler.pending_incoming == 0)

    @async_test
    async def test_garbage_greylists_the_address(self) -> None:
        """
        Tezos O1: garbage greylists the sender's address, whatever its port;
        dialing it is then refused.
        """
        node = await start_node(self, "127.0.0.2", 0)
        other = await start_node(self, "127.0.0.5", 1)
        endpoint = TCP4ClientEndpoint(reactor, node.point.ip, node.point.port, bindAddress=("127.0.0.5", 0))
        garbage = _Idle()
        await connectProtocol(endpoint, garbage)
        garbage.transport.write(b"\x00\x0aHello, world. This is garbage, greylist me !")  # type: ignore[union-attr]
        await garbage.closed
        await wait_for(lambda: node.pool.points.get_greylisted_list() == ["127.0.0.5"])
        self.failureResultOf(node.pool.connect(other.point), PointBanned)
        with self.assertRaises(P2PError):
            await other.pool.connect(node.point)
        self.assertEqual(node.pool.active_connections(), 0)

    @async_test
    async def test_malformed_frame_greylists_peer(self) -> None:
        a = await start_node(self, "127.0.0.2", 0)
        b = await start_node(self, "127.0.0.3", 1)
        conn = await a.pool.connect(b.point)
        await wait_for(lambda: b.pool.active_connections() == 1)
        conn.send_control(frame(Kind.SWAP_ACK, b"\xff"))
        await wait_for(lambda: b.pool.active_connections() == 0)
        self.assertTrue(b.pool.peers.banned(a.pool.peer_id))
        self.assertEqual(b.pool.peers.get_greylisted_list(), [a.pool.peer_id])
        self.assertEqual(b.pool.points.get_greylisted_list(), ["127.0.0.2"])

    @async_test
    async def test_bad_hello_greylists_address_and_peer_id(self) -> None:
        """
        A malformed or oversized Hello, sent once TLS has authenticated the
        certificate, greylists the address and the certificate's peer id,
        as a bad frame on a running connection does.
        """
        node = await start_node(self, "127.0.0.2", 0)
        cases = {
            "127.0.0.5": pc.frame(pc.HELLO, b"\xff"),
            "127.0.0.6": pc.frame(pc.HELLO, bytes(HANDSHAKE_MAX_BODY + 1)),
        }

        def send(source: str, data: bytes) -> bytes:
            client_identity = pc.Identity(0)
            client = pc.Client(client_identity, node.point.ip, node.point.port, source=source, timeout=15)
            # The node may close while we send; read until it has closed.
            with contextlib.suppress(OSError, EOFError):
                client.send_raw(data)
                while True:
                    client.receive()
            client.close()
            return client_identity.peer_id

        for source, data in cases.items():
            peer_id = PeerId(await deferToThread(send, source, data))
            await wait_for(lambda p=peer_id: node.pool.acl.peer_greylist.mem(p), what=f"{source} peer id greylisted")
            self.assertTrue(node.pool.acl.ip_greylist.mem(source), source)
            self.assertIn(peer_id, node.pool.peers.get_greylisted_list())
        failures = [e.fields["error"] for e in node.named(EventKind.AUTHENTICATION_FAILED)]
        self.assertEqual(failures, ["DecodingError", "InvalidMessageSize"])
        self.assertEqual(node.pool.points.get_greylisted_list(), list(cases))

    @async_test
    async def test_ban_disconnects(self) -> None:
        a = await start_node(self, "127.0.0.2", 0)
        b = await start_node(self, "127.0.0.3", 1)
        await a.pool.connect(b.point)
        await wait_for(lambda: b.pool.active_connections() == 1)
        b.pool.points.ban(Point("127.0.0.2", 1))
        await wait_for(lambda: a.pool.active_connections() == 0)
        self.assertEqual(b.app.lost[0][1].reason, DisconnectReason.IP_BANNED)
        self.assertTrue(b.pool.peers.banned(identity(0).peer_id))
        b.pool.points.unban(Point("127.0.0.2", 1))
        b.pool.peers.unban(identity(0).peer_id)
        conn = await a.pool.connect(b.point)
        self.assertEqual(conn.peer_id, b.pool.peer_id)

    @async_test
    async def test_destroy_closes_everything(self) -> None:
        """
        Tezos C1/C3: connect, then destroy; the application saw one
        connection made and one lost.
        """
        a = await start_node(self, "127.0.0.2", 0)
        b = await start_node(self, "127.0.0.3", 1)
        await a.pool.connect(b.point)
        self.assertEqual((len(a.app.made), len(a.app.lost)), (1, 0))
        await a.pool.destroy()
        self.assertEqual((len(a.app.made), len(a.app.lost)), (1, 1))
        self.assertEqual(a.app.lost[0][1].reason, DisconnectReason.POOL_DESTROYED)
        self.assertEqual(a.pool.active_connections(), 0)

    @async_test
    async def test_simultaneous_dials_leave_one_connection(self) -> None:
        """
        Two nodes dialing each other at once end with exactly one
        connection: the one dialed by the smaller peer id when both
        handshakes meet.
        """
        a = await start_node(self, "127.0.0.2", 0)
        b = await start_node(self, "127.0.0.3", 1)
        for round_ in range(5):
            since = [len(a.events), len(b.events)]
            ours, theirs = a.pool.connect(b.point), b.pool.connect(a.point)
            outcomes = []
            for d in (ours, theirs):
                d.addBoth(outcomes.append)
            await wait_for(lambda outcomes=outcomes: len(outcomes) == 2)

            def ended(since: list[int] = since) -> list[list[str]]:
                return [handshakes_ended(n, start) for n, start in zip((a, b), since, strict=True)]

            # Each side runs two handshakes (its dial and the other's); once
            # all four have ended, nothing can open or close a connection.
            await wait_for(lambda: all(len(e) >= 2 for e in ended()))
            self.assertEqual([len(e) for e in ended()], [2, 2], f"round {round_}: {ended()}")
            self.assertEqual([e.count("connection_established") for e in ended()], [1, 1], f"round {round_}: {ended()}")
            self.assertEqual(
                (a.pool.active_connections(), b.pool.active_connections()), (1, 1), f"round {round_}: {ended()}"
            )
            conn_a = a.pool.connections.list()[0]
            conn_b = b.pool.connections.list()[0]
            self.assertNotEqual(conn_a.incoming, conn_b.incoming)
            await conn_a.disconnect()
            await wait_for(lambda: b.pool.active_connections() == 0)
            for info in (a.pool.points.info(b.point), b.pool.points.info(a.point)):
                assert info is not None
                info.reset_reconnection_delay()

    @async_test
    async def test_maintenance_over_real_sockets(self) -> None:
        """
        Five nodes knowing only a bootstrap point find each other through
        maintenance and discovery, over TCP and TLS on loopback.
        """
        settings = dict(min_connections=2, expected_connections=4, max_connections=6, maintenance_idle_time=2.0)
        seed = await start_node(self, "127.0.0.2", 0, **settings)
        others = [
            await start_node(self, f"127.0.0.{i + 3}", i + 1, bootstrap_points=(seed.spec,), **settings)
            for i in range(4)
        ]
        nodes = [seed, *others]
        # In range means at least min_threshold (2) connections each.
        await wait_for(lambda: all(n.pool.active_connections() >= 2 for n in nodes))
        for node in others:
            others_known = [i for i in node.pool.points if i.point != node.point]
            self.assertGreaterEqual(len(others_known), 2, "learnt points beyond the bootstrap one")
            self.assertTrue(node.named(EventKind.MAINTENANCE_STARTED))
        self.assertGreater(sum(n.pool.active_connections() for n in nodes) // 2, 4, "more links than a star")
