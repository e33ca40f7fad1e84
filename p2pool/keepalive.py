# -*- test-case-name: tests.test_keepalive -*-
"""
Keepalive: a connection silent for C{keepalive_interval} is pinged, and
one silent for three intervals is closed, so that a peer lost behind a
silent network cut does not hold a slot forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.task import LoopingCall

from p2pool.connection import Connection
from p2pool.errors import DisconnectReason
from p2pool.lifetime import weak_owner, weak_method
from p2pool.wire import Ping, encode

if TYPE_CHECKING:
    from p2pool.pool import Pool

__all__ = ["Keepalive"]

#: Silent intervals before a connection is closed.
SILENT_INTERVALS = 3
#: Checks per interval: the close comes at most 1/CHECKS_PER_INTERVAL of an
#: interval late.
CHECKS_PER_INTERVAL = 2
_PING = encode(Ping())


class Keepalive:
    """
    Checks every connection twice per interval, by the bytes it received
    since the last check, without any work per message: a connection is
    closed between 3 and 3.5 intervals after the last byte it sent.
    """

    def __init__(self, pool: Pool, interval: float) -> None:
        self._pool = weak_owner(pool)
        self.interval = interval
        self._seen: dict[Connection, tuple[int, int]] = {}
        self._loop = LoopingCall(weak_method(self.check))
        self._loop.clock = pool._clock

    def start(self) -> None:
        self._loop.start(self.interval / CHECKS_PER_INTERVAL, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        self._seen.clear()

    def check(self) -> None:
        """
        Ping connections silent for one interval (and each interval after);
        close those silent for L{SILENT_INTERVALS}.
        """
        connections = self._pool.connections.list()
        seen: dict[Connection, tuple[int, int]] = {}
        for conn in connections:
            received = conn.bytes_received
            last, silent = self._seen.get(conn, (-1, 0))
            # A connection we stopped reading is not silent: we are.
            silent = silent + 1 if received == last and not conn.reading_paused else 0
            seen[conn] = (received, silent)
            if silent >= SILENT_INTERVALS * CHECKS_PER_INTERVAL:
                self._pool.events.emit("idle_timeout", peer_id=str(conn.peer_id), seconds=silent * self.interval / CHECKS_PER_INTERVAL)
                conn.disconnect(DisconnectReason.IDLE_TIMEOUT)
            elif silent >= CHECKS_PER_INTERVAL and silent % CHECKS_PER_INTERVAL == 0:
                conn.send_control(_PING)
        self._seen = seen
