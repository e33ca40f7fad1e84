"""
Real nodes over TCP and TLS on loopback addresses: connecting, messaging,
and refusing bad peers while staying up.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from p2pool.core.addressing import Point
from p2pool.core.identity import Identity, proof_of_work_bits
from p2pool.core.wire import Kind, frame
from p2pool.errors import (
    Connected,
    DisconnectReason,
    IdentityCheckFailure,
    InvalidMessageSize,
    Myself,
    NackMotive,
    P2PError,
    PeerConnectionClosed,
    RejectedByNack,
    RejectedNoCommonProtocol,
    UnknownPeer,
)
from p2pool.events import EventKind
from tests.helpers import (
    STALL_TIMEOUT,
    Node,
    async_test,
    closed_port,
    identity,
    only,
    start_node,
    wait_for,
)


class _Raw(Protocol):
    """
    A raw TCP client that records whether the server closed.
    """

    def __init__(self) -> None:
        self.closed: Deferred[None] = Deferred()
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(None)


async def _raw_connect(point: Point, bind: str) -> _Raw:
    endpoint = TCP4ClientEndpoint(reactor, point.ip, point.port, bindAddress=(bind, 0))
    raw = _Raw()
    await connectProtocol(endpoint, raw)
    return raw


class ThreeNodesTests(TestCase):
    """
    Three nodes configured with each other as trusted points.
    """

    timeout = 120

    @async_test
    async def test_trusted_points_connect_and_carry_messages(self) -> None:
        """
        Each node listens on a port of its own choosing; the later ones are
        configured with the earlier ones as trusted points, and the earlier
        ones learn the later ones as trusted points through
        L{Pool.register_point}: every node trusts the two others and all
        three connect.
        """
        ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        nodes: list[Node] = []
        for i, ip in enumerate(ips):
            node = await start_node(self, ip, i, trusted_points=tuple(n.spec for n in nodes), max_message_size=1 << 20)
            for earlier in nodes:
                earlier.pool.register_point(node.point, trusted=True, expected_peer_id=node.pool.peer_id)
            nodes.append(node)
        points = [str(n.point) for n in nodes]
        for node in nodes:
            trusted = sorted(str(info.point) for info in node.pool.points if info.trusted)
            self.assertEqual(trusted, sorted(p for p in points if p != str(node.point)))
        await wait_for(lambda: all(n.pool.active_connections() == 2 for n in nodes))
        a, b, c = nodes
        self.assertEqual(
            sorted(str(p) for p in a.pool.connected_peer_ids()),
            sorted(str(identity(i).peer_id) for i in (1, 2)),
        )
        # Each connection's point is the peer's listening point.
        for node in nodes:
            for conn in node.pool.connections.list():
                self.assertIn(str(conn.point), points)
        small, large = b"x", bytes(range(256)) * 4096
        await a.pool.send(b.pool.peer_id, small)
        self.assertEqual(a.pool.broadcast(large), 2)
        await wait_for(lambda: len(b.app.messages) == 2 and len(c.app.messages) == 1)
        self.assertEqual([m for _, m in b.app.messages], [small, large])
        self.assertEqual(c.app.messages[0][1], large)
        self.assertEqual(b.app.messages[0][0].peer_id, a.pool.peer_id)
        with self.assertRaises(InvalidMessageSize):
            a.pool.broadcast(large + b"!")
        failure = self.failureResultOf(a.pool.send(identity(9).peer_id, small))
        failure.trap(UnknownPeer)

    @async_test
    async def test_disconnect_is_seen_by_both_sides(self) -> None:
        a = await start_node(self, "127.0.0.2", 0)
        b = await start_node(self, "127.0.0.3", 1)
        conn = await a.pool.connect(b.point)
        await wait_for(lambda: len(b.app.made) == 1)
        await conn.disconnect()
        await wait_for(lambda: len(b.app.lost) == 1)
        self.assertEqual(a.app.lost[0][1].reason, DisconnectReason.REQUESTED)
        self.assertEqual(b.app.lost[0][1].reason, DisconnectReason.REMOTE_DISCONNECT)
        self.assertEqual(b.pool.active_connections(), 0)
        self.assertRaises(PeerConnectionClosed, conn.send, b"late")


class RefusalTests(TestCase):
    """
    Bad peers are refused with a typed error and the node keeps running.
    """

    timeout = 120

    async def _still_serves(self, node: Any) -> None:
        other = await start_node(self, "127.0.0.9", 8)
        conn = await other.pool.connect(node.point)
        self.assertEqual(conn.peer_id, node.pool.peer_id)

    @async_test
    async def test_wrong_pin_refused_during_tls(self) -> None:
        a = await start_node(self, "127.0.0.2", 0)
        b = await start_node(self, "127.0.0.3", 1)
        a.pool.register_point(b.point, expected_peer_id=identity(5).peer_id)
        with self.assertRaises(IdentityCheckFailure) as caught:
            await a.pool.connect(b.point)
        self.assertEqual(caught.exception.received_peer_id, b.pool.peer_id)
        self.assertEqual(b.pool.active_connections(), 0)
        await self._still_serves(b)

    @async_test
    async def test_insufficient_proof_of_work(self) -> None:
        weak = Identity.generate(0)
        while proof_of_work_bits(weak.public_key, weak.proof_of_work_stamp) >= 12:
            weak = Identity.generate(0)
        strong = await start_node(self, "127.0.0.3", 1, expected_proof_of_work=12, identity=Identity.generate(12))
        a = await start_node(self, "127.0.0.2", 0, identity=weak)
        with self.assertRaises(P2PError):
            await a.pool.connect(strong.point)
        await wait_for(lambda: bool(strong.named(EventKind.AUTHENTICATION_FAILED)))
        self.assertEqual(strong.named(EventKind.AUTHENTICATION_FAILED)[0].fields["error"], "NotEnoughProofOfWork")
        self.assertEqual(strong.pool.active_connections(), 0)

    @async_test
    async def test_different_network_nacked(self) -> None:
        a = await start_node(self, "127.0.0.2", 0, network="net-a")
        b = await start_node(self, "127.0.0.3", 1, network="net-b")
        with self.assertRaises((RejectedNoCommonProtocol, RejectedByNack)) as caught:
            await a.pool.connect(b.point)
        self.assertEqual(caught.exception.motive, NackMotive.UNKNOWN_CHAIN_NAME)
        await wait_for(lambda: bool(b.named(EventKind.REJECTING_REQUEST)))
        self.assertEqual(b.named(EventKind.REJECTING_REQUEST)[0].fields["motive"], NackMotive.UNKNOWN_CHAIN_NAME)

    @async_test
    async def test_no_common_p2p_version_nacked_with_motive(self) -> None:
        a = await start_node(self, "127.0.0.2", 0, p2p_versions=(7,))
        b = await start_node(self, "127.0.0.3", 1)
        with self.assertRaises((RejectedNoCommonProtocol, RejectedByNack)) as caught:
            await a.pool.connect(b.point)
        self.assertEqual(caught.exception.motive, NackMotive.DEPRECATED_P2P_VERSION)
        await self._still_serves(b)

    @async_test
    async def test_self_connection(self) -> None:
        a = await start_node(self, "127.0.0.2", 0)
        with self.assertRaises(Myself):
            await a.pool.connect(a.point)
        self.assertIsNone(a.pool.points.info(a.point))
        with self.assertRaises(Myself):
            await a.pool.connect(a.point)

    @async_test
    async def test_already_connected(self) -> None:
        a = await start_node(self, "127.0.0.2", 0)
        b = await start_node(self, "127.0.0.3", 1)
        await a.pool.connect(b.point)
        await wait_for(lambda: b.pool.active_connections() == 1)
        with self.assertRaises(Connected):
            await b.pool.connect(a.point)
        # The same identity from another address is nacked by the peer.
        twin = await start_node(self, "127.0.0.4", 0)
        with self.assertRaises(RejectedByNack) as caught:
            await twin.pool.connect(b.point)
        self.assertEqual(caught.exception.motive, NackMotive.ALREADY_CONNECTED)
        self.assertEqual(b.pool.active_connections(), 1)

    @async_test
    async def test_plain_tcp_garbage_closed(self) -> None:
        b = await start_node(self, "127.0.0.3", 1)
        raw = await _raw_connect(b.point, "127.0.0.5")
        raw.transport.write(b"\x00\x10Hello, world. This is garbage, greylist me !")  # type: ignore[union-attr]
        await raw.closed
        failed = only(b.named(EventKind.AUTHENTICATION_FAILED), "authentication failure")
        self.assertEqual(failed.fields["error"], "InvalidAuth")
        self.assertEqual(failed.fields["addr"], "127.0.0.5")
        await self._still_serves(b)

    async def _tls_connect(self, point: Point, bind: str, key: Any) -> _Raw:
        from twisted.internet.endpoints import wrapClientTLS
        from twisted.internet.ssl import CertificateOptions, TLSVersion

        from p2pool.transport.tls import make_certificate

        cert = make_certificate(key) if isinstance(key, Ed25519PrivateKey) else _ec_certificate(key)
        options = CertificateOptions(privateKey=key, certificate=cert, raiseMinimumTo=TLSVersion.TLSv1_3)
        endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, point.ip, point.port, bindAddress=(bind, 0)))
        raw = _Raw()
        await connectProtocol(endpoint, raw)
        return raw

    @async_test
    async def test_non_ed25519_certificate_refused(self) -> None:
        b = await start_node(self, "127.0.0.3", 1)
        raw = await self._tls_connect(b.point, "127.0.0.5", ec.generate_private_key(ec.SECP256R1()))
        await raw.closed
        failed = only(b.named(EventKind.AUTHENTICATION_FAILED), "authentication failure")
        self.assertEqual(failed.fields["error"], "InvalidAuth")
        self.assertIn("Ed25519", failed.fields["detail"])
        await self._still_serves(b)

    @async_test
    async def test_tls_without_hello_times_out(self) -> None:
        b = await start_node(self, "127.0.0.3", 1, authentication_timeout=STALL_TIMEOUT)
        raw = await self._tls_connect(b.point, "127.0.0.5", Ed25519PrivateKey.generate())
        await raw.closed
        failed = only(b.named(EventKind.AUTHENTICATION_FAILED), "authentication failure")
        self.assertEqual(failed.fields["error"], "Timeout")
        await self._still_serves(b)

    @async_test
    async def test_stalled_handshake_times_out(self) -> None:
        b = await start_node(self, "127.0.0.3", 1, authentication_timeout=STALL_TIMEOUT)
        raw = await _raw_connect(b.point, "127.0.0.6")
        await raw.closed
        failed = only(b.named(EventKind.AUTHENTICATION_FAILED), "authentication failure")
        self.assertEqual(failed.fields["error"], "Timeout")
        await self._still_serves(b)

    @async_test
    async def test_oversized_frame_closes_connection(self) -> None:
        a = await start_node(self, "127.0.0.2", 0, max_message_size=1000)
        b = await start_node(self, "127.0.0.3", 1, max_message_size=1000)
        conn = await a.pool.connect(b.point)
        await wait_for(lambda: len(b.app.made) == 1)
        conn.send_control(frame(Kind.MESSAGE, b"x" * 1001))
        await wait_for(lambda: len(b.app.lost) == 1)
        self.assertEqual(b.app.lost[0][1].reason, DisconnectReason.MESSAGE_TOO_LARGE)
        self.assertEqual(b.app.messages, [])
        await self._still_serves(b)

    @async_test
    async def test_malformed_control_frame_closes_connection(self) -> None:
        a = await start_node(self, "127.0.0.2", 0)
        b = await start_node(self, "127.0.0.3", 1)
        conn = await a.pool.connect(b.point)
        await wait_for(lambda: len(b.app.made) == 1)
        conn.send_control(frame(Kind.ADVERTISE, b"\x01\x05junk!"))
        await wait_for(lambda: len(b.app.lost) == 1)
        self.assertEqual(b.app.lost[0][1].reason, DisconnectReason.DECODING_ERROR)

    @async_test
    async def test_connection_refused(self) -> None:
        a = await start_node(self, "127.0.0.2", 0)
        with self.assertRaises(P2PError):
            await a.pool.connect(Point("127.0.0.7", closed_port(self, "127.0.0.7")))
        info = only(list(a.pool.points), "known point")
        failed_at = info.last_failed_connection
        assert failed_at is not None
        # The back-off runs from the failure for the initial delay (less
        # its jitter), whenever this check runs on a busy machine.
        policy = a.pool.config.reconnection
        self.assertTrue(info.cannot_reconnect_yet(failed_at))
        self.assertTrue(info.cannot_reconnect_yet(failed_at + policy.initial_delay * (1 - policy.jitter)))


def _ec_certificate(key: Any) -> Any:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-ed25519")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


class SendManyTests(TestCase):
    timeout = 120

    @async_test
    async def test_send_many_delivers_each_message(self) -> None:
        a = await start_node(self, "127.0.0.2", 0, max_message_size=100)
        b = await start_node(self, "127.0.0.3", 1, max_message_size=100)
        conn = await a.pool.connect(b.point)
        conn.send_many([b"one", b"", b"three" * 20])
        await wait_for(lambda: len(b.app.messages) == 3)
        self.assertEqual([m for _, m in b.app.messages], [b"one", b"", b"three" * 20])
        self.assertRaises(InvalidMessageSize, conn.send_many, [b"ok", b"x" * 101])
        # Messages arrive in order: once a later one is in, any part of the
        # refused batch that had been sent would be in too.
        conn.send(b"after")
        await wait_for(lambda: len(b.app.messages) == 4)
        self.assertEqual([m for _, m in b.app.messages][3:], [b"after"], "nothing of a refused batch is sent")


class StreamFromConnectionMadeTests(TestCase):
    timeout = 120

    @async_test
    async def test_producer_paused_and_everything_delivered(self) -> None:
        """
        An application that streams 64 KiB messages as its connection is
        made (within the read that ends the handshake) while its producer
        is not paused is paused long before it has sent 4 MiB, and the peer
        gets every message, in order. (The TLS layer once left what that
        read wrote in OpenSSL's buffer until the read ended: the producer
        was never paused, and the peer's handshake timed out behind it.)
        """
        message = b"s" * 64 * 1024
        total = 160  # 10 MiB
        a = await start_node(self, "127.0.0.2", 0)
        b = await start_node(self, "127.0.0.3", 1)

        @implementer(IPushProducer)
        class Streamer:
            def __init__(self, conn: Any) -> None:
                self.conn = conn
                self.sent = 0
                self.sent_at_first_pause: int | None = None
                self.paused = False

            def pauseProducing(self) -> None:
                self.paused = True
                if self.sent_at_first_pause is None:
                    self.sent_at_first_pause = self.sent

            def resumeProducing(self) -> None:
                self.paused = False
                while not self.paused and self.sent < total:
                    self.conn.send(b"%04d" % self.sent + message)
                    self.sent += 1

            def stopProducing(self) -> None:
                self.paused = True

        streamers: list[Streamer] = []

        def stream(conn: Any) -> None:
            streamer = Streamer(conn)
            streamers.append(streamer)
            conn.register_producer(streamer)
            streamer.resumeProducing()

        a.app.connection_made = stream  # type: ignore[method-assign]
        await a.pool.connect(b.point)
        await wait_for(lambda: len(b.app.messages) == total, timeout=60)
        self.assertEqual([m[:4] for _, m in b.app.messages], [b"%04d" % i for i in range(total)])
        first_pause = streamers[0].sent_at_first_pause
        assert first_pause is not None, "the producer was never paused"
        self.assertLess(first_pause * len(message), 4 * 1024 * 1024)


class ByteCountTests(TestCase):
    timeout = 120

    @async_test
    async def test_bytes_counted_per_connection_and_in_total(self) -> None:
        a = await start_node(self, "127.0.0.2", 0)
        b = await start_node(self, "127.0.0.3", 1)
        conn = await a.pool.connect(b.point)
        await wait_for(lambda: len(b.app.made) == 1)
        before = conn.bytes_sent
        conn.send(b"x" * 1000)
        await wait_for(lambda: len(b.app.messages) == 1)
        self.assertEqual(conn.bytes_sent - before, 1005)
        self.assertGreaterEqual(b.app.made[0].bytes_received, 1005)
        sent, received = a.pool.bytes_totals()
        self.assertEqual(sent, conn.bytes_sent)
        await conn.disconnect()
        self.assertEqual(a.pool.bytes_totals()[0], sent + 5, "the Disconnect frame, then kept after close")
