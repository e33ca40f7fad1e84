# -*- test-case-name: tests.test_integration,tests.test_testing -*-
"""
An established connection to a peer, as the application sees it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer

from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point
from p2pool.core.flow import ReadGate, SendQueue
from p2pool.core.handshake import RemoteInfo
from p2pool.core.wire import FRAME_HEADER, HEADER_SIZE, MESSAGE_KIND, Disconnect, encode, encode_message, not_bytes
from p2pool.errors import ConnectionEnded, DisconnectReason, InvalidMessageSize, P2PError

__all__ = ["Connection", "FrameChannel"]

_DISCONNECT_FRAME = encode(Disconnect())
_pack_header = FRAME_HEADER.pack


class FrameChannel(Protocol):
    """
    What a L{Connection} writes through and reads the state of: the peer
    protocol of its socket (L{p2pool.transport.peer_protocol.PeerProtocol}).

    @ivar bytes_sent: bytes written (frames, before TLS).
    @ivar bytes_received: bytes read (frames, after TLS).
    @ivar closed: the channel is closing or has closed.
    @ivar send_queue: what waits to be handed to the transport.
    @ivar read_gate: why reading is paused, if it is.
    @ivar pending_messages: messages the application has in hand.
    """

    bytes_sent: int
    bytes_received: int
    closed: bool
    send_queue: SendQueue
    read_gate: ReadGate
    pending_messages: int

    def closing_reason(self) -> ConnectionEnded:
        """
        Why the channel is closing, as the typed reason the application
        is given.
        """

    def send_frame(self, frame: bytes) -> None:
        """
        Queue an encoded frame.

        @raise SendQueueFull: the queue or the node budget cannot hold it.
        """

    def send_when_room(self, frame: bytes) -> Deferred[None]:
        """
        Queue an encoded frame once the queue has room for it.
        """

    def send_control(self, frame: bytes) -> bool:
        """
        Queue an encoded control frame, or drop it when the queue is full.

        @return: whether it was queued.
        """

    def pause_reading(self, reason: str) -> None:
        """
        Stop reading for C{reason}.
        """

    def resume_reading(self, reason: str) -> None:
        """
        Withdraw C{reason} for pausing reading.
        """

    def register_producer(self, producer: IPushProducer) -> None:
        """
        Pause C{producer} while the send queue is full.
        """

    def unregister_producer(self) -> None:
        """
        Stop flow control of the registered producer.
        """

    def fail(self, error: P2PError, abort: bool = False) -> None:
        """
        Close the channel because of C{error}, after what was written
        unless C{abort}.
        """


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

    def __init__(
        self, protocol: FrameChannel, remote: RemoteInfo, now: float, *, config: PoolConfig, local_metadata: bytes
    ) -> None:
        """
        @param protocol: the channel frames are written to.
        @param remote: the peer, as the handshake found it.
        @param now: when the connection was established.
        @param config: the pool's configuration (message size limit).
        @param local_metadata: the connection metadata we sent.
        """
        self._protocol = protocol
        self._send_frame = protocol.send_frame
        self._max_size = config.max_message_size
        self.peer_id: PeerId = remote.peer_id
        self.point: Point | None = remote.id_point
        self.remote_ip = remote.remote_ip
        self.incoming = remote.incoming
        self.private = remote.private
        self.p2p_version = remote.p2p_version
        self.application_version = remote.application_version
        self.local_metadata = local_metadata
        self.remote_metadata = remote.hello.metadata
        self.established_at = now
        self.reason: ConnectionEnded | None = None
        #: When we last proposed a swap on this connection, and the peer offered.
        self.last_sent_swap_request: tuple[float, PeerId] | None = None
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
        The connection still runs (it is neither closed nor closing).
        """
        return self.reason is None and not self._protocol.closed

    @property
    def send_queue_bytes(self) -> int:
        """
        Bytes queued for the peer and not yet handed to the transport.
        """
        return self._protocol.send_queue.queued

    @property
    def reading_paused(self) -> bool:
        """
        Reading this connection is paused (for any reason).
        """
        return self._protocol.read_gate.paused

    @property
    def pending_messages(self) -> int:
        """
        Messages the application has in hand (C{message_received} returned
        a Deferred or awaitable that has not completed).
        """
        return self._protocol.pending_messages

    def _check_open(self) -> None:
        if self.reason is not None:
            raise self.reason
        if self._protocol.closed:
            raise self._protocol.closing_reason()

    def _frame(self, data: bytes) -> bytes:
        if self.reason is not None or self._protocol.closed:
            self._check_open()
        try:
            size = len(data)
        except TypeError:
            raise not_bytes(data) from None
        if size > self._max_size:
            raise InvalidMessageSize(f"message of {size} bytes exceeds max_message_size ({self._max_size})")
        return encode_message(data)

    def send(self, data: bytes) -> None:
        """
        Queue an application message for the peer.

        @raise InvalidMessageSize: C{data} is larger than C{max_message_size}.
        @raise SendQueueFull: the peer's send queue (C{send_queue_size}) or
            the node's budget (C{send_queue_budget}) cannot hold it now, or
            messages wait for room (L{send_when_room}); nothing is queued.
        @raise ConnectionEnded: the connection has closed or is closing.
        @raise TypeError: C{data} is not bytes.
        """
        if self.reason is not None:
            raise self.reason
        # The channel checks that it is open; this is the hot path of every
        # message, so the frame is built here in one step.
        try:
            size = len(data)
            if size > self._max_size:
                raise InvalidMessageSize(f"message of {size} bytes exceeds max_message_size ({self._max_size})")
            frame = _pack_header(size + 1, MESSAGE_KIND) + data
        except TypeError:
            raise not_bytes(data) from None
        self._send_frame(frame)

    def send_encoded(self, frame: bytes) -> None:
        """
        Queue an application message already framed by
        L{p2pool.core.wire.encode_message}, whose size the caller checked
        against C{max_message_size}: one message for many peers is framed
        once and its bytes shared by their queues (L{Pool.broadcast}).

        @raise SendQueueFull: as L{send}.
        @raise ConnectionEnded: as L{send}.
        """
        if self.reason is not None:
            raise self.reason
        self._send_frame(frame)

    def send_when_room(self, data: bytes) -> Deferred[None]:
        """
        Queue an application message for the peer as soon as its send queue
        has room, after the messages already waiting (order is kept).

        @return: fires once it is queued; fails with L{InvalidMessageSize},
            or with L{ConnectionEnded} when the connection closes first.
            Cancelling it while it waits withdraws the message (it is never
            sent).
        @raise TypeError: C{data} is not bytes.
        """
        try:
            frame = self._frame(data)
        except P2PError as e:
            return fail(e)
        return self._protocol.send_when_room(frame)

    def send_many(self, messages: Iterable[bytes]) -> None:
        """
        Queue several application messages for the peer at once.

        @raise InvalidMessageSize: one of them is larger than
            C{max_message_size} (none is sent then).
        @raise SendQueueFull: they do not all fit in the send queue (none is
            sent then).
        @raise ConnectionEnded: the connection has closed.
        """
        self._check_open()
        frames = [encode_message(data) for data in messages]
        limit = self._max_size + HEADER_SIZE
        if any(len(f) > limit for f in frames):
            raise InvalidMessageSize(f"a message exceeds max_message_size ({self._max_size})")
        self._protocol.send_frame(b"".join(frames))

    def send_control(self, frame: bytes) -> bool:
        """
        Queue an encoded control frame (L{p2pool.wire.encode}) for the peer.
        Control frames share the send queue: when it is full, or the
        connection has closed, the frame is dropped (and counted), never
        queued beyond the bound.

        @return: whether it was queued.
        """
        return self._protocol.send_control(frame)

    def pause_reading(self) -> None:
        """
        Stop reading from the peer until L{resume_reading}: no message is
        delivered meanwhile, and TCP holds the peer back.
        """
        self._protocol.pause_reading(ReadGate.REQUESTED)

    def resume_reading(self) -> None:
        """
        Read from the peer again (after L{pause_reading}); messages that
        waited are delivered at the next reactor turn.
        """
        self._protocol.resume_reading(ReadGate.REQUESTED)

    def register_producer(self, producer: IPushProducer) -> None:
        """
        Let C{producer} be paused while the peer's send queue holds enough
        to keep the link busy (L{p2pool.core.flow.PRODUCER_HIGH_WATER}), well
        before it is full, and resumed when it has drained to
        L{p2pool.core.flow.PRODUCER_LOW_WATER}; and stopped
        (C{stopProducing}) when the connection closes, as a transport's
        producer is.
        """
        self._protocol.register_producer(producer)

    def unregister_producer(self) -> None:
        """
        Stop flow control of the registered producer.
        """
        self._protocol.unregister_producer()

    def disconnect(self, reason: DisconnectReason = DisconnectReason.REQUESTED, abort: bool = False) -> Deferred[None]:
        """
        Say goodbye to the peer and close, after what is queued; the socket
        is aborted if that takes more than C{close_grace_period}.

        @param abort: close at once instead of after the goodbye is
            delivered: for a peer that no longer answers (a graceful TLS
            close waits for the peer's reply, which never comes).
        @return: fires when the connection has closed.
        @raise TypeError: C{reason} is not a L{DisconnectReason}.
        """
        if not isinstance(reason, DisconnectReason):
            raise TypeError(f"reason must be a DisconnectReason, not {type(reason).__name__} {reason!r}")
        if self.reason is None:
            self._protocol.send_control(_DISCONNECT_FRAME)
            self._protocol.fail(ConnectionEnded(reason), abort=abort)
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

    def remote_disconnected(self) -> None:
        """
        The peer said goodbye (a Disconnect frame): close without answering.
        """
        self._protocol.fail(ConnectionEnded(DisconnectReason.REMOTE_DISCONNECT))

    def mark_closed(self, reason: ConnectionEnded) -> None:
        """
        Record that the connection has closed because of C{reason}, and fire
        the L{when_closed} Deferreds. The connect handler calls this once
        the socket is gone; sending afterwards raises C{reason}.
        """
        self.reason = reason
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)
