# -*- test-case-name: tests.test_tls_link -*-
"""
The TLS layer of a peer connection: a pyOpenSSL connection over memory BIOs
between the TCP transport and the peer protocol, whose transport it is.

It does for a peer connection what Twisted's TLS protocol
(C{twisted.protocols.tls.TLSMemoryBIOProtocol}) does, with what a peer
connection needs and nothing else: one TLS 1.3 connection whose OpenSSL
connection the node's L{p2pool.transport.tls.PeerConnectionCreator} makes,
the peer protocol as its one streaming producer, and small writes gathered
into one TLS record, as Twisted's buffering TLS transport gathers them:

  - writes made while a read is handled are encrypted and sent when the
    read has been handled, with what the read made OpenSSL send (the end
    of the handshake and the first message leave in one segment);
  - writes made outside a read are sent at the next reactor turn;
  - at L{MAX_GATHERED} bytes waiting (within a read too), and before the
    connection closes, at once.

The first L{DIRECT_SEND_LIMIT} bytes of a connection (its handshakes,
its first messages) go straight to the TCP socket (C{getHandle}), from one
timed call at the end of the reactor turn that made them, shared by the
links of every pool on the same clock (L{TurnEnd}):
a flight leaves without the TCP transport's round of asking the reactor to
watch for room, waking, sending and unwatching. Beyond them, or from the
first send the socket does not take whole (full, or failed), the transport
sends, after what went before, so bytes never leave out of order. A
transport without a socket (in-memory tests) is always written.

Errors and ends are Twisted's: a TLS error or a TLS alert from the peer
closes the connection with that error as the reason its protocol is
given; an end of file without the peer's C{close_notify} is reported as
C{ConnectionLost}; the peer's C{close_notify} is answered and the
connection closed; C{loseConnection} sends ours, before the handshake ends
it aborts.
"""

from __future__ import annotations

import socket
import weakref
from typing import Any, cast

from OpenSSL import SSL
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IProducer,
    IPushProducer,
    IReactorTime,
    ISystemHandle,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["DIRECT_SEND_LIMIT", "MAX_GATHERED", "TLSLink", "TLSLinks", "TurnEnd", "represents_eof"]

#: At this many bytes written and not yet sent, they are sent at once (the
#: bound of Twisted's buffering TLS transport).
MAX_GATHERED = 64_000
#: How many bytes a connection sends straight to its socket from its start
#: (its TLS and p2pool handshakes, its first messages, a close soon after):
#: beyond them the TCP transport sends, which puts what a turn writes into
#: fewer, larger sends and tells the producer when it is full.
DIRECT_SEND_LIMIT = 65_536
#: The most plaintext one TLS record carries: what one C{recv} can return.
_RECORD_SIZE = 16_384
#: Bytes taken from OpenSSL's outgoing buffer at a time.
_OUTGOING_CHUNK = 65_536


def represents_eof(error: SSL.Error) -> bool:
    """
    Whether OpenSSL's C{error} is the connection ending without the peer's
    C{close_notify} (as Twisted's TLS protocol tells it).
    """
    if isinstance(error, SSL.SysCallError):
        return str(error.args[-1]).casefold().startswith("unexpected eof")
    queue = error.args[0] if error.args else None
    if not queue:
        # OpenSSL 4 reports an end of file with an empty error queue.
        return True
    return str(queue[-1][-1]).casefold().startswith("unexpected eof")


