# -*- test-case-name: tests.test_tables,tests.test_pool_stateful -*-
"""
What the pool knows about each point and each peer, and their state
machines (Tezos C{P2p_point_state} and C{P2p_peer_state}) as explicit
transition tables.
"""

from __future__ import annotations

import collections
import enum
import operator
import random
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar, overload

import attrs
import msgspec

from p2pool.config import ReconnectionConfig
from p2pool.core.addressing import PeerId, Point

__all__ = [
    "InvalidTransition",
    "PackedEvent",
    "PeerInfo",
    "PeerState",
    "PointInfo",
    "PointState",
    "StateEvent",
    "UNTRUSTED",
    "TrustSource",
    "changed_trust",
    "known_public_of",
    "peer_id_of",
    "point_of",
    "source_group_of",
    "unpack_event",
]

EVENT_RING_SIZE = 100


class InvalidTransition(RuntimeError):
    """
    A state change that the state machine does not allow.
    """


class PointState(enum.Enum):
    """
    The state of a known point.
    """

    DISCONNECTED = "disconnected"
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    RUNNING = "running"

    # Singletons compared by identity: hashed by identity, in C (Enum's own
    # __hash__ is a Python call at every transition lookup).
    __hash__ = object.__hash__


class PeerState(enum.Enum):
    """
    The state of a known peer.
    """

    DISCONNECTED = "disconnected"
    ACCEPTED = "accepted"
    RUNNING = "running"

    __hash__ = object.__hash__


class TrustSource(enum.Flag):
    """
    Where the trust of a point or peer came from; a record may hold both.
    """

    #: The configured C{trusted_points} (points only): it follows the
    #: configuration and is not saved in the peers file.
    CONFIG = enum.auto()
    #: L{Pool.register_point} with C{trusted=True}, C{pool.points.trust},
    #: C{pool.peers.trust}, the admin API: saved in the peers file.
    API = enum.auto()


#: No trust (the one empty flag: C{trust is not UNTRUSTED} tests for trust).
UNTRUSTED = TrustSource(0)


def _as_trust(value: bool | TrustSource) -> TrustSource:
    """
    A record's trust from a L{TrustSource} or, as records were built
    before sources, a flag (C{True} is trust given through the API).
    """
    if isinstance(value, TrustSource):
        return value
    return TrustSource.API if value else UNTRUSTED


def changed_trust(trust: TrustSource, trusted: bool, source: TrustSource | None = None) -> TrustSource:
    """
    C{trust} after trusting (C{trusted}) or untrusting from C{source}: with
    no source, trusting is from the API and untrusting removes every
    source.
    """
    if trusted:
        return trust | (source or TrustSource.API)
    return trust & ~source if source else UNTRUSTED


_P = PointState
_POINT_TRANSITIONS: dict[tuple[PointState, str], PointState] = {
    (_P.DISCONNECTED, "request"): _P.REQUESTED,
    (_P.REQUESTED, "request"): _P.REQUESTED,
    (_P.DISCONNECTED, "accept"): _P.ACCEPTED,
    (_P.REQUESTED, "accept"): _P.ACCEPTED,
    (_P.DISCONNECTED, "run"): _P.RUNNING,
    (_P.REQUESTED, "run"): _P.RUNNING,
    (_P.ACCEPTED, "run"): _P.RUNNING,
    (_P.REQUESTED, "disconnect"): _P.DISCONNECTED,
    (_P.ACCEPTED, "disconnect"): _P.DISCONNECTED,
    (_P.RUNNING, "disconnect"): _P.DISCONNECTED,
}

_Q = PeerState
_PEER_TRANSITIONS: dict[tuple[PeerState, str], PeerState] = {
    (_Q.DISCONNECTED, "accept"): _Q.ACCEPTED,
    (_Q.DISCONNECTED, "run"): _Q.RUNNING,
    (_Q.ACCEPTED, "run"): _Q.RUNNING,
    (_Q.ACCEPTED, "disconnect"): _Q.DISCONNECTED,
    (_Q.RUNNING, "disconnect"): _Q.DISCONNECTED,
}


