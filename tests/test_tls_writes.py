"""
Tests for L{p2pool.transport.tls_writes}: writes gathered into TLS records.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLContextFactory,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides, implementer, providedBy

from p2pool.core.addressing import PeerId
from p2pool.transport.tls import IVerifiedProtocol, PeerVerification, TLSContext, peer_of_certificate
from p2pool.transport.tls_writes import MAX_GATHERED, GatheringTLSFactory, GatheringTLSProtocol

ADDRESS = IPv4Address("TCP", "127.0.0.1", 9732)
#: TLS 1.3 sends everything after the handshake as records of this type.
APPLICATION_DATA = 23


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


@implementer(IHandshakeListener, IVerifiedProtocol)
class Side(Protocol):
    """
    One side of a connection: records what it reads, and on each read
    makes the writes of C{on_read}.
    """

    def __init__(self) -> None:
        self.verification = PeerVerification()
        self.completed = False
        self.received = b""
        self.lost: Failure | None = None
        self.on_read: Callable[[Side, bytes], None] = lambda side, data: None

    def handshakeCompleted(self) -> None:
        self.completed = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.on_read(self, data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


class GatheredWritesTests(SynchronousTestCase):
    """
    A L{GatheringTLSProtocol} sends what is written during a read at the
    end of that read, and other writes at the next reactor turn, in one TLS
    record and in order.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.server, self.client = Side(), Side()
        server_context = TLSContext(Ed25519PrivateKey.generate())
        client_context = TLSContext(Ed25519PrivateKey.generate())
        server_wrapper = server_context.server_wrapper(self.clock)
        client_wrapper = client_context.client_wrapper(self.clock)
        self.client_tls, self.server_tls, self.pump = connectedServerAndClient(
            lambda: server_wrapper.wrap(self.server),
            lambda: client_wrapper.wrap(self.client),
            clock=self.clock,
        )
        self.pump.flush()
        self.assertTrue(self.server.completed and self.client.completed)
        self.assertIsInstance(self.server_tls, GatheringTLSProtocol)

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
        self.client_tls.flush_writes()  # type: ignore[attr-defined]
        self.client_tls.transport.stream, sent = [], self.sent_by(self.client_tls)  # type: ignore[attr-defined]
        self.server_tls.dataReceived(sent)
        self.assertEqual(application_records(self.sent_by(self.server_tls)), 1)
        self.clock.advance(0)
        self.assertEqual(application_records(self.sent_by(self.server_tls)), 1)
        self.deliver(self.pump)
        self.assertEqual(self.client.received, b"12")

    def test_large_writes_sent_at_once(self) -> None:
        """
        Past L{MAX_GATHERED} bytes, what waits is sent without waiting.
        """
        self.server.transport.write(b"z" * (MAX_GATHERED + 1))  # type: ignore[union-attr]
        self.assertGreater(application_records(self.sent_by(self.server_tls)), 0)
        self.pump.flush()
        self.assertEqual(self.client.received, b"z" * (MAX_GATHERED + 1))

    def test_close_sends_what_waits_first(self) -> None:
        """
        loseConnection sends what was written first; what is written after
        it is dropped.
        """
        self.server.transport.write(b"bye")  # type: ignore[union-attr]
        self.server.transport.loseConnection()  # type: ignore[union-attr]
        self.server.transport.write(b"late")  # type: ignore[union-attr]
        self.pump.flush()
        self.assertEqual(self.client.received, b"bye")
        self.assertIsNotNone(self.client.lost)
        self.assertIsNotNone(self.server.lost)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timer_cancelled_when_the_connection_is_lost(self) -> None:
        """
        A connection lost with writes waiting for the next turn leaves no
        timer behind.
        """
        self.server.transport.write(b"x")  # type: ignore[union-attr]
        self.server_tls.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.clock.getDelayedCalls(), [])


#: What a L{GatheringTLSProtocol} holds beyond Twisted's TLS protocol.
GATHERING_STATE = {"_gathered", "_gathered_size", "_reading", "_flush_call", "_gathering"}