@implementer(ITransport, IConsumer, IPushProducer, ISystemHandle)
class TLSLink(Protocol):
    """
    One connection's TLS: the protocol of its TCP transport, and the
    transport of its peer protocol (C{wrappedProtocol}), which is told
    C{handshakeCompleted} when the TLS handshake has ended.

    @ivar disconnecting: the connection is closing (C{loseConnection} or
        C{abortConnection} was called).
    """

    disconnecting = False

    def __init__(self, links: TLSLinks, inner: Any) -> None:
        """
        @param inner: the peer protocol (a C{PeerProtocol}, or any protocol
            with a C{verification} and a C{handshakeCompleted}).
        """
        self.wrappedProtocol = inner
        self._links = links
        self._tls: SSL.Connection | None = None
        #: The TLS handshake has ended.
        self._handshake_done = False
        #: TLS is over (an error, the peer's close_notify, or the
        #: connection lost): nothing more is read or written.
        self._tls_over = False
        self._aborted = False
        #: OpenSSL was called since its output was last taken: it may have
        #: something to send (taking nothing costs an exception).
        self._unsent = False
        #: Our close_notify has been sent.
        self._close_sent = False
        #: Why the connection ended, when TLS knows better than TCP.
        self._reason: Failure | None = None
        self._producer: IPushProducer | None = None
        self._gathered: list[bytes] = []
        self._gathered_size = 0
        self._reading = False
        #: The TCP transport (also a consumer and a push producer).
        self._tcp: Any = None
        #: The TCP transport's socket, written to directly for the first
        #: L{DIRECT_SEND_LIMIT} bytes while the transport has never been
        #: given bytes to send (None after).
        self._socket: socket.socket | None = None
        #: What TLS has to send on the socket at the end of this reactor
        #: turn, and its size.
        self._outgoing: list[bytes] = []
        self._outgoing_size = 0
        #: What may still go straight to the socket (L{DIRECT_SEND_LIMIT}).
        self._direct_left = DIRECT_SEND_LIMIT
        #: The timed call at the end of this turn will send for the link
        #: (L{TurnEnd}).
        self._turn_awaited = False

    # -- as the TCP transport's protocol --------------------------------------

    def makeConnection(self, transport: Any) -> None:
        self._tls = self._links.tls_connection(self)
        self.connected = True
        self.transport = self._tcp = transport
        handle = transport.getHandle() if ISystemHandle.providedBy(transport) else None
        if isinstance(handle, socket.socket):
            self._socket = handle
        self.wrappedProtocol.makeConnection(self)
        if self._links.client:
            # A server has nothing to do before the client's first flight.
            self._advance_handshake()
            self._send_tls()

    def dataReceived(self, data: bytes) -> None:
        tls = self._tls
        if tls is None or self._tls_over:
            return
        if self._reading:
            # Fed from within a read: the outer read sends what is written.
            tls.bio_write(data)
            self._handle_received()
            return
        self._reading = True
        try:
            tls.bio_write(data)
            self._handle_received()
        finally:
            self._reading = False
            if self._gathered:
                self._encrypt_gathered()
            self._send_tls()

    def _handle_received(self) -> None:
        if not self._handshake_done:
            self._advance_handshake()
            if not self._handshake_done:
                return
        self._receive()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        tls = self._tls
        if tls is not None and not self._tls_over:
            # What OpenSSL still holds is delivered; the end of the stream
            # then tells a clean close from a cut one.
            tls.bio_shutdown()
            self._receive()
            self._tls_over = True
        # What the peer protocol wrote meanwhile is not sent.
        if self._turn_awaited:
            self._turn_awaited = False
            self._links.not_due(self)
        final = self._reason or reason
        self._reason = None
        self._gathered = []
        self._drop_outgoing()
        self.connected = False
        # The OpenSSL connection holds the link as its app data, and the
        # peer protocol holds it as its transport: cycles, broken here.
        self._tls = None
        self._socket = None
        inner, self.wrappedProtocol = self.wrappedProtocol, None
        inner.connectionLost(final)

    # -- TLS ------------------------------------------------------------------

    def _advance_handshake(self) -> None:
        if self._aborted or self._tls is None:
            return
        self._unsent = True
        try:
            self._tls.do_handshake()
        except SSL.WantReadError:
            return
        except SSL.Error:
            self._tls_ended(Failure())
            return
        self._handshake_done = True
        self.wrappedProtocol.handshakeCompleted()

    def _receive(self) -> None:
        """
        Hand the peer protocol what OpenSSL has decrypted.
        """
        tls = self._tls
        assert tls is not None
        inner = self.wrappedProtocol
        self._unsent = True
        while not self._tls_over:
            try:
                data = tls.recv(_RECORD_SIZE)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                # The peer's close_notify: answer it (unless ours has been
                # sent) and close; the peer protocol gets the TCP
                # transport's reason.
                if not self._close_sent:
                    self._shutdown()
                self._tls_ended(None)
                return
            except SSL.Error:
                self._tls_ended(Failure())
                return
            if not self._aborted:
                inner.dataReceived(data)

    def _tls_ended(self, reason: Failure | None) -> None:
        """
        TLS is over: send what OpenSSL has to say (an alert) and close.

        @param reason: the error to give the peer protocol, or None for the
            TCP transport's reason.
        """
        if reason is not None and isinstance(reason.value, SSL.Error) and represents_eof(reason.value):
            reason = Failure(ConnectionLost())
        if self._reason is None:
            self._reason = reason
        self._tls_over = True
        self._send_tls()
        self._send_outgoing()
        self._tcp.loseConnection()

    def _shutdown(self) -> None:
        """
        Send our close_notify, or answer the peer's; once both are sent,
        close the TCP connection.
        """
        tls = self._tls
        if tls is None:
            return
        self._unsent = self._close_sent = True
        try:
            both = tls.shutdown()
        except SSL.Error:
            # Mid-handshake OpenSSL cannot say it wants to read here.
            both = False
        self._send_tls()
        if both:
            self._send_outgoing()
            self._tcp.loseConnection()

    def _send_tls(self) -> None:
        """
        Take what OpenSSL has to send: for the socket at the end of this
        reactor turn, or for the TCP transport.
        """
        tls = self._tls
        if tls is None or not self._unsent:
            return
        self._unsent = False
        try:
            data = tls.bio_read(_OUTGOING_CHUNK)
        except SSL.WantReadError:
            return
        if len(data) == _OUTGOING_CHUNK:
            pieces = [data]
            while True:
                try:
                    more = tls.bio_read(_OUTGOING_CHUNK)
                except SSL.WantReadError:
                    break
                pieces.append(more)
            data = b"".join(pieces)
        if self._socket is not None:
            if self._outgoing_size + len(data) <= self._direct_left:
                self._outgoing.append(data)
                self._outgoing_size += len(data)
                self._await_turn()
                return
            # Past the connection's first bytes: from now on the transport
            # sends, after what waits for the socket.
            self._send_outgoing()
            self._socket = None
        self._tcp.write(data)

    def _send_outgoing(self) -> None:
        """
        Send on the socket what TLS has to send; what the socket does not
        take, and everything after it, goes to the TCP transport.
        """
        outgoing = self._outgoing
        if not outgoing:
            return
        data = outgoing[0] if len(outgoing) == 1 else b"".join(outgoing)
        self._drop_outgoing()
        self._direct_left -= len(data)
        sock = self._socket
        if sock is not None:
            try:
                sent = sock.send(data)
            except OSError:
                # Full (the transport waits for room) or failed (the
                # transport finds the error when it writes).
                sent = 0
            if sent == len(data):
                return
            self._socket = None
            data = data[sent:]
        self._tcp.write(data)

    def _drop_outgoing(self) -> None:
        self._outgoing = []
        self._outgoing_size = 0

    def _encrypt(self, data: bytes) -> None:
        tls = self._tls
        assert tls is not None
        view = memoryview(data)
        self._unsent = True
        while view:
            try:
                sent = tls.send(view)
            except SSL.WantReadError:
                # Not in TLS 1.3 once the handshake has ended; kept for the
                # next read, as Twisted does.
                self._gathered.insert(0, bytes(view))
                self._gathered_size += len(view)
                return
            except SSL.Error:
                self._tls_ended(Failure())
                return
            view = view[sent:]

    # -- as the peer protocol's transport -------------------------------------

    def write(self, data: bytes) -> None:
        """
        Send C{data}, gathered with the other small writes; dropped once
        the connection is closing.
        """
        if self.disconnecting or self._tls_over:
            return
        self._gathered.append(bytes(data))
        self._gathered_size += len(data)
        if self._gathered_size > MAX_GATHERED:
            # Sent at once, within a read too: the TCP transport can then
            # pause the producer (the peer protocol) when it is full,
            # rather than OpenSSL's buffer growing for as long as the read
            # writes.
            if self._encrypt_gathered():
                self._send_tls()
        elif not self._reading:
            self._await_turn()

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))

    def _await_turn(self) -> None:
        if not self._turn_awaited:
            self._turn_awaited = True
            self._links.due(self)

    def send_due(self) -> None:
        """
        The end of the reactor turn: send what was written outside a read
        and what TLS has to send.
        """
        self.flush_writes()
        self._send_outgoing()
        # Only now: what the flush gave the socket was sent just above.
        self._turn_awaited = False

    def flush_writes(self) -> None:
        """
        Encrypt and send what was written and not yet sent (once the
        handshake has ended; until then it waits).
        """
        if self._encrypt_gathered() and not self._reading:
            self._send_tls()

    def _encrypt_gathered(self) -> bool:
        if not self._gathered or not self._handshake_done or self._tls_over:
            return False
        gathered = self._gathered
        data = gathered[0] if len(gathered) == 1 else b"".join(gathered)
        self._gathered = []
        self._gathered_size = 0
        self._encrypt(data)
        return True

    def loseConnection(self) -> None:
        """
        Send what waits, then our close_notify; before the handshake has
        ended, abort.
        """
        if self.disconnecting or not self.connected:
            return
        if not self._handshake_done:
            self.abortConnection()
            return
        self.flush_writes()
        self.disconnecting = True
        if self._producer is None:
            self._shutdown()

    def abortConnection(self) -> None:
        """
        Close at once: nothing more is delivered to the peer protocol.
        """
        self._aborted = True
        self.disconnecting = True
        # What OpenSSL says now goes to the transport, which drops it.
        self._socket = None
        self._drop_outgoing()
        self._shutdown()
        self._tcp.abortConnection()

    def getPeer(self) -> IAddress:
        return self._tcp.getPeer()  # type: ignore[no-any-return]

    def getHost(self) -> IAddress:
        return self._tcp.getHost()  # type: ignore[no-any-return]

    def getHandle(self) -> SSL.Connection | None:
        """
        The OpenSSL connection (None once the connection is lost).
        """
        return self._tls

    # IConsumer: the peer protocol is paused while TCP's buffer is full.

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        """
        Let C{producer} (a push producer: the peer protocol) be paused
        while the TCP transport's buffer is full.
        """
        if self._tls_over:
            producer.stopProducing()
            return
        self._tcp.registerProducer(producer, True)
        self._producer = cast(IPushProducer, producer)

    def unregisterProducer(self) -> None:
        if self._producer is None:
            return
        self._producer = None
        self._tcp.unregisterProducer()
        if self.disconnecting and not self._tls_over:
            self._shutdown()

    # IPushProducer: reading, paused by the peer protocol.

    def pauseProducing(self) -> None:
        self._tcp.pauseProducing()

    def resumeProducing(self) -> None:
        self._tcp.resumeProducing()

    def stopProducing(self) -> None:
        self._tcp.stopProducing()


