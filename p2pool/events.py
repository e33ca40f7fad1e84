# -*- test-case-name: tests.test_events,tests.test_pool_api -*-
"""
Pool events (Tezos C{P2p_connection.P2p_event}): what happened, with typed
fields, delivered to the pool's C{log} callback and to C{twisted.logger}.
"""

from __future__ import annotations

import enum
import functools
import time
from collections.abc import Callable
from typing import Any

import attrs
from twisted.logger import Logger, LogLevel

__all__ = ["INFO_EVENTS", "EventKind", "EventLog", "PoolEvent"]


class EventKind(enum.StrEnum):
    """
    Every pool event, by name: the one definition used by the emitters, the
    metrics, the tests and the catalogue in C{docs/POOL.md} (which gives each
    event's fields). The value is the name shown in the C{event} key of
    C{/network/log}, in C{twisted.logger} lines and in the C{p2pool_events}
    metric.
    """

    #: The node's identity is loaded or made.
    IDENTITY_READY = "identity_ready"
    #: The node listens.
    LISTENING = "listening"
    #: A point joined the known points.
    NEW_POINT = "new_point"
    #: A peer id joined the known peers.
    NEW_PEER = "new_peer"
    #: Known points were garbage-collected.
    GC_POINTS = "gc_points"
    #: Points learnt from the network were dropped: outside this node's
    #: reachability class, or refused by the source group bound.
    POINTS_DROPPED = "points_dropped"
    #: Known peer ids were garbage-collected.
    GC_PEER_IDS = "gc_peer_ids"
    #: Points were registered (advertised, from a nack, a seed, the API).
    GET_POINTS = "get_points"
    #: An incoming TCP connection was admitted to the handshake.
    INCOMING_CONNECTION = "incoming_connection"
    #: An incoming TCP connection from a banned address was closed.
    INCOMING_CONNECTION_BANNED = "incoming_connection_banned"
    #: An incoming TCP connection was closed: no slot is free.
    INCOMING_CONNECTION_TOO_MANY = "incoming_connection_too_many"
    #: An incoming TCP connection was closed: its network group is full.
    INCOMING_CONNECTION_NETGROUP_FULL = "incoming_connection_netgroup_full"
    #: A dial started.
    OUTGOING_CONNECTION = "outgoing_connection"
    #: A dial did not connect.
    CONNECTION_FAILED = "connection_failed"
    #: A handshake failed before either side accepted.
    AUTHENTICATION_FAILED = "authentication_failed"
    #: The peer at a point is not the peer id expected there.
    AUTHENTICATE_STATUS_PEER_ID_INCORRECT = "authenticate_status_peer_id_incorrect"
    #: A handshake succeeded and this node accepts the peer.
    ACCEPTING_REQUEST = "accepting_request"
    #: This node refused a peer with a nack.
    REJECTING_REQUEST = "rejecting_request"
    #: An accepted handshake did not end in a connection (the remote's nack,
    #: a timeout, ...).
    REQUEST_REJECTED = "request_rejected"
    #: A connection is running.
    CONNECTION_ESTABLISHED = "connection_established"
    #: This node closed a running connection.
    DISCONNECTION = "disconnection"
    #: The peer or the network closed a running connection.
    EXTERNAL_DISCONNECTION = "external_disconnection"
    #: An address was greylisted.
    GREYLISTED_ADDR = "greylisted_addr"
    #: A peer id was greylisted.
    GREYLISTED_PEER = "greylisted_peer"
    #: An address was banned.
    POINT_BANNED = "point_banned"
    #: A peer id was banned.
    PEER_BANNED = "peer_banned"
    #: A running connection was silent too long and is closed.
    IDLE_TIMEOUT = "idle_timeout"
    #: The slots were full: an incoming connection is closed for a newcomer.
    PEER_EVICTED = "peer_evicted"
    #: A maintenance pass began repairing the connection count.
    MAINTENANCE_STARTED = "maintenance_started"
    #: A maintenance pass that repaired something ended.
    MAINTENANCE_ENDED = "maintenance_ended"
    #: Maintenance found too few connections.
    TOO_FEW_CONNECTIONS = "too_few_connections"
    #: Maintenance found too many connections.
    TOO_MANY_CONNECTIONS = "too_many_connections"
    #: A C{Bootstrap} was sent.
    BOOTSTRAP_SENT = "bootstrap_sent"
    #: A C{Bootstrap} was received.
    BOOTSTRAP_RECEIVED = "bootstrap_received"
    #: An C{Advertise} was sent.
    ADVERTISE_SENT = "advertise_sent"
    #: An C{Advertise} was received.
    ADVERTISE_RECEIVED = "advertise_received"
    #: Only some points of an C{Advertise} were kept.
    ADVERTISE_SUBSAMPLED = "advertise_subsampled"
    #: A C{Bootstrap} from a private peer was not answered.
    PRIVATE_NODE_REQUEST = "private_node_request"
    #: A C{SwapRequest} was sent.
    SWAP_REQUEST_SENT = "swap_request_sent"
    #: A C{SwapRequest} was received.
    SWAP_REQUEST_RECEIVED = "swap_request_received"
    #: A C{SwapRequest} was ignored (a swap happened lately, the point is
    #: not disconnected, was unknown, or its source group's dial budget is
    #: spent).
    SWAP_REQUEST_IGNORED = "swap_request_ignored"
    #: A C{SwapRequest} found no peer to offer in return.
    NO_SWAP_CANDIDATE = "no_swap_candidate"
    #: A C{SwapAck} was sent.
    SWAP_ACK_SENT = "swap_ack_sent"
    #: A C{SwapAck} was received.
    SWAP_ACK_RECEIVED = "swap_ack_received"
    #: A swap connected the point offered.
    SWAP_SUCCESS = "swap_success"
    #: A swap did not connect the point offered.
    SWAP_FAILURE = "swap_failure"
    #: A control frame arriving during its kind's cooldown was dropped.
    THROTTLED = "throttled"
    #: A seed URL gave a problem.
    SEED_ERROR = "seed_error"
    #: A seed URL was fetched.
    SEED_FETCHED = "seed_fetched"
    #: A named point now resolves to another address.
    POINT_ADDRESS_CHANGED = "point_address_changed"
    #: The peers file was read (or found missing).
    LOAD_PEERS = "load_peers"
    #: The peers file could not be used.
    LOAD_ERROR_PEERS = "load_error_peers"
    #: A record of the peers file was skipped.
    LOAD_RECORD_SKIPPED = "load_record_skipped"
    #: The peers file was refused and left in place.
    LOAD_REFUSED_PEERS = "load_refused_peers"
    #: A save of the peers file began.
    SAVE_METADATA = "save_metadata"
    #: A save of the peers file ended.
    SAVE_PEERS = "save_peers"
    #: A save of the peers file failed.
    SAVE_ERROR_PEERS = "save_error_peers"
    #: A save of the peers file was skipped.
    SAVE_SKIPPED_PEERS = "save_skipped_peers"
    #: Saves of the peers file are allowed again (the refused file is gone).
    SAVE_ENABLED_PEERS = "save_enabled_peers"
    #: Some peers' metadata could not be encoded and was written as C{null}.
    SAVE_METADATA_ERRORS = "save_metadata_errors"
    #: Incoming connections were refused (one summary per reason per
    #: C{refusal_log_interval}).
    CONNECTIONS_REFUSED = "connections_refused"
    #: A peer's send queue refused a message or dropped a control frame
    #: (once until it drains).
    SEND_QUEUE_FULL = "send_queue_full"
    #: A peer left our send buffer full for C{send_stall_timeout}: aborted.
    SEND_STALLED = "send_stalled"
    #: The receive budget cannot hold a large frame arriving: that peer is
    #: not read until it can (once until no peer waits).
    RECEIVE_BUDGET_FULL = "receive_budget_full"
    #: A large frame did not arrive at C{min_frame_receive_rate}: aborted.
    FRAME_TOO_SLOW = "frame_too_slow"
    #: A close did not end within C{close_grace_period}: aborted.
    CLOSE_TIMEOUT = "close_timeout"


