"""
Tests for L{p2pool.transport.tls_link}: the TLS layer of a peer connection.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHandshakeListener, IPushProducer, ISystemHandle
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from p2pool.core.addressing import PeerId
from p2pool.errors import IdentityCheckFailure
from p2pool.transport.tls import IVerifiedProtocol, PeerVerification, TLSContext
from p2pool.transport.tls_link import DIRECT_SEND_LIMIT, MAX_GATHERED, TLSLink, represents_eof

ADDRESS = IPv4Address("TCP", "127.0.0.1", 9732)
#: TLS 1.3 sends everything after the handshake as records of this type.
APPLICATION_DATA = 23
#: The type of a TLS alert record (TLS 1.3 encrypts alerts after the
#: handshake: they then travel as application data).
ALERT = 21


def application_records(data: bytes) -> int:
    """
    How many TLS application-data records C{data} holds (whole records only).
    """
    count = 0
    while len(data) >= 5:
        kind, _, length = struct.unpack("!BHH", data[:5])
        count += kind == APPLICATION_DATA
        data = data[5 + length :]
    return count


def peer_id_of(context: TLSContext) -> PeerId:
    return PeerId.from_public_key(context.certificate.public_key().public_bytes_raw())


@implementer(IHandshakeListener, IVerifiedProtocol, IPushProducer)
class Side(Protocol):
    """
    One side of a connection: records what it reads, and on each read
    makes the writes of C{on_read}; a streaming producer of its transport,
    as a peer protocol is.
    """

    def __init__(self, expected: PeerId | None = None) -> None:
        self.verification = PeerVerification(expected)
        self.completed = False
        self.received = b""
        self.lost: Failure | None = None
        self.paused = 0
        self.resumed = 0
        self.stopped = False
        self.on_read: Callable[[Side, bytes], None] = lambda side, data: None

    def connectionMade(self) -> None:
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]

    def handshakeCompleted(self) -> None:
        self.completed = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.on_read(self, data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        self.resumed += 1

    def stopProducing(self) -> None:
        self.stopped = True

    def close(self) -> None:
        """
        Close as a peer protocol does: stop producing, then lose the
        connection.
        """
        self.transport.unregisterProducer()  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class _Pair(SynchronousTestCase):
    """
    Two TLS links over in-memory TCP-like transports.
    """

    def connect(
        self, server: Side | None = None, client: Side | None = None
    ) -> tuple[Side, Side, TLSLink, TLSLink, IOPump]:
        self.clock = Clock()
        self.server_context = TLSContext(Ed25519PrivateKey.generate())
        self.client_context = TLSContext(Ed25519PrivateKey.generate())
        server_side, client_side = server or Side(), client or Side()
        acceptor = self.server_context.server_wrapper(self.clock)
        dialer = self.client_context.client_wrapper(self.clock)
        client_tls, server_tls, pump = connectedServerAndClient(
            lambda: acceptor.wrap(server_side), lambda: dialer.wrap(client_side), clock=self.clock
        )
        pump.flush()
        return server_side, client_side, server_tls, client_tls, pump


class GatheredWritesTests(_Pair):
    """
    A L{TLSLink} sends what is written during a read at the end of that
    read, and other writes at the next reactor turn, in one TLS record and
    in order.
    """

    def setUp(self) -> None:
        self.server, self.client, self.server_tls, self.client_tls, self.pump = self.connect()
        self.assertTrue(self.server.completed and self.client.completed)

    def sent_by(self, tls: Protocol) -> bytes:
        """
        The bytes C{tls} gave its transport and that were not pumped yet.
        """
        return b"".join(tls.transport.stream)  # type: ignore[attr-defined]

    def deliver(self, pump: IOPump) -> None:
        """
        Move the bytes both ways, without running the clock.
        """
        while pump.pump(advanceClock=False):
            pass

    def test_writes_during_a_read_sent_at_its_end(self) -> None:
        """
        Three writes made while a read is handled leave in one record at the
        end of the read, with no timer.
        """

        def reply(side: Side, data: bytes) -> None:
            for part in (b"a", b"b", b"c"):
                side.transport.write(part)  # type: ignore[union-attr]

        self.server.on_read = reply
        self.client.transport.write(b"ping")  # type: ignore[union-attr]
        self.clock.advance(0)
        self.client_tls.transport.stream, sent = [], self.sent_by(self.client_tls)  # type: ignore[attr-defined]
        self.server_tls.dataReceived(sent)
        self.assertEqual(self.server.received, b"ping")
        self.assertEqual(application_records(self.sent_by(self.server_tls)), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.deliver(self.pump)
        self.assertEqual(self.client.received, b"abc")

    def test_writes_outside_a_read_wait_for_the_next_turn(self) -> None:
        """
        Writes made outside a read are sent together at the next reactor
        turn.
        """
        self.server.transport.write(b"x")  # type: ignore[union-attr]
        self.server.transport.write(b"y")  # type: ignore[union-attr]
        self.assertEqual(self.sent_by(self.server_tls), b"")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(application_records(self.sent_by(self.server_tls)), 1)
        self.deliver(self.pump)
        self.assertEqual(self.client.received, b"xy")

    def test_order_kept_across_a_read(self) -> None:
        """
        What waits for the next turn goes out before what a read writes, in
        the same record; the turn then sends nothing more.
        """
        self.server.on_read = lambda side, data: side.transport.write(b"2")  # type: ignore[union-attr]
        self.server.transport.write(b"1")  # type: ignore[union-attr]
        self.client.transport.write(b"ping")  # type: ignore[union-attr]
        self.client_tls.flush_writes()
        self.client_tls.transport.stream, sent = [], self.sent_by(self.client_tls)  # type: ignore[attr-defined]
        self.server_tls.dataReceived(sent)
        self.assertEqual(application_records(self.sent_by(self.server_tls)), 1)
        self.clock.advance(0)
        self.assertEqual(application_records(self.sent_by(self.server_tls)), 1)
        self.deliver(self.pump)
        self.assertEqual(self.client.received, b"12")

    def test_large_writes_sent_at_once(self) -> None:
        """
        Past L{MAX_GATHERED} bytes, what waits is sent without waiting, in
        records of at most 16 KiB, and arrives whole.
        """
        data = bytes(range(256)) * ((MAX_GATHERED * 3) // 256)
        self.server.transport.write(data)  # type: ignore[union-attr]
        self.assertGreater(application_records(self.sent_by(self.server_tls)), 3)
        self.pump.flush()
        self.assertEqual(self.client.received, data)

    def test_large_writes_during_a_read_sent_at_once(self) -> None:
        """
        Past L{MAX_GATHERED} bytes, what a read writes reaches the TCP
        transport before the read ends, so that the transport can pause the
        producer writing them (a peer protocol streaming from the read
        that ended its handshake wrote without end into OpenSSL's buffer).
        """
        data = b"x" * (MAX_GATHERED + 1)
        seen: list[int] = []

        def stream(side: Side, received: bytes) -> None:
            side.transport.write(data)  # type: ignore[union-attr]
            seen.append(application_records(self.sent_by(self.server_tls)))

        self.server.on_read = stream
        self.client.transport.write(b"go")  # type: ignore[union-attr]
        self.clock.advance(0)
        self.client_tls.transport.stream, sent = [], self.sent_by(self.client_tls)  # type: ignore[attr-defined]
        self.server_tls.dataReceived(sent)
        self.assertGreater(seen[0], 3)
        self.deliver(self.pump)
        self.assertEqual(self.client.received, data)

    def test_bytearray_and_memoryview_are_copied(self) -> None:
        """
        What is written is taken as it is when written: changing the
        buffer afterwards changes nothing that is sent.
        """
        buffer = bytearray(b"abc")
        self.server.transport.write(buffer)  # type: ignore[union-attr]
        self.server.transport.write(memoryview(buffer))  # type: ignore[union-attr]
        buffer[:] = b"xyz"
        self.clock.advance(0)
        self.pump.flush()
        self.assertEqual(self.client.received, b"abcabc")

    def test_timer_cancelled_when_the_connection_is_lost(self) -> None:
        """
        A connection lost with writes waiting for the next turn leaves no
        timer behind.
        """
        self.server.transport.write(b"x")  # type: ignore[union-attr]
        self.server_tls.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class CloseTests(_Pair):
    """
    A link closes as Twisted's TLS protocol does: a graceful close sends
    what waits and a close_notify, the peer answers and both see a clean
    end; an abort delivers nothing more.
    """

    def test_close_sends_what_waits_then_close_notify(self) -> None:
        """
        loseConnection sends what was written first; what is written after
        it is dropped; both sides end cleanly.
        """
        server, client, server_tls, client_tls, pump = self.connect()
        server.transport.write(b"bye")  # type: ignore[union-attr]
        server.close()
        server.transport.write(b"late")  # type: ignore[union-attr]
        pump.flush()
        self.assertEqual(client.received, b"bye")
        assert client.lost is not None and server.lost is not None
        client.lost.trap(ConnectionDone)
        server.lost.trap(ConnectionDone)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(server_tls.connected or client_tls.connected)

    def test_close_waits_for_the_producer(self) -> None:
        """
        With the producer still registered, loseConnection sends nothing
        yet; unregistering it closes.
        """
        server, client, server_tls, _, pump = self.connect()
        server.transport.loseConnection()  # type: ignore[union-attr]
        pump.flush()
        self.assertIsNone(client.lost)
        server.transport.unregisterProducer()  # type: ignore[union-attr]
        pump.flush()
        assert client.lost is not None
        client.lost.trap(ConnectionDone)

    def test_abort_delivers_nothing_more(self) -> None:
        """
        After abortConnection, bytes still arriving are not delivered.
        """
        server, client, server_tls, client_tls, pump = self.connect()
        client.transport.write(b"late")  # type: ignore[union-attr]
        self.clock.advance(0)
        server.transport.abortConnection()  # type: ignore[union-attr]
        pump.flush()
        self.assertEqual(server.received, b"")
        self.assertIsNotNone(server.lost)
        self.assertIsNotNone(client.lost)

    def test_close_before_the_handshake_aborts(self) -> None:
        """
        Closed before its handshake has ended, a link aborts (no shutdown
        can be sent then).
        """
        clock = Clock()
        client_side = Side()
        link = TLSContext(Ed25519PrivateKey.generate()).client_wrapper(clock).wrap(client_side)
        transport = _RecordingTransport()
        link.makeConnection(transport)
        self.assertTrue(transport.written, "the ClientHello was sent")
        link.loseConnection()
        self.assertTrue(transport.aborted)
        link.connectionLost(Failure(ConnectionLost()))
        assert client_side.lost is not None
        client_side.lost.trap(ConnectionLost)

    def test_end_without_close_notify_is_connection_lost(self) -> None:
        """
        A TCP end without the peer's close_notify reaches the peer protocol
        as C{ConnectionLost}, as with Twisted's TLS protocol.
        """
        server, client, server_tls, client_tls, pump = self.connect()
        client_tls.transport.loseConnection()  # type: ignore[attr-defined]
        pump.flush()
        assert server.lost is not None
        server.lost.trap(ConnectionLost)

    def test_cycles_broken_when_lost(self) -> None:
        """
        Once lost, the link holds neither the OpenSSL connection (whose app
        data it is) nor the peer protocol (whose transport it is).
        """
        server, client, server_tls, client_tls, pump = self.connect()
        server.close()
        pump.flush()
        self.assertIsNone(server_tls.getHandle())
        self.assertIsNone(server_tls.wrappedProtocol)
        self.assertIsNone(client_tls.wrappedProtocol)


class _RecordingTransport:
    """
    A TCP-like transport that records what is done to it.
    """

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False
        self.lost = False
        self.producer: object = None
        self.reading: list[str] = []

    def pauseProducing(self) -> None:
        self.reading.append("pause")

    def resumeProducing(self) -> None:
        self.reading.append("resume")

    def stopProducing(self) -> None:
        self.reading.append("stop")

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def loseConnection(self) -> None:
        self.lost = True

    def abortConnection(self) -> None:
        self.aborted = True

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.2", 9732)

    def getHost(self) -> IPv4Address:
        return ADDRESS


class ProducerTests(_Pair):
    """
    The peer protocol is the TCP transport's producer through the link, and
    pauses and resumes reading through it.
    """

    def test_peer_protocol_registered_with_tcp(self) -> None:
        clock = Clock()
        side = Side()
        link = TLSContext(Ed25519PrivateKey.generate()).server_wrapper(clock).wrap(side)
        transport = _RecordingTransport()
        link.makeConnection(transport)
        self.assertIs(transport.producer, side)
        self.assertEqual(link.getPeer(), IPv4Address("TCP", "127.0.0.2", 9732))
        self.assertEqual(link.getHost(), ADDRESS)
        link.unregisterProducer()
        self.assertIsNone(transport.producer)

    def test_registering_after_tls_ended_stops_the_producer(self) -> None:
        server, client, server_tls, client_tls, pump = self.connect()
        server.close()
        pump.flush()
        late = Side()
        server_tls.registerProducer(late, True)
        self.assertTrue(late.stopped)

    def test_reading_paused_and_resumed(self) -> None:
        """
        The peer protocol pauses, resumes and stops reading the TCP
        transport through the link.
        """
        link = TLSContext(Ed25519PrivateKey.generate()).server_wrapper(Clock()).wrap(Side())
        transport = _RecordingTransport()
        link.makeConnection(transport)
        link.pauseProducing()
        link.pauseProducing()
        link.resumeProducing()
        link.stopProducing()
        self.assertEqual(transport.reading, ["pause", "pause", "resume", "stop"])


class HandshakeTests(_Pair):
    """
    The handshake's outcome reaches the peer protocol.
    """

    def test_verified_peer_ids(self) -> None:
        server, client, *_ = self.connect()
        self.assertTrue(server.completed and client.completed)
        self.assertEqual(client.verification.peer_id, peer_id_of(self.server_context))
        self.assertEqual(server.verification.peer_id, peer_id_of(self.client_context))

    def test_wrong_pin_refused_with_its_reason(self) -> None:
        """
        A dial expecting another peer id is refused during TLS: its peer
        protocol is never told the handshake completed, and its connection
        ends with the TLS error while the verification says why.
        """
        wrong = PeerId.from_public_key(b"\x01" * 32)
        server, client, *_ = self.connect(client=Side(expected=wrong))
        self.assertFalse(client.completed)
        self.assertIsInstance(client.verification.failure, IdentityCheckFailure)
        assert client.lost is not None and server.lost is not None
        client.lost.trap(SSL.Error)
        self.assertFalse(server.completed)

    def test_interoperates_with_twisted_tls(self) -> None:
        """
        A link completes its handshake with Twisted's TLS protocol, both
        ways, and data and close go through.
        """
        self.interoperate(ours_is_client=True)
        self.interoperate(ours_is_client=False)

    def interoperate(self, ours_is_client: bool) -> None:
        clock = Clock()
        ours_context = TLSContext(Ed25519PrivateKey.generate())
        theirs_context = TLSContext(Ed25519PrivateKey.generate())
        ours_side, theirs_side = Side(), Side()
        wrapper = ours_context.client_wrapper(clock) if ours_is_client else ours_context.server_wrapper(clock)
        ours = wrapper.wrap(ours_side)
        theirs = TLSMemoryBIOFactory(
            theirs_context.creator, not ours_is_client, Factory.forProtocol(lambda: theirs_side), clock=clock
        )
        if ours_is_client:
            _, _, pump = connectedServerAndClient(lambda: theirs.buildProtocol(ADDRESS), lambda: ours, clock=clock)
        else:
            _, _, pump = connectedServerAndClient(lambda: ours, lambda: theirs.buildProtocol(ADDRESS), clock=clock)
        pump.flush()
        self.assertTrue(ours_side.completed and theirs_side.completed, ours_is_client)
        self.assertEqual(ours_side.verification.peer_id, peer_id_of(theirs_context))
        self.assertEqual(theirs_side.verification.peer_id, peer_id_of(ours_context))
        ours_side.transport.write(b"hello")  # type: ignore[union-attr]
        theirs_side.transport.write(b"back")  # type: ignore[union-attr]
        clock.advance(0)
        pump.flush()
        self.assertEqual((theirs_side.received, ours_side.received), (b"hello", b"back"))
        ours_side.close()
        pump.flush()
        clock.advance(1)
        pump.flush()
        assert ours_side.lost is not None and theirs_side.lost is not None
        ours_side.lost.trap(ConnectionDone)
        theirs_side.lost.trap(ConnectionDone)


class ShortSocket(socket.socket):
    """
    One end of a socket pair that takes at most C{room} bytes per send
    (None: all), or fails every send with C{error}.
    """

    room: int | None = None
    error: OSError | None = None

    def send(self, data: bytes, flags: int = 0) -> int:  # type: ignore[override]
        if self.error is not None:
            raise self.error
        if self.room is not None:
            data = bytes(data)[: self.room]
        return super().send(data, flags)


@implementer(ISystemHandle)
class SocketTransport(StringTransport):
    """
    An in-memory TCP transport whose handle is a real (local) socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(peerAddress=ADDRESS)
        self.sock = sock

    def getHandle(self) -> socket.socket:
        return self.sock


class DirectSendTests(SynchronousTestCase):
    """
    A L{TLSLink} writes to its TCP socket directly, at the end of the
    reactor turn, while the TCP transport has never been given bytes; from
    the first send the socket does not take whole, the transport sends
    everything.
    """

    def setUp(self) -> None:
        ours, theirs = socket.socketpair()
        self.addCleanup(theirs.close)
        self.sock = ShortSocket(fileno=ours.detach())
        self.addCleanup(self.sock.close)
        self.sock.setblocking(False)
        theirs.setblocking(False)
        self.theirs = theirs
        self.clock = Clock()
        self.client_context = TLSContext(Ed25519PrivateKey.generate())
        self.server_context = TLSContext(Ed25519PrivateKey.generate())
        self.client, self.server = Side(), Side()
        self.client_link = self.client_context.client_wrapper(self.clock).wrap(self.client)
        self.server_link = self.server_context.server_wrapper(self.clock).wrap(self.server)
        self.client_tcp = SocketTransport(self.sock)
        self.server_tcp = StringTransport(peerAddress=ADDRESS)

    def on_socket(self) -> bytes:
        """
        What the client's socket has sent and was not read yet.
        """
        data = b""
        while True:
            try:
                chunk = self.theirs.recv(65536)
            except BlockingIOError:
                return data
            data += chunk

    def pump(self) -> tuple[bytes, bytes]:
        """
        End the reactor turn, then move the client's bytes (from its
        socket, then from its transport) to the server and the server's
        back, once; what the client sent each way.
        """
        self.clock.advance(0)
        direct, buffered = self.on_socket(), self.client_tcp.value()
        self.client_tcp.clear()
        if direct or buffered:
            self.server_link.dataReceived(direct + buffered)
        answer = self.server_tcp.value()
        self.server_tcp.clear()
        if answer:
            self.client_link.dataReceived(answer)
        return direct, buffered

    def handshake(self) -> list[tuple[bytes, bytes]]:
        self.client_link.makeConnection(self.client_tcp)
        self.server_link.makeConnection(self.server_tcp)
        flights = [self.pump() for _ in range(3)]
        self.assertTrue(self.client.completed and self.server.completed)
        return flights

    def test_flights_sent_on_the_socket(self) -> None:
        """
        While the socket takes every send, each flight goes out on it and
        the transport is never written.
        """
        flights = self.handshake()
        self.assertTrue(flights[0][0].startswith(b"\x16\x03"), flights[0][0][:5])
        self.assertTrue(flights[1][0])
        self.assertEqual([buffered for _, buffered in flights], [b"", b"", b""])
        self.client.transport.write(b"hello")  # type: ignore[union-attr]
        direct, buffered = self.pump()
        self.assertEqual((application_records(direct), buffered), (1, b""))
        self.assertEqual(self.server.received, b"hello")

    def test_partial_send_hands_the_rest_to_the_transport(self) -> None:
        """
        When the socket takes part of a flight, the rest is given to the
        transport, and so is every later flight even once the socket has
        room: the bytes arrive whole and in order.
        """
        self.sock.room = 10
        self.client_link.makeConnection(self.client_tcp)
        self.server_link.makeConnection(self.server_tcp)
        direct, buffered = self.pump()
        self.assertEqual(len(direct), 10)
        self.assertTrue(buffered)
        self.sock.room = None
        later = [self.pump() for _ in range(2)]
        self.assertTrue(self.client.completed and self.server.completed)
        self.assertEqual([direct for direct, _ in later], [b"", b""])
        self.assertTrue(later[0][1])

    def test_full_socket_hands_everything_to_the_transport(self) -> None:
        """
        A socket that takes nothing (its buffer full, or an error the
        transport will find) leaves the flight to the transport, whole.
        """
        for error in (BlockingIOError(errno.EAGAIN, "full"), BrokenPipeError(errno.EPIPE, "gone")):
            self.setUp()
            self.sock.error = error
            self.client_link.makeConnection(self.client_tcp)
            self.clock.advance(0)
            self.assertEqual(self.on_socket(), b"")
            self.assertTrue(self.client_tcp.value().startswith(b"\x16\x03"), error)

    def test_abort_sends_nothing_on_the_socket(self) -> None:
        """
        An abort after the handshake puts nothing on the socket (what
        OpenSSL says goes to the transport, which drops it when aborting).
        """
        self.handshake()
        self.client.transport.abortConnection()  # type: ignore[union-attr]
        self.assertEqual(self.on_socket(), b"")

    def test_sent_at_the_end_of_the_turn_with_one_timer(self) -> None:
        """
        What the links of every pool on one clock have to send leaves at
        the end of the reactor turn, on one timer for all of them.
        """
        links = self.client_context.client_wrapper(self.clock)
        self.client_link.makeConnection(self.client_tcp)
        other_ours, other_theirs = socket.socketpair()
        self.addCleanup(other_ours.close)
        self.addCleanup(other_theirs.close)
        other_theirs.setblocking(False)
        links.wrap(Side()).makeConnection(SocketTransport(other_ours))
        links.wrap(Side()).makeConnection(SocketTransport(other_ours))
        self.assertEqual(self.on_socket(), b"")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertTrue(self.on_socket().startswith(b"\x16\x03"))
        self.assertEqual(other_theirs.recv(65536).count(b"\x16\x03\x01"), 2)

    def test_beyond_the_first_bytes_the_transport_sends(self) -> None:
        """
        Past the first L{DIRECT_SEND_LIMIT} bytes of the connection, the
        transport sends (at once, past L{MAX_GATHERED} waiting), and goes on
        sending, after what went to the socket.
        """
        self.handshake()
        self.client.transport.write(b"x" * DIRECT_SEND_LIMIT)  # type: ignore[union-attr]
        self.assertEqual(self.on_socket(), b"")
        self.assertGreater(len(self.client_tcp.value()), DIRECT_SEND_LIMIT)
        self.client.transport.write(b"y")  # type: ignore[union-attr]
        direct, buffered = self.pump()
        self.assertEqual(direct, b"")
        self.assertEqual(self.server.received, b"x" * DIRECT_SEND_LIMIT + b"y")

    def test_close_sends_before_closing_tcp(self) -> None:
        """
        Answering the peer's close_notify closes TCP, after sending ours on
        the socket at once.
        """
        self.handshake()
        self.server.close()
        self.client_link.dataReceived(self.server_tcp.value())
        self.assertTrue(self.client_tcp.disconnecting)
        self.assertTrue(self.on_socket())
        self.assertEqual(self.client_tcp.value(), b"")

    def test_one_timer_a_turn(self) -> None:
        """
        A write outside a read asks for one timed call, which sends it on
        the socket without asking for another.
        """
        self.handshake()
        asked: list[float] = []
        call_later = self.clock.callLater

        def counted(delay: float, f: Callable[..., object], *args: object) -> object:
            asked.append(delay)
            return call_later(delay, f, *args)

        self.clock.callLater = counted  # type: ignore[method-assign]
        self.client.transport.write(b"a")  # type: ignore[union-attr]
        self.client.transport.write(b"b")  # type: ignore[union-attr]
        self.clock.advance(0)
        self.assertEqual(asked, [0])
        self.assertEqual(application_records(self.on_socket()), 1)

    def test_transport_without_a_socket_is_written(self) -> None:
        """
        A transport whose handle is not a socket is written to, as before.
        """
        link = self.client_context.client_wrapper(self.clock).wrap(Side())
        tcp = StringTransport(peerAddress=ADDRESS)
        link.makeConnection(tcp)
        self.assertTrue(tcp.value().startswith(b"\x16\x03"))


class RepresentsEOFTests(SynchronousTestCase):
    """
    L{represents_eof} tells a cut connection from other TLS errors.
    """

    def test_cases(self) -> None:
        self.assertTrue(represents_eof(SSL.SysCallError(-1, "Unexpected EOF")))
        self.assertTrue(represents_eof(SSL.Error([])))
        self.assertTrue(represents_eof(SSL.Error([("SSL routines", "", "unexpected eof while reading")])))
        self.assertFalse(represents_eof(SSL.Error([("SSL routines", "", "certificate verify failed")])))
        self.assertFalse(represents_eof(SSL.SysCallError(104, "ECONNRESET")))
