# -*- test-case-name: tests.test_simulation_channel -*-
"""
The simulation channel, for simulations only: a stand-in for TLS between
pools of one L{p2pool.testing.MemoryNetwork}, chosen with
C{MemoryNetwork(channel=SIMULATION_CHANNEL)}. No node configuration can
select it; a node always runs TLS.

It keeps the shape and the timing of the TLS 1.3 handshake and drops its
cryptography. The dialer sends a hello; the acceptor answers with its
public key (where TLS sends its certificate); the dialer checks that key and
sends its own (its certificate and Finished), then its connection is
established; the acceptor checks the dialer's key and its connection is
established too: three flights, as in TLS, so a simulated network changes
state at the same simulated times through either channel. Each side fills
its protocol's L{PeerVerification} as TLS would (the peer id and public key,
the pinned peer id enforced), then everything above runs unchanged: the
Hello/Ack, proof of work, acceptance decisions, framing and wire codec.
Closing takes a round trip, as the exchange of TLS close_notify alerts
does: the closing side shuts its write side, the other side then closes.

What proves a key is the network itself: both ends live in one process, and
a key is accepted only when the network made a channel for it (it belongs to
one of the network's pools), where TLS would check a signature made with
the key. Nothing is encrypted or signed.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocol,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from p2pool.core.addressing import PeerId
from p2pool.core.identity import Identity
from p2pool.errors import InvalidAuth
from p2pool.transport.tls import IVerifiedProtocol

__all__ = ["SimulatedTLSAlert", "SimulationChannel", "SimulationNotary"]

_TAG = b"p2psim\x01"
#: The dialer's first flight (TLS: ClientHello).
CLIENT_HELLO = _TAG + b"H"
#: The acceptor's flight, followed by its public key (TLS: ServerHello to
#: Finished, with the certificate).
SERVER_FLIGHT = _TAG + b"S"
#: The dialer's second flight, followed by its public key (TLS: the client
#: certificate and Finished).
CLIENT_FLIGHT = _TAG + b"C"
#: A refusal of the handshake (TLS: a fatal alert).
ALERT = _TAG + b"A"
_TAG_SIZE = len(CLIENT_HELLO)
_KEY_SIZE = 32


class SimulatedTLSAlert(SSL.Error):
    """
    The simulated handshake failed (the peer refused this side's key, or
    sent what is not the simulation channel): what a real TLS handshake
    failure raises, so the pool sees the same error through either channel.
    """


class SimulationNotary:
    """
    The network's record of its pools' public keys: what vouches for a key
    presented over the simulation channel. It is the channel maker a
    L{p2pool.testing.MemoryNetwork} gives each pool.
    """

    def __init__(self) -> None:
        self._keys: set[bytes] = set()

    def __call__(self, identity: Identity) -> SimulationChannel:
        """
        The simulation channel of the pool with C{identity}, whose key is
        vouched for from now on.
        """
        self._keys.add(identity.public_key)
        return SimulationChannel(self, identity.public_key)

    def vouches_for(self, public_key: bytes) -> bool:
        """
        Whether C{public_key} belongs to a pool of this network.
        """
        return public_key in self._keys


class SimulationChannel:
    """
    One pool's simulation channel (a L{p2pool.transport.channel.PeerChannel}).
    """

    def __init__(self, notary: SimulationNotary, public_key: bytes) -> None:
        self.notary = notary
        self.public_key = public_key

    def client_wrapper(self, clock: IReactorTime) -> _Wrapper:
        """
        What runs the simulated handshake over the dialed connections of a
        pool, each with its own protocol inside.
        """
        return _Wrapper(self, client=True)

    def server_wrapper(self, clock: IReactorTime) -> _Wrapper:
        """
        What runs the simulated handshake over the accepted connections of
        a pool, each with its own protocol inside.
        """
        return _Wrapper(self, client=False)


class _Wrapper:
    def __init__(self, channel: SimulationChannel, client: bool) -> None:
        self._channel = channel
        self._client = client

    def wrap(self, inner: IProtocol) -> _ChannelProtocol:
        return _ChannelProtocol(self._channel, inner, self._client)


@implementer(ITransport, IPushProducer, IHalfCloseableProtocol)
class _ChannelProtocol(Protocol):
    """
    The simulated handshake over one connection: the transport of the
    protocol inside, to which it passes the bytes that follow the
    handshake.
    """

    def __init__(self, channel: SimulationChannel, wrapped: IProtocol, client: bool) -> None:
        self._channel = channel
        self.wrapped = wrapped
        self._client = client
        #: What the next flight needs to be read whole.
        self._expect = _TAG_SIZE + _KEY_SIZE if client else _TAG_SIZE
        self._buffer = b""
        self._established = False
        self._closing = False
        self._close_sent = False
        self._producer: Any = None
        self._reason: Failure | None = None

    # the connection below

    def connectionMade(self) -> None:
        self.wrapped.makeConnection(self)
        if self._client and self.transport is not None:
            self.transport.write(CLIENT_HELLO)

    def dataReceived(self, data: bytes) -> None:
        if self._established:
            self.wrapped.dataReceived(data)
            return
        if self._reason is not None:
            return
        self._buffer += data
        while not self._established and self.transport is not None:
            if self._buffer.startswith(ALERT):
                self._fail(SimulatedTLSAlert("the peer refused the handshake (simulated alert)"), alert=False)
                return
            if len(self._buffer) < self._expect:
                if not (_TAG.startswith(self._buffer) or self._buffer.startswith(_TAG)):
                    self._fail(SimulatedTLSAlert("the peer did not speak the simulation channel"))
                return
            flight, self._buffer = self._buffer[: self._expect], self._buffer[self._expect :]
            self._flight(flight)
        if self._established and self._buffer:
            rest, self._buffer = self._buffer, b""
            self.dataReceived(rest)

    def _flight(self, flight: bytes) -> None:
        tag = flight[:_TAG_SIZE]
        if self._client:
            if tag != SERVER_FLIGHT:
                self._fail(SimulatedTLSAlert("the peer did not speak the simulation channel"))
            elif self._verify(flight[_TAG_SIZE:]):
                self._send(CLIENT_FLIGHT + self._channel.public_key)
                self._establish()
        elif self._expect == _TAG_SIZE:
            if tag != CLIENT_HELLO:
                self._fail(SimulatedTLSAlert("the peer did not speak the simulation channel"))
            else:
                self._send(SERVER_FLIGHT + self._channel.public_key)
                self._expect = _TAG_SIZE + _KEY_SIZE
        elif tag != CLIENT_FLIGHT:
            self._fail(SimulatedTLSAlert("the peer did not speak the simulation channel"))
        elif self._verify(flight[_TAG_SIZE:]):
            self._establish()

    def _verify(self, public_key: bytes) -> bool:
        """
        Check the peer's key as TLS checks its certificate; refused, the
        handshake fails with an alert.
        """
        verification = IVerifiedProtocol(self.wrapped).verification
        if not self._channel.notary.vouches_for(public_key):
            verification.refuse(InvalidAuth("the peer's key belongs to no pool of the simulated network"))
        elif verification.accept(PeerId.from_public_key(public_key), public_key):
            return True
        self._fail(SimulatedTLSAlert("the peer's identity was refused"))
        return False

    def _establish(self) -> None:
        self._established = True
        if IHandshakeListener.providedBy(self.wrapped):
            self.wrapped.handshakeCompleted()

    def _fail(self, error: SSL.Error, alert: bool = True) -> None:
        """
        End a failed handshake as TLS does: an alert to the peer, then the
        connection closed, the inside protocol told C{error}.
        """
        if self._reason is None:
            self._reason = Failure(error)
        self._established = False
        self._buffer = b""
        if alert:
            self._send(ALERT)
        if self.transport is not None:
            self.transport.loseConnection()

    def _send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def readConnectionLost(self) -> None:
        """
        The peer closed the channel: close the connection (TLS answers a
        close_notify with its own).
        """
        self._established = False
        if self.transport is not None:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Our close reached the peer; its answer closes the connection.
        """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._established = False
        wrapped, self.wrapped = self.wrapped, _Closed()
        wrapped.connectionLost(self._reason or reason)

    # the transport of the protocol inside

    def write(self, data: bytes) -> None:
        if self._established and not self._closing and self.transport is not None:
            self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """
        Close after what was written (an unfinished handshake is aborted,
        as TLS does).
        """
        if self._closing:
            return
        self._closing = True
        if not self._established:
            self.abortConnection()
        elif self._producer is None:
            self._send_close()

    def _send_close(self) -> None:
        """
        Close our side after what was written: TLS's close_notify.
        """
        if not self._close_sent and self.transport is not None:
            self._close_sent = True
            self.transport.loseWriteConnection()  # type: ignore[attr-defined]

    def abortConnection(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def getPeer(self) -> IAddress:
        assert self.transport is not None
        return self.transport.getPeer()

    def getHost(self) -> IAddress:
        assert self.transport is not None
        return self.transport.getHost()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._producer = producer
        if self.transport is not None:
            self.transport.registerProducer(producer, streaming)  # type: ignore[attr-defined]

    def unregisterProducer(self) -> None:
        self._producer = None
        if self.transport is not None:
            self.transport.unregisterProducer()  # type: ignore[attr-defined]
        if self._closing and self._established:
            self._send_close()

    def pauseProducing(self) -> None:
        if self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]


class _Closed(Protocol):
    """
    What a channel passes bytes to once its connection is lost: nothing.
    """