class StateEvent(msgspec.Struct, frozen=True, gc=False):
    """
    One entry of a point's or peer's event ring.

    A C{msgspec.Struct} (built in C, about a fifth of a frozen attrs
    instance's time: each connection records several per side) that the
    cyclic garbage collector does not track: it refers to a string, a
    number, a L{PeerId} and a L{Point}, none of which it tracks either.
    """

    kind: str
    timestamp: float
    peer_id: PeerId | None = None
    point: Point | None = None


def _later(live: Any, loaded: Any) -> Any:
    """
    The later of two optional stamps C{(who, time)}: the live one when
    their times are equal.
    """
    if loaded is None or (live is not None and live[1] >= loaded[1]):
        return live
    return loaded


def _latest_time(first: float | None, second: float | None, third: float | None) -> float | None:
    """
    The latest of three times that are not None (None when none is): the
    last seen or last missed time of a record, on every state change that
    connects or disconnects.
    """
    latest = first
    if second is not None and (latest is None or second > latest):
        latest = second
    if third is not None and (latest is None or third > latest):
        latest = third
    return latest


W = TypeVar("W")


class _Stamp(Generic[W]):
    """
    A record's C{last_*} member: C{(who, time)}, or None before the first
    such event. The record keeps it in two of its slots, C{_NAME_by} and
    C{_NAME_at} (None in both for no stamp), not as a tuple: a large book
    holds several stamps per record, and a tuple holding a point or a
    peer id would be one more object for the cyclic garbage collector to
    walk on every full pass (with 100k peers and 100k points, 400k of
    the 855k objects it tracked; a full pass over that book went from
    0.60-0.70 s to 0.40-0.43 s of CPU, see BENCHMARKS.md). Reading makes
    the tuple; setting takes one, or None.
    """

    def __init__(self, name: str) -> None:
        self._by = f"_{name}_by"
        self._at = f"_{name}_at"
        self._both = operator.attrgetter(self._by, self._at)

    @overload
    def __get__(self, info: None, owner: type | None = None) -> _Stamp[W]: ...

    @overload
    def __get__(self, info: object, owner: type | None = None) -> tuple[W, float] | None: ...

    def __get__(self, info: object, owner: type | None = None) -> _Stamp[W] | tuple[W, float] | None:
        if info is None:
            return self
        pair: tuple[W, float | None] = self._both(info)
        return None if pair[1] is None else pair  # type: ignore[return-value]

    def __set__(self, info: object, stamp: tuple[W, float] | None) -> None:
        if stamp is None:
            setattr(info, self._by, None)
            setattr(info, self._at, None)
        else:
            setattr(info, self._by, stamp[0])
            setattr(info, self._at, stamp[1])


def _invalid_transition(kind: str, name: object, state: PointState | PeerState, event: str) -> InvalidTransition:
    """
    The error of a C{kind} record C{name} that cannot take C{event} in
    C{state} (its transition table has no such transition).
    """
    return InvalidTransition(f"{kind} {name}: cannot {event} from {state.value}")


#: An event as plain values, as a loaded peers file gives it: C{(kind,
#: timestamp, ip, port)}, the address None when the event names none.
PackedEvent = tuple[str, float, "str | None", "int | None"]


def unpack_event(packed: PackedEvent) -> StateEvent:
    """
    The L{StateEvent} of C{packed}.
    """
    kind, timestamp, ip, port = packed
    return StateEvent(kind, timestamp, None, None if ip is None or port is None else Point(ip, port))


