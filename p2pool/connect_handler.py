# -*- test-case-name: tests.test_integration -*-
"""
Dialing and accepting connections (Tezos C{P2p_connect_handler}): the
admission of incoming sockets, the acceptance decision of each handshake,
and the point and peer state changes from first byte to last.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.python.failure import Failure

from p2pool.addressing import AddressError, PeerId, Point, netgroup, normalise_ip
from p2pool.connection import Connection
from p2pool.errors import (
    ConnectionClosed,
    ConnectionDone,
    ConnectionFailed,
    Connected,
    DecodingError,
    DisconnectReason,
    IdentityCheckFailure,
    InvalidAuth,
    InvalidMessageSize,
    Myself,
    NackMotive,
    NotEnoughProofOfWork,
    P2PError,
    PeerBanned,
    PendingConnection,
    PointBanned,
    PrivateMode,
    Rejected,
    RejectedByNack,
    RejectedNoCommonProtocol,
    Timeout,
    TooManyConnections,
)
from p2pool.flow import FlowLimits
from p2pool.handshake import Accept, Decision, Handshake, Refuse, RemoteInfo, nack_refusal
from p2pool.lifetime import weak_owner
from p2pool.protocol import PeerClientFactory, PeerProtocol
from p2pool.state import PeerInfo, PeerState, PointInfo, PointState

if TYPE_CHECKING:
    from p2pool.pool import Pool

__all__ = ["ConnectHandler"]

#: How many points a nack carries.
NACK_POINTS = 50

#: Handshake failures that greylist the remote address (Tezos §4.4).
_GREYLISTING_FAILURES = (NotEnoughProofOfWork, InvalidAuth, DecodingError)


class ConnectHandler:
    """
    Runs every connection of a pool from dial or accept to close.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = weak_owner(pool)
        self._handshaking: set[PeerProtocol] = set()
        self._accepted: dict[PeerId, PeerProtocol] = {}
        self._point_owner: dict[Point, PeerProtocol] = {}
        self._owned: dict[PeerProtocol, tuple[Optional[PointInfo], Optional[PeerInfo]]] = {}
        self._dial_results: dict[PeerProtocol, Deferred[Connection]] = {}
        self._timeouts: dict[PeerProtocol, Any] = {}
        self._close_waiters: dict[PeerProtocol, list[Deferred[None]]] = {}
        #: Bytes of connections that have closed.
        self.closed_bytes_sent = 0
        self.closed_bytes_received = 0

    def bytes_totals(self) -> tuple[int, int]:
        """
        Bytes sent and received over every connection, open or closed,
        handshakes included.
        """
        live = list(self._handshaking) + [c._protocol for c in self._pool._connections.values()]
        return (
            self.closed_bytes_sent + sum(p.bytes_sent for p in live),
            self.closed_bytes_received + sum(p.bytes_received for p in live),
        )

    @property
    def flow(self) -> FlowLimits:
        """
        The pool's flow-control limits and node-wide budgets.
        """
        return self._pool.flow

    @property
    def clock(self) -> IReactorTime:
        """
        The pool's clock.
        """
        return self._pool._clock

    def send_queue_full(self, conn: Connection) -> None:
        """
        A connection's send queue became full: a send was refused or a
        control frame dropped (reported once until it has room again).
        """
        self._pool.events.emit(
            "send_queue_full",
            peer_id=str(conn.peer_id),
            queued=conn.send_queue_bytes,
            budget_used=self._pool.flow.budget.used,
        )

    def send_stalled(self, protocol: PeerProtocol, seconds: float) -> None:
        """
        A connection's transport stayed full for C{send_stall_timeout}:
        abort it, freeing its socket and queue.
        """
        conn = protocol.connection
        self._pool.events.emit(
            "send_stalled",
            peer_id=str(conn.peer_id) if conn is not None else None,
            addr=protocol.remote_ip,
            seconds=seconds,
            queued=protocol.send_queue.queued,
        )
        protocol.fail(ConnectionDone(DisconnectReason.SEND_STALLED, f"no send progress for {seconds:.1f} s"), abort=True)

    def close_timed_out(self, protocol: PeerProtocol) -> None:
        """
        A closing connection did not end within C{close_grace_period}; it is
        aborted.
        """
        conn = protocol.connection
        self._pool.events.emit(
            "close_timeout",
            peer_id=str(conn.peer_id) if conn is not None else None,
            addr=protocol.remote_ip,
            seconds=self._pool.flow.close_grace_period,
        )

    @property
    def pending_incoming(self) -> int:
        """
        How many incoming handshakes are under way.
        """
        return sum(1 for p in self._handshaking if p.incoming)

    def tear_down(self) -> Deferred[None]:
        """
        Close every connection and pending handshake; fires when all are
        closed.
        """
        pool = self._pool
        waits = [conn.disconnect(DisconnectReason.POOL_DESTROYED) for conn in list(pool._connections.values())]
        for protocol in list(self._handshaking):
            d: Deferred[None] = Deferred()
            self._close_waiters.setdefault(protocol, []).append(d)
            waits.append(d)
            protocol.fail(ConnectionDone(DisconnectReason.POOL_DESTROYED), abort=True)
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    # -- dialing -----------------------------------------------------------

    def connect(self, point: Point, timeout: Optional[float] = None) -> Deferred[Connection]:
        """
        Dial C{point}; see L{Pool.connect}.
        """
        pool = self._pool
        if not pool.is_started:
            return fail(ConnectionFailed("the pool has not started"))
        if pool.acl.banned_addr(point.ip):
            return fail(PointBanned(point))
        if point in pool._my_points:
            return fail(Myself(point))
        if pool.active_connections() >= pool.config.max_connections:
            return fail(TooManyConnections())
        info = pool.register_point(point)
        if pool.config.private_mode and not info.trusted:
            return fail(PrivateMode(f"private mode: {point} is not trusted"))
        if info.state is PointState.RUNNING:
            return fail(Connected(f"already connected to {point}"))
        if info.state is not PointState.DISCONNECTED:
            return fail(PendingConnection(f"a connection to {point} is being set up"))
        info.set_requested(pool.now())
        pool._points.changed(info)
        factory = PeerClientFactory(self, point, info.expected_peer_id)
        protocol = factory.protocol_instance
        assert protocol is not None
        self._take_point(protocol, info)
        result: Deferred[Connection] = Deferred()
        self._dial_results[protocol] = result
        pool.events.emit("outgoing_connection", point=str(point))
        attempt = wrapClientTLS(pool._tls.creator, self._client_endpoint(point), clock=pool._clock).connect(factory)
        delay = pool.config.connection_timeout if timeout is None else timeout
        self._timeouts[protocol] = pool._clock.callLater(delay, self._dial_timed_out, protocol, attempt)
        # The endpoint's factory keeps this Deferred: it must not keep the
        # protocol (through its result) once connected.
        attempt.addCallbacks(lambda _: None, self._tcp_failed, errbackArgs=(protocol,))
        return result

    def _client_endpoint(self, point: Point) -> Any:
        pool = self._pool
        listen = pool.config.listen
        bind = None
        if listen.ip not in ("0.0.0.0", "::") and listen.is_ipv6 == point.is_ipv6:
            bind = (listen.ip, 0)
        endpoint_type = TCP6ClientEndpoint if point.is_ipv6 else TCP4ClientEndpoint
        tcp_timeout = max(1, int(pool.config.connection_timeout))
        return endpoint_type(pool._reactor, point.ip, point.port, timeout=tcp_timeout, bindAddress=bind)

    def _dial_timed_out(self, protocol: PeerProtocol, attempt: Deferred[Any]) -> None:
        self._timeouts.pop(protocol, None)
        error = Timeout(f"connection to {protocol.dialed_point} timed out")
        if protocol.transport is None:
            protocol.error = error
            attempt.cancel()
        else:
            protocol.fail(error, abort=True)

    def _tcp_failed(self, failure: Failure, protocol: PeerProtocol) -> None:
        if protocol.transport is not None:
            return
        error = protocol.error or ConnectionFailed(f"cannot connect to {protocol.dialed_point}: {failure.getErrorMessage()}")
        self._handshake_over(protocol, error)

    # -- accepting ---------------------------------------------------------

    def admit_incoming(self, addr: IAddress) -> bool:
        """
        Whether to start a TLS handshake with an incoming connection:
        refused when the pool is not running, the address is banned or
        greylisted, or C{max_incoming_connections} handshakes are pending.
        """
        pool = self._pool
        if not pool.is_started:
            return False
        try:
            ip = normalise_ip(getattr(addr, "host", ""))
        except AddressError:
            return False
        if pool.acl.banned_addr(ip):
            pool.events.emit("incoming_connection_banned", addr=ip)
            return False
        if self.pending_incoming >= pool.config.max_incoming_connections:
            pool.events.emit("incoming_connection_too_many", addr=ip)
            return False
        if self._netgroup_full(ip):
            pool.events.emit("incoming_connection_netgroup_full", addr=ip, netgroup=netgroup(ip))
            return False
        return True

    def _netgroup_full(self, ip: str) -> bool:
        """
        Whether C{ip}'s network group already has
        C{max_incoming_connections_per_netgroup} incoming connections,
        pending or running (loopback exempt only when configured so).
        """
        pool = self._pool
        if pool.config.netgroup_cap_exempts_loopback and ipaddress.ip_address(ip).is_loopback:
            return False
        group = netgroup(ip)
        count = sum(1 for p in self._handshaking if p.incoming and netgroup(p.remote_ip) == group)
        count += sum(1 for c in pool._connections.values() if c.incoming and netgroup(c.remote_ip) == group)
        return count >= pool.config.max_incoming_connections_per_netgroup

    def handshake_for(self, protocol: PeerProtocol) -> Handshake:
        """
        Start the handshake of a connection whose TCP link is up.
        """
        pool = self._pool
        self._handshaking.add(protocol)
        if protocol.incoming:
            pool.events.emit("incoming_connection", addr=protocol.remote_ip)
            self._timeouts[protocol] = pool._clock.callLater(
                pool.config.authentication_timeout,
                lambda: protocol.fail(Timeout("authentication timed out"), abort=True),
            )
        return Handshake(
            pool._handshake_params,
            incoming=protocol.incoming,
            remote_ip=protocol.remote_ip,
            dialed_point=protocol.dialed_point,
            decide=lambda remote: self._decide(protocol, remote),
            send=protocol.write,
        )

    # -- the acceptance decision ---------------------------------------------

    def _nack(self, peer_id: PeerId, motive: int) -> Refuse:
        pool = self._pool
        points = () if pool.config.disable_peer_discovery else pool.list_known_points(ignore_private=True, size=NACK_POINTS)
        return nack_refusal(peer_id, motive, points)

    def _decide(self, protocol: PeerProtocol, remote: RemoteInfo) -> Decision:
        """
        Tezos C{raw_authenticate}, in order: ban, expected peer id, slots,
        private mode, already connected (simultaneous dials resolved by
        peer id).
        """
        pool = self._pool
        peer_id = remote.peer_id
        if pool.acl.banned_peer(peer_id):
            return Refuse(PeerBanned(peer_id))
        point = remote.id_point
        point_info: Optional[PointInfo] = None
        if point is not None:
            point_info = pool.register_new_point(point) if remote.incoming else pool._points.get(point)
        if point_info is not None and point_info.expected_peer_id not in (None, peer_id):
            assert point_info.expected_peer_id is not None
            pool.events.emit("authenticate_status_peer_id_incorrect", point=str(point), peer_id=str(peer_id))
            return Refuse(IdentityCheckFailure(point, point_info.expected_peer_id, peer_id))
        if point_info is not None:
            # Tezos set_private: whatever the outcome, a public remote's
            # point may now be advertised (nacked nodes must be findable).
            point_info.known_public = not remote.private
            pool._points.changed(point_info)
        peer_info = pool.register_peer(peer_id)
        if pool.active_connections() >= pool.slot_threshold():
            return self._nack(peer_id, NackMotive.TOO_MANY_CONNECTIONS)
        trusted = peer_info.trusted or (point_info is not None and point_info.trusted)
        if pool.config.private_mode and not trusted:
            return Refuse(PrivateMode(f"private mode: {peer_id} is not trusted"))
        if peer_info.state is PeerState.RUNNING:
            return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
        if peer_info.state is PeerState.ACCEPTED:
            other = self._accepted.get(peer_id)
            if other is None or other.incoming == protocol.incoming or not self._new_dial_wins(remote):
                return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
            self._supersede(other, peer_id)
        if point_info is not None and self._point_owner.get(point_info.point) is not protocol:
            if point_info.state in (PointState.ACCEPTED, PointState.RUNNING):
                return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
            if point_info.state is PointState.REQUESTED and not self._new_dial_wins(remote):
                return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
        now = pool.now()
        if point_info is not None:
            point_info.set_accepted(peer_id, now)
            pool._points.changed(point_info)
            self._take_point(protocol, point_info)
        peer_info.set_accepted(point, now)
        self._owned[protocol] = (self._owned.get(protocol, (None, None))[0], peer_info)
        self._accepted[peer_id] = protocol
        pool.events.emit("accepting_request", point=str(point), peer_id=str(peer_id), incoming=remote.incoming)
        return Accept()

    def _new_dial_wins(self, remote: RemoteInfo) -> bool:
        """
        Of two connections between the same two nodes in opposite
        directions, the one dialed by the smaller peer id survives.
        """
        own = self._pool.peer_id
        new_dialer, old_dialer = (remote.peer_id, own) if remote.incoming else (own, remote.peer_id)
        return new_dialer.raw < old_dialer.raw

    def _supersede(self, protocol: PeerProtocol, peer_id: PeerId) -> None:
        """
        Drop a pending handshake that lost a simultaneous dial.
        """
        self._release(protocol)
        protocol.fail(Rejected(peer_id, NackMotive.ALREADY_CONNECTED))

    def _take_point(self, protocol: PeerProtocol, info: PointInfo) -> None:
        previous = self._point_owner.get(info.point)
        if previous is not None and previous is not protocol:
            self._owned[previous] = (None, self._owned.get(previous, (None, None))[1])
        self._point_owner[info.point] = protocol
        self._owned[protocol] = (info, self._owned.get(protocol, (None, None))[1])

    def _release(self, protocol: PeerProtocol, requested: bool = False) -> None:
        """
        Return the point and peer a connection held to Disconnected.
        """
        pool = self._pool
        point_info, peer_info = self._owned.pop(protocol, (None, None))
        now = pool.now()
        if point_info is not None and self._point_owner.get(point_info.point) is protocol:
            del self._point_owner[point_info.point]
            if point_info.state is not PointState.DISCONNECTED:
                point_info.set_disconnected(now, pool.config.reconnection, pool._rng, requested)
                pool._points.changed(point_info)
            pool._point_disconnected(point_info)
        if peer_info is not None:
            if self._accepted.get(peer_info.peer_id) is protocol:
                del self._accepted[peer_info.peer_id]
            if peer_info.state is not PeerState.DISCONNECTED:
                peer_info.set_disconnected(now, requested)

    # -- outcomes ----------------------------------------------------------

    def established(self, protocol: PeerProtocol, remote: RemoteInfo) -> Connection:
        """
        Both sides acknowledged: the connection runs.
        """
        pool = self._pool
        now = pool.now()
        self._handshake_finished(protocol)
        point_info, peer_info = self._owned[protocol]
        assert peer_info is not None
        del self._accepted[remote.peer_id]
        if point_info is not None:
            point_info.set_running(remote.peer_id, now)
            pool._points.changed(point_info)
        peer_info.set_running(remote.id_point, now)
        conn = Connection(pool, protocol, remote, now)
        pool._connections[remote.peer_id] = conn
        app = pool.app
        protocol.start_messages(pool.config.max_message_size, lambda data: app.message_received(conn, data))
        pool.events.emit("connection_established", point=str(remote.id_point), peer_id=str(remote.peer_id), incoming=remote.incoming)
        result = self._dial_results.pop(protocol, None)
        app.connection_made(conn)
        if result is not None:
            result.callback(conn)
        if pool.maintenance is not None:
            pool.maintenance.connection_established()
        return conn

    def control_received(self, conn: Connection, kind: int, body: bytes) -> None:
        """
        A control frame arrived on a running connection.
        """
        self._pool._answerer.control_received(conn, kind, body)

    def _handshake_finished(self, protocol: PeerProtocol) -> None:
        self._handshaking.discard(protocol)
        call = self._timeouts.pop(protocol, None)
        if call is not None and call.active():
            call.cancel()

    def connection_lost(self, protocol: PeerProtocol, error: P2PError) -> None:
        """
        The connection closed, established or not.
        """
        self.closed_bytes_sent += protocol.bytes_sent
        self.closed_bytes_received += protocol.bytes_received
        conn = protocol.connection
        if conn is None:
            self._handshake_over(protocol, error)
        else:
            self._running_lost(protocol, conn, error)
        for waiter in self._close_waiters.pop(protocol, []):
            waiter.callback(None)

    def _running_lost(self, protocol: PeerProtocol, conn: Connection, error: P2PError) -> None:
        pool = self._pool
        reason = disconnect_reason(error)
        if reason.reason is DisconnectReason.DECODING_ERROR or reason.reason is DisconnectReason.MESSAGE_TOO_LARGE:
            pool.greylist_peer(conn.peer_id)
        external = reason.reason in (DisconnectReason.CONNECTION_LOST, DisconnectReason.REMOTE_DISCONNECT)
        if pool._connections.get(conn.peer_id) is conn:
            del pool._connections[conn.peer_id]
        self._release(protocol, requested=not external)
        conn.reason = reason
        pool.events.emit(
            "external_disconnection" if external else "disconnection",
            peer_id=str(conn.peer_id),
            point=str(conn.point),
            reason=reason.reason.value,
            detail=reason.detail,
        )
        try:
            pool.app.connection_lost(conn, reason)
        finally:
            conn._lost(reason)
            pool._answerer.connection_lost(conn)
            if pool.maintenance is not None:
                pool.maintenance.connection_lost()

    def _handshake_over(self, protocol: PeerProtocol, error: P2PError) -> None:
        """
        A handshake failed: release what it held, greylist the address when
        the failure is the remote's fault, and tell whoever dialed.
        """
        pool = self._pool
        accepted = protocol in self._owned and self._owned[protocol][1] is not None
        self._handshake_finished(protocol)
        self._release(protocol)
        if isinstance(error, Myself) and protocol.dialed_point is not None:
            pool.add_to_id_points(protocol.dialed_point)
        if isinstance(error, RejectedByNack) and not pool.config.disable_peer_discovery:
            pool.register_list_of_new_points(error.alternative_points, medium="nack", source=protocol.remote_ip)
        if isinstance(error, RejectedNoCommonProtocol) and protocol.dialed_point is not None:
            pool.unregister_point(protocol.dialed_point)
        if isinstance(error, _GREYLISTING_FAILURES) and protocol.remote_ip:
            pool.greylist_addr(protocol.remote_ip)
        if isinstance(error, Rejected):
            pool.events.emit(
                "rejecting_request",
                addr=protocol.remote_ip,
                peer_id=str(error.peer_id),
                motive=error.motive,
                incoming=protocol.incoming,
            )
        elif accepted:
            pool.events.emit(
                "request_rejected",
                addr=protocol.remote_ip,
                error=type(error).__name__,
                detail=str(error),
                incoming=protocol.incoming,
            )
        elif protocol.transport is None:
            pool.events.emit("connection_failed", point=str(protocol.dialed_point), error=type(error).__name__, detail=str(error))
        else:
            pool.events.emit(
                "authentication_failed",
                addr=protocol.remote_ip or str(protocol.dialed_point),
                error=type(error).__name__,
                detail=str(error),
                incoming=protocol.incoming,
            )
        result = self._dial_results.pop(protocol, None)
        if result is not None:
            result.errback(error)


def disconnect_reason(error: P2PError) -> ConnectionDone:
    """
    The typed reason a running connection ended because of C{error}.
    """
    if isinstance(error, ConnectionDone):
        return error
    if isinstance(error, InvalidMessageSize):
        return ConnectionDone(DisconnectReason.MESSAGE_TOO_LARGE, str(error))
    if isinstance(error, DecodingError):
        return ConnectionDone(DisconnectReason.DECODING_ERROR, str(error))
    if isinstance(error, ConnectionClosed):
        return ConnectionDone(DisconnectReason.CONNECTION_LOST, str(error))
    return ConnectionDone(DisconnectReason.CONNECTION_LOST, f"{type(error).__name__}: {error}")