class TurnEnd:
    """
    The links, of every pool on one clock, with something to send at the
    end of this reactor turn, and the one timed call that has them send it:
    a process running many pools (a simulation, a benchmark's dialer) sets
    one timer a turn, not one per pool.
    """

    #: The one of each clock (weakly: a clock that is gone takes it along).
    _of_clock: weakref.WeakKeyDictionary[IReactorTime, TurnEnd] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        #: The links in the order they asked.
        self._due: dict[TLSLink, None] = {}
        self._call: IDelayedCall | None = None

    @classmethod
    def of(cls, clock: IReactorTime) -> TurnEnd:
        """
        The L{TurnEnd} of C{clock} (a new one for a clock that cannot be
        referenced weakly).
        """
        try:
            found = cls._of_clock.get(clock)
        except TypeError:
            return cls()
        if found is None:
            found = cls._of_clock[clock] = cls()
        return found

    def due(self, link: TLSLink, clock: IReactorTime) -> None:
        """
        Have C{link} send at the end of this turn of C{clock}.
        """
        self._due[link] = None
        if self._call is None:
            self._call = clock.callLater(0, self._send_due)

    def not_due(self, link: TLSLink) -> None:
        """
        C{link} has nothing more to send; no timer is left set for nothing.
        """
        if self._due.pop(link, False) is None and not self._due:
            call, self._call = self._call, None
            if call is not None:
                call.cancel()

    def _send_due(self) -> None:
        self._call = None
        due, self._due = self._due, {}
        for link in due:
            link.send_due()


