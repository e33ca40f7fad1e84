# -*- test-case-name: tests.test_admin -*-
"""
Traffic rates for C{/network/stat} and the connection views: the pool's
byte counters sampled once a second, each rate being the bytes counted
over the last interval divided by its length; and the traffic history of
C{/network/stat/history}: the bytes sent and received in each of the last
L{HISTORY_LENGTH} intervals of L{HISTORY_INTERVAL} seconds, kept in a ring.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from p2pool.core.addressing import PeerId
from p2pool.pool.sliced import SlicedWalk

if TYPE_CHECKING:
    from p2pool.pool.service import Pool
    from p2pool.transport.connection import Connection

__all__ = [
    "HISTORY_INTERVAL",
    "HISTORY_LENGTH",
    "SAMPLE_INTERVAL",
    "TrafficHistory",
    "TrafficInterval",
    "TrafficSampler",
]

#: Seconds between two samples of the byte counters.
SAMPLE_INTERVAL = 1.0
#: Connections whose counters are read per reactor turn: a sample of
#: 10,000 connections holds the reactor a few milliseconds at a time.
SAMPLE_SLICE = 250
#: Seconds of traffic each entry of the history counts (at least; an
#: interval ends at the first sample this long after it began).
HISTORY_INTERVAL = 10.0
#: Entries the history keeps (the oldest is dropped for a new one): one
#: hour of 10-second intervals.
HISTORY_LENGTH = 360

_log = Logger()


class _ConnectionSample:
    """
    The last counters read from one connection, and its current rates.
    """

    __slots__ = ("conn", "at", "sent", "received", "inflow", "outflow")

    def __init__(self, conn: Connection, at: float) -> None:
        self.conn = conn
        self.at = at
        self.sent = conn.bytes_sent
        self.received = conn.bytes_received
        self.inflow = 0
        self.outflow = 0


@attrs.frozen
class TrafficInterval:
    """
    The traffic of one interval of the history.

    @ivar seq: its number: 1 for the first interval the history recorded,
        then one more for each.
    @ivar end: when it ended (seconds since the epoch).
    @ivar seconds: its length.
    @ivar sent: bytes sent during it.
    @ivar received: bytes received during it.
    """

    seq: int
    end: float
    seconds: float
    sent: int
    received: int


class TrafficHistory:
    """
    The bytes sent and received in each of the last C{length} intervals of
    about C{interval} seconds, oldest first: a ring of at most C{length}
    L{TrafficInterval}s, fed with the pool's byte totals by L{observe}.

    @ivar since: when counting began.

    An interval ends at the first observation C{interval} seconds or more
    after it began, so it lasts longer when observations come late (a busy
    reactor); its C{seconds} say how long. A clock that goes back starts a
    new interval from the new time, counting nothing twice.
    """

    def __init__(
        self, now: float, sent: int, received: int, interval: float = HISTORY_INTERVAL, length: int = HISTORY_LENGTH
    ) -> None:
        """
        @param now: when counting begins, with the totals then, C{sent} and
            C{received}.
        @raise ValueError: C{interval} is not positive or C{length} is not
            at least 1.
        """
        if not interval > 0:
            raise ValueError(f"the history interval must be positive, got {interval!r}")
        if length < 1:
            raise ValueError(f"the history length must be at least 1, got {length!r}")
        self.interval = interval
        self.length = length
        self.since = now
        self._intervals: collections.deque[TrafficInterval] = collections.deque(maxlen=length)
        self._seq = 0
        self._start, self._sent, self._received = now, sent, received

    def observe(self, now: float, sent: int, received: int) -> None:
        """
        The pool's byte totals at C{now}: close the current interval if it
        has lasted long enough.
        """
        if now < self._start:
            self._start, self._sent, self._received = now, sent, received
            return
        elapsed = now - self._start
        if elapsed < self.interval:
            return
        self._seq += 1
        self._intervals.append(
            TrafficInterval(self._seq, now, elapsed, max(0, sent - self._sent), max(0, received - self._received))
        )
        self._start, self._sent, self._received = now, sent, received

    def intervals(self, after: int = 0) -> list[TrafficInterval]:
        """
        The intervals kept whose C{seq} is above C{after}, oldest first.
        """
        return [entry for entry in self._intervals if entry.seq > after]

    def __len__(self) -> int:
        return len(self._intervals)


class TrafficSampler:
    """
    Samples a pool's byte counters (L{Pool.bytes_totals} and each running
    connection's C{bytes_sent}/C{bytes_received}) every C{interval}
    seconds on C{clock} (an C{IReactorTime}).

    @ivar inflow: bytes received per second over the last interval.
    @ivar outflow: bytes sent per second over the last interval.
    @ivar history: the traffic of the last intervals, fed by each sample.
    """

    def __init__(
        self,
        pool: Pool,
        clock: IReactorTime,
        interval: float = SAMPLE_INTERVAL,
        history_interval: float = HISTORY_INTERVAL,
        history_length: int = HISTORY_LENGTH,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._interval = interval
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock
        self._last_time: float = clock.seconds()
        self._last_sent, self._last_received = pool.bytes_totals()
        self._connections: dict[PeerId, _ConnectionSample] = {}
        self._walk: SlicedWalk[Connection] = SlicedWalk(clock)
        self.inflow = 0
        self.outflow = 0
        self.history = TrafficHistory(
            self._last_time, self._last_sent, self._last_received, history_interval, history_length
        )

    def start(self) -> None:
        """
        Sample every interval from now on.
        """
        if not self._loop.running:
            self._loop.start(self._interval, now=True).addErrback(lambda f: _log.failure("traffic sampling stopped", f))

    def stop(self) -> None:
        """
        Stop sampling.
        """
        if self._loop.running:
            self._loop.stop()
        self._walk.stop()

    def sample(self) -> None:
        """
        Read the counters now and update the rates.
        """
        now = self._clock.seconds()
        elapsed = now - self._last_time
        sent, received = self._pool.bytes_totals()
        if elapsed > 0:
            self.outflow = _rate(sent - self._last_sent, elapsed)
            self.inflow = _rate(received - self._last_received, elapsed)
        self._last_time, self._last_sent, self._last_received = now, sent, received
        self.history.observe(now, sent, received)
        if not self._walk.running:
            # The connections are read SAMPLE_SLICE per reactor turn, so
            # thousands of them do not hold the reactor; the new samples
            # replace the old ones when the walk ends.
            previous = self._connections
            samples: dict[PeerId, _ConnectionSample] = {}
            self._walk.start(
                list(self._pool.connections),
                SAMPLE_SLICE,
                lambda conn: self._read(conn, previous, samples),
                lambda: self._readings_done(samples),
            )

    def _readings_done(self, samples: dict[PeerId, _ConnectionSample]) -> None:
        self._connections = samples

    def _read(
        self,
        conn: Connection,
        previous: dict[PeerId, _ConnectionSample],
        samples: dict[PeerId, _ConnectionSample],
    ) -> None:
        """
        Read one connection's counters: its rates are over the time since
        its own last reading. Each sample is updated in place: no new object
        per connection per second, which with thousands of connections would
        keep the garbage collector's full passes coming.
        """
        now = self._clock.seconds()
        sample = previous.get(conn.peer_id)
        if sample is None or sample.conn is not conn:
            samples[conn.peer_id] = _ConnectionSample(conn, now)
            return
        sent, received = conn.bytes_sent, conn.bytes_received
        elapsed = now - sample.at
        if elapsed > 0:
            sample.outflow = _rate(sent - sample.sent, elapsed)
            sample.inflow = _rate(received - sample.received, elapsed)
        else:
            sample.outflow = sample.inflow = 0
        sample.at, sample.sent, sample.received = now, sent, received
        samples[conn.peer_id] = sample

    def stat(self) -> dict[str, Any]:
        """
        Tezos C{P2p_stat} of the whole pool: C{total_sent} and
        C{total_recv} (bytes, read now), C{current_inflow} and
        C{current_outflow} (bytes per second over the last interval).
        """
        sent, received = self._pool.bytes_totals()
        return {
            "total_sent": sent,
            "total_recv": received,
            "current_inflow": self.inflow,
            "current_outflow": self.outflow,
        }

    def connection_rates(self, conn: Connection) -> tuple[int, int]:
        """
        C{(inflow, outflow)} of a running connection, in bytes per second;
        zero until it has been sampled twice.
        """
        sample = self._connections.get(conn.peer_id)
        if sample is None or sample.conn is not conn:
            return (0, 0)
        return (sample.inflow, sample.outflow)


def _rate(count: int, elapsed: float) -> int:
    return max(0, round(count / elapsed))
