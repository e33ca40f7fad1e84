# -*- test-case-name: tests.test_pool -*-
"""
Pool events (Tezos C{P2p_connection.P2p_event}): what happened, with typed
fields, delivered to the pool's C{log} callback and to C{twisted.logger}.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import attrs
from twisted.logger import Logger, LogLevel

__all__ = ["EventLog", "PoolEvent"]

#: Events worth an info line in a node's log; the others are debug.
_INFO_EVENTS = frozenset(
    {
        "connection_established",
        "disconnection",
        "external_disconnection",
        "authentication_failed",
        "rejecting_request",
        "request_rejected",
        "too_few_connections",
        "too_many_connections",
        "listening",
        "connection_failed",
        "identity_ready",
        "connections_refused",
    }
)


@attrs.frozen
class PoolEvent:
    """
    One pool event: its name (e.g. C{connection_established}) and fields.
    """

    event: str
    fields: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """
        The event as a JSON object: C{event} plus its fields as text.
        """
        out: dict[str, Any] = {"event": self.event}
        for key, value in self.fields.items():
            out[key] = value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
        return out


_log = Logger(namespace="p2pool.events")


@functools.lru_cache(maxsize=1024)
def _format(keys: tuple[str, ...]) -> str:
    """
    The log format string of an event with these fields.
    """
    return "{p2pool_event} " + " ".join(f"{key}={{{key}}}" for key in keys)


class EventLog:
    """
    Emits pool events to a callback and to C{twisted.logger}.
    """

    def __init__(self, callback: Optional[Callable[[PoolEvent], object]] = None) -> None:
        self.callbacks: list[Callable[[PoolEvent], object]] = [callback] if callback else []
        #: Called with each event after the callbacks; when it returns
        #: true the event gets no log line of its own (a summary counts it:
        #: see L{p2pool.refusals.RefusalLog.take_event}).
        self.summarise: Optional[Callable[[PoolEvent], bool]] = None

    def emit(self, event: str, **fields: Any) -> None:
        """
        Emit C{event} with C{fields}.
        """
        record = PoolEvent(event, fields)
        for callback in list(self.callbacks):
            callback(record)
        if self.summarise is not None and self.summarise(record):
            return
        level = LogLevel.info if event in _INFO_EVENTS else LogLevel.debug
        _log.emit(level, _format(tuple(fields)), p2pool_event=event, **fields)
