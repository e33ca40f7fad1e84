# -*- test-case-name: tests.test_pool -*-
"""
The pool service: it owns the known points and peers, accepts and dials
connections, decides which handshakes to accept, and carries application
messages.
"""

from __future__ import annotations

import collections
import random
from typing import Any, Callable, Iterator, Optional, Sequence

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, TCP6ClientEndpoint, TCP6ServerEndpoint, wrapClientTLS
from twisted.internet.interfaces import IAddress, IListeningPort, IReactorCore, IReactorTCP, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pool.addressing import PeerId, Point, PointSpec
from p2pool.config import PoolConfig
from p2pool.connection import Connection
from p2pool.errors import (
    ConnectionClosed,
    ConnectionDone,
    ConnectionFailed,
    Connected,
    DecodingError,
    DisconnectReason,
    IdentityCheckFailure,
    InvalidMessageSize,
    Myself,
    NackMotive,
    P2PError,
    PendingConnection,
    PrivateMode,
    Rejected,
    RejectedByNack,
    Timeout,
    TooManyConnections,
    UnknownPeer,
)
from p2pool.events import EventLog, PoolEvent
from p2pool.handshake import P2P_VERSIONS, Accept, Decision, Handshake, HandshakeParams, RemoteInfo, nack_refusal, Refuse
from p2pool.identity import Identity, load_or_create_identity
from p2pool.interfaces import BasePoolApplication, IPeerMetadataConfig, IPoolApplication
from p2pool.protocol import PeerClientFactory, PeerProtocol, PeerServerFactory
from p2pool.state import PeerInfo, PeerState, PointInfo, PointState
from p2pool.tls import TLSContext
from p2pool.wire import Advertise, Bootstrap, Disconnect, Kind, Ping, Pong, SwapAck, SwapRequest, decode_control, encode

__all__ = ["Pool"]

#: How many of our own points the pool remembers (Tezos my_id_points).
MY_POINTS_SIZE = 7
#: How many points a nack or an advertisement carries.
LISTED_POINTS = 50


