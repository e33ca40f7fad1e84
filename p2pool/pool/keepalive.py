# -*- test-case-name: tests.test_keepalive -*-
"""
Keepalive: a connection silent for C{keepalive_interval} is pinged, and
one silent for three intervals is closed, so that a peer lost behind a
silent network cut does not hold a slot forever. A connection that is not
silent is also pinged about once per interval, to measure its round trip
(inbound eviction protects the fastest peers).
"""

from __future__ import annotations

import collections

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from p2pool.core.directory import Directory
from p2pool.core.lifetime import weak_method
from p2pool.core.wire import Ping, encode
from p2pool.errors import DisconnectReason
from p2pool.events import EventKind, EventLog
from p2pool.pool.sliced import SlicedWalk
from p2pool.transport.connection import Connection

__all__ = ["Keepalive"]

#: Silent intervals before a connection is closed.
SILENT_INTERVALS = 3
#: Checks per interval: the close comes at most 1/CHECKS_PER_INTERVAL of an
#: interval late.
CHECKS_PER_INTERVAL = 2
#: Unanswered pings remembered per connection (a silent one is closed first).
MAX_UNANSWERED = SILENT_INTERVALS + 1
#: Connections checked per reactor turn: a pass over 10,000 connections,
#: each of which may be pinged, holds the reactor a few milliseconds at a
#: time instead of a tenth of a second.
CHECK_SLICE = 100
#: The part of the time between two checks over which a pass in several
#: slices is spread, so that the peers it pings do not all answer in the
#: same reactor turn (a pass over 10,000 connections: 100 slices over an
#: eighth of an interval).
PASS_SPREAD = 1 / 4
_PING = encode(Ping())


class Keepalive:
    """
    Checks every connection twice per interval, by the bytes it received
    since the last check, without any work per message: a connection is
    closed between 3 and 3.5 intervals after the last byte it sent (up to
    an eighth of an interval either way on a node with more than
    L{CHECK_SLICE} connections, whose passes are spread).

    It also measures round trips: a connection that is not silent, has no
    unanswered ping and was last pinged an interval ago or more (or never)
    is pinged too, and each C{Pong} answers the oldest unanswered ping.
    C{Ping} carries no nonce, so a C{Pong} that answers nothing forgets the
    connection's measurements: a peer sending C{Pong}s ahead of our pings
    gets none.
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
        self._clock = clock
        self.interval = interval
        self._seen: dict[Connection, tuple[int, int]] = {}
        #: When each unanswered ping was sent, oldest first.
        self._unanswered: dict[Connection, collections.deque[float]] = {}
        self._last_ping: dict[Connection, float] = {}
        #: The latest and the lowest round trip measured.
        self._round_trips: dict[Connection, tuple[float, float]] = {}
        self._walk: SlicedWalk[Connection] = SlicedWalk(clock)
        self._loop = LoopingCall(weak_method(self.check))
        self._loop.clock = clock

    def start(self) -> None:
        self._loop.start(self.interval / CHECKS_PER_INTERVAL, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        self._walk.stop()
        self._seen.clear()
        self._unanswered.clear()
        self._last_ping.clear()
        self._round_trips.clear()

    def round_trip(self, conn: Connection) -> float | None:
        """
        The latest round trip measured on C{conn}, in seconds; None before
        the first C{Pong} (or after an unsolicited one).
        """
        measured = self._round_trips.get(conn)
        return measured[0] if measured is not None else None

    def lowest_round_trip(self, conn: Connection) -> float | None:
        """
        The lowest round trip measured on C{conn}, in seconds; None as for
        L{round_trip}.
        """
        measured = self._round_trips.get(conn)
        return measured[1] if measured is not None else None

    def pong_received(self, conn: Connection) -> None:
        """
        A C{Pong} arrived on C{conn}: it answers the oldest unanswered
        ping, or, answering none, forgets what was measured.
        """
        unanswered = self._unanswered.get(conn)
        if not unanswered:
            self._round_trips.pop(conn, None)
            return
        rtt = max(0.0, self._clock.seconds() - unanswered.popleft())
        previous = self._round_trips.get(conn)
        self._round_trips[conn] = (rtt, rtt if previous is None else min(previous[1], rtt))

    def _round_trip_due(self, conn: Connection, now: float) -> bool:
        """
        Whether C{conn} has no unanswered ping and was last pinged an
        interval ago or more (or never).
        """
        return not self._unanswered.get(conn) and now - self._last_ping.get(conn, -self.interval) >= self.interval

    def _ping(self, conn: Connection, now: float) -> None:
        if conn.send_control(_PING):
            self._last_ping[conn] = now
            unanswered = self._unanswered.get(conn)
            if unanswered is None:
                unanswered = self._unanswered[conn] = collections.deque(maxlen=MAX_UNANSWERED)
            unanswered.append(now)

    def check(self) -> None:
        """
        Start a pass over the connections: ping those silent for one
        interval (and each interval after); close those silent for
        L{SILENT_INTERVALS}; ping those that are not silent when their round
        trip is due. The pass checks L{CHECK_SLICE} connections per reactor
        turn, its slices spread over L{PASS_SPREAD} of the time to the next
        check; one still under way is left to finish.
        """
        if self._walk.running:
            return
        now = self._clock.seconds()
        last_seen = self._seen
        seen: dict[Connection, tuple[int, int]] = {}
        self._walk.start(
            list(self._directory.connections.values()),
            CHECK_SLICE,
            lambda conn: self._check_one(conn, now, last_seen, seen),
            lambda: self._pass_done(seen),
            span=self.interval / CHECKS_PER_INTERVAL * PASS_SPREAD,
        )

    def _check_one(
        self,
        conn: Connection,
        now: float,
        last_seen: dict[Connection, tuple[int, int]],
        seen: dict[Connection, tuple[int, int]],
    ) -> None:
        if not conn.is_open:
            return  # closing already: its close has a grace period of its own
        received = conn.bytes_received
        last, silent = last_seen.get(conn, (-1, 0))
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
            self._ping(conn, now)
        elif silent == 0 and self._round_trip_due(conn, now):
            self._ping(conn, now)

    def _pass_done(self, seen: dict[Connection, tuple[int, int]]) -> None:
        self._seen = seen
        # Forget the measurements of connections that closed (they are not
        # in this pass's results).
        for measured in (self._unanswered, self._last_ping, self._round_trips):
            for gone in measured.keys() - seen.keys():
                del measured[gone]