#: Events worth an info line in a node's log; the others are debug.
INFO_EVENTS = frozenset(
    {
        EventKind.CONNECTION_ESTABLISHED,
        EventKind.DISCONNECTION,
        EventKind.EXTERNAL_DISCONNECTION,
        EventKind.AUTHENTICATION_FAILED,
        EventKind.REJECTING_REQUEST,
        EventKind.REQUEST_REJECTED,
        EventKind.TOO_FEW_CONNECTIONS,
        EventKind.TOO_MANY_CONNECTIONS,
        EventKind.LISTENING,
        EventKind.CONNECTION_FAILED,
        EventKind.IDENTITY_READY,
        EventKind.CONNECTIONS_REFUSED,
        EventKind.SEND_STALLED,
        EventKind.FRAME_TOO_SLOW,
    }
)


@attrs.frozen
class PoolEvent:
    """
    One pool event: its kind (e.g. L{EventKind.CONNECTION_ESTABLISHED},
    which compares equal to its name C{"connection_established"}) and fields.
    """

    event: EventKind
    fields: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """
        The event as a JSON object: C{event} plus its fields as text.
        """
        out: dict[str, Any] = {"event": self.event.value}
        for key, value in self.fields.items():
            out[key] = value if value is None or isinstance(value, (bool, int, float, str)) else str(value)
        return out