@attrs.define(eq=False)
class _EventRing:
    """
    A record with a ring of its latest events, created on the first one.

    A record loaded from the peers file keeps the file's events as plain
    values (L{PackedEvent}) until it records one of its own: tuples of
    strings and numbers, which the cyclic garbage collector stops tracking,
    where a ring of L{StateEvent}s is several tracked objects per record.
    """

    _events: collections.deque[StateEvent] | None = attrs.field(default=None, alias="events", kw_only=True)
    _loaded_events: tuple[PackedEvent, ...] | None = attrs.field(default=None, alias="loaded_events", kw_only=True)

    @property
    def events(self) -> Sequence[StateEvent]:
        """
        The latest events (at most L{EVENT_RING_SIZE}), oldest first.
        """
        if self._events is not None:
            return self._events
        if self._loaded_events is not None:
            return tuple(map(unpack_event, self._loaded_events))
        return ()

    def event_values(self) -> Sequence[StateEvent | PackedEvent]:
        """
        The latest events as L{events}, but those loaded from the peers file
        and not yet unpacked as L{PackedEvent}s (for writing the file).
        """
        if self._events is None and self._loaded_events is not None:
            return self._loaded_events
        return tuple(self.events)

    def _record(self, event: StateEvent) -> None:
        if self._events is None:
            self._events = collections.deque(self.events, maxlen=EVENT_RING_SIZE)
            self._loaded_events = None
        self._events.append(event)

    def _absorb_events(self, loaded: _EventRing) -> None:
        """
        Add C{loaded}'s events to this ring: both in time order (the
        loaded ones first at equal times), the latest L{EVENT_RING_SIZE}
        kept.
        """
        if not loaded.events:
            return
        merged = sorted([*loaded.events, *self.events], key=lambda e: e.timestamp)
        self._events = collections.deque(merged, maxlen=EVENT_RING_SIZE)
        self._loaded_events = None


class _Trusted:
    """
    A record whose C{trust} says where its trust came from.
    """

    __slots__ = ()
    trust: TrustSource

    @property
    def trusted(self) -> bool:
        """
        Whether it is trusted, from any source.
        """
        return self.trust is not UNTRUSTED


