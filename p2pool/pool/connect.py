# -*- test-case-name: tests.test_integration -*-
"""
Dialing and accepting connections (Tezos C{P2p_connect_handler}): the
admission of incoming sockets, the acceptance decision of each handshake,
and the point and peer state changes from first byte to last.
"""

from __future__ import annotations

import collections
import functools
import inspect
import operator
import os
from collections.abc import Callable

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.error import NotConnectingError, UserError
from twisted.internet.interfaces import IAddress, IConnector, IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pool.core.addressing import AddressError, PeerId, Point, Reach, netgroup, normalise_ip, reach
from p2pool.core.admission import StallTracker, admission_group, displacement_victim
from p2pool.core.directory import Directory
from p2pool.core.eviction import Candidate, Protection, eviction_victim
from p2pool.core.flow import FlowLimits
from p2pool.core.handshake import Accept, Decision, Handshake, HandshakeParams, Refuse, RemoteInfo, nack_refusal
from p2pool.core.lifetime import owner_alive, weak_owner
from p2pool.core.states import PeerInfo, PeerState, PointInfo, PointState
from p2pool.errors import (
    Connected,
    ConnectionEnded,
    ConnectionFailed,
    DecodingError,
    DisconnectReason,
    Displaced,
    IdentityCheckFailure,
    InvalidAuth,
    InvalidMessageSize,
    Myself,
    NackMotive,
    NotEnoughProofOfWork,
    P2PError,
    PeerBanned,
    PeerConnectionClosed,
    PendingConnection,
    PointBanned,
    PrivateMode,
    Rejected,
    RejectedByNack,
    RejectedNoCommonProtocol,
    Timeout,
    TooManyConnections,
    motive_name,
)
from p2pool.events import EventKind
from p2pool.pool.contracts import HandlerPool
from p2pool.pool.control_frames import Answerer
from p2pool.pool.scoring import ranking_score, report_failures
from p2pool.transport.channel import ChannelWrapper, PeerChannel
from p2pool.transport.connection import Connection
from p2pool.transport.deadlines import Deadlines
from p2pool.transport.peer_protocol import PeerProtocol, as_deferred

__all__ = ["ConnectHandler"]

_bytes_sent = operator.attrgetter("bytes_sent")
_bytes_received = operator.attrgetter("bytes_received")

#: How many points a nack carries.
NACK_POINTS = 50

#: Handshake failures that greylist the remote address (Tezos §4.4).
_GREYLISTING_FAILURES = (NotEnoughProofOfWork, InvalidAuth, DecodingError)

#: The acceptance decision (a frozen value without fields: one serves all).
_ACCEPT = Accept()


