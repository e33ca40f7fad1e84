# -*- test-case-name: tests.test_flow -*-
"""
Flow control without I/O: what bounds the bytes and frames one peer can
make a node hold or handle. Nothing here touches a reactor; time is passed
in as C{now} (seconds).

  - L{ByteBudget}: the node-wide budget of bytes queued for sending.
  - L{ReceiveBudget} and L{FrameReservation}: the node-wide budget of bytes
    buffered for large frames being received, and one connection's claim
    on it; a claim that does not fit waits, first come first served.
  - L{FrameArrival}: the pace a large frame holding a claim must keep, in
    the time its connection is read.
  - L{SendQueue}: one connection's outgoing frames, bounded in bytes by
    its own limit and the node budget, with the state of its transport
    (writable or full) and since when it has made no progress.
  - L{ReadGate}: why reading a connection is paused (the application is
    busy, the application asked, the control-frame rate, the download
    limit, the receive budget); reading runs only when no reason holds.
  - L{TokenBucket}: a rate with a burst.
  - L{FairShare}: a node-wide rate in bytes per second shared equally among
    the connections using it, in short windows.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from p2pool.config import PoolConfig

__all__ = [
    "ByteBudget",
    "FairShare",
    "FlowLimits",
    "FrameArrival",
    "FrameReservation",
    "ReadGate",
    "ReceiveBudget",
    "SendQueue",
    "TokenBucket",
]

#: Most bytes handed to a transport in one write: a large message goes in
#: pieces, so a transport holds at most its high-water mark and one piece.
#: Twisted's TCP transport pauses its producer past 64 KiB: a chunk of twice
#: that lets one system call send 128 KiB, as Twisted's own TLS does.
CHUNK_SIZE = 131072
#: A registered producer is paused once this many bytes are queued (or three
#: quarters of the queue's limit, if less) and resumed at or below
#: L{PRODUCER_LOW_WATER} (or half the limit, if less): enough to keep the
#: transport busy between two of its drains, little enough to stay in the
#: CPU's caches. The queue's limit still bounds what other senders queue.
PRODUCER_HIGH_WATER = 2 * CHUNK_SIZE
PRODUCER_LOW_WATER = CHUNK_SIZE
#: Length of the windows the bandwidth limits are shared in, in seconds.
BANDWIDTH_WINDOW = 0.1
#: The control-frame burst, in seconds of the control-frame rate.
CONTROL_BURST_SECONDS = 2.0


class ByteBudget:
    """
    A budget of bytes shared by many queues: C{used} never exceeds
    C{limit}, except by one frame taken when nothing else was (so a frame
    larger than the budget can still go, alone).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def fits(self, size: int) -> bool:
        """
        Whether C{size} more bytes fit.
        """
        return self.used + size <= self.limit or self.used == 0

    def take(self, size: int) -> None:
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size


