# -*- test-case-name: tests.test_pool -*-
"""
An established connection to a peer, as the application sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer

from p2pool.addressing import PeerId, Point
from p2pool.errors import ConnectionDone, DisconnectReason, InvalidMessageSize
from p2pool.handshake import RemoteInfo
from p2pool.wire import HEADER_SIZE, Disconnect, encode, encode_message

if TYPE_CHECKING:
    from p2pool.pool import Pool
    from p2pool.protocol import PeerProtocol

__all__ = ["Connection"]

_DISCONNECT_FRAME = encode(Disconnect())


class Connection:
    """
    A running connection to one peer.

    @ivar peer_id: the remote peer.
    @ivar point: where the remote can be reached (the dialed point, or
        its address with its advertised port), None when it does not
        listen.
    @ivar remote_ip: the remote address of this connection.
    @ivar incoming: the remote dialed us.
    @ivar private: the remote runs in private mode.
    @ivar p2p_version: the p2p protocol version in use.
    @ivar application_version: the application version in use.
    @ivar local_metadata: the connection metadata we sent.
    @ivar remote_metadata: the connection metadata the remote sent.
    @ivar established_at: when the connection was established.
    """

    def __init__(self, pool: Pool, protocol: PeerProtocol, remote: RemoteInfo, now: float) -> None:
        self._pool = pool
        self._protocol = protocol
        self._max_size = pool.config.max_message_size
        self.peer_id: PeerId = remote.peer_id
        self.point: Optional[Point] = remote.id_point
        self.remote_ip = remote.remote_ip
        self.incoming = remote.incoming
        self.private = remote.private
        self.p2p_version = remote.p2p_version
        self.application_version = remote.application_version
        self.local_metadata = pool._handshake_params.metadata
        self.remote_metadata = remote.hello.metadata
        self.established_at = now
        self.reason: Optional[ConnectionDone] = None
        #: When we last proposed a swap on this connection, and the peer offered.
        self.last_sent_swap_request: Optional[tuple[float, PeerId]] = None
        self._waiters: list[Deferred[None]] = []

    def __repr__(self) -> str:
        direction = "from" if self.incoming else "to"
        return f"<Connection {direction} {self.peer_id} at {self.point or self.remote_ip}>"

    @property
    def bytes_sent(self) -> int:
        """
        Bytes written to this connection (frames, before TLS).
        """
        return self._protocol.bytes_sent

    @property
    def bytes_received(self) -> int:
        """
        Bytes read from this connection (frames, after TLS).
        """
        return self._protocol.bytes_received

    @property
    def is_open(self) -> bool:
        """
        The connection still runs.
        """
        return self.reason is None

    def send(self, data: bytes) -> None:
        """
        Queue an application message for the peer.

        @raise InvalidMessageSize: C{data} is larger than C{max_message_size}.
        @raise ConnectionDone: the connection has closed.
        """
        if self.reason is not None:
            raise self.reason
        if len(data) > self._max_size:
            raise InvalidMessageSize(f"message of {len(data)} bytes exceeds max_message_size ({self._max_size})")
        self._protocol.write(encode_message(data))

    def send_many(self, messages: Iterable[bytes]) -> None:
        """
        Queue several application messages for the peer in one write.

        @raise InvalidMessageSize: one of them is larger than
            C{max_message_size} (none is sent then).
        @raise ConnectionDone: the connection has closed.
        """
        if self.reason is not None:
            raise self.reason
        frames = [encode_message(data) for data in messages]
        limit = self._max_size + HEADER_SIZE
        if any(len(f) > limit for f in frames):
            raise InvalidMessageSize(f"a message exceeds max_message_size ({self._max_size})")
        self._protocol.write(b"".join(frames))

    def register_producer(self, producer: IPushProducer) -> None:
        """
        Let C{producer} be paused while the peer cannot keep up with what
        is sent, and resumed when it can.
        """
        self._protocol.transport.registerProducer(producer, True)  # type: ignore[union-attr]

    def unregister_producer(self) -> None:
        """
        Stop flow control of the registered producer.
        """
        self._protocol.transport.unregisterProducer()  # type: ignore[union-attr]

    def disconnect(self, reason: DisconnectReason = DisconnectReason.REQUESTED, abort: bool = False) -> Deferred[None]:
        """
        Say goodbye to the peer and close.

        @param abort: close at once instead of after the goodbye is
            delivered: for a peer that no longer answers (a graceful TLS
            close waits for the peer's reply, which never comes).
        @return: fires when the connection has closed.
        """
        if self.reason is None:
            self._protocol.write(_DISCONNECT_FRAME)
            self._protocol.fail(ConnectionDone(reason), abort=abort)
        return self.when_closed()

    def when_closed(self) -> Deferred[None]:
        """
        A Deferred that fires when the connection has closed.
        """
        if self.reason is not None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def _lost(self, reason: ConnectionDone) -> None:
        self.reason = reason
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)
