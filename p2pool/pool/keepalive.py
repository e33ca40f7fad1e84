# -*- test-case-name: tests.test_keepalive -*-
"""
Keepalive: a connection silent for C{keepalive_interval} is pinged, and
one silent for three intervals is closed, so that a peer lost behind a
silent network cut does not hold a slot forever.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from p2pool.core.directory import Directory
from p2pool.core.lifetime import weak_method
from p2pool.core.wire import Ping, encode
from p2pool.errors import DisconnectReason
from p2pool.events import EventKind, EventLog
from p2pool.transport.connection import Connection

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

    def __init__(self, directory: Directory, events: EventLog, clock: IReactorTime, interval: float) -> None:
        """
        @param directory: holds the running connections to check.
        @param events: where C{idle_timeout} events go.
        @param clock: paces the checks.
        @param interval: seconds between two checks.
        """
        self._directory = directory
        self._events = events
        self.interval = interval
        self._seen: dict[Connection, tuple[int, int]] = {}
        self._loop = LoopingCall(weak_method(self.check))
        self._loop.clock = clock

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
        connections = list(self._directory.connections.values())
        seen: dict[Connection, tuple[int, int]] = {}
        for conn in connections:
            if not conn.is_open:
                continue  # closing already: its close has a grace period of its own
            received = conn.bytes_received
            last, silent = self._seen.get(conn, (-1, 0))
            # A connection we stopped reading is not silent: we are.
            silent = silent + 1 if received == last and not conn.reading_paused else 0
            seen[conn] = (received, silent)
            if silent >= SILENT_INTERVALS * CHECKS_PER_INTERVAL:
                self._events.emit(
                    EventKind.IDLE_TIMEOUT,
                    peer_id=str(conn.peer_id),
                    seconds=silent * self.interval / CHECKS_PER_INTERVAL,
                )
                conn.disconnect(DisconnectReason.IDLE_TIMEOUT)
            elif silent >= CHECKS_PER_INTERVAL and silent % CHECKS_PER_INTERVAL == 0:
                conn.send_control(_PING)
        self._seen = seen