# No hooks on assignment: the converter of C{trust} is for the constructor
# only, and a class-wide __setattr__ would slow every state change. The
# constructor is written out: it takes the stamps (L{_Stamp}).
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP, init=False)
class PointInfo(_EventRing, _Trusted):
    """
    What the pool knows of one point.

    @ivar source_group: the network group (or bootstrap URL) of the peer
        that told us about the point, for a point learnt from the network;
        None for a point given by the operator or that connected to us.
    """

    point: Point
    #: Where its trust came from (in the constructor C{trusted}, which
    #: also takes a flag: C{True} for trust through the API).
    trust: TrustSource = attrs.field(default=UNTRUSTED, converter=_as_trust, alias="trusted")
    expected_peer_id: PeerId | None = None
    state: PointState = PointState.DISCONNECTED
    current_peer_id: PeerId | None = None
    last_failed_connection: float | None = None
    known_public: bool = False
    reconnection_delay: float | None = None
    reconnection_time: float | None = None
    source_group: str | None = None
    _rejected_by: PeerId | None = attrs.field(default=None, init=False, repr=False)
    _rejected_at: float | None = attrs.field(default=None, init=False, repr=False)
    _established_by: PeerId | None = attrs.field(default=None, init=False, repr=False)
    _established_at: float | None = attrs.field(default=None, init=False, repr=False)
    _disconnection_by: PeerId | None = attrs.field(default=None, init=False, repr=False)
    _disconnection_at: float | None = attrs.field(default=None, init=False, repr=False)

    last_rejected_connection = _Stamp[PeerId]("rejected")
    last_established_connection = _Stamp[PeerId]("established")
    last_disconnection = _Stamp[PeerId]("disconnection")

    def __init__(
        self,
        point: Point,
        trusted: bool | TrustSource = UNTRUSTED,
        expected_peer_id: PeerId | None = None,
        state: PointState = PointState.DISCONNECTED,
        current_peer_id: PeerId | None = None,
        last_failed_connection: float | None = None,
        last_rejected_connection: tuple[PeerId, float] | None = None,
        last_established_connection: tuple[PeerId, float] | None = None,
        last_disconnection: tuple[PeerId, float] | None = None,
        known_public: bool = False,
        reconnection_delay: float | None = None,
        reconnection_time: float | None = None,
        source_group: str | None = None,
        *,
        events: collections.deque[StateEvent] | None = None,
        loaded_events: tuple[PackedEvent, ...] | None = None,
    ) -> None:
        self.__attrs_init__(
            point,
            trusted,
            expected_peer_id,
            state,
            current_peer_id,
            last_failed_connection,
            known_public,
            reconnection_delay,
            reconnection_time,
            source_group,
            events=events,
            loaded_events=loaded_events,
        )
        self.last_rejected_connection = last_rejected_connection
        self.last_established_connection = last_established_connection
        self.last_disconnection = last_disconnection

    def hold_loaded(
        self,
        last_rejected_connection: tuple[PeerId, float] | None,
        last_established_connection: tuple[PeerId, float] | None,
        last_disconnection: tuple[PeerId, float] | None,
    ) -> None:
        """
        Hold the stamps the peers file gives this new record, and no events
        (for L{loaded_point_info}).
        """
        self._events = None
        self._loaded_events = None
        self._rejected_by, self._rejected_at = last_rejected_connection or _NO_STAMP
        self._established_by, self._established_at = last_established_connection or _NO_STAMP
        self._disconnection_by, self._disconnection_at = last_disconnection or _NO_STAMP

    def stamp_values(self) -> tuple[Any, ...]:
        """
        The stamps C{last_rejected_connection}, C{last_established_connection}
        and C{last_disconnection} laid flat: peer id, time, peer id, time,
        peer id, time (None and None for an absent one); for copying many
        records at once without a tuple per stamp.
        """
        return _POINT_STAMP_VALUES(self)

    @staticmethod
    def established_times(infos: Iterable[PointInfo]) -> list[float | None]:
        """
        The time of each of C{infos}' C{last_established_connection} (None
        for none), in one C loop: for many records at once, without a
        tuple per stamp.
        """
        return list(map(_ESTABLISHED_AT, infos))

    def _move(self, event: str) -> None:
        try:
            self.state = _POINT_TRANSITIONS[self.state, event]
        except KeyError:
            raise _invalid_transition("point", self.point, self.state, event) from None

    @property
    def last_seen(self) -> float | None:
        """
        The latest time the point was rejected, established or disconnected.
        """
        return _latest_time(self._rejected_at, self._established_at, self._disconnection_at)

    @property
    def last_miss(self) -> float | None:
        """
        The latest time a connection to the point failed, was rejected or
        ended.
        """
        return _latest_time(self.last_failed_connection, self._rejected_at, self._disconnection_at)

    @property
    def has_connected(self) -> bool:
        """
        Whether a connection to the point was ever established.
        """
        return self._established_at is not None

    def cannot_reconnect_yet(self, now: float) -> bool:
        """
        The reconnection back-off still blocks dialing this point.
        """
        return self.reconnection_time is not None and now <= self.reconnection_time

    def set_requested(self, now: float) -> None:
        self._move("request")
        self._record(StateEvent("outgoing_request", now))

    def set_accepted(self, peer_id: PeerId, now: float) -> None:
        self._move("accept")
        self.current_peer_id = peer_id
        self._record(StateEvent("accepting_request", now, peer_id))

    def set_running(self, peer_id: PeerId, now: float) -> None:
        if self.state is PointState.ACCEPTED and self.current_peer_id != peer_id:
            raise InvalidTransition(f"point {self.point}: accepted {self.current_peer_id}, not {peer_id}")
        self._move("run")
        self.current_peer_id = peer_id
        self._established_by, self._established_at = peer_id, now
        self.reconnection_delay = self.reconnection_time = None
        self._record(StateEvent("connection_established", now, peer_id))

    def set_disconnected(
        self, now: float, policy: ReconnectionConfig, rng: random.Random, requested: bool = False
    ) -> None:
        """
        Back to Disconnected: from Requested or Accepted a failed attempt
        (the back-off grows), from Running a disconnection (blocked for
        C{disconnection_delay}, then the back-off restarts).
        """
        previous, peer_id = self.state, self.current_peer_id
        self._move("disconnect")
        self.current_peer_id = None
        jitter = 1.0 + policy.jitter * (2 * rng.random() - 1)
        if previous is PointState.RUNNING:
            assert peer_id is not None
            self._disconnection_by, self._disconnection_at = peer_id, now
            self.reconnection_delay = policy.initial_delay
            self.reconnection_time = now + policy.disconnection_delay * jitter
            kind = "disconnection" if requested else "external_disconnection"
        else:
            delay = self.reconnection_delay or policy.initial_delay
            self.reconnection_time = now + delay * jitter
            self.reconnection_delay = min(delay * policy.factor, policy.increase_cap)
            if previous is PointState.ACCEPTED:
                assert peer_id is not None
                self._rejected_by, self._rejected_at = peer_id, now
            else:
                self.last_failed_connection = now
            kind = "request_rejected"
        self._record(StateEvent(kind, now, peer_id))

    def absorb(self, loaded: PointInfo) -> None:
        """
        Add what the peers file knew of this point (C{loaded}) to this
        record, which the pool built since it started: the state, the
        current peer, the reconnection back-off stay this record's; trust
        adds the file's; the pin is this record's when it has one, else
        the file's; C{known_public} is either's; each C{last_*} time is
        the later of the two; the events are both histories in time
        order; the source group is None when either is (a point the
        operator gave or that connected to us is not a learnt one).

        The caller keeps a table's indexes right (L{PointTable.absorb}).
        """
        self.trust |= loaded.trust
        if self.expected_peer_id is None:
            self.expected_peer_id = loaded.expected_peer_id
        self.known_public = self.known_public or loaded.known_public
        failed = [t for t in (self.last_failed_connection, loaded.last_failed_connection) if t is not None]
        self.last_failed_connection = max(failed) if failed else None
        self.last_rejected_connection = _later(self.last_rejected_connection, loaded.last_rejected_connection)
        self.last_established_connection = _later(self.last_established_connection, loaded.last_established_connection)
        self.last_disconnection = _later(self.last_disconnection, loaded.last_disconnection)
        if loaded.source_group is None:
            self.source_group = None
        self._absorb_events(loaded)

    def reset_reconnection_delay(self) -> None:
        """
        Allow dialing this point at once.
        """
        self.reconnection_delay = self.reconnection_time = None


