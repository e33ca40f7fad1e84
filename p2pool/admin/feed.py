# -*- test-case-name: tests.test_admin -*-
"""
The event feed behind C{GET /network/log}: the pool's events as JSON lines,
the latest few kept for replay, streamed to every client that listens
until it leaves.

A slow client does not hold the pool up or make it buffer without bound:
while its connection is full, at most L{STREAM_QUEUE_LIMIT} lines wait for
it; beyond that, lines are dropped and a C{log_lines_dropped} line says how
many when the connection drains.
"""

from __future__ import annotations

import collections
import json
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from p2pool.admin.json_shapes import rfc3339
from p2pool.events import PoolEvent

if TYPE_CHECKING:
    from p2pool.pool.service import Pool

__all__ = ["EventFeed", "LOG_LINES_DROPPED", "RECENT_EVENTS", "STREAM_QUEUE_LIMIT", "event_line"]

#: Events kept for replay (C{?recent=true}).
RECENT_EVENTS = 500
#: Lines queued for a client whose connection is full before dropping.
STREAM_QUEUE_LIMIT = 10_000
#: Clients streaming at once; more are refused.
MAX_STREAMS = 32
#: The C{event} of the line telling a client how many lines it missed (a
#: line of the feed, not a pool event: not a L{p2pool.events.EventKind}).
LOG_LINES_DROPPED = "log_lines_dropped"

_log = Logger()


def event_line(event: PoolEvent, when: float) -> bytes:
    """
    One event as a JSON line: C{event}, its fields, and C{time} (when the
    feed saw it, RFC 3339) unless the event has a field of that name.
    """
    record = event.to_json()
    record.setdefault("time", rfc3339(when))
    return json.dumps(record, separators=(",", ":"), default=str).encode("utf-8") + b"\n"


@implementer(IPushProducer)
class _Stream:
    """
    One client of the feed: writes lines to its request, queueing them
    while the connection is full.
    """

    def __init__(self, feed: EventFeed, request: Request) -> None:
        self._feed = feed
        self._request = request
        self._paused = False
        self._queue: collections.deque[bytes] = collections.deque()
        self._dropped = 0
        self.closed = False

    def send(self, line: bytes) -> None:
        if self.closed:
            return
        if not self._paused:
            self._request.write(line)
        elif len(self._queue) < STREAM_QUEUE_LIMIT:
            self._queue.append(line)
        else:
            self._dropped += 1

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while self._queue and not self._paused and not self.closed:
            self._request.write(self._queue.popleft())
        if self._dropped and not self._paused and not self.closed:
            dropped, self._dropped = self._dropped, 0
            notice = {"event": LOG_LINES_DROPPED, "dropped": dropped, "time": rfc3339(self._feed.now())}
            self._request.write(json.dumps(notice).encode("utf-8") + b"\n")

    def stopProducing(self) -> None:
        self.close(finish=False)

    def close(self, finish: bool) -> None:
        """
        Stop streaming; with C{finish}, end the response.
        """
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._feed.stream_closed(self)
        if getattr(self._request, "channel", None) is None:
            return  # the client has gone: nothing to unregister or end
        try:
            self._request.unregisterProducer()
            if finish:
                self._request.finish()
        except Exception:
            _log.failure("cannot end an event stream")


class EventFeed:
    """
    The pool's events for C{/network/log} streams.
    """

    def __init__(self, pool: Pool, max_streams: int = MAX_STREAMS) -> None:
        self._pool = pool
        self._max_streams = max_streams
        self._recent: collections.deque[bytes] = collections.deque(maxlen=RECENT_EVENTS)
        self._streams: list[_Stream] = []

    def now(self) -> float:
        return self._pool.now()

    def attach(self) -> None:
        """
        Start receiving the pool's events.
        """
        if self.observe not in self._pool.events.callbacks:
            self._pool.events.callbacks.append(self.observe)

    def detach(self) -> None:
        """
        Stop receiving events, and end every stream.
        """
        while self.observe in self._pool.events.callbacks:
            self._pool.events.callbacks.remove(self.observe)
        for stream in list(self._streams):
            stream.close(finish=True)

    @property
    def streams(self) -> int:
        """
        How many clients are streaming.
        """
        return len(self._streams)

    @property
    def full(self) -> bool:
        """
        No more clients can stream.
        """
        return len(self._streams) >= self._max_streams

    def recent(self) -> list[bytes]:
        """
        The latest events, oldest first, as lines.
        """
        return list(self._recent)

    def observe(self, event: PoolEvent) -> None:
        """
        Keep and send one event; never raises.
        """
        try:
            line = event_line(event, self._pool.now())
        except Exception:
            _log.failure("cannot encode event {event}", event=event.event)
            return
        self._recent.append(line)
        for stream in list(self._streams):
            try:
                stream.send(line)
            except Exception:
                _log.failure("cannot write to an event stream")
                stream.close(finish=False)

    def stream(self, request: Request, replay: bool) -> None:
        """
        Stream events to C{request} (replaying the recent ones first with
        C{replay}) until the client leaves or the feed is detached.
        """
        stream = _Stream(self, request)
        self._streams.append(stream)
        request.registerProducer(stream, True)
        if replay:
            for line in self._recent:
                stream.send(line)

        request.notifyFinish().addBoth(lambda _: stream.close(finish=False))

    def stream_closed(self, stream: _Stream) -> None:
        """
        C{stream} has ended: stop sending events to it.
        """
        if stream in self._streams:
            self._streams.remove(stream)
