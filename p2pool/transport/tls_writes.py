# -*- test-case-name: tests.test_tls_writes -*-
"""
The TLS layer of a peer connection: Twisted's TLS protocol with small writes
gathered into one TLS record, as Twisted's own buffering TLS transport does,
but sent at the end of the read that produced them rather than at the next
reactor turn when they are written while a read is handled.

A connection set-up writes only in answer to what it reads (the Hello once
the TLS handshake ends, the Hello and Ack, the Ack and Disconnect): those
writes go out when the read has been handled, with no timer per write; the
bytes and the TLS records are those the buffering transport would send.

Its connection is made without the interface declarations Twisted's TLS
protocol makes and replaces at once (L{GatheringTLSProtocol.makeConnection}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from OpenSSL import SSL
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

__all__ = ["GatheringTLSFactory", "GatheringTLSProtocol", "MAX_GATHERED"]

#: At this many bytes written and not yet sent, they are sent at once (the
#: bound of Twisted's buffering TLS transport).
MAX_GATHERED = 64_000

# The methods of Twisted's TLS protocol this layer calls (Twisted leaves
# twisted.protocols.tls unannotated).
_tls_init = cast(Callable[..., None], TLSMemoryBIOProtocol.__init__)
_tls_write = cast(Callable[[TLSMemoryBIOProtocol, bytes], None], TLSMemoryBIOProtocol.write)
_tls_data_received = cast(Callable[[TLSMemoryBIOProtocol, bytes], None], TLSMemoryBIOProtocol.dataReceived)
_tls_lose_connection = cast(Callable[[TLSMemoryBIOProtocol], None], TLSMemoryBIOProtocol.loseConnection)
_tls_connection_lost = cast(Callable[[TLSMemoryBIOProtocol, Failure], None], TLSMemoryBIOProtocol.connectionLost)
_tls_make_connection = cast(Callable[[TLSMemoryBIOProtocol, ITransport], None], TLSMemoryBIOProtocol.makeConnection)
_tls_check_handshake = cast(Callable[[TLSMemoryBIOProtocol], None], TLSMemoryBIOProtocol._checkHandshakeStatus)
_protocol_make_connection = cast(Callable[[Protocol, ITransport], None], Protocol.makeConnection)
_wrapper_make_connection = cast(Callable[[ProtocolWrapper, ITransport], None], ProtocolWrapper.makeConnection)
_register_protocol = cast(Callable[[TLSMemoryBIOFactory, TLSMemoryBIOProtocol], None], WrappingFactory.registerProtocol)


class GatheringTLSProtocol(TLSMemoryBIOProtocol):
    """
    A TLS connection whose writes are gathered and encrypted together: at
    the end of the read being handled when they are made during one, else
    at the next reactor turn; at once when L{MAX_GATHERED} bytes wait, and
    before the connection is closed. Writes keep their order.
    """

    factory: GatheringTLSFactory

    def __init__(self, factory: GatheringTLSFactory, wrappedProtocol: IProtocol, _connectWrapped: bool = True) -> None:
        _tls_init(self, factory, wrappedProtocol, _connectWrapped)
        self._gathered: list[bytes] = []
        self._gathered_size = 0
        self._reading = False
        self._flush_call: IDelayedCall | None = None
        self._gathering = True

    def makeConnection(self, transport: ITransport) -> None:
        """
        Connect as Twisted's TLS protocol does, without its first interface
        declarations.

        Twisted's C{makeConnection} declares that the protocol provides
        each interface of its transport in turn (nine for TCP), each
        declaration replacing the one before, and then, connecting the
        wrapped protocol, all of them at once
        (C{ProtocolWrapper.makeConnection}), which is what stays. Walking
        the transport's interfaces and making the nine declarations was
        about a sixth of the Python bytecode a connection set-up ran, on
        each side. Here the OpenSSL connection is made by the factory's
        connection creator, the protocol registered and connected, the
        wrapped protocol connected, and the handshake started, in the same
        order; only the interim declarations are not made. Without a
        connection creator, or when the wrapped protocol is not to be
        connected yet, Twisted's own C{makeConnection} runs.

        The two attributes set are those Twisted's TLS protocol sets and
        reads (C{_tlsConnection}, C{_appSendBuffer}), the same from Twisted
        24.7 to 26.10; C{tests.test_tls_writes.MakeConnectionTests} checks
        that the protocol is left as Twisted's own leaves it.
        """
        factory = self.factory
        if not factory.creates_connections or not self._connectWrapped:
            _tls_make_connection(self, transport)
            return
        self._tlsConnection = factory.tls_connection(self)
        self._appSendBuffer = []
        _protocol_make_connection(self, transport)
        _register_protocol(factory, self)
        _wrapper_make_connection(self, transport)
        _tls_check_handshake(self)

    def write(self, data: bytes) -> None:
        if self.disconnecting or not self._gathering:
            # After loseConnection (which sent what was gathered), Twisted's
            # write decides: it drops the bytes unless a producer writes.
            _tls_write(self, data)
            return
        self._gathered.append(data + b"")
        self._gathered_size += len(data)
        if self._gathered_size > MAX_GATHERED:
            self.flush_writes()
        elif not self._reading and self._flush_call is None:
            self._flush_call = self.factory.clock.callLater(0, self._scheduled_flush)

    def writeSequence(self, sequence: Any) -> None:
        self.write(b"".join(sequence))

    def _scheduled_flush(self) -> None:
        self._flush_call = None
        self.flush_writes()

    def flush_writes(self) -> None:
        """
        Encrypt and send what was written and not yet sent.
        """
        if self._gathered:
            data = b"".join(self._gathered)
            self._gathered = []
            self._gathered_size = 0
            _tls_write(self, data)

    def dataReceived(self, data: bytes) -> None:
        if self._reading:
            # Reentered (a protocol fed from within a read): the outer read
            # sends what is written.
            _tls_data_received(self, data)
            return
        self._reading = True
        try:
            _tls_data_received(self, data)
        finally:
            self._reading = False
            if self._gathered:
                self.flush_writes()

    def loseConnection(self) -> None:
        if self._gathered:
            self.flush_writes()
        _tls_lose_connection(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()
        if self._gathered:
            self.flush_writes()
        self._gathering = False
        _tls_connection_lost(self, reason)


class GatheringTLSFactory(TLSMemoryBIOFactory):
    """
    Runs TLS over each connection with a L{GatheringTLSProtocol}.

    @ivar clock: schedules the sending of writes made outside a read.
    @ivar creates_connections: whether L{tls_connection} makes the OpenSSL
        connections: C{contextFactory} is a connection creator
        (C{IOpenSSLClientConnectionCreator} for a client,
        C{IOpenSSLServerConnectionCreator} for a server) and the wrapped
        factory negotiates no application protocol (ALPN, which Twisted
        sets up on the connection).
    """

    protocol = GatheringTLSProtocol

    def __init__(
        self, contextFactory: Any, isClient: bool, wrappedFactory: IProtocolFactory, clock: IReactorTime
    ) -> None:
        super().__init__(contextFactory, isClient, wrappedFactory, clock=clock)
        self.clock = clock
        self._client = isClient
        self._creator = contextFactory
        self.creates_connections = bool(
            IOpenSSLClientConnectionCreator.providedBy(contextFactory)
            if isClient
            else IOpenSSLServerConnectionCreator.providedBy(contextFactory)
        ) and not IProtocolNegotiationFactory.providedBy(wrappedFactory)

    # Twisted's WrappingFactory types its protocol as always built; a
    # factory's buildProtocol may refuse with None (IProtocolFactory).
    def buildProtocol(self, addr: IAddress | None) -> GatheringTLSProtocol | None:  # type: ignore[override]
        """
        The TLS protocol of a new connection, over the protocol the wrapped
        factory builds for it; None, refusing the connection, when the
        wrapped factory builds none.
        """
        wrapped = self.wrappedFactory.buildProtocol(addr)
        return None if wrapped is None else GatheringTLSProtocol(self, wrapped)

    def wrap(self, inner: IProtocol) -> GatheringTLSProtocol:
        """
        The TLS protocol of a new connection, with C{inner} (already made)
        inside it: one factory serves every connection.
        """
        return GatheringTLSProtocol(self, inner)

    def tls_connection(self, protocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """
        The OpenSSL connection of C{protocol}, made by the connection
        creator, set to connect or to accept, with C{protocol} as its app
        data, as Twisted's factory makes it (only when
        L{creates_connections}).
        """
        if self._client:
            connection: SSL.Connection = self._creator.clientConnectionForTLS(protocol)
            connection.set_connect_state()
        else:
            connection = self._creator.serverConnectionForTLS(protocol)
            connection.set_accept_state()
        connection.set_app_data(protocol)
        return connection
