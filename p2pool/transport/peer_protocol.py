# -*- test-case-name: tests.test_integration,tests.test_pool_network -*-
"""
Thin Twisted adapters: the protocol of one peer connection, which moves
bytes between the transport and the sans-I/O frame decoder and handshake,
and the factories that build it for dialing and accepting.
"""

from __future__ import annotations

import collections
import inspect
import math
from collections.abc import Callable
from typing import Any, cast
from typing import Protocol as TypingProtocol

from OpenSSL import SSL
from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IHandshakeListener, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from p2pool.core.addressing import PeerId, Point
from p2pool.core.flow import CHUNK_SIZE, FlowLimits, FrameArrival, FrameReservation, ReadGate, SendQueue, TokenBucket
from p2pool.core.handshake import Handshake, RemoteInfo
from p2pool.core.lifetime import without_traceback
from p2pool.core.wire import HANDSHAKE_MAX_BODY, FrameDecoder, Kind
from p2pool.errors import (
    ConnectionEnded,
    DecodingError,
    DisconnectReason,
    InvalidAuth,
    P2PError,
    PeerConnectionClosed,
    SendQueueFull,
)
from p2pool.transport.channel import PeerChannel
from p2pool.transport.connection import Connection
from p2pool.transport.deadlines import Deadlines
from p2pool.transport.tls import IVerifiedProtocol, PeerVerification

__all__ = ["PeerHandler", "PeerProtocol", "PeerServerFactory"]

#: The Disconnect frame's kind, as the decoder hands it over.
_DISCONNECT = int(Kind.DISCONNECT)


class MessageReceiver(TypingProtocol):
    """
    What application messages are passed to (the pool's application).
    """

    def message_received(self, conn: Any, data: bytes) -> Any:
        """
        A message arrived on C{conn}; a Deferred or awaitable returned keeps
        it in hand until it completes.
        """