# No hooks on assignment (see PointInfo); the constructor is written out.
@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP, init=False)
class PeerInfo(_EventRing, _Trusted):
    """
    What the pool knows of one peer.
    """

    peer_id: PeerId
    created: float
    metadata: Any = None
    #: Where its trust came from (in the constructor C{trusted}, which
    #: also takes a flag: C{True} for trust through the API).
    trust: TrustSource = attrs.field(default=UNTRUSTED, converter=_as_trust, alias="trusted")
    state: PeerState = PeerState.DISCONNECTED
    current_point: Point | None = None
    _failed_by: Point | None = attrs.field(default=None, init=False, repr=False)
    _failed_at: float | None = attrs.field(default=None, init=False, repr=False)
    _rejected_by: Point | None = attrs.field(default=None, init=False, repr=False)
    _rejected_at: float | None = attrs.field(default=None, init=False, repr=False)
    _established_by: Point | None = attrs.field(default=None, init=False, repr=False)
    _established_at: float | None = attrs.field(default=None, init=False, repr=False)
    _disconnection_by: Point | None = attrs.field(default=None, init=False, repr=False)
    _disconnection_at: float | None = attrs.field(default=None, init=False, repr=False)

    last_failed_connection = _Stamp[Point | None]("failed")
    last_rejected_connection = _Stamp[Point | None]("rejected")
    last_established_connection = _Stamp[Point | None]("established")
    last_disconnection = _Stamp[Point | None]("disconnection")

    def __init__(
        self,
        peer_id: PeerId,
        created: float,
        metadata: Any = None,
        trusted: bool | TrustSource = UNTRUSTED,
        state: PeerState = PeerState.DISCONNECTED,
        current_point: Point | None = None,
        last_failed_connection: tuple[Point | None, float] | None = None,
        last_rejected_connection: tuple[Point | None, float] | None = None,
        last_established_connection: tuple[Point | None, float] | None = None,
        last_disconnection: tuple[Point | None, float] | None = None,
        *,
        events: collections.deque[StateEvent] | None = None,
        loaded_events: tuple[PackedEvent, ...] | None = None,
    ) -> None:
        self.__attrs_init__(
            peer_id, created, metadata, trusted, state, current_point, events=events, loaded_events=loaded_events
        )
        self.last_failed_connection = last_failed_connection
        self.last_rejected_connection = last_rejected_connection
        self.last_established_connection = last_established_connection
        self.last_disconnection = last_disconnection

    def hold_loaded(
        self,
        loaded_events: tuple[PackedEvent, ...] | None,
        last_failed_connection: tuple[Point | None, float] | None,
        last_rejected_connection: tuple[Point | None, float] | None,
        last_established_connection: tuple[Point | None, float] | None,
        last_disconnection: tuple[Point | None, float] | None,
    ) -> None:
        """
        Hold the events (packed) and the stamps the peers file gives this
        new record (for L{loaded_peer_info}).
        """
        self._events = None
        self._loaded_events = loaded_events
        self._failed_by, self._failed_at = last_failed_connection or _NO_STAMP
        self._rejected_by, self._rejected_at = last_rejected_connection or _NO_STAMP
        self._established_by, self._established_at = last_established_connection or _NO_STAMP
        self._disconnection_by, self._disconnection_at = last_disconnection or _NO_STAMP

    def stamp_values(self) -> tuple[Any, ...]:
        """
        The stamps C{last_failed_connection}, C{last_rejected_connection},
        C{last_established_connection} and C{last_disconnection} laid flat:
        point, time, point, time, ... (None and None for an absent one);
        for copying many records at once without a tuple per stamp.
        """
        return _PEER_STAMP_VALUES(self)

    def _move(self, event: str) -> None:
        try:
            self.state = _PEER_TRANSITIONS[self.state, event]
        except KeyError:
            raise _invalid_transition("peer", self.peer_id, self.state, event) from None

    @property
    def last_seen(self) -> float | None:
        return _latest_time(self._rejected_at, self._established_at, self._disconnection_at)

    @property
    def last_miss(self) -> float | None:
        return _latest_time(self._failed_at, self._rejected_at, self._disconnection_at)

    def absorb(self, loaded: PeerInfo, metadata: bool) -> None:
        """
        Add what the peers file knew of this peer (C{loaded}) to this
        record, which the pool built since it started: the state and
        current point stay this record's; trust adds the file's;
        C{created} is the earlier; each C{last_*} stamp is the later of the
        two; the events are both histories in time order; with
        C{metadata}, the file's (decoded) metadata replaces this record's.
        """
        self.trust |= loaded.trust
        self.created = min(self.created, loaded.created)
        if metadata:
            self.metadata = loaded.metadata
        self.last_failed_connection = _later(self.last_failed_connection, loaded.last_failed_connection)
        self.last_rejected_connection = _later(self.last_rejected_connection, loaded.last_rejected_connection)
        self.last_established_connection = _later(self.last_established_connection, loaded.last_established_connection)
        self.last_disconnection = _later(self.last_disconnection, loaded.last_disconnection)
        self._absorb_events(loaded)

    def set_accepted(self, point: Point | None, now: float) -> None:
        self._move("accept")
        self.current_point = point
        self._record(StateEvent("accepting_request", now, point=point))

    def set_running(self, point: Point | None, now: float) -> None:
        self._move("run")
        self.current_point = point
        self._established_by, self._established_at = point, now
        self._record(StateEvent("connection_established", now, point=point))

    def set_disconnected(self, now: float, requested: bool = False) -> None:
        previous, point = self.state, self.current_point
        self._move("disconnect")
        self.current_point = None
        if previous is PeerState.RUNNING:
            self._disconnection_by, self._disconnection_at = point, now
            kind = "disconnection" if requested else "external_disconnection"
        else:
            self._rejected_by, self._rejected_at = point, now
            kind = "request_rejected"
        self._record(StateEvent(kind, now, point=point))


