# -*- test-case-name: tests.test_maintenance -*-
"""
What a pool answers to the control frames of running connections (Tezos
C{P2p_protocol}): Disconnect, Ping, Bootstrap, Advertise and swaps, with
per-connection throttling of discovery and swap frames. Points learnt from
Advertise and swaps are accounted to the sender's network group, and a swap
dials a never connected learnt point only within that group's dial budget.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point
from p2pool.core.admission import admission_group
from p2pool.core.dial_budget import DialBudget
from p2pool.core.directory import Directory
from p2pool.core.flow import TokenBucket
from p2pool.core.lifetime import weak_owner
from p2pool.core.states import PointInfo, PointState
from p2pool.core.wire import (
    Advertise,
    Bootstrap,
    ControlMessage,
    Disconnect,
    Kind,
    Ping,
    Pong,
    SwapAck,
    SwapRequest,
    decode_control,
    encode,
)
from p2pool.errors import DecodingError, DisconnectReason, P2PError
from p2pool.events import EventKind, EventLog
from p2pool.pool.contracts import AnswererPool
from p2pool.transport.connection import Connection

__all__ = ["Answerer"]

#: How many points an advertisement carries.
ADVERTISED_POINTS = 50
#: Minimum seconds between two handled frames of one kind on one
#: connection (Tezos v25 answerer throttling); a frame arriving sooner is
#: handled later, and one more arriving meanwhile is dropped.
COOLDOWNS: dict[int, float] = {Kind.BOOTSTRAP: 0.1, Kind.ADVERTISE: 0.1, Kind.SWAP_REQUEST: 60.0, Kind.SWAP_ACK: 60.0}
#: Advertised points accepted from one connection: a burst of this many...
ADVERTISE_BURST = 200.0
#: ...refilled at this many per second.
ADVERTISE_RATE = 10.0

_PONG = encode(Pong())


class _ConnectionState:
    """
    What the answerer remembers about one connection.
    """

    def __init__(self, now: float) -> None:
        self.last_handled: dict[int, float] = {}
        self.delayed: dict[int, Any] = {}
        self.advertise_bucket = TokenBucket(ADVERTISE_BURST, ADVERTISE_RATE, now)


class Answerer:
    """
    Handles the control frames of a pool's running connections. In private
    mode, and with C{disable_peer_discovery}, discovery frames are ignored;
    with C{swap_linger = false} swaps are.
    """

    def __init__(
        self,
        pool: AnswererPool,
        directory: Directory,
        *,
        config: PoolConfig,
        events: EventLog,
        clock: IReactorTime,
        rng: random.Random,
        dial_budget: DialBudget,
    ) -> None:
        """
        @param pool: advertises known points, learns new ones, and dials
            for swaps.
        @param directory: the known points and running connections.
        @param dial_budget: the per-source-group budget a swap's dial of a
            never connected learnt point spends.
        """
        self._pool = weak_owner(pool)
        self._directory = directory
        self._config = config
        self._events = events
        self._clock = clock
        self._rng = rng
        self._budget = dial_budget
        self._states: dict[Connection, _ConnectionState] = {}
        # Never swapped: like Tezos's epoch start, the linger window is open.
        self.latest_accepted_swap = float("-inf")
        self.latest_successful_swap = float("-inf")

    def connection_lost(self, conn: Connection) -> None:
        """
        Forget a closed connection, cancelling its delayed frames.
        """
        state = self._states.pop(conn, None)
        if state is not None:
            for call in state.delayed.values():
                if call.active():
                    call.cancel()

    def _state(self, conn: Connection) -> _ConnectionState:
        state = self._states.get(conn)
        if state is None:
            state = self._states[conn] = _ConnectionState(self._clock.seconds())
        return state

    def control_received(self, conn: Connection, kind: int, body: bytes) -> None:
        """
        Act on one control frame, now or after its kind's cooldown.

        @raise DecodingError: a malformed frame, or a kind that has no
            place on a running connection.
        """
        msg = decode_control(kind, body)
        # The kind as it came (a Kind compares and hashes as its number):
        # no enum member looked up for every frame.
        cooldown = COOLDOWNS.get(kind)
        if cooldown is None:
            self._handle(conn, msg)
            return
        state = self._state(conn)
        now = self._clock.seconds()
        wait = state.last_handled.get(kind, -cooldown) + cooldown - now
        if wait <= 0:
            state.last_handled[kind] = now
            self._handle(conn, msg)
        elif kind not in state.delayed:
            state.delayed[kind] = self._clock.callLater(wait, self._delayed, conn, kind, msg)
        else:
            self._events.emit(EventKind.THROTTLED, peer_id=str(conn.peer_id), kind=Kind(kind).name.lower())

    def _delayed(self, conn: Connection, kind: int, msg: ControlMessage) -> None:
        state = self._states.get(conn)
        if state is None or not conn.is_open:
            return
        del state.delayed[kind]
        state.last_handled[kind] = self._clock.seconds()
        self._handle(conn, msg)

    def _handle(self, conn: Connection, msg: ControlMessage) -> None:
        if isinstance(msg, Disconnect):
            conn.remote_disconnected()
        elif isinstance(msg, Ping):
            conn.send_control(_PONG)
        elif isinstance(msg, Pong):
            keepalive = self._pool.keepalive
            if keepalive is not None:
                keepalive.pong_received(conn)
        elif isinstance(msg, Bootstrap):
            self._bootstrap_received(conn)
        elif isinstance(msg, Advertise):
            self._advertise_received(conn, msg)
        elif isinstance(msg, SwapRequest):
            self._swap_request_received(conn, msg)
        elif isinstance(msg, SwapAck):
            self._swap_ack_received(conn, msg)
        else:
            raise DecodingError(f"unexpected {type(msg).__name__} frame on a running connection")

    # -- discovery -----------------------------------------------------------

    def _discovery_off(self) -> bool:
        config = self._config
        return config.disable_peer_discovery or config.private_mode

    def _bootstrap_received(self, conn: Connection) -> None:
        events = self._events
        events.emit(EventKind.BOOTSTRAP_RECEIVED, peer_id=str(conn.peer_id))
        if self._discovery_off():
            return
        if conn.private:
            events.emit(EventKind.PRIVATE_NODE_REQUEST, peer_id=str(conn.peer_id))
            return
        points = self._pool.list_known_points(ignore_private=True, size=ADVERTISED_POINTS)
        if points:
            conn.send_control(encode(Advertise(tuple(points))))
            events.emit(EventKind.ADVERTISE_SENT, peer_id=str(conn.peer_id), points=len(points))

    def _advertise_received(self, conn: Connection, msg: Advertise) -> None:
        events = self._events
        events.emit(EventKind.ADVERTISE_RECEIVED, peer_id=str(conn.peer_id), points=len(msg.points))
        if self._discovery_off():
            return
        points = list(msg.points)
        allowed = self._state(conn).advertise_bucket.take(len(points), self._clock.seconds())
        if allowed < len(points):
            events.emit(EventKind.ADVERTISE_SUBSAMPLED, peer_id=str(conn.peer_id), received=len(points), kept=allowed)
            points = self._rng.sample(points, allowed)
        if points:
            self._pool.register_list_of_new_points(
                points, medium="advertise", source=str(conn.peer_id), source_group=self._source_group(conn)
            )

    def _source_group(self, conn: Connection) -> str:
        """
        The source group points learnt from C{conn} are accounted to.
        """
        return admission_group(conn.remote_ip, self._config.netgroup_cap_exempts_loopback)

    def _learn(self, conn: Connection, point: Point) -> PointInfo | None:
        """
        Know C{point}, offered by C{conn} in a swap, as a learnt point; what
        is known of it (None: it was dropped).
        """
        self._pool.register_list_of_new_points(
            [point], medium="swap", source=str(conn.peer_id), source_group=self._source_group(conn)
        )
        return self._directory.point(point)

    # -- swaps -----------------------------------------------------------------

    def _swap_request_received(self, conn: Connection, msg: SwapRequest) -> None:
        """
        A peer offers one of its peers: if no swap happened lately and that
        point is known and disconnected, offer one of ours in return and try
        it. An unknown point is learnt instead, and dialed later within its
        source group's budget; a never connected learnt point is tried only
        when that budget allows.
        """
        events = self._events
        linger = self._config.swap_linger
        events.emit(EventKind.SWAP_REQUEST_RECEIVED, peer_id=str(conn.peer_id), point=str(msg.point))
        if linger is None or self._config.private_mode:
            return
        info = self._directory.point(msg.point)
        now = self._clock.seconds()
        reason = None
        if now - max(self.latest_successful_swap, self.latest_accepted_swap) < linger:
            reason = "recent"
        elif info is None:
            self._learn(conn, msg.point)
            reason = "new_point"
        elif info.state is not PointState.DISCONNECTED:
            reason = "busy"
        if reason is not None:
            events.emit(EventKind.SWAP_REQUEST_IGNORED, peer_id=str(conn.peer_id), reason=reason)
            return
        assert info is not None
        offer = self._directory.random_addr(different_than=conn, no_private=True)
        if offer is None:
            events.emit(EventKind.NO_SWAP_CANDIDATE, peer_id=str(conn.peer_id))
            return
        if not self._budget.allow(info, now):
            events.emit(EventKind.SWAP_REQUEST_IGNORED, peer_id=str(conn.peer_id), reason="budget")
            return
        point, peer_id = offer
        conn.send_control(encode(SwapAck(point, peer_id)))
        events.emit(EventKind.SWAP_ACK_SENT, peer_id=str(conn.peer_id), point=str(point))
        self._swap(conn, msg.point, peer_id)

    def _swap_ack_received(self, conn: Connection, msg: SwapAck) -> None:
        """
        A peer accepted our swap request: try its point, and drop the peer
        we offered.
        """
        self._events.emit(EventKind.SWAP_ACK_RECEIVED, peer_id=str(conn.peer_id), point=str(msg.point))
        sent = conn.last_sent_swap_request
        if self._config.swap_linger is None or sent is None or self._directory.connection_at(msg.point) is not None:
            return
        info = self._directory.point(msg.point) or self._learn(conn, msg.point)
        if info is None or not self._budget.allow(info, self._clock.seconds()):
            return
        self._swap(conn, msg.point, sent[1])

    def _swap(self, source: Connection, point: Point, replaced: PeerId) -> None:
        """
        Connect to C{point}; on success close the connection to C{replaced}.
        """
        clock, events = self._clock, self._events
        self.latest_accepted_swap = clock.seconds()

        def succeeded(_: object) -> None:
            self.latest_successful_swap = clock.seconds()
            events.emit(EventKind.SWAP_SUCCESS, source=str(source.peer_id), point=str(point))
            old = self._directory.connection(replaced)
            if old is not None:
                old.disconnect(DisconnectReason.PEER_SWAPPED)

        def failed(failure: Any) -> None:
            failure.trap(P2PError)
            self.latest_accepted_swap = self.latest_successful_swap
            events.emit(
                EventKind.SWAP_FAILURE, source=str(source.peer_id), point=str(point), error=failure.type.__name__
            )

        d: Deferred[Any] = self._pool.connect(point)
        d.addCallbacks(succeeded, failed)