_log = Logger(namespace="p2pool.events")


#: Each event's name as a plain string, for log records.
_NAMES: dict[EventKind, str] = {kind: kind.value for kind in EventKind}

#: Each event's log level.
_LEVELS: dict[EventKind, LogLevel] = {
    kind: LogLevel.info if kind in INFO_EVENTS else LogLevel.debug for kind in EventKind
}


@functools.lru_cache(maxsize=1024)
def _format(keys: tuple[str, ...]) -> str:
    """
    The log format string of an event with these fields.
    """
    return "{p2pool_event} " + " ".join(f"{key}={{{key}}}" for key in keys)


class EventLog:
    """
    Emits pool events to callbacks and to C{twisted.logger}.

    An event is built only when someone wants it (L{wants}): a callback is
    registered, the log records its level (L{log_level}), or the summariser
    counts its kind (L{summarised}).
    """

    def __init__(self, callback: Callable[[PoolEvent], object] | None = None) -> None:
        self.callbacks: list[Callable[[PoolEvent], object]] = [callback] if callback else []
        self._summarise: Callable[[PoolEvent], bool] | None = None
        self._summarised: frozenset[EventKind] = frozenset(EventKind)
        self._log_level: LogLevel | None = LogLevel.debug
        self._logged: frozenset[EventKind] = frozenset(EventKind)
        #: The kinds the log or the summariser wants (L{wants}, without
        #: the callbacks).
        self._wanted: frozenset[EventKind] = self._logged

    def _update_wanted(self) -> None:
        self._wanted = self._logged | self._summarised if self._summarise is not None else self._logged

    @property
    def summarise(self) -> Callable[[PoolEvent], bool] | None:
        """
        Called with each event after the callbacks; when it returns true
        the event gets no log line of its own (a summary counts it: see
        L{p2pool.pool.refusals.RefusalLog.take_event}).
        """
        return self._summarise

    @summarise.setter
    def summarise(self, summarise: Callable[[PoolEvent], bool] | None) -> None:
        self._summarise = summarise
        self._update_wanted()

    @property
    def summarised(self) -> frozenset[EventKind]:
        """
        The kinds L{summarise} must see even when nothing else wants them
        (those it counts); every kind unless told otherwise.
        """
        return self._summarised

    @summarised.setter
    def summarised(self, kinds: frozenset[EventKind]) -> None:
        self._summarised = frozenset(kinds)
        self._update_wanted()

    @property
    def log_level(self) -> LogLevel | None:
        """
        The lowest level of pool events the process's log records, as
        declared by whoever set the log up (C{None}: none at all). Events
        below it are not handed to C{twisted.logger}, and are not built
        unless a callback or the summariser wants them. C{debug} (every
        event logged) until declared otherwise; see
        L{p2pool.daemon.node.NodeService.setServiceParent}.
        """
        return self._log_level

    @log_level.setter
    def log_level(self, level: LogLevel | None) -> None:
        self._log_level = level
        self._logged = frozenset(() if level is None else (kind for kind in EventKind if _LEVELS[kind] >= level))
        self._update_wanted()

    def wants(self, event: EventKind) -> bool:
        """
        Whether an C{event} emitted now would reach anyone: a callback, the
        log, or the summariser's count. An emitter may skip making the
        fields of an event nobody wants.
        """
        return event in self._wanted or bool(self.callbacks)

    def emit(self, event: EventKind, **fields: Any) -> None:
        """
        Emit C{event} with C{fields} (to no one when nobody L{wants} it).

        @raise TypeError: C{event} is not an L{EventKind} (a plain string,
            even a known name, is refused so that a typo cannot pass).
        """
        if type(event) is not EventKind:
            raise TypeError(f"a pool event must be an EventKind, not {event!r}")
        callbacks = self.callbacks
        if not (callbacks or event in self._wanted):
            return
        logged = event in self._logged
        summarise = self._summarise
        record = PoolEvent(event, fields)
        if callbacks:
            for callback in list(callbacks):
                try:
                    callback(record)
                except Exception:
                    # The pool's work goes on whatever an observer does.
                    _log.failure("a pool event callback failed on {event_name}", event_name=_NAMES[event])
        if summarise is not None and summarise(record):
            return
        if not logged:
            return
        # The event Logger.emit would build, handed to its observer without
        # Logger.emit's check that the level is a LogLevel (it is one of two).
        _log.observer(
            {
                "p2pool_event": _NAMES[event],
                **fields,
                "log_logger": _log,
                "log_level": _LEVELS[event],
                "log_namespace": _log.namespace,
                "log_source": _log.source,
                "log_format": _format(tuple(fields)),
                "log_time": time.time(),
            }
        )