# -- Records rebuilt from the peers file -------------------------------------

_POINT_STAMP_VALUES = operator.attrgetter(
    "_rejected_by", "_rejected_at", "_established_by", "_established_at", "_disconnection_by", "_disconnection_at"
)
_PEER_STAMP_VALUES = operator.attrgetter(
    "_failed_by",
    "_failed_at",
    "_rejected_by",
    "_rejected_at",
    "_established_by",
    "_established_at",
    "_disconnection_by",
    "_disconnection_at",
)

_ESTABLISHED_AT = operator.attrgetter("_established_at")

#: Readers of one member of a record, for many records at once (C-level,
#: for C{map} over a table's records or a slice of loaded ones).
peer_id_of = operator.attrgetter("peer_id")
point_of = operator.attrgetter("point")
known_public_of = operator.attrgetter("known_public")
source_group_of = operator.attrgetter("source_group")

#: The slots of an absent stamp (see L{_Stamp}).
_NO_STAMP = (None, None)

#: The trust a loaded record has, by its C{trusted} flag (False, True).
_LOADED_TRUST = (UNTRUSTED, TrustSource.API)


def loaded_peer_info(
    peer_id: PeerId,
    created: float,
    metadata: Any,
    trusted: bool,
    last_failed_connection: tuple[Point | None, float] | None,
    last_rejected_connection: tuple[Point | None, float] | None,
    last_established_connection: tuple[Point | None, float] | None,
    last_disconnection: tuple[Point | None, float] | None,
    loaded_events: tuple[PackedEvent, ...] | None,
) -> PeerInfo:
    """
    The L{PeerInfo} that C{PeerInfo(peer_id, created, metadata, trusted,
    last_..., loaded_events=loaded_events)} builds, without the
    constructor's argument handling: for the peers file's decoder, which
    builds one per known peer from values it has checked (a disconnected
    peer, trust from the API when C{trusted}).
    """
    info: PeerInfo = object.__new__(PeerInfo)
    info.peer_id = peer_id
    info.created = created
    info.metadata = metadata
    info.trust = _LOADED_TRUST[trusted]
    info.state = PeerState.DISCONNECTED
    info.current_point = None
    info.hold_loaded(
        loaded_events, last_failed_connection, last_rejected_connection, last_established_connection, last_disconnection
    )
    return info


def loaded_point_info(
    point: Point,
    trusted: bool,
    expected_peer_id: PeerId | None,
    last_failed_connection: float | None,
    last_rejected_connection: tuple[PeerId, float] | None,
    last_established_connection: tuple[PeerId, float] | None,
    last_disconnection: tuple[PeerId, float] | None,
    known_public: bool,
    source_group: str | None,
) -> PointInfo:
    """
    The L{PointInfo} that C{PointInfo(point, trusted, expected_peer_id,
    last_..., known_public=known_public, source_group=source_group)}
    builds, without the constructor's argument handling: for the peers
    file's decoder (a disconnected point without back-off, no events).
    """
    info: PointInfo = object.__new__(PointInfo)
    info.point = point
    info.trust = _LOADED_TRUST[trusted]
    info.expected_peer_id = expected_peer_id
    info.state = PointState.DISCONNECTED
    info.current_peer_id = None
    info.last_failed_connection = last_failed_connection
    info.hold_loaded(last_rejected_connection, last_established_connection, last_disconnection)
    info.known_public = known_public
    info.reconnection_delay = None
    info.reconnection_time = None
    info.source_group = source_group
    return info