@implementer(ITCPTransport)
class TCPLikeTransport(StringTransport):
    """
    A string transport that declares the interfaces of a TCP connection,
    as the reactor's do.
    """


@implementer(IOpenSSLContextFactory)
class ContextOnly:
    """
    An old-style context factory: a context, no connection creator.
    """

    def __init__(self, context: SSL.Context) -> None:
        self.context = context

    def getContext(self) -> SSL.Context:
        return self.context


@implementer(IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator)
class BareCreator:
    """
    A connection creator that leaves the app data of its connections unset.
    """

    def __init__(self, context: SSL.Context) -> None:
        self.context = context

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)


def peer_id_of(context: TLSContext) -> PeerId:
    """
    The peer id of C{context}'s certificate.
    """
    return peer_of_certificate(context.certificate)[0]


class MakeConnectionTests(SynchronousTestCase):
    """
    L{GatheringTLSProtocol.makeConnection} leaves a protocol in the state
    Twisted's own leaves it in, without the interim interface declarations.
    """

    def connect(self, factory: IProtocolFactory) -> tuple[TLSMemoryBIOProtocol, Side, StringTransport]:
        """
        Connect a TLS protocol of C{factory} to a new transport.
        """
        tls = factory.buildProtocol(ADDRESS)
        assert isinstance(tls, TLSMemoryBIOProtocol)
        transport = TCPLikeTransport()
        tls.makeConnection(transport)
        wrapped = tls.wrappedProtocol
        assert isinstance(wrapped, Side)
        return tls, wrapped, transport

    def test_same_state_as_twisted(self) -> None:
        """
        A client and a server connection: the same attributes as Twisted's
        TLS protocol, the transport's interfaces provided, the wrapped
        protocol connected to the TLS protocol, the OpenSSL connection made
        by the connection creator, in the right role, and the handshake
        started (a client sends its hello, a server waits).
        """
        context = TLSContext(Ed25519PrivateKey.generate())
        clock = Clock()
        for client in (True, False):
            ours, ours_wrapped, ours_transport = self.connect(
                GatheringTLSFactory(context.creator, client, Factory.forProtocol(Side), clock)
            )
            twisted_factory = TLSMemoryBIOFactory(context.creator, client, Factory.forProtocol(Side), clock=clock)
            twisted_factory.protocol = TLSMemoryBIOProtocol
            theirs, theirs_wrapped, theirs_transport = self.connect(twisted_factory)
            self.assertEqual(set(vars(ours)) - GATHERING_STATE, set(vars(theirs)))
            self.assertEqual(set(providedBy(ours)), set(providedBy(theirs)))
            self.assertTrue(ITCPTransport.providedBy(ours))
            self.assertLessEqual(set(providedBy(ours_transport)), set(providedBy(ours)))
            self.assertIs(ours_wrapped.transport, ours)
            self.assertIs(ours.transport, ours_transport)
            self.assertIs(ours.getHandle().get_app_data(), ours)
            self.assertEqual(ours.getHandle().get_state_string(), theirs.getHandle().get_state_string())
            self.assertEqual(bool(ours_transport.value()), client)
            self.assertEqual(len(ours_transport.value()) > 0, len(theirs_transport.value()) > 0)
            self.assertIn(ours, ours.factory.protocols)

    def test_app_data_is_the_protocol(self) -> None:
        """
        The OpenSSL connection's app data is the TLS protocol, as Twisted
        sets it, also when the creator does not set it.
        """
        key = Ed25519PrivateKey.generate()
        options = CertificateOptions(privateKey=key, certificate=TLSContext(key).certificate)  # type: ignore[arg-type]
        for client in (True, False):
            factory = GatheringTLSFactory(BareCreator(options.getContext()), client, Factory.forProtocol(Side), Clock())
            self.assertTrue(factory.creates_connections)
            tls, _, _ = self.connect(factory)
            self.assertIs(tls.getHandle().get_app_data(), tls)

    def test_connection_established_as_twisted(self) -> None:
        """
        Over TCP-like transports, a connection made this way completes its
        handshake with one made by Twisted's TLS protocol, both ways.
        """
        self.handshake_with_twisted(ours_is_client=True)
        self.handshake_with_twisted(ours_is_client=False)

    def handshake_with_twisted(self, ours_is_client: bool) -> None:
        """
        Connect a L{GatheringTLSProtocol} to Twisted's TLS protocol, then
        send through.
        """
        clock = Clock()
        ours_context = TLSContext(Ed25519PrivateKey.generate())
        theirs_context = TLSContext(Ed25519PrivateKey.generate())
        ours_side, theirs_side = Side(), Side()
        ours = GatheringTLSFactory(ours_context.creator, ours_is_client, Factory.forProtocol(lambda: ours_side), clock)
        theirs = TLSMemoryBIOFactory(
            theirs_context.creator, not ours_is_client, Factory.forProtocol(lambda: theirs_side), clock=clock
        )
        client, server = (ours, theirs) if ours_is_client else (theirs, ours)
        _, _, pump = connectedServerAndClient(
            lambda: server.buildProtocol(ADDRESS), lambda: client.buildProtocol(ADDRESS), clock=clock
        )
        pump.flush()
        self.assertTrue(ours_side.completed and theirs_side.completed)
        self.assertEqual(ours_side.verification.peer_id, peer_id_of(theirs_context))
        self.assertEqual(theirs_side.verification.peer_id, peer_id_of(ours_context))
        ours_side.transport.write(b"hello")  # type: ignore[union-attr]
        clock.advance(0)
        pump.flush()
        self.assertEqual(theirs_side.received, b"hello")

    def test_twisted_path_without_a_connection_creator(self) -> None:
        """
        With a context factory that is not a connection creator (an
        old-style L{IOpenSSLContextFactory}), a wrapped factory that
        negotiates an application protocol, or a wrapped protocol not to be
        connected yet, Twisted's own C{makeConnection} makes the connection.
        """
        key = Ed25519PrivateKey.generate()
        context = TLSContext(key)
        options = CertificateOptions(privateKey=key, certificate=context.certificate)  # type: ignore[arg-type]
        factory = GatheringTLSFactory(ContextOnly(options.getContext()), False, Factory.forProtocol(Side), Clock())
        self.assertFalse(factory.creates_connections)
        tls, wrapped, transport = self.connect(factory)
        self.assertIs(wrapped.transport, tls)
        self.assertTrue(ITCPTransport.providedBy(tls))
        negotiating = Factory.forProtocol(Side)
        directlyProvides(negotiating, IProtocolNegotiationFactory)
        self.assertFalse(GatheringTLSFactory(context.creator, True, negotiating, Clock()).creates_connections)
        self.assertTrue(
            GatheringTLSFactory(context.creator, True, Factory.forProtocol(Side), Clock()).creates_connections
        )
        pending = GatheringTLSProtocol(
            GatheringTLSFactory(context.creator, True, Factory.forProtocol(Side), Clock()), Side(), False
        )
        pending.makeConnection(TCPLikeTransport())
        self.assertIsNone(pending.wrappedProtocol.transport)
        self.assertTrue(pending.transport.value())  # type: ignore[union-attr]

    def test_refused_when_the_wrapped_factory_builds_none(self) -> None:
        """
        A connection the wrapped factory builds no protocol for is refused
        (no TLS protocol over nothing); one it builds a protocol for, and
        a protocol given to C{wrap}, get a TLS protocol around them.
        """
        context = TLSContext(Ed25519PrivateKey.generate())
        refusing = Factory.forProtocol(Side)
        refusing.buildProtocol = lambda addr: None  # type: ignore[method-assign]
        self.assertIsNone(GatheringTLSFactory(context.creator, False, refusing, Clock()).buildProtocol(ADDRESS))
        factory = GatheringTLSFactory(context.creator, False, Factory.forProtocol(Side), Clock())
        built = factory.buildProtocol(ADDRESS)
        assert built is not None
        self.assertIsInstance(built.wrappedProtocol, Side)
        side = Side()
        self.assertIs(factory.wrap(side).wrappedProtocol, side)