class Pool(MultiService):
    """
    A pool of peer-to-peer connections (Tezos C{P2p_pool}), as a Twisted
    service.

    @ivar config: the L{PoolConfig} the pool was created with.
    @ivar identity: this node's identity, once loaded.
    @ivar app: the embedded application.
    @ivar listening_port: the listening port, once listening.
    """

    _log = Logger()

    def __init__(
        self,
        config: PoolConfig,
        app: Optional[IPoolApplication] = None,
        *,
        reactor: Any = None,
        identity: Optional[Identity] = None,
        log: Optional[Callable[[PoolEvent], object]] = None,
        rng: Optional[random.Random] = None,
        p2p_versions: Sequence[int] = P2P_VERSIONS,
        application_versions: Sequence[int] = (0,),
        connection_metadata: bytes = b"",
    ) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.config = config
        self.app: Any = IPoolApplication(app) if app is not None else BasePoolApplication()
        self._meta: Any = IPeerMetadataConfig(self.app, None) or BasePoolApplication()
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self.identity = identity
        self.events = EventLog(log)
        self._rng = rng or random.Random()
        self._p2p_versions = tuple(p2p_versions)
        self._application_versions = tuple(application_versions)
        self._connection_metadata = connection_metadata
        self._points: dict[Point, PointInfo] = {}
        self._peers: dict[PeerId, PeerInfo] = {}
        self._connections: dict[PeerId, Connection] = {}
        self._handshaking: set[PeerProtocol] = set()
        self._accepted: dict[PeerId, PeerProtocol] = {}
        self._point_owner: dict[Point, PeerProtocol] = {}
        self._owned: dict[PeerProtocol, tuple[Optional[PointInfo], Optional[PeerInfo]]] = {}
        self._dial_results: dict[PeerProtocol, Deferred[Connection]] = {}
        self._timeouts: dict[PeerProtocol, Any] = {}
        self._redials: dict[Point, Any] = {}
        self._my_points: collections.OrderedDict[Point, None] = collections.OrderedDict()
        self._stopping_identity = False
        self.listening_port: Optional[IListeningPort] = None
        self._started: Optional[Deferred[None]] = None
        self._close_waiters: dict[PeerProtocol, list[Deferred[None]]] = {}
        self._start_failure: Optional[Failure] = None

    # -- lifecycle ---------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._started = Deferred.fromCoroutine(self._start())
        self._started.addErrback(self._start_failed)

    def when_started(self) -> Deferred[None]:
        """
        Fires when the pool listens and has begun dialing its trusted
        points; fails if it could not start.
        """
        if self._started is None:
            return fail(RuntimeError("the pool service is not running"))
        if self._start_failure is not None:
            return fail(self._start_failure)
        d: Deferred[None] = Deferred()

        def fire(_: object) -> None:
            if self._start_failure is not None:
                d.errback(self._start_failure)
            else:
                d.callback(None)

        self._started.addCallback(fire)
        return d

    def _start_failed(self, failure: Failure) -> None:
        self._log.failure("p2pool could not start", failure)
        self._start_failure = failure

    async def _start(self) -> None:
        if self.identity is None:
            self.identity = await self._load_identity()
        identity = self.identity
        self.events.emit("identity_ready", peer_id=str(identity.peer_id))
        self._tls = TLSContext(identity.private_key)
        for spec in self.config.trusted_points:
            await self._register_spec(spec)
        await self._listen()
        port = self.config.advertised_port or (self.listening_port.getHost().port if self.listening_port else 0)  # type: ignore[attr-defined]
        self._handshake_params = HandshakeParams(
            peer_id=identity.peer_id,
            port=port,
            proof_of_work_stamp=identity.proof_of_work_stamp,
            network=self.config.network,
            expected_proof_of_work=self.config.expected_proof_of_work,
            p2p_versions=self._p2p_versions,
            application_versions=self._application_versions,
            private_mode=self.config.private_mode,
            metadata=self._connection_metadata,
        )
        for info in list(self._points.values()):
            if info.trusted:
                self._schedule_redial(info, self._rng.uniform(0, 0.2))
        for spec in self.config.bootstrap_points:
            point = await self._register_spec(spec, trusted=False)
            if point is not None:
                self._clock.callLater(self._rng.uniform(0, 0.2), self._dial_quietly, point)

    async def _load_identity(self) -> Identity:
        path = self.config.identity_path
        reactor = self._reactor

        def progress(attempts: int) -> None:
            reactor.callFromThread(self._log.info, "searching proof of work: {attempts} attempts", attempts=attempts)

        def search() -> Identity:
            return load_or_create_identity(
                path,
                self.config.expected_proof_of_work,
                progress=progress,
                should_stop=lambda: self._stopping_identity,
            )

        return await deferToThreadPool(reactor, reactor.getThreadPool(), search)

    async def _register_spec(self, spec: PointSpec, trusted: bool = True) -> Optional[Point]:
        """
        Register a configured point, resolving a DNS name first.
        """
        host = spec.host
        if spec.point is None:
            try:
                host = await self._reactor.resolve(spec.host)
            except Exception as e:
                self._log.warn("cannot resolve configured point {spec}: {error}", spec=str(spec), error=str(e))
                return None
        point = Point(host, spec.port)
        self.register_point(point, trusted=trusted, expected_peer_id=spec.expected_peer_id)
        return point

    async def _listen(self) -> None:
        listen = self.config.listen
        endpoint_type = TCP6ServerEndpoint if listen.is_ipv6 else TCP4ServerEndpoint
        endpoint = endpoint_type(self._reactor, listen.port, backlog=50, interface=listen.ip)
        self.listening_port = await endpoint.listen(PeerServerFactory(self))
        host = self.listening_port.getHost()  # type: ignore[union-attr]
        self.events.emit("listening", point=str(Point(host.host, host.port)), peer_id=str(self.peer_id))

    def stopService(self) -> Deferred[None]:
        self._stopping_identity = True
        for call in self._redials.values():
            if call.active():
                call.cancel()
        self._redials.clear()
        d = Deferred.fromCoroutine(self._stop())
        return d

    async def _stop(self) -> None:
        await super().stopService()
        if self.listening_port is not None:
            port, self.listening_port = self.listening_port, None
            await port.stopListening()
        await self.tear_down_connections()

    def tear_down_connections(self) -> Deferred[None]:
        """
        Close every connection and pending handshake.

        @return: fires when all are closed.
        """
        waits = [conn.disconnect(DisconnectReason.POOL_DESTROYED) for conn in list(self._connections.values())]
        for protocol in list(self._handshaking):
            waits.append(self._closed(protocol))
            protocol.fail(ConnectionDone(DisconnectReason.POOL_DESTROYED), abort=True)
        return DeferredList(waits, consumeErrors=True).addCallback(lambda _: None)

    def _closed(self, protocol: PeerProtocol) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._close_waiters.setdefault(protocol, []).append(d)
        return d

    # -- queries -----------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        """
        This node's peer id.
        """
        assert self.identity is not None, "the identity is loaded when the service starts"
        return self.identity.peer_id

    def active_connections(self) -> int:
        """
        How many connections are running.
        """
        return len(self._connections)

    def connected_peer_ids(self) -> list[PeerId]:
        """
        The peers with a running connection.
        """
        return list(self._connections)

    def connections(self) -> list[Connection]:
        """
        The running connections.
        """
        return list(self._connections.values())

    def find_connection(self, peer_id: PeerId) -> Optional[Connection]:
        """
        The running connection to C{peer_id}, if any.
        """
        return self._connections.get(peer_id)

    def point_info(self, point: Point) -> Optional[PointInfo]:
        """
        What the pool knows about C{point}.
        """
        return self._points.get(point)

    def peer_info(self, peer_id: PeerId) -> Optional[PeerInfo]:
        """
        What the pool knows about C{peer_id}.
        """
        return self._peers.get(peer_id)

    def known_points(self) -> Iterator[PointInfo]:
        return iter(list(self._points.values()))

    def known_peers(self) -> Iterator[PeerInfo]:
        return iter(list(self._peers.values()))

    # -- registration ------------------------------------------------------

    def register_point(self, point: Point, trusted: Optional[bool] = None, expected_peer_id: Optional[PeerId] = None) -> PointInfo:
        """
        Know C{point}: create its entry, or update the trusted flag and
        expected peer id of the existing one.
        """
        info = self._points.get(point)
        if info is None:
            info = PointInfo(point, trusted=bool(trusted), expected_peer_id=expected_peer_id)
            self._points[point] = info
            self.events.emit("new_point", point=str(point))
            return info
        if trusted is not None:
            info.trusted = trusted
        if expected_peer_id is not None:
            info.expected_peer_id = expected_peer_id
        return info

    def register_new_point(self, point: Point, trusted: Optional[bool] = None) -> Optional[PointInfo]:
        """
        Like L{register_point}, but None for one of our own points.
        """
        if point in self._my_points:
            return None
        return self.register_point(point, trusted)

    def register_peer(self, peer_id: PeerId) -> PeerInfo:
        """
        Know C{peer_id}.
        """
        info = self._peers.get(peer_id)
        if info is None:
            info = PeerInfo(peer_id, created=self._clock.seconds(), metadata=self._meta.initial_metadata())
            self._peers[peer_id] = info
            self.events.emit("new_peer", peer_id=str(peer_id))
        return info

    def add_to_id_points(self, point: Point) -> None:
        """
        Remember C{point} as ourselves, and forget it as a known point.
        """
        self._my_points[point] = None
        self._my_points.move_to_end(point)
        while len(self._my_points) > MY_POINTS_SIZE:
            self._my_points.popitem(last=False)
        info = self._points.get(point)
        if info is not None and info.state is PointState.DISCONNECTED:
            del self._points[point]

    # -- messaging ---------------------------------------------------------

    def send(self, peer_id: PeerId, data: bytes) -> Deferred[None]:
        """
        Send an application message to a connected peer.

        @return: fires once the message is queued; fails with
            L{UnknownPeer} when the peer is not connected, or
            L{InvalidMessageSize}.
        """
        conn = self._connections.get(peer_id)
        if conn is None:
            return fail(UnknownPeer(f"no connection to {peer_id}"))
        try:
            conn.send(data)
        except P2PError as e:
            return fail(e)
        return succeed(None)

    def broadcast(self, data: bytes) -> int:
        """
        Send an application message to every connected peer.

        @return: how many peers it was sent to.
        @raise InvalidMessageSize: C{data} is too large.
        """
        if len(data) > self.config.max_message_size:
            raise InvalidMessageSize(f"message of {len(data)} bytes exceeds max_message_size ({self.config.max_message_size})")
        count = 0
        for conn in list(self._connections.values()):
            conn.send(data)
            count += 1
        return count

    # -- dialing -----------------------------------------------------------

    def connect(self, point: Point, timeout: Optional[float] = None) -> Deferred[Connection]:
        """
        Dial C{point} and run the handshake.

        @return: fires with the L{Connection}, or fails with a L{P2PError}
            (L{PendingConnection}, L{Connected}, L{TooManyConnections},
            L{PrivateMode}, L{ConnectionFailed}, L{Timeout},
            L{RejectedByNack}, L{Myself}, ...).
        """
        if self.identity is None or not hasattr(self, "_handshake_params"):
            return fail(ConnectionFailed("the pool has not started"))
        if point in self._my_points:
            return fail(Myself(point))
        if self.active_connections() >= self.config.max_connections:
            return fail(TooManyConnections())
        info = self.register_point(point)
        if self.config.private_mode and not info.trusted:
            return fail(PrivateMode(f"private mode: {point} is not trusted"))
        if info.state is PointState.RUNNING:
            return fail(Connected(f"already connected to {point}"))
        if info.state is not PointState.DISCONNECTED:
            return fail(PendingConnection(f"a connection to {point} is being set up"))
        now = self._clock.seconds()
        info.set_requested(now)
        factory = PeerClientFactory(self, point, info.expected_peer_id)
        protocol = factory.protocol_instance
        self._take_point(protocol, info)
        result: Deferred[Connection] = Deferred()
        self._dial_results[protocol] = result
        self.events.emit("outgoing_connection", point=str(point))
        tcp = self._client_endpoint(point)
        attempt = wrapClientTLS(self._tls.creator, tcp).connect(factory)
        delay = self.config.connection_timeout if timeout is None else timeout
        self._timeouts[protocol] = self._clock.callLater(delay, self._dial_timed_out, protocol, attempt)
        attempt.addErrback(self._tcp_failed, protocol)
        return result

    def _client_endpoint(self, point: Point) -> Any:
        listen = self.config.listen
        bind = None
        if listen.ip not in ("0.0.0.0", "::") and listen.is_ipv6 == point.is_ipv6:
            bind = (listen.ip, 0)
        endpoint_type = TCP6ClientEndpoint if point.is_ipv6 else TCP4ClientEndpoint
        return endpoint_type(self._reactor, point.ip, point.port, timeout=max(1, int(self.config.connection_timeout)), bindAddress=bind)

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

    def _schedule_redial(self, info: PointInfo, delay: Optional[float] = None) -> None:
        """
        Keep a trusted point connected: dial it again once its back-off
        allows.
        """
        if not self.running or not info.trusted or info.point in self._redials:
            return
        if delay is None:
            delay = max(0.0, (info.reconnection_time or 0.0) - self._clock.seconds()) + 0.01
        self._redials[info.point] = self._clock.callLater(delay, self._redial, info.point)

    def _redial(self, point: Point) -> None:
        del self._redials[point]
        info = self._points.get(point)
        if info is None or not info.trusted or info.state is not PointState.DISCONNECTED:
            return
        self._dial_quietly(point)

    def _dial_quietly(self, point: Point) -> None:
        """
        Dial C{point}; the outcome is reported as pool events.
        """
        self.connect(point).addErrback(lambda f: f.trap(P2PError))

    # -- handshakes (called by PeerProtocol) --------------------------------

    def _admit_incoming(self, addr: IAddress) -> bool:
        """
        Whether to start a TLS handshake with an incoming connection.
        """
        if not self.running or not hasattr(self, "_handshake_params"):
            return False
        incoming = sum(1 for p in self._handshaking if p.incoming)
        if incoming >= self.config.max_incoming_connections:
            self.events.emit("incoming_connection_too_many", addr=getattr(addr, "host", str(addr)))
            return False
        return True

    def _handshake_for(self, protocol: PeerProtocol) -> Handshake:
        self._handshaking.add(protocol)
        if protocol.incoming:
            self.events.emit("incoming_connection", addr=protocol.remote_ip)
            self._timeouts[protocol] = self._clock.callLater(
                self.config.authentication_timeout,
                lambda: protocol.fail(Timeout("authentication timed out"), abort=True),
            )
        return Handshake(
            self._handshake_params,
            incoming=protocol.incoming,
            remote_ip=protocol.remote_ip,
            dialed_point=protocol.dialed_point,
            decide=lambda remote: self._decide(protocol, remote),
            send=protocol.write,
        )

    def _known_public_points(self, size: int = LISTED_POINTS) -> tuple[Point, ...]:
        points = [p for p, info in self._points.items() if info.known_public]
        if len(points) > size:
            points = self._rng.sample(points, size)
        return tuple(points)

    def _nack(self, peer_id: PeerId, motive: int) -> Refuse:
        points = () if self.config.disable_peer_discovery else self._known_public_points()
        return nack_refusal(peer_id, motive, points)

    def _decide(self, protocol: PeerProtocol, remote: RemoteInfo) -> Decision:
        """
        The acceptance decision (Tezos C{raw_authenticate}): expected peer
        id, slots, private mode, already connected.
        """
        peer_id = remote.peer_id
        point = remote.id_point
        point_info: Optional[PointInfo] = None
        if point is not None:
            point_info = self._points.get(point) if not remote.incoming else self.register_new_point(point)
        if point_info is not None and point_info.expected_peer_id not in (None, peer_id):
            assert point_info.expected_peer_id is not None
            self.events.emit("authenticate_status_peer_id_incorrect", point=str(point), peer_id=str(peer_id))
            return Refuse(IdentityCheckFailure(point, point_info.expected_peer_id, peer_id))
        peer_info = self.register_peer(peer_id)
        if self.active_connections() >= self._slot_threshold():
            return self._nack(peer_id, NackMotive.TOO_MANY_CONNECTIONS)
        trusted = peer_info.trusted or (point_info is not None and point_info.trusted)
        if self.config.private_mode and not trusted:
            return Refuse(PrivateMode(f"private mode: {peer_id} is not trusted"))
        if peer_info.state is PeerState.RUNNING:
            return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
        if peer_info.state is PeerState.ACCEPTED:
            other = self._accepted.get(peer_id)
            if other is None or other.incoming == protocol.incoming or not self._new_dial_wins(remote):
                return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
            self._supersede(other, peer_id)
        if point_info is not None and remote.incoming:
            if point_info.state in (PointState.ACCEPTED, PointState.RUNNING):
                return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
            if point_info.state is PointState.REQUESTED:
                if not self._new_dial_wins(remote):
                    return self._nack(peer_id, NackMotive.ALREADY_CONNECTED)
                owner = self._point_owner.get(point_info.point)
                if owner is not None:
                    self._owned[owner] = (None, self._owned.get(owner, (None, None))[1])
        now = self._clock.seconds()
        if point_info is not None:
            point_info.known_public = not remote.private
            if point_info.state is not PointState.ACCEPTED or not remote.incoming:
                point_info.set_accepted(peer_id, now)
            self._take_point(protocol, point_info)
        peer_info.set_accepted(point, now)
        self._owned[protocol] = (self._owned.get(protocol, (None, None))[0], peer_info)
        self._accepted[peer_id] = protocol
        self.events.emit("accepting_request", point=str(point), peer_id=str(peer_id), incoming=remote.incoming)
        return Accept()

    def _slot_threshold(self) -> int:
        if self.config.maintenance_idle_time is not None:
            return self.config.maintenance_bounds()[3]
        return self.config.max_connections

    def _new_dial_wins(self, remote: RemoteInfo) -> bool:
        """
        Of two connections between the same two nodes in opposite
        directions, the one dialed by the smaller peer id survives.
        """
        new_dialer = remote.peer_id if remote.incoming else self.peer_id
        old_dialer = self.peer_id if remote.incoming else remote.peer_id
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
        point_info, peer_info = self._owned.pop(protocol, (None, None))
        now = self._clock.seconds()
        if point_info is not None and self._point_owner.get(point_info.point) is protocol:
            del self._point_owner[point_info.point]
            if point_info.state is not PointState.DISCONNECTED:
                point_info.set_disconnected(now, self.config.reconnection, self._rng, requested)
            self._schedule_redial(point_info)
        if peer_info is not None:
            if self._accepted.get(peer_info.peer_id) is protocol:
                del self._accepted[peer_info.peer_id]
            if peer_info.state is not PeerState.DISCONNECTED:
                peer_info.set_disconnected(now, requested)

    def _established(self, protocol: PeerProtocol, remote: RemoteInfo) -> Connection:
        now = self._clock.seconds()
        self._handshake_finished(protocol)
        point_info, peer_info = self._owned[protocol]
        assert peer_info is not None
        del self._accepted[remote.peer_id]
        if point_info is not None:
            point_info.set_running(remote.peer_id, now)
        peer_info.set_running(remote.id_point, now)
        conn = Connection(self, protocol, remote, now)
        self._connections[remote.peer_id] = conn
        protocol.start_messages(self.config.max_message_size, lambda data: self.app.message_received(conn, data))
        self.events.emit("connection_established", point=str(remote.id_point), peer_id=str(remote.peer_id), incoming=remote.incoming)
        result = self._dial_results.pop(protocol, None)
        self.app.connection_made(conn)
        if result is not None:
            result.callback(conn)
        return conn

    def _handshake_finished(self, protocol: PeerProtocol) -> None:
        self._handshaking.discard(protocol)
        call = self._timeouts.pop(protocol, None)
        if call is not None and call.active():
            call.cancel()

    def _connection_lost(self, protocol: PeerProtocol, error: P2PError) -> None:
        conn = protocol.connection
        if conn is None:
            self._handshake_over(protocol, error)
        else:
            self._running_lost(protocol, conn, error)
        for waiter in self._close_waiters.pop(protocol, []):
            waiter.callback(None)

    def _running_lost(self, protocol: PeerProtocol, conn: Connection, error: P2PError) -> None:
        reason = _disconnect_reason(error)
        requested = reason.reason is not DisconnectReason.CONNECTION_LOST and reason.reason is not DisconnectReason.REMOTE_DISCONNECT
        if self._connections.get(conn.peer_id) is conn:
            del self._connections[conn.peer_id]
        self._release(protocol, requested)
        conn.reason = reason
        self.events.emit("disconnection", peer_id=str(conn.peer_id), point=str(conn.point), reason=reason.reason.value, detail=reason.detail)
        try:
            self.app.connection_lost(conn, reason)
        finally:
            conn._lost(reason)

    def _handshake_over(self, protocol: PeerProtocol, error: P2PError) -> None:
        """
        A handshake failed: release what it held and tell whoever dialed.
        """
        self._handshake_finished(protocol)
        self._release(protocol)
        if isinstance(error, Myself) and protocol.dialed_point is not None:
            self.add_to_id_points(protocol.dialed_point)
        if isinstance(error, RejectedByNack) and not self.config.disable_peer_discovery:
            for point in error.alternative_points:
                self.register_new_point(point)
        if isinstance(error, Rejected):
            self.events.emit("rejecting_request", addr=protocol.remote_ip, peer_id=str(error.peer_id), motive=error.motive)
        elif protocol.transport is None:
            self.events.emit("connection_failed", point=str(protocol.dialed_point), error=type(error).__name__, detail=str(error))
        else:
            self.events.emit(
                "authentication_failed",
                addr=protocol.remote_ip or str(protocol.dialed_point),
                error=type(error).__name__,
                detail=str(error),
                incoming=protocol.incoming,
            )
        result = self._dial_results.pop(protocol, None)
        if result is not None:
            result.errback(error)

    # -- control messages on running connections ----------------------------

    def _control_received(self, conn: Connection, kind: int, body: bytes) -> None:
        msg = decode_control(kind, body)
        if isinstance(msg, Disconnect):
            conn._protocol.fail(ConnectionDone(DisconnectReason.REMOTE_DISCONNECT))
        elif isinstance(msg, Ping):
            conn._protocol.write(encode(Pong()))
        elif isinstance(msg, Pong):
            pass
        elif isinstance(msg, Bootstrap):
            self.events.emit("bootstrap_received", peer_id=str(conn.peer_id))
            if not self.config.disable_peer_discovery and not conn.private:
                points = self._known_public_points()
                if points:
                    conn._protocol.write(encode(Advertise(points)))
                    self.events.emit("advertise_sent", peer_id=str(conn.peer_id))
        elif isinstance(msg, Advertise):
            self.events.emit("advertise_received", peer_id=str(conn.peer_id), points=len(msg.points))
            if not self.config.disable_peer_discovery and not self.config.private_mode:
                for point in msg.points:
                    self.register_new_point(point)
        elif isinstance(msg, (SwapRequest, SwapAck)):
            name = "swap_request" if isinstance(msg, SwapRequest) else "swap_ack"
            self.events.emit(name + "_received", peer_id=str(conn.peer_id))
        else:
            raise DecodingError(f"unexpected {Kind(kind).name.lower()} frame on a running connection")


def _disconnect_reason(error: P2PError) -> ConnectionDone:
    if isinstance(error, ConnectionDone):
        return error
    if isinstance(error, InvalidMessageSize):
        return ConnectionDone(DisconnectReason.MESSAGE_TOO_LARGE, str(error))
    if isinstance(error, DecodingError):
        return ConnectionDone(DisconnectReason.DECODING_ERROR, str(error))
    if isinstance(error, ConnectionClosed):
        return ConnectionDone(DisconnectReason.CONNECTION_LOST, str(error))
    return ConnectionDone(DisconnectReason.CONNECTION_LOST, f"{type(error).__name__}: {error}")