class PeerHandler(TypingProtocol):
    """
    What a L{PeerProtocol} reports to and asks of: the pool's connect
    handler (L{p2pool.pool.connect.ConnectHandler}).
    """

    @property
    def flow(self) -> FlowLimits:
        """
        The flow-control limits and node-wide budgets of every connection.
        """

    @property
    def clock(self) -> IReactorTime:
        """
        Times out stalls, and paces rate limits.
        """

    @property
    def close_deadlines(self) -> Deadlines:
        """
        Times out closes (C{close_grace_period}), keyed by protocol.
        """

    @property
    def frame_deadlines(self) -> Deadlines:
        """
        Times out large frames that arrive too slowly
        (C{min_frame_receive_rate}), keyed by protocol.
        """

    def admit_incoming(self, addr: IAddress | None) -> str | None:
        """
        The remote address (normalised) of an incoming connection to start
        a TLS handshake with; None refuses it (as one without an address).
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

    def send_queue_full(self, conn: Connection) -> None:
        """
        A frame for C{conn} was refused or dropped: its send queue is full
        (told once until the queue has room again).
        """

    def send_stalled(self, protocol: PeerProtocol, seconds: float) -> None:
        """
        The transport of C{protocol} has taken nothing for C{seconds}
        (C{send_stall_timeout}).
        """

    def receive_budget_full(self, protocol: PeerProtocol, size: int) -> None:
        """
        The node's receive budget cannot hold the C{size}-byte frame
        arriving on C{protocol}, whose reading pauses until it can (told
        when a connection starts waiting and none was).
        """

    def frame_too_slow(self, protocol: PeerProtocol, size: int, received: int, seconds: float) -> None:
        """
        The C{size}-byte frame arriving on C{protocol} fell behind
        C{min_frame_receive_rate}: C{received} bytes of it in C{seconds} of
        reading. Its reservation is already given back.
        """

    def close_timed_out(self, protocol: PeerProtocol) -> None:
        """
        C{protocol} did not close within C{close_grace_period}: its socket
        is aborted.
        """

    def connection_lost(self, protocol: PeerProtocol, error: P2PError) -> None:
        """
        The connection closed, established or not.
        """


class _PeerTransport(TypingProtocol):
    """
    What a L{PeerProtocol} uses of its transport: the TLS layer over a TCP
    connection, which is also a push producer (reading) and a consumer
    (writing, with the protocol as its producer). Twisted declares a
    protocol's transport as a bare C{ITransport}.
    """

    def write(self, data: bytes) -> None:
        """
        Send C{data}.
        """

    def loseConnection(self) -> None:
        """
        Close after what was written.
        """

    def abortConnection(self) -> None:
        """
        Close at once.
        """

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        """
        Let C{producer} be paused while the transport's buffer is full.
        """

    def unregisterProducer(self) -> None:
        """
        Stop pausing the registered producer.
        """

    def pauseProducing(self) -> None:
        """
        Stop reading.
        """

    def resumeProducing(self) -> None:
        """
        Read again.
        """


def _ignore_message(body: bytes) -> None:
    """
    Drop a message that arrives after the connection failed.
    """


def _ignore_control(kind: int, body: bytes) -> None:
    """
    Drop a frame that arrives after the connection failed.
    """


def _ignore_size(size: int) -> None:
    """
    Reserve or release nothing: the connection is gone.
    """


async def _awaited(result: Any) -> Any:
    return await result


def as_deferred(result: Any) -> Deferred[Any]:
    """
    What an application callback returned, a Deferred or any awaitable
    (a coroutine of an C{async def}), as a Deferred.
    """
    return result if isinstance(result, Deferred) else ensureDeferred(_awaited(result))


@implementer(IHandshakeListener, IVerifiedProtocol, IPushProducer)
class PeerProtocol(Protocol):
    """
    One connection to a peer, over TLS: feeds the handshake until it
    succeeds, then hands frames to the established L{Connection}.

    Once established, what is sent goes through a bounded L{SendQueue} that
    is handed to the transport while the transport is not full: the
    protocol is the transport's streaming producer, so the transport tells
    it when its buffer passes its high-water mark (C{pauseProducing}) and
    when it has drained (C{resumeProducing}). Reading is paused through a
    L{ReadGate}. A large frame arriving holds a L{FrameReservation} on the
    node's receive budget until it is whole; without room, reading pauses
    until the reservation is granted. While it is read, it must keep the
    pace of its L{FrameArrival}, or the connection is closed.

    @ivar error: why the connection is ending, once known.
    @ivar remote_ip: the remote address (normalised), once the TCP
        connection is up.
    @ivar send_queue: what waits to be handed to the transport.
    @ivar read_gate: why reading is paused, if it is.
    @ivar pending_messages: messages the application has in hand.
    """

    _log = Logger()

    def __init__(
        self,
        handler: PeerHandler,
        incoming: bool,
        dialed_point: Point | None = None,
        expected_peer_id: PeerId | None = None,
        remote_ip: str = "",
    ) -> None:
        """
        @param remote_ip: the remote address of an accepted connection; a
            dial's is set when its TCP connection is up, from the address
            its connector gives.
        """
        self.handler = handler
        self.incoming = incoming
        self.dialed_point = dialed_point
        self.verification = PeerVerification(expected_peer_id, dialed_point)
        self.decoder = FrameDecoder(HANDSHAKE_MAX_BODY, self._message_before_ack, self._control)
        self.handshake: Handshake | None = None
        self.connection: Connection | None = None
        self.error: P2PError | None = None
        self.remote_ip = remote_ip
        self.closed = False
        self.bytes_sent = 0
        self.bytes_received = 0
        flow = handler.flow
        self._flow = flow
        self._clock: IReactorTime = handler.clock
        self.send_queue = SendQueue(flow.send_queue_size, flow.budget)
        self.read_gate = ReadGate()
        self.pending_messages = 0
        self._control_bucket: TokenBucket | None = None
        #: Frames of L{send_when_room} waiting for room (made when needed).
        self._waiting: collections.deque[tuple[bytes, Deferred[None]]] | None = None
        self._producer: IPushProducer | None = None
        self._producer_paused = False
        self._reported_full = False
        self._timers: dict[str, IDelayedCall] = {}

    #: The transport, as what it is once connected (L{_PeerTransport}).
    _link: _PeerTransport
    #: The claim on the node's receive budget, made at the first large frame.
    _reservation: FrameReservation | None = None
    #: The pace of the large frame arriving, while there is one.
    _arrival: FrameArrival | None = None

    def connectionMade(self) -> None:
        self._link = cast(_PeerTransport, self.transport)
        self._link.registerProducer(self, True)
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
        download = self._flow.download
        if download is not None and self.connection is not None:
            now = self._clock.seconds()
            download.consume(self, len(data), now)
            wait = download.wait(self, now)
            if wait > 0:
                self.pause_reading(ReadGate.DOWNLOAD)
                self._later("download", wait, self.resume_reading, ReadGate.DOWNLOAD)
        try:
            self.decoder.feed(data)
        except P2PError as e:
            self.fail(e)

    def _message_before_ack(self, body: bytes) -> None:
        raise DecodingError("application message before the handshake ended")

    def _control(self, kind: int, body: bytes) -> None:
        if self.connection is not None:
            if kind != _DISCONNECT:
                # A Disconnect closes the connection at once (the frames
                # after it are ignored): it takes no token.
                self._count_control()
            self.handler.control_received(self.connection, kind, body)
            return
        assert self.handshake is not None
        remote = self.handshake.control_received(kind, body)
        if remote is not None:
            self.connection = self.handler.established(self, remote)

    def _count_control(self) -> None:
        """
        Take a token for a control frame; out of tokens, pause reading
        until the next one.
        """
        now = self._clock.seconds()
        bucket = self._control_bucket
        if bucket is None:
            bucket = self._control_bucket = self._flow.control_bucket(now)
        if bucket.take(1, now) == 1 and bucket.wait(1, now) == 0:
            return
        self.pause_reading(ReadGate.CONTROL_RATE)
        self._later("control_rate", bucket.wait(1, now), self.resume_reading, ReadGate.CONTROL_RATE)

    def start_messages(self, max_body: int, receiver: MessageReceiver, conn: Connection) -> None:
        """
        The handshake is over: accept frames up to C{max_body} and pass
        application messages to C{receiver.message_received(conn, body)}.
        When that returns a Deferred or an awaitable, the message stays in
        hand until it completes; at C{max_pending_messages} in hand, reading
        pauses.
        """
        decoder = self.decoder
        decoder.max_body = max_body
        # Only frames past the handshake's limit can be large.
        decoder.reserve = self._reserve_frame
        decoder.release = self._release_frame

        def deliver(body: bytes) -> None:
            # Looked up for each message, as a method call would be: an
            # application may rebind its handler.
            try:
                result = receiver.message_received(conn, body)
            except Exception:
                self._message_failed(Failure())
                return
            if result is not None and (isinstance(result, Deferred) or inspect.isawaitable(result)):
                self._message_pending(result)

        self.decoder.on_message = deliver

    def _message_pending(self, result: Any) -> None:
        d = as_deferred(result)
        self.pending_messages += 1
        if self.pending_messages >= self._flow.max_pending_messages:
            self.pause_reading(ReadGate.APPLICATION)
        d.addErrback(self._message_failed)
        d.addBoth(self._message_done)

    def _message_failed(self, failure: Failure) -> None:
        self._log.failure("the application failed handling a message from {peer}", failure, peer=self.remote_ip)

    def _message_done(self, _: object) -> None:
        self.pending_messages -= 1
        if self.pending_messages < self._flow.max_pending_messages:
            self.resume_reading(ReadGate.APPLICATION)

    # -- reading -------------------------------------------------------------

    def _reserve_frame(self, size: int) -> None:
        """
        A large frame of C{size} bytes is arriving: claim its size from the
        node's receive budget; without room, stop reading until the claim
        is granted (L{_reservation_granted}).
        """
        reservation = self._reservation
        budget = self._flow.receive_budget
        if reservation is None:
            reservation = self._reservation = budget.reservation(self._reservation_granted)
        arrival = self._arrival = self._flow.frame_arrival()
        if reservation.take(size):
            self._frame_read(arrival)
            return
        if self.closed:
            return
        self.pause_reading(ReadGate.RECEIVE_BUDGET)
        if budget.waiting == 1:
            self.handler.receive_budget_full(self, size)

    def _release_frame(self, size: int) -> None:
        """
        The large frame has arrived whole: give its size back.
        """
        if self._reservation is not None:
            self._reservation.release()
        self._end_arrival()

    def _end_arrival(self) -> None:
        """
        No large frame is arriving any more: its deadline goes.
        """
        if self._arrival is not None:
            self._arrival = None
            self.handler.frame_deadlines.cancel(self)

    def _frame_read(self, arrival: FrameArrival) -> None:
        """
        The large frame is read (from its header, or again after a pause):
        its time counts, and its deadline is set for when it would be
        overdue with what has arrived of it.
        """
        if self.read_gate.paused or self.closed:
            return
        now = self._clock.seconds()
        arrival.start(now)
        self._frame_due_in(arrival.left(self.decoder.buffered, now))

    def _frame_due_in(self, seconds: float) -> None:
        # In whole seconds (never early): the deadlines keep a queue per
        # delay, so delays are few.
        self.handler.frame_deadlines.set(self, max(0, math.ceil(seconds)), self._frame_due)

    def _frame_due(self) -> None:
        """
        The deadline of the large frame arriving: set it again for the
        bytes that came meanwhile, or, overdue, give back its reservation
        and let the pool close the connection.
        """
        arrival = self._arrival
        if arrival is None or self.closed:
            return
        now = self._clock.seconds()
        received = self.decoder.buffered
        left = arrival.left(received, now)
        if left > 0:
            self._frame_due_in(left)
            return
        self._arrival = None
        reservation = self._reservation
        assert reservation is not None
        size = reservation.size
        reservation.release()
        self.handler.frame_too_slow(self, size, received, arrival.spent(now))

    def _reservation_granted(self) -> None:
        self.resume_reading(ReadGate.RECEIVE_BUDGET)

    def pause_reading(self, reason: str) -> None:
        """
        Stop reading the connection (and delivering frames already read)
        for C{reason}, until L{resume_reading} with the same reason.
        """
        if self.closed:
            return
        if self.read_gate.pause(reason):
            self.decoder.paused = True
            self._link.pauseProducing()
            arrival = self._arrival
            if arrival is not None:
                # A large frame is arriving: its time stops.
                arrival.stop(self._clock.seconds())
                self.handler.frame_deadlines.cancel(self)

    def resume_reading(self, reason: str) -> None:
        """
        Withdraw C{reason}; with no reason left, reading goes on at the next
        reactor turn: first the frames that waited, then the socket.
        """
        if self.read_gate.resume(reason) and not self.closed:
            self._later("deliver", 0, self._deliver_waiting)

    def _deliver_waiting(self) -> None:
        """
        Deliver the frames read before the pause; only if that does not
        pause reading again is the transport read again, so what waits is
        never more than one read.
        """
        if self.read_gate.paused or self.closed:
            return
        try:
            self.decoder.resume()
        except P2PError as e:
            self.fail(e)
            return
        if not self.read_gate.paused and not self.closed:
            arrival = self._arrival
            if arrival is not None:
                self._frame_read(arrival)
            self._link.resumeProducing()

    # -- sending -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Hand bytes to the transport now, unless the connection is closing
        (the handshake, and the send queue, write through this).
        """
        if not self.closed:
            self.bytes_sent += len(data)
            self._link.write(data)

    def send_frame(self, frame: bytes) -> None:
        """
        Queue a frame for the peer.

        @raise SendQueueFull: the queue or the node budget cannot hold it,
            or frames wait for room before it (nothing is queued).
        """
        if self.closed:
            raise self.closing_reason()
        queue = self.send_queue
        if not self._waiting:
            if (
                queue.writable
                and not queue.queued
                and len(frame) <= CHUNK_SIZE
                and self._flow.upload is None
                and queue.budget.fits(len(frame))
            ):
                # Nothing waits and the transport takes it: straight through.
                self.bytes_sent += len(frame)
                self._link.write(frame)
                if self._reported_full or self._producer_paused:
                    self._pace_producer()
                return
            high_water = queue.offer(frame)
            if high_water is not None:
                if queue.writable:
                    self._drain()
                elif high_water:
                    self._pause_producer()
                return
        queue.refused += 1
        self._report_full()
        raise SendQueueFull(f"send queue full ({queue.queued} bytes queued for {self.remote_ip})")

    def send_control(self, frame: bytes) -> bool:
        """
        Queue a control frame, or drop it when the queue is full.

        @return: whether it was queued.
        """
        if self.closed:
            return False
        queue = self.send_queue
        if not queue.fits(len(frame)):
            queue.dropped_control += 1
            self._report_full()
            return False
        self._push(frame)
        return True

    def send_when_room(self, frame: bytes) -> Deferred[None]:
        """
        Queue a frame once the queue has room for it, after the frames
        already waiting.

        @return: fires once it is queued; fails with L{PeerConnectionClosed}
            if the connection closes first.
        """
        if self.closed:
            return fail(self.closing_reason())
        if not self._waiting and self.send_queue.fits(len(frame)):
            self._push(frame)
            return succeed(None)
        d: Deferred[None] = Deferred(self._cancel_waiting)
        if self._waiting is None:
            self._waiting = collections.deque()
        self._waiting.append((frame, d))
        return d

    def _cancel_waiting(self, d: Deferred[None]) -> None:
        """
        A waiting frame's Deferred was cancelled: the frame leaves the
        wait, never to be sent (the Deferred fails with C{CancelledError}).
        """
        waiting = self._waiting
        if waiting:
            for i, (_, waiter) in enumerate(waiting):
                if waiter is d:
                    del waiting[i]
                    break

    def _push(self, frame: bytes) -> None:
        if self.closed:
            return
        queue = self.send_queue
        if (
            not queue.queued
            and queue.writable
            and len(frame) <= CHUNK_SIZE
            and self._flow.upload is None
            and not self._waiting
        ):
            # Nothing waits and the transport takes it: the frame goes
            # straight through, as it would after a push and a drain.
            self.write(frame)
            if self._reported_full or self._producer_paused:
                self._pace_producer()
            return
        queue.push(frame)
        if not queue.writable:
            # The transport is full: nothing can be written, and a push
            # makes no room; only the producer may have to pause.
            if queue.high_water:
                self._pause_producer()
            return
        self._drain()

    def _drain(self) -> None:
        """
        Hand queued bytes to the transport while it is writable, admitting
        waiting frames as room appears; then pause or resume the
        application's producer.
        """
        queue = self.send_queue
        waiting = self._waiting
        while not self.closed:
            self._write_queued()
            if self.closed or not waiting or not queue.fits(len(waiting[0][0])):
                break
            frame, d = waiting.popleft()
            queue.push(frame)
            d.callback(None)
        if not self.closed:
            self._pace_producer()

    def _write_queued(self) -> None:
        """
        Write the queue out in chunks while the transport is writable and
        the upload limit, if any, allows.
        """
        queue = self.send_queue
        upload = self._flow.upload
        while queue.queued and queue.writable and not self.closed:
            if upload is None:
                self.write(queue.pop_chunk(CHUNK_SIZE))
                continue
            now = self._clock.seconds()
            allowance = int(upload.allowance(self, now))
            if allowance <= 0:
                self._later("upload", upload.wait(self, now), self._drain)
                return
            chunk = queue.pop_chunk(min(CHUNK_SIZE, allowance))
            upload.consume(self, len(chunk), now)
            self.write(chunk)

    def _pace_producer(self) -> None:
        """
        After progress: resume the application's producer when the queue
        has room (L{SendQueue.has_room}), pause it at its high-water mark
        (L{SendQueue.high_water}, before a frame could be refused).
        """
        queue = self.send_queue
        if queue.has_room and not self._waiting:
            self._reported_full = False
            if self._producer is not None and self._producer_paused:
                self._producer_paused = False
                self._producer.resumeProducing()
        elif queue.high_water or self._waiting:
            self._pause_producer()

    def _pause_producer(self) -> None:
        if self._producer is not None and not self._producer_paused:
            self._producer_paused = True
            self._producer.pauseProducing()

    def _report_full(self) -> None:
        """
        A frame was refused or dropped: pause the application's producer,
        and tell the pool (once until the queue has room again).
        """
        self._pause_producer()
        if not self._reported_full and self.connection is not None:
            self._reported_full = True
            self.handler.send_queue_full(self.connection)

    def register_producer(self, producer: IPushProducer) -> None:
        """
        Pause C{producer} at the send queue's high-water mark, resume it
        when the queue has room again (L{_pace_producer}).
        """
        self._producer = producer
        self._producer_paused = False
        self._pace_producer()

    def unregister_producer(self) -> None:
        self._producer = None
        self._producer_paused = False

    # IPushProducer: the transport's buffer is full, or has drained.

    def pauseProducing(self) -> None:
        self.send_queue.transport_full(self._clock.seconds())
        if "stall" not in self._timers:
            self._later("stall", self._flow.send_stall_timeout, self._check_stall)

    def resumeProducing(self) -> None:
        self.send_queue.transport_drained()
        self._drain()

    def stopProducing(self) -> None:
        """
        The transport is gone (L{connectionLost} follows).
        """

    def _check_stall(self) -> None:
        queue = self.send_queue
        now = self._clock.seconds()
        timeout = self._flow.send_stall_timeout
        if queue.stalled(now, timeout):
            self.handler.send_stalled(self, now - (queue.stalled_since or now))
        elif queue.stalled_since is not None:
            self._later("stall", queue.stalled_since + timeout - now, self._check_stall)

    # -- closing -------------------------------------------------------------

    def fail(self, error: P2PError, abort: bool = False) -> None:
        """
        End the connection because of C{error}: close it after what was
        queued and written (a nack, a disconnect) is flushed, or at once if
        C{abort}. A close that has not ended C{close_grace_period} seconds
        later is aborted.
        """
        if self.error is None:
            # Kept as the reason: not with the frames it was raised through,
            # whose locals include this protocol (a reference cycle).
            self.error = without_traceback(error)
        self.decoder.on_message = _ignore_message
        self.decoder.on_control = _ignore_control
        if self.closed:
            return
        if self.transport is None:
            self.closed = True
            return
        if abort:
            self.closed = True
            self.send_queue.clear()
            self._link.abortConnection()
            return
        queue = self.send_queue
        while queue.queued:
            self.write(queue.pop_chunk(CHUNK_SIZE))
        self.closed = True
        self._link.unregisterProducer()
        self._link.loseConnection()
        self.handler.close_deadlines.set(self, self._flow.close_grace_period, self._grace_over)

    def closing_reason(self) -> ConnectionEnded:
        """
        Why the connection is closing, as the typed reason its application
        will be given (L{ConnectionEnded}); C{connection_lost} gives the
        final one.
        """
        error = self.error
        if isinstance(error, ConnectionEnded):
            return error
        return ConnectionEnded(DisconnectReason.CONNECTION_LOST, f"closing: {error}")

    def _grace_over(self) -> None:
        """
        The peer did not take our goodbye in time: free the socket.
        """
        self.handler.close_timed_out(self)
        self._link.abortConnection()

    def _later(self, name: str, delay: float, f: Callable[..., Any], *args: Any) -> None:
        """
        Run C{f(*args)} in C{delay} seconds, unless a call of that C{name}
        is pending already; calls are cancelled when the connection is lost.
        """
        timers = self._timers
        call = timers.get(name)
        if call is not None and call.active():
            return

        def run() -> None:
            timers.pop(name, None)
            f(*args)

        timers[name] = self._clock.callLater(delay, run)

    def _cancel_timers(self) -> None:
        timers, self._timers = self._timers, {}
        for call in timers.values():
            if call.active():
                call.cancel()

    def connectionLost(self, reason: Failure = Failure(PeerConnectionClosed("connection lost"))) -> None:
        self.closed = True
        self._cancel_timers()
        self.handler.close_deadlines.cancel(self)
        self.send_queue.clear()
        reservation, self._reservation = self._reservation, None
        if reservation is not None:
            # The frame being received is dropped with the connection.
            reservation.release()
        if self._arrival is not None:
            self._end_arrival()
        if self._flow.upload is not None:
            self._flow.upload.forget(self)
        if self._flow.download is not None:
            self._flow.download.forget(self)
        if self.handshake is not None:
            self.handshake.close()
        if self.error is None:
            failure = self.verification.failure
            if failure is not None:
                self.error = failure
            elif self.handshake is not None and self.handshake.peer_id is None and reason.check(SSL.Error):
                # Bytes that are not TLS, or a TLS handshake gone wrong; a
                # peer that merely closed (a busy node refusing us) is not
                # an authentication failure.
                self.error = InvalidAuth(f"TLS handshake failed: {reason.getErrorMessage()}")
            else:
                self.error = PeerConnectionClosed(reason.getErrorMessage())
        # As a transport does, the application's producer is told first.
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.stopProducing()
            except Exception:
                self._log.failure("the application's producer failed to stop, from {peer}", peer=self.remote_ip)
        self.handler.connection_lost(self, self.error)
        waiting, self._waiting = self._waiting or (), None
        closed = self.connection.reason if self.connection is not None and self.connection.reason else self.error
        for _, d in waiting:
            d.errback(closed)
        # Break the cycles through this protocol (its connection, handshake,
        # decoder callbacks): once dropped, it is freed by reference counting.
        self.handshake = None
        decoder = self.decoder
        decoder.on_message = _ignore_message
        decoder.on_control = _ignore_control
        decoder.reserve = decoder.release = _ignore_size
        self.connection = None


class PeerServerFactory(Factory):
    """
    Accepts incoming connections, refusing before TLS (before the channel's
    handshake) those the pool refuses by address.
    """

    noisy = False

    def __init__(self, handler: PeerHandler, channel: PeerChannel, clock: IReactorTime) -> None:
        self.handler = handler
        self._acceptor = channel.server_wrapper(clock)

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        remote_ip = self.handler.admit_incoming(addr)
        if remote_ip is None:
            return None
        protocol = PeerProtocol(self.handler, incoming=True, remote_ip=remote_ip)
        return self._acceptor.wrap(protocol)
