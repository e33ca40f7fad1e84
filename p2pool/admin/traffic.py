# -*- test-case-name: tests.test_admin -*-
"""
Traffic rates for C{/network/stat} and the connection views: the pool's
byte counters sampled once a second, each rate being the bytes counted
over the last interval divided by its length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from p2pool.core.addressing import PeerId

if TYPE_CHECKING:
    from p2pool.pool.service import Pool
    from p2pool.transport.connection import Connection

__all__ = ["SAMPLE_INTERVAL", "TrafficSampler"]

#: Seconds between two samples of the byte counters.
SAMPLE_INTERVAL = 1.0

_log = Logger()


class _ConnectionSample:
    """
    The last counters read from one connection, and its current rates.
    """

    __slots__ = ("conn", "sent", "received", "inflow", "outflow")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sent = conn.bytes_sent
        self.received = conn.bytes_received
        self.inflow = 0
        self.outflow = 0


class TrafficSampler:
    """
    Samples a pool's byte counters (L{Pool.bytes_totals} and each running
    connection's C{bytes_sent}/C{bytes_received}) every C{interval}
    seconds on C{clock} (an C{IReactorTime}).

    @ivar inflow: bytes received per second over the last interval.
    @ivar outflow: bytes sent per second over the last interval.
    """

    def __init__(self, pool: Pool, clock: IReactorTime, interval: float = SAMPLE_INTERVAL) -> None:
        self._pool = pool
        self._clock = clock
        self._interval = interval
        self._loop = LoopingCall(self.sample)
        self._loop.clock = clock
        self._last_time: float = clock.seconds()
        self._last_sent, self._last_received = pool.bytes_totals()
        self._connections: dict[PeerId, _ConnectionSample] = {}
        self.inflow = 0
        self.outflow = 0

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
        samples: dict[PeerId, _ConnectionSample] = {}
        for conn in self._pool.connections:
            previous = self._connections.get(conn.peer_id)
            if previous is None or previous.conn is not conn:
                samples[conn.peer_id] = _ConnectionSample(conn)
                continue
            current = _ConnectionSample(conn)
            if elapsed > 0:
                current.outflow = _rate(current.sent - previous.sent, elapsed)
                current.inflow = _rate(current.received - previous.received, elapsed)
            samples[conn.peer_id] = current
        self._connections = samples

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
