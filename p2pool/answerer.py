# -*- test-case-name: tests.test_maintenance -*-
"""
What a pool answers to the control frames of running connections (Tezos
C{P2p_protocol}): Disconnect, Ping, Bootstrap, Advertise and swaps, with
per-connection throttling of discovery and swap frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from p2pool.addressing import PeerId, Point
from p2pool.connection import Connection
from p2pool.errors import ConnectionDone, DecodingError, DisconnectReason, P2PError
from p2pool.flow import TokenBucket
from p2pool.lifetime import weak_owner
from p2pool.state import PointState
from p2pool.wire import (
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

if TYPE_CHECKING:
    from p2pool.pool import Pool

__all__ = ["Answerer"]

#: How many points an advertisement carries.
ADVERTISED_POINTS = 50
#: Minimum seconds between two handled frames of one kind on one
#: connection (Tezos v25 answerer throttling); a frame arriving sooner is
#: handled later, and one more arriving meanwhile is dropped.
COOLDOWNS = {Kind.BOOTSTRAP: 0.1, Kind.ADVERTISE: 0.1, Kind.SWAP_REQUEST: 60.0, Kind.SWAP_ACK: 60.0}
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

    def __init__(self, pool: Pool) -> None:
        self._pool = weak_owner(pool)
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
            state = self._states[conn] = _ConnectionState(self._pool.now())
        return state

    def control_received(self, conn: Connection, kind: int, body: bytes) -> None:
        """
        Act on one control frame, now or after its kind's cooldown.

        @raise DecodingError: a malformed frame, or a kind that has no
            place on a running connection.
        """
        msg = decode_control(kind, body)
        cooldown = COOLDOWNS.get(Kind(kind))
        if cooldown is None:
            self._handle(conn, msg)
            return
        state = self._state(conn)
        now = self._pool.now()
        wait = state.last_handled.get(kind, -cooldown) + cooldown - now
        if wait <= 0:
            state.last_handled[kind] = now
            self._handle(conn, msg)
        elif kind not in state.delayed:
            state.delayed[kind] = self._pool._clock.callLater(wait, self._delayed, conn, kind, msg)
        else:
            self._pool.events.emit("throttled", peer_id=str(conn.peer_id), kind=Kind(kind).name.lower())

    def _delayed(self, conn: Connection, kind: int, msg: ControlMessage) -> None:
        state = self._states.get(conn)
        if state is None or not conn.is_open:
            return
        del state.delayed[kind]
        state.last_handled[kind] = self._pool.now()
        self._handle(conn, msg)

    def _handle(self, conn: Connection, msg: ControlMessage) -> None:
        if isinstance(msg, Disconnect):
            conn._protocol.fail(ConnectionDone(DisconnectReason.REMOTE_DISCONNECT))
        elif isinstance(msg, Ping):
            conn.send_control(_PONG)
        elif isinstance(msg, Pong):
            return
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
        config = self._pool.config
        return config.disable_peer_discovery or config.private_mode

    def _bootstrap_received(self, conn: Connection) -> None:
        pool = self._pool
        pool.events.emit("bootstrap_received", peer_id=str(conn.peer_id))
        if self._discovery_off():
            return
        if conn.private:
            pool.events.emit("private_node_request", peer_id=str(conn.peer_id))
            return
        points = pool.list_known_points(ignore_private=True, size=ADVERTISED_POINTS)
        if points:
            conn.send_control(encode(Advertise(tuple(points))))
            pool.events.emit("advertise_sent", peer_id=str(conn.peer_id), points=len(points))

    def _advertise_received(self, conn: Connection, msg: Advertise) -> None:
        pool = self._pool
        pool.events.emit("advertise_received", peer_id=str(conn.peer_id), points=len(msg.points))
        if self._discovery_off():
            return
        points = list(msg.points)
        allowed = self._state(conn).advertise_bucket.take(len(points), pool.now())
        if allowed < len(points):
            pool.events.emit("advertise_subsampled", peer_id=str(conn.peer_id), received=len(points), kept=allowed)
            points = pool._rng.sample(points, allowed)
        if points:
            pool.register_list_of_new_points(points, medium="advertise", source=str(conn.peer_id))

    # -- swaps -----------------------------------------------------------------

    def _swap_request_received(self, conn: Connection, msg: SwapRequest) -> None:
        """
        A peer offers one of its peers: if no swap happened lately and that
        point is not already ours, offer one of ours in return and try it.
        """
        pool = self._pool
        linger = pool.config.swap_linger
        pool.events.emit("swap_request_received", peer_id=str(conn.peer_id), point=str(msg.point))
        if linger is None or pool.config.private_mode:
            return
        info = pool.points.info(msg.point)
        recent = pool.now() - max(self.latest_successful_swap, self.latest_accepted_swap) < linger
        if recent or (info is not None and info.state is not PointState.DISCONNECTED):
            pool.events.emit("swap_request_ignored", peer_id=str(conn.peer_id))
            return
        offer = pool.connections.random_addr(different_than=conn, no_private=True)
        if offer is None:
            pool.events.emit("no_swap_candidate", peer_id=str(conn.peer_id))
            return
        point, peer_id = offer
        conn.send_control(encode(SwapAck(point, peer_id)))
        pool.events.emit("swap_ack_sent", peer_id=str(conn.peer_id), point=str(point))
        self._swap(conn, msg.point, peer_id)

    def _swap_ack_received(self, conn: Connection, msg: SwapAck) -> None:
        """
        A peer accepted our swap request: try its point, and drop the peer
        we offered.
        """
        pool = self._pool
        pool.events.emit("swap_ack_received", peer_id=str(conn.peer_id), point=str(msg.point))
        sent = conn.last_sent_swap_request
        if pool.config.swap_linger is None or sent is None or pool.connections.find_by_point(msg.point) is not None:
            return
        self._swap(conn, msg.point, sent[1])

    def _swap(self, source: Connection, point: Point, replaced: PeerId) -> None:
        """
        Connect to C{point}; on success close the connection to C{replaced}.
        """
        pool = self._pool
        self.latest_accepted_swap = pool.now()

        def succeeded(_: object) -> None:
            self.latest_successful_swap = pool.now()
            pool.events.emit("swap_success", source=str(source.peer_id), point=str(point))
            old = pool.connections.find_by_peer_id(replaced)
            if old is not None:
                old.disconnect(DisconnectReason.PEER_SWAPPED)

        def failed(failure: Any) -> None:
            failure.trap(P2PError)
            self.latest_accepted_swap = self.latest_successful_swap
            pool.events.emit("swap_failure", source=str(source.peer_id), point=str(point), error=failure.type.__name__)

        d: Deferred[Any] = pool.connect(point)
        d.addCallbacks(succeeded, failed)