class ConnectHandler:
    """
    Runs every connection of a pool from dial or accept to close.
    """

    _log = Logger()

    def __init__(
        self, pool: HandlerPool, directory: Directory, answerer: Answerer, reactor: IReactorTCP, clock: IReactorTime
    ) -> None:
        """
        @param pool: registers points and peers, greylists, and is told
            of connections through its application and maintenance.
        @param directory: the known points and peers, and the running
            connections, changed here as connections come and go.
        @param answerer: handles the control frames of running connections.
        @param reactor: dials (C{IReactorTCP}).
        @param clock: times out dials and handshakes.
        """
        self._pool = weak_owner(pool)
        self._directory = directory
        self._answerer = answerer
        self._reactor = reactor
        self._clock = clock
        #: Runs the channel over every dialed connection (one for all).
        self._dialer: ChannelWrapper | None = None
        self._params: HandshakeParams | None = None
        self._handshaking: set[PeerProtocol] = set()
        self._accepted: dict[PeerId, PeerProtocol] = {}
        self._point_owner: dict[Point, PeerProtocol] = {}
        self._owned: dict[PeerProtocol, tuple[PointInfo | None, PeerInfo | None]] = {}
        self._dial_results: dict[PeerProtocol, Deferred[Connection]] = {}
        #: Dials whose TCP connection is not up yet, to cancel at tear-down.
        self._attempts: dict[PeerProtocol, _Dial] = {}
        #: Torn down: the pool is stopping or gone, and late connections
        #: are closed without a decision.
        self._closed = False
        #: The dial and authentication timeouts of handshakes, by protocol.
        self._timeouts = Deadlines(clock)
        self._close_deadlines = Deadlines(clock)
        self._frame_deadlines = Deadlines(clock)
        self._close_waiters: dict[PeerProtocol, list[Deferred[None]]] = {}
        #: Incoming handshakes under way, oldest first, with their
        #: admission group (kept with _handshaking by the same transitions).
        self._incoming_groups: dict[PeerProtocol, str] = {}
        #: Each incoming handshake's network group, and how many there are
        #: of each group (kept with _handshaking by the same transitions).
        self._pending_netgroup: dict[PeerProtocol, str] = {}
        self._pending_by_netgroup: collections.Counter[str] = collections.Counter()
        limit = pool.config.max_stalled_handshakes
        self._stalls: StallTracker | None = StallTracker(limit) if limit is not None else None
        protected = pool.config.eviction_protection
        self._eviction: Protection | None = Protection.scaled(protected) if protected is not None else None
        #: Keys the ranking of network groups for eviction protection.
        self._eviction_secret = os.urandom(16)
        #: Every connection from its TCP link to its close, handshaking or
        #: running (its byte counters are read in one pass by bytes_totals).
        self._linked: set[PeerProtocol] = set()
        #: Bytes of connections that have closed.
        self.closed_bytes_sent = 0
        self.closed_bytes_received = 0

    def configure(self, channel: PeerChannel, params: HandshakeParams) -> None:
        """
        Set what connections need once the identity is loaded and the pool
        listens: the channel dials go through (TLS) and the parameters of
        every handshake. Called by the pool before it starts.
        """
        self._dialer = channel.client_wrapper(self._clock)
        self._params = params

    def bytes_totals(self) -> tuple[int, int]:
        """
        Bytes sent and received over every connection, open or closed,
        handshakes included.
        """
        linked = self._linked
        return (
            self.closed_bytes_sent + sum(map(_bytes_sent, linked)),
            self.closed_bytes_received + sum(map(_bytes_received, linked)),
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
        return self._clock

    @property
    def close_deadlines(self) -> Deadlines:
        """
        The close grace periods of the pool's connections.
        """
        return self._close_deadlines

    @property
    def frame_deadlines(self) -> Deadlines:
        """
        The deadlines of the large frames the pool's connections receive.
        """
        return self._frame_deadlines

    def send_queue_full(self, conn: Connection) -> None:
        """
        A connection's send queue became full: a send was refused or a
        control frame dropped (reported once until it has room again).
        """
        self._pool.events.emit(
            EventKind.SEND_QUEUE_FULL,
            peer_id=str(conn.peer_id),
            queued=conn.send_queue_bytes,
            budget_used=self._pool.flow.budget.used,
        )

    def receive_budget_full(self, protocol: PeerProtocol, size: int) -> None:
        """
        The receive budget cannot hold the large frame arriving on
        C{protocol}: it is not read until it can (reported when a
        connection starts waiting and none was).
        """
        conn = protocol.connection
        budget = self._pool.flow.receive_budget
        self._pool.events.emit(
            EventKind.RECEIVE_BUDGET_FULL,
            peer_id=str(conn.peer_id) if conn is not None else None,
            addr=protocol.remote_ip,
            size=size,
            budget_used=budget.used,
        )

    def send_stalled(self, protocol: PeerProtocol, seconds: float) -> None:
        """
        A connection's transport stayed full for C{send_stall_timeout}:
        abort it, freeing its socket and queue.
        """
        conn = protocol.connection
        self._pool.events.emit(
            EventKind.SEND_STALLED,
            peer_id=str(conn.peer_id) if conn is not None else None,
            addr=protocol.remote_ip,
            seconds=seconds,
            queued=protocol.send_queue.queued,
        )
        protocol.fail(
            ConnectionEnded(DisconnectReason.SEND_STALLED, f"no send progress for {seconds:.1f} s"), abort=True
        )

    def frame_too_slow(self, protocol: PeerProtocol, size: int, received: int, seconds: float) -> None:
        """
        A large frame fell behind C{min_frame_receive_rate}: abort its
        connection, freeing its socket and buffer (its reservation is
        already given back). Not greylisted: a slow link is not a fault.
        """
        conn = protocol.connection
        self._pool.events.emit(
            EventKind.FRAME_TOO_SLOW,
            peer_id=str(conn.peer_id) if conn is not None else None,
            addr=protocol.remote_ip,
            size=size,
            received=received,
            seconds=seconds,
        )
        protocol.fail(
            ConnectionEnded(
                DisconnectReason.FRAME_TOO_SLOW, f"{received} of a {size}-byte frame in {seconds:.1f} s of reading"
            ),
            abort=True,
        )

    def close_timed_out(self, protocol: PeerProtocol) -> None:
        """
        A closing connection did not end within C{close_grace_period}; it is
        aborted.
        """
        conn = protocol.connection
        self._pool.events.emit(
            EventKind.CLOSE_TIMEOUT,
            peer_id=str(conn.peer_id) if conn is not None else None,
            addr=protocol.remote_ip,
            seconds=self._pool.flow.close_grace_period,
        )

    @property
    def pending_incoming(self) -> int:
        """
        How many incoming handshakes are under way.
        """
        return len(self._pending_netgroup)

    def tear_down(self) -> Deferred[None]:
        """
        Close every connection and pending handshake; fires when all are
        closed.
        """
        self._closed = True
        # No timer left set once the last connection has closed.
        self._timeouts.stop()
        self._close_deadlines.stop()
        self._frame_deadlines.stop()
        for protocol, attempt in list(self._attempts.items()):
            if protocol.transport is None:
                protocol.error = ConnectionEnded(DisconnectReason.POOL_DESTROYED)
                attempt.abandon()
        waits = [
            conn.disconnect(DisconnectReason.POOL_DESTROYED) for conn in list(self._directory.connections.values())
        ]
        for protocol in list(self._handshaking):
            d: Deferred[None] = Deferred()
            self._close_waiters.setdefault(protocol, []).append(d)
            waits.append(d)
            protocol.fail(ConnectionEnded(DisconnectReason.POOL_DESTROYED), abort=True)
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    # -- dialing -----------------------------------------------------------

    def connect(self, point: Point, timeout: float | None = None) -> Deferred[Connection]:
        """
        Dial C{point}; see L{Pool.connect}.
        """
        pool = self._pool
        if not pool.is_started:
            return fail(ConnectionFailed("the pool has not started"))
        if pool.acl.banned_addr(point.ip):
            return fail(PointBanned(point))
        if self._directory.is_own_point(point):
            return fail(Myself(point))
        if len(self._directory.connections) >= pool.config.max_connections:
            return fail(TooManyConnections())
        info = pool.register_point(point)
        if pool.config.private_mode and not info.trusted:
            return fail(PrivateMode(f"private mode: {point} is not trusted"))
        if info.state is PointState.RUNNING:
            return fail(Connected(f"already connected to {point}"))
        if info.state is not PointState.DISCONNECTED:
            return fail(PendingConnection(f"a connection to {point} is being set up"))
        self._directory.point_requested(info, self._clock.seconds())
        protocol = PeerProtocol(self, incoming=False, dialed_point=point, expected_peer_id=info.expected_peer_id)
        self._take_point(protocol, info)
        result: Deferred[Connection] = Deferred(lambda _: self._dial_cancelled(protocol, dial))
        self._dial_results[protocol] = result
        if pool.events.wants(EventKind.OUTGOING_CONNECTION):
            pool.events.emit(EventKind.OUTGOING_CONNECTION, point=str(point))
        assert self._dialer is not None, "configure() runs before the pool starts"
        dial = _Dial(self._dialer, protocol, lambda reason: self._tcp_failed(reason, protocol))
        tcp_timeout = max(1, int(pool.config.connection_timeout))
        self._reactor.connectTCP(point.ip, point.port, dial, tcp_timeout, self._bind_for(point))
        if protocol.transport is None:
            self._attempts[protocol] = dial
        delay = pool.config.connection_timeout if timeout is None else timeout
        self._timeouts.set(protocol, delay, self._dial_timed_out, protocol, dial)
        return result

    def _bind_for(self, point: Point) -> tuple[str, int] | None:
        """
        The local address a dial to C{point} leaves from: the listening
        address, when it is one address of the same family.
        """
        listen = self._pool.config.listen
        if listen.ip not in ("0.0.0.0", "::") and listen.is_ipv6 == point.is_ipv6:
            return (listen.ip, 0)
        return None

    def _dial_timed_out(self, protocol: PeerProtocol, attempt: _Dial) -> None:
        self._abandon_dial(protocol, attempt, Timeout(f"connection to {protocol.dialed_point} timed out"))

    def _dial_cancelled(self, protocol: PeerProtocol, attempt: _Dial) -> None:
        """
        Whoever dialed cancelled the Deferred of L{connect} (which then
        fails with C{CancelledError}): the dial is abandoned, as at its
        timeout, rather than left to connect behind the caller's back.
        """
        if self._dial_results.pop(protocol, None) is None:
            return
        self._abandon_dial(protocol, attempt, ConnectionEnded(DisconnectReason.REQUESTED, "the dial was cancelled"))

    def _abandon_dial(self, protocol: PeerProtocol, attempt: _Dial, error: P2PError) -> None:
        """
        End a dial that has not succeeded with C{error}: before the TCP
        connection is up, or during the handshake.
        """
        if protocol.transport is None:
            protocol.error = error
            attempt.abandon()
        else:
            protocol.fail(error, abort=True)

    def _tcp_failed(self, failure: Failure, protocol: PeerProtocol) -> None:
        if protocol.transport is not None:
            return
        error = protocol.error or ConnectionFailed(
            f"cannot connect to {protocol.dialed_point}: {failure.getErrorMessage()}"
        )
        self._handshake_over(protocol, error)

    # -- accepting ---------------------------------------------------------

    def admit_incoming(self, addr: IAddress | None) -> str | None:
        """
        The remote address (normalised) of an incoming connection to start
        a TLS handshake with, or None to refuse it: refused when the pool
        is not running, the address is banned or greylisted,
        C{max_incoming_connections} handshakes are pending and none gives
        way to it (L{displacement_victim}), or its network group has
        C{max_incoming_connections_per_netgroup} connections, pending or
        running; one without an address (C{None}) is refused.
        """
        pool = self._pool
        if not pool.is_started:
            return None
        try:
            ip = normalise_ip(getattr(addr, "host", ""))
        except AddressError:
            return None
        if pool.acl.banned_addr(ip):
            pool.events.emit(EventKind.INCOMING_CONNECTION_BANNED, addr=ip)
            return None
        if self.pending_incoming >= pool.config.max_incoming_connections and not self._make_room(ip):
            pool.events.emit(EventKind.INCOMING_CONNECTION_TOO_MANY, addr=ip)
            return None
        if self._netgroup_full(ip):
            pool.events.emit(EventKind.INCOMING_CONNECTION_NETGROUP_FULL, addr=ip, netgroup=netgroup(ip))
            return None
        return ip

    def _make_room(self, ip: str) -> bool:
        """
        The handshake slots are full: close the oldest pending handshake
        of the most represented group for a newcomer from C{ip}, if one
        gives way (see L{displacement_victim}) and the newcomer's group has
        room; whether one did.
        """
        if self._netgroup_full(ip):
            return False
        victim = displacement_victim(list(self._incoming_groups.items()), self._group(ip))
        if victim is None:
            return False
        victim.fail(Displaced(f"displaced by a handshake from {self._group(ip)}"), abort=True)
        # It stops counting now; its close is accounted when it comes.
        self._handshake_finished(victim)
        return True

    def _group(self, ip: str) -> str:
        return admission_group(ip, self._pool.config.netgroup_cap_exempts_loopback)

    def _netgroup_full(self, ip: str) -> bool:
        """
        Whether C{ip}'s network group already has
        C{max_incoming_connections_per_netgroup} incoming connections,
        pending or running (loopback exempt only when configured so).
        """
        config = self._pool.config
        if config.netgroup_cap_exempts_loopback and reach(ip) is Reach.LOOPBACK:
            return False
        return self.incoming_in_netgroup(netgroup(ip)) >= config.max_incoming_connections_per_netgroup

    def incoming_in_netgroup(self, group: str) -> int:
        """
        How many incoming connections, pending or running, come from the
        network group C{group} (see L{p2pool.addressing.netgroup}).
        """
        return self._pending_by_netgroup[group] + self._directory.incoming_in_netgroup(group)

    def handshake_for(self, protocol: PeerProtocol) -> Handshake:
        """
        Start the handshake of a connection whose TCP link is up.
        """
        pool = self._pool
        self._attempts.pop(protocol, None)
        self._handshaking.add(protocol)
        if protocol.incoming and protocol not in self._pending_netgroup:
            group = self._pending_netgroup[protocol] = netgroup(protocol.remote_ip)
            self._pending_by_netgroup[group] += 1
        self._linked.add(protocol)
        if self._closed:
            # Connected after the tear-down (a dial that could not be
            # cancelled): closed at once, nothing decided.
            protocol.fail(ConnectionEnded(DisconnectReason.POOL_DESTROYED), abort=True)
        elif protocol.incoming:
            self._incoming_groups[protocol] = self._group(protocol.remote_ip)
            if pool.events.wants(EventKind.INCOMING_CONNECTION):
                pool.events.emit(EventKind.INCOMING_CONNECTION, addr=protocol.remote_ip)
            self._timeouts.set(protocol, pool.config.authentication_timeout, _authentication_timed_out, protocol)
        assert self._params is not None, "configure() runs before the pool starts"
        return Handshake(
            self._params,
            incoming=protocol.incoming,
            remote_ip=protocol.remote_ip,
            dialed_point=protocol.dialed_point,
            decide=functools.partial(self._decide, protocol),
            send=protocol.write,
        )

    # -- the acceptance decision ---------------------------------------------

    def _nack(self, peer_id: PeerId, motive: int) -> Refuse:
        pool = self._pool
        points = (
            () if pool.config.disable_peer_discovery else pool.list_known_points(ignore_private=True, size=NACK_POINTS)
        )
        return nack_refusal(peer_id, motive, points)

    def _decide(self, protocol: PeerProtocol, remote: RemoteInfo) -> Decision:
        """
        Tezos C{raw_authenticate}, in order: ban, expected peer id, slots,
        private mode, already connected (simultaneous dials resolved by
        peer id).
        """
        pool = self._pool
        directory = self._directory
        peer_id = remote.peer_id
        if pool.acl.banned_peer(peer_id):
            return Refuse(PeerBanned(peer_id))
        point = remote.id_point
        point_info: PointInfo | None = None
        if point is not None:
            point_info = pool.register_new_point(point) if remote.incoming else directory.point(point)
        if point_info is not None and point_info.expected_peer_id not in (None, peer_id):
            assert point_info.expected_peer_id is not None
            pool.events.emit(EventKind.AUTHENTICATE_STATUS_PEER_ID_INCORRECT, point=str(point), peer_id=str(peer_id))
            return Refuse(IdentityCheckFailure(point, point_info.expected_peer_id, peer_id))
        if point_info is not None and point_info.known_public != (not remote.private):
            # Tezos set_private: whatever the outcome, a public remote's
            # point may now be advertised (nacked nodes must be findable);
            # unchanged, the point's indexes stay as they are.
            directory.set_known_public(point_info, not remote.private)
        peer_info = pool.register_peer(peer_id)
        full = len(directory.connections) >= pool.slot_threshold()
        if full and (self._eviction is None or not remote.incoming):
            return self._nack(peer_id, NackMotive.TOO_MANY_CONNECTIONS)
        trusted = peer_info.trusted or (point_info is not None and point_info.trusted)
        if pool.config.private_mode and not trusted:
            return Refuse(PrivateMode(f"private mode: {peer_id} is not trusted"))
        if peer_info.state is PeerState.RUNNING:
            return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
        superseded: PeerProtocol | None = None
        if peer_info.state is PeerState.ACCEPTED:
            superseded = self._accepted.get(peer_id)
            if superseded is None or superseded.incoming == protocol.incoming or not self._new_dial_wins(remote):
                return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
        # Full slots: the newcomer gets in only if a running connection
        # gives way, closed once nothing else refuses the newcomer.
        victim = self._eviction_victim(remote.remote_ip) if full else None
        if full and victim is None:
            return self._nack(peer_id, NackMotive.TOO_MANY_CONNECTIONS)
        if superseded is not None:
            self._supersede(superseded, peer_id)
        if point_info is not None and self._point_owner.get(point_info.point) is not protocol:
            if point_info.state in (PointState.ACCEPTED, PointState.RUNNING):
                return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
            if point_info.state is PointState.REQUESTED and not self._new_dial_wins(remote):
                return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
        if victim is not None:
            self._evict(victim, remote)
        now = self._clock.seconds()
        if point_info is not None:
            directory.point_accepted(point_info, peer_id, now)
            self._take_point(protocol, point_info)
        directory.peer_accepted(peer_info, point, now)
        self._owned[protocol] = (self._owned.get(protocol, (None, None))[0], peer_info)
        self._accepted[peer_id] = protocol
        if pool.events.wants(EventKind.ACCEPTING_REQUEST):
            pool.events.emit(
                EventKind.ACCEPTING_REQUEST, point=str(point), peer_id=str(peer_id), incoming=remote.incoming
            )
        return _ACCEPT

    def _eviction_victim(self, newcomer_ip: str) -> Connection | None:
        """
        The running incoming connection that gives way to a newcomer from
        C{newcomer_ip} when the slots are full (L{eviction_victim}), if any.
        """
        assert self._eviction is not None
        pool = self._pool
        directory = self._directory
        newcomer_group = self._group(newcomer_ip)
        # A victim is the youngest of a group holding at least two more
        # candidates than the newcomer's: without two running incoming
        # connections from one network group other than the newcomer's,
        # there is none (a candidate's group is its network group, or a
        # loopback address, never equal to a network group, inside one),
        # and no candidate needs building.
        if not directory.crowded_netgroup_besides(newcomer_group):
            return None
        keepalive = pool.keepalive
        failures: list[Failure] = []
        candidates = [
            Candidate(
                conn,
                self._group(conn.remote_ip),
                conn.established_at,
                score=self._score(conn, failures),
                latency=keepalive.lowest_round_trip(conn) if keepalive is not None else None,
                trusted=directory.is_trusted(conn),
            )
            for conn in directory.connections.values()
            if conn.incoming and conn.is_open
        ]
        report_failures(failures)
        return eviction_victim(candidates, newcomer_group, self._eviction, self._eviction_secret)

    def _score(self, conn: Connection, failures: list[Failure]) -> float:
        """
        The application's score of C{conn}'s peer; C{-inf} (no protection)
        when it is not a number, or when it fails (added to C{failures}).
        """
        info = self._directory.peer(conn.peer_id)
        return ranking_score(self._pool.score, info.metadata if info is not None else None, failures)

    def _evict(self, victim: Connection, newcomer: RemoteInfo) -> None:
        """
        Close C{victim} (reason C{evicted}) to make room for C{newcomer}.
        """
        self._pool.events.emit(
            EventKind.PEER_EVICTED,
            peer_id=str(victim.peer_id),
            addr=victim.remote_ip,
            netgroup=self._group(victim.remote_ip),
            newcomer=str(newcomer.peer_id),
            newcomer_addr=newcomer.remote_ip,
        )
        victim.disconnect(DisconnectReason.EVICTED)

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
        directory = self._directory
        point_info, peer_info = self._owned.pop(protocol, (None, None))
        now = self._clock.seconds()
        if point_info is not None and self._point_owner.get(point_info.point) is protocol:
            del self._point_owner[point_info.point]
            if point_info.state is not PointState.DISCONNECTED:
                directory.point_disconnected(point_info, now, requested)
            if not self._closed:
                self._pool.schedule_redial(point_info)
        if peer_info is not None:
            if self._accepted.get(peer_info.peer_id) is protocol:
                del self._accepted[peer_info.peer_id]
            if peer_info.state is not PeerState.DISCONNECTED:
                directory.peer_disconnected(peer_info, now, requested)

    # -- outcomes ----------------------------------------------------------

    def established(self, protocol: PeerProtocol, remote: RemoteInfo) -> Connection:
        """
        Both sides acknowledged: the connection runs.
        """
        pool = self._pool
        directory = self._directory
        now = self._clock.seconds()
        self._handshake_finished(protocol)
        point_info, peer_info = self._owned[protocol]
        assert peer_info is not None and self._params is not None
        del self._accepted[remote.peer_id]
        if point_info is not None:
            directory.point_running(point_info, remote.peer_id, now)
        directory.peer_running(peer_info, remote.id_point, now)
        conn = Connection(protocol, remote, now, config=pool.config, local_metadata=self._params.metadata)
        directory.connection_added(conn)
        app = pool.app
        protocol.start_messages(pool.config.max_message_size, app, conn)
        if pool.events.wants(EventKind.CONNECTION_ESTABLISHED):
            pool.events.emit(
                EventKind.CONNECTION_ESTABLISHED,
                point=str(remote.id_point),
                peer_id=str(remote.peer_id),
                incoming=remote.incoming,
            )
        result = self._dial_results.pop(protocol, None)
        self._run_app(app.connection_made, conn, failed="the application failed on the connection to {peer}")
        if result is not None:
            result.callback(conn)
        if pool.maintenance is not None:
            pool.maintenance.connection_established()
        return conn

    def _run_app(self, callback: Callable[..., object], conn: Connection, *args: object, failed: str) -> None:
        """
        Call the application's C{callback(conn, *args)}. An C{async def}
        (or a returned Deferred) runs on its own, not waited for; a failure,
        now or later, is logged with C{failed} (naming C{peer}).
        """
        try:
            result = callback(conn, *args)
            if result is not None and (isinstance(result, Deferred) or inspect.isawaitable(result)):
                as_deferred(result).addErrback(lambda f: self._log.failure(failed, f, peer=str(conn.peer_id)))
        except Exception:
            self._log.failure(failed, peer=str(conn.peer_id))

    def control_received(self, conn: Connection, kind: int, body: bytes) -> None:
        """
        A control frame arrived on a running connection.
        """
        self._answerer.control_received(conn, kind, body)

    def _handshake_finished(self, protocol: PeerProtocol) -> None:
        self._attempts.pop(protocol, None)
        self._handshaking.discard(protocol)
        group = self._pending_netgroup.pop(protocol, None)
        if group is not None:
            count = self._pending_by_netgroup[group] - 1
            if count:
                self._pending_by_netgroup[group] = count
            else:
                del self._pending_by_netgroup[group]
        self._incoming_groups.pop(protocol, None)
        self._timeouts.cancel(protocol)

    def connection_lost(self, protocol: PeerProtocol, error: P2PError) -> None:
        """
        The connection closed, established or not.
        """
        self._linked.discard(protocol)
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
        self._directory.connection_removed(conn)
        self._release(protocol, requested=not external)
        conn.reason = reason
        if pool.events.wants(EventKind.EXTERNAL_DISCONNECTION if external else EventKind.DISCONNECTION):
            pool.events.emit(
                EventKind.EXTERNAL_DISCONNECTION if external else EventKind.DISCONNECTION,
                peer_id=str(conn.peer_id),
                point=str(conn.point),
                reason=reason.reason.value,
                detail=reason.detail,
            )
        self._run_app(pool.app.connection_lost, conn, reason, failed="the application failed on the loss of {peer}")
        conn.mark_closed(reason)
        self._answerer.connection_lost(conn)
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
        if not owner_alive(pool):
            # A late connection of a pool that is gone: nothing to judge.
            self._fail_dial(protocol, error)
            return
        if isinstance(error, Myself) and protocol.dialed_point is not None:
            self._directory.add_own_point(protocol.dialed_point)
        if isinstance(error, RejectedByNack) and not pool.config.disable_peer_discovery:
            pool.register_list_of_new_points(
                error.alternative_points,
                medium="nack",
                source=protocol.remote_ip,
                source_group=self._group(protocol.remote_ip),
            )
        if isinstance(error, RejectedNoCommonProtocol) and protocol.dialed_point is not None:
            self._directory.remove_point(protocol.dialed_point)
        if isinstance(error, _GREYLISTING_FAILURES) and protocol.remote_ip:
            peer_id = protocol.verification.peer_id
            if isinstance(error, DecodingError) and peer_id is not None:
                # A malformed or oversized frame after TLS (the Hello
                # included): its certificate's peer id too, as on a
                # running connection.
                pool.greylist_peer(peer_id, protocol.remote_ip)
            else:
                pool.greylist_addr(protocol.remote_ip)
        elif (
            isinstance(error, (Timeout, Displaced))
            and protocol.incoming
            and protocol.remote_ip
            and self._stalls is not None
            and self._stalls.stalled(protocol.remote_ip, pool.now())
        ):
            # Repeated stalls: the address keeps taking handshake slots.
            pool.greylist_addr(protocol.remote_ip)
        # The motive of a nack, by name too, on both sides (None when the remote sent no nack).
        motive = error.motive if isinstance(error, RejectedByNack) else None
        nack = {"motive": motive, "motive_name": None if motive is None else motive_name(motive)}
        if isinstance(error, Rejected):
            pool.events.emit(
                EventKind.REJECTING_REQUEST,
                addr=protocol.remote_ip,
                peer_id=str(error.peer_id),
                motive=error.motive,
                motive_name=motive_name(error.motive),
                incoming=protocol.incoming,
            )
        elif accepted:
            pool.events.emit(
                EventKind.REQUEST_REJECTED,
                addr=protocol.remote_ip,
                error=type(error).__name__,
                detail=str(error),
                motive=nack["motive"],
                motive_name=nack["motive_name"],
                incoming=protocol.incoming,
            )
        elif protocol.transport is None:
            pool.events.emit(
                EventKind.CONNECTION_FAILED,
                point=str(protocol.dialed_point),
                error=type(error).__name__,
                detail=str(error),
            )
        else:
            pool.events.emit(
                EventKind.AUTHENTICATION_FAILED,
                addr=protocol.remote_ip or str(protocol.dialed_point),
                error=type(error).__name__,
                detail=str(error),
                motive=nack["motive"],
                motive_name=nack["motive_name"],
                incoming=protocol.incoming,
            )
        self._fail_dial(protocol, error)

    def _fail_dial(self, protocol: PeerProtocol, error: P2PError) -> None:
        result = self._dial_results.pop(protocol, None)
        if result is not None:
            result.errback(error)


class _Dial(ClientFactory):
    """
    The factory of one dial: once the TCP connection is up, hands over the
    dial's protocol inside the channel's, and reports a TCP connection
    that could not be made, or was abandoned, once.
    """

    noisy = False

    def __init__(self, dialer: ChannelWrapper, protocol: PeerProtocol, failed: Callable[[Failure], None]) -> None:
        self._dialer = dialer
        self._protocol: PeerProtocol | None = protocol
        self._failed: Callable[[Failure], None] | None = failed
        self._connector: IConnector | None = None

    def startedConnecting(self, connector: IConnector) -> None:
        self._connector = connector

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        # Connected: nothing left to report, and the connector (held by the
        # transport) does not hold the protocol, through the callback or
        # here: it is handed over once.
        self._failed = None
        self._connector = None
        protocol, self._protocol = self._protocol, None
        assert protocol is not None, "a connector builds one protocol"
        # The connector's address of the remote is the connection's: no
        # second one is asked of the transport.
        protocol.remote_ip = normalise_ip(getattr(addr, "host", ""))
        return self._dialer.wrap(protocol)

    def clientConnectionFailed(self, connector: IConnector | None, reason: Failure) -> None:
        failed, self._failed = self._failed, None
        self._connector = None
        if failed is not None:
            failed(reason)

    def abandon(self) -> None:
        """
        Stop the dial if its TCP connection is not up: it is reported as
        failed (by the connector, or here if the connector does not).
        """
        connector = self._connector
        if connector is not None:
            try:
                connector.stopConnecting()
            except NotConnectingError:
                pass
        self.clientConnectionFailed(connector, Failure(UserError()))


def _authentication_timed_out(protocol: PeerProtocol) -> None:
    protocol.fail(Timeout("authentication timed out"), abort=True)


def disconnect_reason(error: P2PError) -> ConnectionEnded:
    """
    The typed reason a running connection ended because of C{error}.
    """
    if isinstance(error, ConnectionEnded):
        return error
    if isinstance(error, InvalidMessageSize):
        return ConnectionEnded(DisconnectReason.MESSAGE_TOO_LARGE, str(error))
    if isinstance(error, DecodingError):
        return ConnectionEnded(DisconnectReason.DECODING_ERROR, str(error))
    if isinstance(error, PeerConnectionClosed):
        return ConnectionEnded(DisconnectReason.CONNECTION_LOST, str(error))
    return ConnectionEnded(DisconnectReason.CONNECTION_LOST, f"{type(error).__name__}: {error}")