class TLSLinks:
    """
    Runs TLS over the dialed, or the accepted, connections of a pool: one
    for all of them (a L{p2pool.transport.channel.ChannelWrapper}).

    @ivar clock: runs, at the end of each reactor turn, the sending of
        what the links' reads and writes made during it (one timed call for
        the links of every pool on that clock: L{TurnEnd}).
    @ivar client: whether the connections are dialed (TLS clients).
    """

    def __init__(self, creator: Any, client: bool, clock: IReactorTime) -> None:
        """
        @param creator: makes each OpenSSL connection
            (L{p2pool.transport.tls.PeerConnectionCreator}).
        @param client: whether the connections are dialed (TLS clients).
        """
        self.clock = clock
        self.client = client
        self._creator = creator
        self._turn_end = TurnEnd.of(clock)

    def due(self, link: TLSLink) -> None:
        """
        Have C{link} send what waits at the end of this reactor turn (it
        asks once a turn).
        """
        self._turn_end.due(link, self.clock)

    def not_due(self, link: TLSLink) -> None:
        """
        C{link} has nothing more to send (its connection is lost).
        """
        self._turn_end.not_due(link)

    def wrap(self, inner: Any) -> TLSLink:
        """
        The TLS layer of a new connection, with C{inner} (already made)
        inside it.
        """
        return TLSLink(self, inner)

    def tls_connection(self, link: TLSLink) -> SSL.Connection:
        """
        The OpenSSL connection of C{link}, set to connect or to accept.
        """
        if self.client:
            connection: SSL.Connection = self._creator.clientConnectionForTLS(link)
            connection.set_connect_state()
        else:
            connection = self._creator.serverConnectionForTLS(link)
            connection.set_accept_state()
        return connection