class ReceiveBudget(ByteBudget):
    """
    The node-wide budget of bytes buffered for large frames being received:
    each connection receiving one holds a L{FrameReservation} of the
    frame's size from the moment its header arrives until the frame is
    whole or the connection is gone. A reservation that does not fit
    waits; waiters are granted first come first served as bytes are
    released, and none is granted past an earlier one (a large frame
    cannot be overtaken forever by smaller ones). As with L{ByteBudget},
    a reservation larger than the whole budget is granted alone.

    @ivar peak: the most bytes ever reserved at once.
    @ivar waited: how many reservations have had to wait.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.peak = 0
        self.waited = 0
        # Insertion-ordered: the waiters, oldest first; a closing connection
        # leaves from anywhere in O(1).
        self._waiters: dict[FrameReservation, None] = {}

    @property
    def waiting(self) -> int:
        """
        How many reservations wait for room.
        """
        return len(self._waiters)

    def reservation(self, granted: Callable[[], object]) -> FrameReservation:
        """
        A connection's claim on this budget; C{granted()} is called when a
        reservation that had to wait is held.
        """
        return FrameReservation(self, granted)

    def take(self, size: int) -> None:
        self.used += size
        if self.used > self.peak:
            self.peak = self.used

    def admit(self, reservation: FrameReservation) -> bool:
        """
        Hold C{reservation.size} bytes for C{reservation} if they fit and
        nothing waits before it; otherwise queue it.

        @return: whether it is held now.
        """
        if not self._waiters and self.fits(reservation.size):
            self.take(reservation.size)
            return True
        self._waiters[reservation] = None
        self.waited += 1
        return False

    def give_back(self, size: int) -> None:
        """
        A reservation of C{size} bytes ended: grant the waiters that fit.
        """
        self.release(size)
        self._grant()

    def withdraw(self, reservation: FrameReservation) -> None:
        """
        A waiting reservation's connection is gone: it leaves the queue
        (and those behind it may now fit).
        """
        waiters = self._waiters
        first = next(iter(waiters), None)
        waiters.pop(reservation, None)
        if first is reservation:
            self._grant()

    def _grant(self) -> None:
        waiters = self._waiters
        while waiters:
            first = next(iter(waiters))
            if not self.fits(first.size):
                return
            del waiters[first]
            self.take(first.size)
            first.grant()


class FrameReservation:
    """
    One connection's claim on the L{ReceiveBudget}: the bytes of the one
    large frame it is receiving, held or waited for.

    @ivar size: the bytes claimed (0: none).
    @ivar held: whether they are held (else the claim waits).
    """

    __slots__ = ("budget", "size", "held", "_granted")

    def __init__(self, budget: ReceiveBudget, granted: Callable[[], object]) -> None:
        self.budget = budget
        self.size = 0
        self.held = False
        self._granted = granted

    def take(self, size: int) -> bool:
        """
        Claim C{size} bytes for the frame now arriving (the claim before
        it has ended).

        @return: whether they are held now; if not, the claim waits and
            C{granted()} is called once it is held.
        """
        if self.size:
            raise ValueError(f"a reservation of {self.size} bytes has not ended")
        self.size = size
        self.held = self.budget.admit(self)
        return self.held

    def grant(self) -> None:
        """
        The budget holds the waiting claim now.
        """
        self.held = True
        self._granted()

    def release(self) -> None:
        """
        The frame is whole, or the connection is gone: give back what is
        held, or stop waiting. Without a claim, nothing happens, so a claim
        ends once however many paths end it.
        """
        size, self.size = self.size, 0
        if not size:
            return
        if self.held:
            self.held = False
            self.budget.give_back(size)
        else:
            self.budget.withdraw(self)


class FrameArrival:
    """
    The pace a large frame being received must keep: counting only the
    time its connection is read (L{start} to L{stop}), a peer may be at
    most C{grace} seconds behind C{rate} bytes per second. After C{t}
    seconds of reading, at least C{rate * (t - grace)} bytes of the frame
    must have arrived: a frame of C{S} bytes is whole within
    C{grace + S / rate} seconds of reading, and a peer that sends nothing
    is overdue after C{grace}.

    Time the connection is not read (paused by the node: its download
    limit, the receive budget, the application's backpressure) is not
    counted: only the peer's own slowness is.
    """

    __slots__ = ("rate", "grace", "_spent", "_since")

    def __init__(self, rate: float, grace: float) -> None:
        """
        @param rate: bytes per second the frame must arrive at, at least.
        @param grace: seconds of reading the peer may be behind that rate.
        """
        self.rate = rate
        self.grace = grace
        #: Seconds read before the current run, if any.
        self._spent = 0.0
        #: When the current run of reading began, or None while not read.
        self._since: float | None = None

    @property
    def running(self) -> bool:
        """
        Whether the connection is being read (the time counts).
        """
        return self._since is not None

    def start(self, now: float) -> None:
        """
        The connection is read from C{now} (nothing happens if it was).
        """
        if self._since is None:
            self._since = now

    def stop(self, now: float) -> None:
        """
        The connection is not read from C{now} (nothing happens if it was
        not).
        """
        if self._since is not None:
            self._spent += now - self._since
            self._since = None

    def spent(self, now: float) -> float:
        """
        Seconds the connection has been read since the frame began.
        """
        since = self._since
        return self._spent if since is None else self._spent + now - since

    def left(self, received: int, now: float) -> float:
        """
        Seconds of reading left before the frame is overdue, with
        C{received} of its bytes arrived (0 or less: overdue).
        """
        return self.grace + received / self.rate - self.spent(now)


class SendQueue:
    """
    The frames waiting to be handed to one connection's transport.

    A frame fits when the queue is empty (so one frame larger than the limit
    can always go, alone) or when the queue stays within C{limit} bytes with
    it; in both cases the node budget must hold it too. The queue is handed
    to the transport in chunks (L{pop_chunk}) while the transport is
    writable; the transport says when its own buffer is full
    (L{transport_full}) and when it has drained (L{transport_drained}).

    @ivar limit: the most bytes queued, beyond one frame alone.
    @ivar queued: bytes queued now.
    @ivar writable: the transport accepts more now.
    @ivar stalled_since: since when the transport has been full without
        draining, or C{None}.
    @ivar refused: frames refused because the queue was full.
    @ivar dropped_control: control frames dropped because it was full.
    """

    __slots__ = (
        "limit",
        "budget",
        "queued",
        "writable",
        "stalled_since",
        "refused",
        "dropped_control",
        "_high_water",
        "_low_water",
        "_chunks",
        "_tail",
        "_tail_size",
    )

    def __init__(self, limit: int, budget: ByteBudget) -> None:
        """
        @param limit: the most bytes queued, beyond one frame alone (fixed
            for the queue's life).
        @param budget: the node-wide budget the queue takes its bytes from.
        """
        self.limit = limit
        self.budget = budget
        self._high_water = min(limit * 3 // 4, PRODUCER_HIGH_WATER)
        self._low_water = min(limit // 2, PRODUCER_LOW_WATER)
        self.queued = 0
        self.writable = True
        self.stalled_since: float | None = None
        self.refused = 0
        self.dropped_control = 0
        # The queue is the joined chunks, oldest first, then the frames of
        # the tail, not yet joined: queuing a frame is a list append, and the
        # tail is joined (one C-level copy) once it would pass CHUNK_SIZE.
        # Both are made when first needed: most frames go straight to the
        # transport.
        self._chunks: collections.deque[bytes] | None = None
        self._tail: list[bytes] | None = None
        self._tail_size = 0

    def fits(self, size: int) -> bool:
        """
        Whether a frame of C{size} bytes may be queued now.
        """
        return (self.queued == 0 or self.queued + size <= self.limit) and self.budget.fits(size)

    @property
    def full(self) -> bool:
        """
        The queue holds its limit, or the node budget is spent: producers
        should pause.
        """
        return self.queued >= self.limit or not self.budget.fits(1)

    @property
    def high_water(self) -> bool:
        """
        The queue holds L{PRODUCER_HIGH_WATER} bytes or is three quarters
        full, or the node budget is spent: producers pause here, before a
        frame could be refused for want of room.
        """
        return self.queued >= self._high_water or not self.budget.fits(1)

    @property
    def has_room(self) -> bool:
        """
        The queue holds at most L{PRODUCER_LOW_WATER} bytes and is at most
        half full, and the node budget is not spent: paused producers may
        resume.
        """
        return self.queued <= self._low_water and self.budget.fits(1)

    def offer(self, frame: bytes) -> bool | None:
        """
        Queue C{frame} if it fits (L{fits}), in one step for the send path.

        @return: None when it does not fit (nothing is queued); otherwise
            whether the queue is now at its high-water mark (L{high_water}).
        """
        size = len(frame)
        budget = self.budget
        queued = self.queued + size
        used = budget.used + size
        if (queued > self.limit and queued != size) or (used > budget.limit and used != size):
            return None
        tail = self._tail
        if tail is not None and self._tail_size + size <= CHUNK_SIZE:
            tail.append(frame)
            self._tail_size += size
        else:
            self._start_tail(frame)
        self.queued = queued
        budget.used = used
        return queued >= self._high_water or used >= budget.limit

    def push(self, frame: bytes) -> None:
        """
        Queue C{frame} (the caller checked L{fits}).
        """
        self.offer(frame)

    def _start_tail(self, frame: bytes) -> None:
        """
        Join the tail into a chunk, if there is one, and start a new tail
        with C{frame}.
        """
        tail = self._tail
        if tail:
            if self._chunks is None:
                self._chunks = collections.deque()
            self._chunks.append(tail[0] if len(tail) == 1 else b"".join(tail))
        self._tail = [frame]
        self._tail_size = len(frame)

    def pop_chunk(self, max_bytes: int) -> bytes:
        """
        Remove and return up to C{max_bytes} from the head of the queue
        (whole frames joined, the last one possibly cut).
        """
        chunks = self._chunks
        if chunks:
            chunk = chunks.popleft()
        elif self._tail:
            tail = self._tail
            chunk = tail[0] if len(tail) == 1 else b"".join(tail)
            self._tail = None
            self._tail_size = 0
        else:
            return b""
        if len(chunk) > max_bytes:
            if chunks is None:
                chunks = self._chunks = collections.deque()
            chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self.queued -= len(chunk)
        self.budget.release(len(chunk))
        return chunk

    def clear(self) -> None:
        """
        Drop everything queued (the connection is closing).
        """
        self.budget.release(self.queued)
        self.queued = 0
        self._chunks = None
        self._tail = None
        self._tail_size = 0

    def transport_full(self, now: float) -> None:
        """
        The transport's buffer passed its high-water mark.
        """
        self.writable = False
        if self.stalled_since is None:
            self.stalled_since = now

    def transport_drained(self) -> None:
        """
        The transport has written out its buffer: progress.
        """
        self.writable = True
        self.stalled_since = None

    def stalled(self, now: float, timeout: float) -> bool:
        """
        Whether the transport has been full for at least C{timeout} seconds.
        """
        return self.stalled_since is not None and now - self.stalled_since >= timeout


class ReadGate:
    """
    The reasons reading one connection is paused; it reads only when none
    holds.
    """

    #: The application has C{max_pending_messages} messages in hand.
    APPLICATION = "application"
    #: The application called C{pause_reading()}.
    REQUESTED = "requested"
    #: The peer used its control-frame rate.
    CONTROL_RATE = "control_rate"
    #: The connection used its share of the node's download limit.
    DOWNLOAD = "download"
    #: The frame arriving waits for room in the node's receive budget.
    RECEIVE_BUDGET = "receive_budget"

    __slots__ = ("_reasons",)

    def __init__(self) -> None:
        # Immutable: most connections never pause, and share the empty set.
        self._reasons: frozenset[str] = frozenset()

    @property
    def paused(self) -> bool:
        return bool(self._reasons)

    @property
    def reasons(self) -> frozenset[str]:
        return self._reasons

    def pause(self, reason: str) -> bool:
        """
        Add C{reason}; return whether reading just stopped.
        """
        was = bool(self._reasons)
        self._reasons = self._reasons | {reason}
        return not was

    def resume(self, reason: str) -> bool:
        """
        Remove C{reason}; return whether reading may just start again.
        """
        if reason not in self._reasons:
            return False
        self._reasons = self._reasons - {reason}
        return not self._reasons


class TokenBucket:
    """
    A token bucket: C{capacity} tokens, refilled at C{rate} per second.
    """

    __slots__ = ("capacity", "rate", "_tokens", "_at")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._tokens = capacity
        self._at = now

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, wanted: int, now: float) -> int:
        """
        Take up to C{wanted} whole tokens; return how many were taken.
        """
        self._refill(now)
        # A nanosecond's worth of slack: a timer set for the next token may
        # fire a rounding error early.
        taken = min(wanted, int(self._tokens + 1e-9 * self.rate))
        self._tokens -= taken
        return taken

    def wait(self, wanted: float, now: float) -> float:
        """
        Seconds until C{wanted} tokens are there (0 when they are now).
        """
        self._refill(now)
        missing = wanted - self._tokens
        return max(0.0, missing / self.rate) if self.rate > 0 else float("inf")


class FairShare:
    """
    A node-wide rate of C{rate} bytes per second, shared among connections
    in windows of C{window} seconds: in each window, each connection that
    uses the rate may move C{rate * window / n} bytes, where C{n} counts
    the connections that used it in this window or the one before. Bytes
    moved beyond a share (one read or write cannot be cut) are owed to the
    next window, so the long-run rate holds.
    """

    def __init__(self, rate: float, window: float = 0.1) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.window = window
        self._window_start = 0.0
        self._used: dict[Hashable, float] = {}
        self._previous: set[Hashable] = set()
        self._users: set[Hashable] = set()

    def _roll(self, now: float) -> None:
        # A microsecond of slack: a timer set for the next window may fire
        # a rounding error early.
        if now + 1e-6 < self._window_start + self.window:
            return
        windows = max(1, int((now + 1e-6 - self._window_start) // self.window))
        repaid = self._share() * windows
        owed = {key: used - repaid for key, used in self._used.items() if used > repaid}
        self._previous = set(self._used) if windows == 1 else set(owed)
        self._used = owed
        self._users = self._previous | set(owed)
        self._window_start += windows * self.window

    def _share(self) -> float:
        return self.rate * self.window / (len(self._users) or 1)

    def allowance(self, key: Hashable, now: float) -> float:
        """
        Bytes C{key} may still move in the current window.
        """
        self._roll(now)
        self._used.setdefault(key, 0.0)
        self._users.add(key)
        return max(0.0, self._share() - self._used[key])

    def consume(self, key: Hashable, size: int, now: float) -> None:
        """
        Count C{size} bytes moved by C{key}.
        """
        self._roll(now)
        self._used[key] = self._used.get(key, 0.0) + size
        self._users.add(key)

    def wait(self, key: Hashable, now: float) -> float:
        """
        Seconds until C{key} may move bytes again: 0 if it may now, else
        until the window in which what it owes is repaid.
        """
        self._roll(now)
        share = self._share()
        used = self._used.get(key, 0.0)
        if used < share:
            return 0.0
        windows = int((used - share) // share)
        return max(1e-6, self._window_start + self.window - now) + windows * self.window

    def forget(self, key: Hashable) -> None:
        """
        A connection closed.
        """
        self._used.pop(key, None)
        self._previous.discard(key)
        self._users.discard(key)


@attrs.define
class FlowLimits:
    """
    A pool's flow-control settings and the node-wide state they share: the
    send budget, the receive budget and the bandwidth limits.
    """

    send_queue_size: int
    send_stall_timeout: float
    close_grace_period: float
    max_pending_messages: int
    max_control_frame_rate: float
    budget: ByteBudget
    receive_budget: ReceiveBudget
    upload: FairShare | None = None
    download: FairShare | None = None
    min_frame_receive_rate: float = 65536.0
    frame_receive_grace: float = 10.0

    @classmethod
    def from_config(cls, config: PoolConfig) -> FlowLimits:
        return cls(
            send_queue_size=config.send_queue_size,
            send_stall_timeout=config.send_stall_timeout,
            close_grace_period=config.close_grace_period,
            max_pending_messages=config.max_pending_messages,
            max_control_frame_rate=config.max_control_frame_rate,
            budget=ByteBudget(config.send_queue_budget),
            receive_budget=ReceiveBudget(config.receive_buffer_budget),
            upload=FairShare(config.max_upload_speed, BANDWIDTH_WINDOW) if config.max_upload_speed else None,
            download=FairShare(config.max_download_speed, BANDWIDTH_WINDOW) if config.max_download_speed else None,
            min_frame_receive_rate=config.min_frame_receive_rate,
            frame_receive_grace=config.frame_receive_grace,
        )

    def frame_arrival(self) -> FrameArrival:
        """
        The pace of a large frame that starts arriving
        (C{min_frame_receive_rate}, C{frame_receive_grace}).
        """
        return FrameArrival(self.min_frame_receive_rate, self.frame_receive_grace)

    def control_bucket(self, now: float) -> TokenBucket:
        """
        A new connection's control-frame bucket.
        """
        rate = self.max_control_frame_rate
        return TokenBucket(max(1.0, rate * CONTROL_BURST_SECONDS), rate, now)
