# -*- test-case-name: tests.test_keepalive -*-
"""
Keepalive: a connection silent for C{keepalive_interval} is pinged, and
one silent for three intervals is closed, so that a peer lost behind a
silent network cut does not hold a slot forever.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from p2pool.connection import Connection
from p2pool.directory import Directory
from p2pool.errors import DisconnectReason
from p2pool.events import EventKind
from p2pool.events import EventLog
from p2pool.wire import Ping, encode

__all__ = ["Keepalive"]

#: Silent intervals before a connection is closed.
SILENT_INTERVALS = 3
_PING = encode(Ping())


class Keepalive:
    """
    Checks every connection once per interval: by the bytes it received
    since the last check, without any work per message.
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
        self._loop = LoopingCall(self.check)
        self._loop.clock = clock

    def start(self) -> None:
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        self._seen.clear()

    def check(self) -> None:
        """
        Ping connections silent for one interval; close those silent for
        L{SILENT_INTERVALS}.
        """
        connections = list(self._directory.connections.values())
        seen: dict[Connection, tuple[int, int]] = {}
        for conn in connections:
            received = conn.bytes_received
            last, silent = self._seen.get(conn, (-1, 0))
            silent = silent + 1 if received == last else 0
            seen[conn] = (received, silent)
            if silent >= SILENT_INTERVALS:
                self._events.emit(EventKind.IDLE_TIMEOUT, peer_id=str(conn.peer_id), seconds=silent * self.interval)
                conn.disconnect(DisconnectReason.IDLE_TIMEOUT, abort=True)
            elif silent >= 1:
                conn.send_control(_PING)
        self._seen = seen
