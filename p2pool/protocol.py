# -*- test-case-name: tests.test_integration,tests.test_pool_network -*-
"""
Thin Twisted adapters: the protocol of one peer connection, which moves
bytes between the transport and the sans-I/O frame decoder and handshake,
and the factories that build it for dialing and accepting.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol as TypingProtocol

from OpenSSL import SSL
from twisted.internet.interfaces import IAddress, IHandshakeListener, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from p2pool.addressing import PeerId, Point, normalise_ip
from p2pool.connection import Connection
from p2pool.errors import PeerConnectionClosed, DecodingError, InvalidAuth, P2PError
from p2pool.handshake import Handshake, RemoteInfo
from p2pool.tls import IVerifiedProtocol, PeerConnectionCreator, PeerVerification
from p2pool.wire import HANDSHAKE_MAX_BODY, FrameDecoder

__all__ = ["PeerClientFactory", "PeerHandler", "PeerProtocol", "PeerServerFactory"]


class PeerHandler(TypingProtocol):
    """
    What a L{PeerProtocol} reports to and asks of: the pool's connect
    handler (L{p2pool.connect_handler.ConnectHandler}).
    """

    def admit_incoming(self, addr: IAddress) -> bool:
        """
        Whether to start a TLS handshake with an incoming connection.
        """

    def handshake_for(self, protocol: PeerProtocol) -> Handshake:
        """
        The handshake of a connection whose TCP link is up.
        """

    def established(self, protocol: PeerProtocol, remote: RemoteInfo) -> Connection:
        """
        Both sides acknowledged: the running connection.
        """

    def control_received(self, conn: Connection, kind: int, body: bytes) -> None:
        """
        A control frame arrived on a running connection.
        """

    def connection_lost(self, protocol: PeerProtocol, error: P2PError) -> None:
        """
        The connection closed, established or not.
        """


def _ignore_message(body: bytes) -> None:
    """
    Drop a message that arrives after the connection failed.
    """


def _ignore_control(kind: int, body: bytes) -> None:
    """
    Drop a frame that arrives after the connection failed.
    """


@implementer(IHandshakeListener, IVerifiedProtocol)
class PeerProtocol(Protocol):
    """
    One connection to a peer, over TLS: feeds the handshake until it
    succeeds, then hands frames to the established L{Connection}.

    @ivar error: why the connection is ending, once known.
    """

    _log = Logger()

    def __init__(
        self,
        handler: PeerHandler,
        incoming: bool,
        dialed_point: Optional[Point] = None,
        expected_peer_id: Optional[PeerId] = None,
    ) -> None:
        self.handler = handler
        self.incoming = incoming
        self.dialed_point = dialed_point
        self.verification = PeerVerification(expected_peer_id)
        self.decoder = FrameDecoder(HANDSHAKE_MAX_BODY, self._message_before_ack, self._control)
        self.handshake: Optional[Handshake] = None
        self.connection: Optional[Connection] = None
        self.error: Optional[P2PError] = None
        self.remote_ip = ""
        self.closed = False
        self.bytes_sent = 0
        self.bytes_received = 0

    def connectionMade(self) -> None:
        self.remote_ip = normalise_ip(self.transport.getPeer().host)  # type: ignore[union-attr]
        self.handshake = self.handler.handshake_for(self)

    def handshakeCompleted(self) -> None:
        verification = self.verification
        if verification.peer_id is None or verification.public_key is None:
            self.fail(verification.failure or InvalidAuth("the peer presented no certificate"))
            return
        assert self.handshake is not None
        try:
            self.handshake.tls_established(verification.peer_id, verification.public_key)
        except P2PError as e:
            self.fail(e)

    def dataReceived(self, data: bytes) -> None:
        self.bytes_received += len(data)
        try:
            self.decoder.feed(data)
        except P2PError as e:
            self.fail(e)

    def _message_before_ack(self, body: bytes) -> None:
        raise DecodingError("application message before the handshake ended")

    def _control(self, kind: int, body: bytes) -> None:
        if self.connection is not None:
            self.handler.control_received(self.connection, kind, body)
            return
        assert self.handshake is not None
        remote = self.handshake.control_received(kind, body)
        if remote is not None:
            self.connection = self.handler.established(self, remote)

    def start_messages(self, max_body: int, on_message: Callable[[bytes], Any]) -> None:
        """
        The handshake is over: accept frames up to C{max_body} and pass
        application messages to C{on_message}.
        """
        self.decoder.max_body = max_body
        self.decoder.on_message = on_message

    def write(self, data: bytes) -> None:
        """
        Send bytes, unless the connection is closing.
        """
        if not self.closed:
            self.bytes_sent += len(data)
            self.transport.write(data)  # type: ignore[union-attr]

    def fail(self, error: P2PError, abort: bool = False) -> None:
        """
        End the connection because of C{error}: close it after what was
        written (a nack, a disconnect) is flushed, or at once if C{abort}.
        """
        if self.error is None:
            self.error = error
        self.decoder.on_message = _ignore_message
        self.decoder.on_control = _ignore_control
        if self.closed:
            return
        self.closed = True
        if self.transport is None:
            return
        if abort:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        else:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(PeerConnectionClosed("connection lost"))) -> None:
        self.closed = True
        if self.handshake is not None:
            self.handshake.close()
        if self.error is None:
            failure = self.verification.failure
            if failure is not None:
                self.error = failure if isinstance(failure, P2PError) else InvalidAuth(str(failure))
            elif self.handshake is not None and self.handshake.peer_id is None and reason.check(SSL.Error):
                # Bytes that are not TLS, or a TLS handshake gone wrong; a
                # peer that merely closed (a busy node refusing us) is not
                # an authentication failure.
                self.error = InvalidAuth(f"TLS handshake failed: {reason.getErrorMessage()}")
            else:
                self.error = PeerConnectionClosed(reason.getErrorMessage())
        self.handler.connection_lost(self, self.error)


class _IncomingProtocolFactory(Factory):
    """
    Builds the protocol inside each accepted TLS connection.
    """

    noisy = False

    def __init__(self, handler: PeerHandler) -> None:
        self.handler = handler

    def buildProtocol(self, addr: IAddress) -> PeerProtocol:
        return PeerProtocol(self.handler, incoming=True)


class PeerServerFactory(Factory):
    """
    Accepts incoming connections, refusing before TLS those the pool
    refuses by address.
    """

    noisy = False

    def __init__(self, handler: PeerHandler, creator: PeerConnectionCreator, clock: Optional[IReactorTime] = None) -> None:
        self.handler = handler
        self._tls = TLSMemoryBIOFactory(creator, False, _IncomingProtocolFactory(handler), clock=clock)
        self._tls.noisy = False

    def buildProtocol(self, addr: IAddress) -> Optional[Protocol]:
        if not self.handler.admit_incoming(addr):
            return None
        return self._tls.buildProtocol(addr)


class PeerClientFactory(Factory):
    """
    Builds the one protocol of an outgoing connection to C{point}.
    """

    noisy = False

    def __init__(self, handler: PeerHandler, point: Point, expected_peer_id: Optional[PeerId]) -> None:
        self.protocol_instance = PeerProtocol(handler, incoming=False, dialed_point=point, expected_peer_id=expected_peer_id)

    def buildProtocol(self, addr: IAddress) -> PeerProtocol:
        return self.protocol_instance
