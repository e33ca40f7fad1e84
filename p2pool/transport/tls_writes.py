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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import IDelayedCall, IProtocol, IProtocolFactory, IReactorTime
from twisted.internet.protocol import connectionDone
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
            self.flush_writes()

    def loseConnection(self) -> None:
        self.flush_writes()
        _tls_lose_connection(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()
        self.flush_writes()
        self._gathering = False
        _tls_connection_lost(self, reason)


class GatheringTLSFactory(TLSMemoryBIOFactory):
    """
    Runs TLS over each connection with a L{GatheringTLSProtocol}.

    @ivar clock: schedules the sending of writes made outside a read.
    """

    protocol = GatheringTLSProtocol

    def __init__(
        self, contextFactory: Any, isClient: bool, wrappedFactory: IProtocolFactory, clock: IReactorTime
    ) -> None:
        super().__init__(contextFactory, isClient, wrappedFactory, clock=clock)
        self.clock = clock
