# -*- test-case-name: tests.test_pool_api -*-
"""
The pool service (Tezos C{P2p_pool}): it owns the known points and peers
and the ACLs, runs the connections through its connect handler, and carries
application messages.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from twisted.application.service import MultiService
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorTime, IStreamServerEndpoint
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

import p2pool.core.identity as identity_module
from p2pool.config import PoolConfig
from p2pool.core.acl import ACL
from p2pool.core.addressing import (
    PeerId,
    Point,
    PointSpec,
    check_peer_id,
    check_point,
    learnt_point_refusal,
    node_reach,
)
from p2pool.core.dial_budget import DialBudget
from p2pool.core.directory import Directory
from p2pool.core.flow import FlowLimits
from p2pool.core.handshake import P2P_VERSIONS, HandshakeParams
from p2pool.core.identity import Identity, IdentityError, ProofOfWorkProgress, load_or_create_identity
from p2pool.core.lifetime import weak_method
from p2pool.core.states import UNTRUSTED, PeerInfo, PointInfo, PointState, TrustSource, changed_trust
from p2pool.core.tables import PeerTable, PointTable
from p2pool.core.wire import encode_message, not_bytes
from p2pool.errors import (
    DisconnectReason,
    InvalidMessageSize,
    MaintenanceDisabled,
    P2PError,
    SendQueueFull,
    UnknownPeer,
    listen_failure_text,
)
from p2pool.events import EventKind, EventLog, PoolEvent
from p2pool.interfaces import BasePoolApplication, IPeerMetadataConfig, IPoolApplication
from p2pool.pool.bootstrap_urls import SeedFetcher
from p2pool.pool.connect import ConnectHandler
from p2pool.pool.contracts import IPoolReactor, installed_reactor
from p2pool.pool.control_frames import Answerer
from p2pool.pool.dns_refresh import Reresolver
from p2pool.pool.keepalive import Keepalive
from p2pool.pool.maintenance import Maintenance
from p2pool.pool.memory import trim_freed_memory, trimming_available
from p2pool.pool.persistence import RESTART_DIAL_SPREAD, PeersFile
from p2pool.pool.refusals import RefusalLog, event_reporter
from p2pool.pool.scoring import ranking_score, report_failures
from p2pool.pool.seed_views import ConnectionsView, PeersView, PointsView
from p2pool.transport.channel import ChannelMaker, PeerChannel, tls_channel
from p2pool.transport.connection import Connection
from p2pool.transport.peer_protocol import PeerServerFactory

__all__ = ["Pool"]


def _application(app: object) -> Any:
    """
    C{app} as an L{IPoolApplication}.

    @raise TypeError: it does not provide one, nor adapts to one.
    """
    adapted = IPoolApplication(app, None)
    if adapted is None:
        raise TypeError(
            f"app must provide IPoolApplication (subclass p2pool.BasePoolApplication, or declare "
            f"@implementer(IPoolApplication)), not {type(app).__name__} {app!r}"
        )
    return adapted


#: What a pool always calls on its reactor (of L{IPoolReactor}; threads are
#: needed only to load or make an identity), checked when it is made so that
#: a reactor lacking one is named at once.
_REACTOR_NEEDS = ("seconds", "callLater", "resolve", "listenTCP", "connectTCP")


def _check_reactor(reactor: object) -> None:
    """
    @raise TypeError: C{reactor} lacks what a pool calls.
    """
    missing = [name for name in _REACTOR_NEEDS if not hasattr(reactor, name)]
    if missing:
        raise TypeError(
            f"reactor {type(reactor).__name__} lacks {', '.join(missing)}: a Pool needs IReactorTime, IReactorTCP "
            f"and resolve (in tests, use p2pool.testing.MemoryNetwork rather than a task.Clock)"
        )


def _tcp_address(port: IListeningPort) -> IPv4Address | IPv6Address:
    """
    The address a TCP listening port is bound to (C{IListeningPort}
    declares a bare C{IAddress}).
    """
    return cast(IPv4Address | IPv6Address, port.getHost())


class Pool(MultiService):
    """
    A pool of peer-to-peer connections, as a Twisted service.

    @ivar config: the L{PoolConfig} the pool was created with.
    @ivar identity: this node's identity, once loaded.
    @ivar app: the embedded application.
    @ivar acl: the address and peer black- and greylists.
    @ivar events: where pool events go (add callbacks to
        C{events.callbacks}).
    @ivar refusals: refused incoming connections, counted by reason and
        logged as one C{connections_refused} event per reason per
        C{refusal_log_interval}.
    @ivar connections: the running connections (Tezos C{Connection}).
    @ivar peers: the known peers (Tezos C{Peers}).
    @ivar points: the known points (Tezos C{Points}).
    @ivar maintenance: the maintenance worker, unless disabled.
    @ivar keepalive: the keepalive checker, unless disabled.
    @ivar seeds: the bootstrap URL fetcher, when URLs are configured.
    @ivar reresolver: re-resolves the configured named points.
    @ivar persistence: the peers file.
    @ivar listening_port: the listening port, once listening.
    @ivar started_at: when the service started (the pool's clock), once
        it has.
    """

    _log = Logger()

    def __init__(
        self,
        config: PoolConfig,
        app: IPoolApplication | None = None,
        *,
        reactor: IPoolReactor | None = None,
        identity: Identity | None = None,
        log: Callable[[PoolEvent], object] | None = None,
        rng: random.Random | None = None,
        p2p_versions: Sequence[int] = P2P_VERSIONS,
        application_versions: Sequence[int] = (0,),
        connection_metadata: bytes = b"",
        channel: ChannelMaker = tls_channel,
    ) -> None:
        """
        Make a pool; the arguments other than C{channel} are described by
        the class.

        @param channel: builds, from the identity, the channel that
            authenticates and carries peer connections: TLS for every
            node. Only C{p2pool.testing.MemoryNetwork} passes another (its
            simulation channel, for simulations only); no configuration
            key reaches this.
        """
        # MultiService is unannotated; mypy does not apply untyped_calls_exclude to super() calls.
        super().__init__()  # type: ignore[no-untyped-call]
        if reactor is None:
            reactor = installed_reactor()
        _check_reactor(reactor)
        self.config = config
        self.app: Any = _application(app) if app is not None else BasePoolApplication()
        self._meta: Any = IPeerMetadataConfig(self.app, None) or BasePoolApplication()
        self._reactor = reactor
        self._clock: IReactorTime = reactor
        self.identity = identity
        self.events = EventLog(log)
        self.refusals = RefusalLog(reactor, config.refusal_log_interval, event_reporter(self.events.emit))
        self.events.summarise = self.refusals.take_event
        self.events.summarised = self.refusals.counted
        self._rng = rng or random.Random()
        self._p2p_versions = tuple(p2p_versions)
        self._application_versions = tuple(application_versions)
        self._connection_metadata = connection_metadata
        self.acl = ACL(
            config.peer_greylist_size, config.ip_greylist_size_in_kilobytes, config.ip_greylist_cleanup_delay
        )
        points = PointTable(config.max_known_points, self._rng, config.max_source_group_share)
        peers = PeerTable(config.max_known_peer_ids)
        self._directory = Directory(points, peers, config.reconnection, self._rng)
        # The directory's read-only views of the running connections, held
        # here for send and broadcast.
        self._connections: Mapping[PeerId, Connection] = self._directory.connections
        self._connection = self._directory.connection
        #: Flow-control limits and the node-wide send and receive budgets
        #: (L{p2pool.core.flow}).
        self.flow = FlowLimits.from_config(config)
        #: Broadcast copies skipped because a peer's send queue was full.
        self.broadcast_skipped = 0
        #: The reachability class of this node: learnt points outside it are dropped.
        self.reach = node_reach(config.listen.ip)
        #: The per-source-group rate of dials of never-connected learnt points.
        self.dial_budget = DialBudget.from_config(config)
        answerer = Answerer(
            self,
            self._directory,
            config=config,
            events=self.events,
            clock=reactor,
            rng=self._rng,
            dial_budget=self.dial_budget,
        )
        self.maintenance: Maintenance | None = (
            Maintenance(
                self,
                self._directory,
                config=config,
                acl=self.acl,
                events=self.events,
                clock=reactor,
                rng=self._rng,
                dial_budget=self.dial_budget,
            )
            if config.maintenance_idle_time is not None
            else None
        )
        self._handler = ConnectHandler(self, self._directory, answerer, reactor, reactor)
        self.seeds: SeedFetcher | None = (
            SeedFetcher(self, config.bootstrap_urls, config.seed_ca_file, reactor=reactor, rng=self._rng)
            if config.bootstrap_urls
            else None
        )
        self.reresolver = Reresolver(
            self,
            [(s, True) for s in config.trusted_points] + [(s, False) for s in config.bootstrap_points],
            resolve=reactor.resolve,
            clock=reactor,
            rng=self._rng,
        )
        self.connections = ConnectionsView(self._directory)
        self.peers = PeersView(self._directory, self.acl, self.events, self, self._meta)
        self.points = PointsView(self._directory, self.acl, self.events, self)
        self._redials: dict[Point, Any] = {}
        self._greylist_countdown = LoopingCall.withCount(weak_method(self._age_greylist))
        self._greylist_countdown.clock = reactor
        self.persistence = PeersFile(self, reactor)
        self._checkpoints = LoopingCall(weak_method(self.save_peers))
        self._checkpoints.clock = reactor
        self._memory_trims = LoopingCall(weak_method(self._trim_memory))
        self._memory_trims.clock = reactor
        self.keepalive: Keepalive | None = (
            Keepalive(self._directory, self.events, reactor, config.keepalive_interval)
            if config.keepalive_interval is not None
            else None
        )
        self._stopping_identity = False
        self.listening_port: IListeningPort | None = None
        self.started_at: float | None = None
        self._started: Deferred[None] | None = None
        self._start_failure: Failure | None = None
        self.is_started = False
        self._make_channel = channel
        self._channel: PeerChannel | None = None

    # -- lifecycle ---------------------------------------------------------

    def startService(self) -> None:
        """
        Start the pool: load or make the identity, listen, load the peers
        file and dial the trusted points (L{when_started} tells when).

        @raise RuntimeError: the pool is running, or has been stopped (a
            stopped pool does not start again: make a new L{Pool}, which
            reloads the identity and the peers file).
        """
        if self.running:
            raise RuntimeError("the pool service is already running")
        if self._started is not None:
            raise RuntimeError("a stopped Pool cannot be started again; make a new Pool")
        super().startService()  # type: ignore[no-untyped-call]  # unannotated MultiService, as in __init__
        self.started_at = self._clock.seconds()
        self._greylist_countdown.start(self.acl.ip_greylist.countdown_interval, now=False)
        self._checkpoints.start(self.config.checkpoint_interval, now=False)
        if self.config.memory_trim_interval is not None and trimming_available():
            self._memory_trims.start(self.config.memory_trim_interval, now=False)
        if self.keepalive is not None:
            self.keepalive.start()
        self._started = Deferred.fromCoroutine(self._start())
        self._started.addErrback(self._start_failed)

    def _age_greylist(self, steps: int) -> None:
        """
        One greylist countdown per elapsed interval, even when the reactor
        was too busy to run each on time.
        """
        for _ in range(min(steps, 16)):
            self.acl.ip_greylist.countdown()

    def _trim_memory(self) -> None:
        """
        Return the memory the process freed to the system, once per
        C{memory_trim_interval} for all the pools of the process.
        """
        interval = self.config.memory_trim_interval
        assert interval is not None, "the trims run only with an interval"
        trim_freed_memory(min_gap=interval * 0.9)

    def when_started(self) -> Deferred[None]:
        """
        Fires when the pool listens, has loaded its peers file and has
        begun dialing its trusted points; fails if it could not start (or
        was stopped first).

        The pool listens before the file's records are loaded (its bans
        are in force first): connections run meanwhile, and the loaded
        records are merged into what they taught the pool (see
        L{p2pool.pool.persistence.apply_content}). C{persistence.loaded}
        tells when loading has ended.
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
        """
        Log why the pool could not start: one line for what an operator
        can fix (a port in use, an identity or file problem), the
        traceback for anything else (a bug).
        """
        self._start_failure = failure
        if not self.running:
            self._log.info("p2pool stopped before it had started: {error}", error=failure.getErrorMessage())
            return
        if isinstance(failure.value, CannotListenError):
            reason = listen_failure_text("p2p.listen", self.config.listen, failure.value)
        elif failure.check(IdentityError, OSError):
            reason = failure.getErrorMessage()
        else:
            self._log.failure("p2pool could not start", failure)
            return
        self._log.error("p2pool could not start: {error}", error=reason)

    async def _start(self) -> None:
        if self.identity is None:
            self.identity = await self._load_identity()
        identity = self.identity
        self.events.emit(EventKind.IDENTITY_READY, peer_id=str(identity.peer_id))
        self._channel = self._make_channel(identity)
        # The file's bans are in force before the port opens; its records
        # are put into the tables while the pool listens.
        await self.persistence.open()
        if not self.running:
            raise CancelledError("stopped while reading the peers file")
        for spec in self.config.trusted_points:
            await self._register_spec(spec, trusted=True)
        bootstrap = [await self._register_spec(spec, trusted=False) for spec in self.config.bootstrap_points]
        await self._listen()
        listening = self.listening_point
        port = self.config.advertised_port or (listening.port if listening is not None else 0)
        params = HandshakeParams(
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
        self._handler.configure(self._channel, params)
        self.is_started = True
        self._dial_trusted()
        await self.persistence.load()
        if not self.running:
            raise CancelledError("stopped while loading the peers file")
        # The file's trusted points too.
        self._dial_trusted()
        self.reresolver.start()
        if self.seeds is not None and not self.config.private_mode:
            self.seeds.start()
        if self.maintenance is not None:
            self.maintenance.start()
        else:
            for point in bootstrap:
                if point is not None:
                    self._clock.callLater(self._rng.uniform(0, 0.2), self._dial_quietly, point)
            # Without maintenance, dial once the points this node was
            # connected to before it restarted (spread, with jitter).
            if not self.config.private_mode:
                for point in self.persistence.restart_points[: self.config.expected_connections]:
                    known = self._directory.point(point)
                    if known is not None and not known.trusted and not self.acl.banned_addr(point.ip):
                        self._clock.callLater(self._rng.uniform(0, RESTART_DIAL_SPREAD), self._dial_quietly, point)

    def _dial_trusted(self) -> None:
        """
        Keep every trusted point connected (see L{schedule_redial}).
        """
        for info in self._directory.points():
            if info.trusted:
                self.schedule_redial(info, self._rng.uniform(0, 0.2))

    async def _load_identity(self) -> Identity:
        path = self.config.identity_path
        reactor = self._reactor
        report = ProofOfWorkProgress(self.config.expected_proof_of_work, identity_module.PROGRESS_LOG_INTERVAL)

        def progress(attempts: int) -> None:
            text = report(attempts)
            if text is not None:
                reactor.callFromThread(self._log.info, "{progress}", progress=text)

        def search() -> Identity:
            return load_or_create_identity(
                path,
                self.config.expected_proof_of_work,
                progress=progress,
                should_stop=lambda: self._stopping_identity,
            )

        return await deferToThreadPool(reactor, reactor.getThreadPool(), search)

    async def _register_spec(self, spec: PointSpec, trusted: bool) -> Point | None:
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
        self.register_point(
            point, trusted=trusted or None, expected_peer_id=spec.expected_peer_id, source=TrustSource.CONFIG
        )
        return point

    async def _listen(self) -> None:
        listen = self.config.listen
        endpoint_type = TCP6ServerEndpoint if listen.is_ipv6 else TCP4ServerEndpoint
        endpoint: IStreamServerEndpoint = endpoint_type(self._reactor, listen.port, backlog=50, interface=listen.ip)
        self.listening_port = await endpoint.listen(self.server_factory())
        self.events.emit(EventKind.LISTENING, point=str(self.listening_point), peer_id=str(self.peer_id))

    @property
    def listening_point(self) -> Point | None:
        """
        The address and port the pool listens on, once it does.
        """
        if self.listening_port is None:
            return None
        host = _tcp_address(self.listening_port)
        return Point(host.host, host.port)

    def server_factory(self) -> PeerServerFactory:
        """
        A factory that accepts incoming connections into this pool, as its
        listening port does (refusing banned and greylisted addresses before
        TLS); available once the identity is loaded.
        """
        assert self._channel is not None, "the identity is loaded"
        return PeerServerFactory(self._handler, self._channel, self._clock)

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, close every connection and save the peers file;
        nothing to do for a pool that has not started (it can still start).

        @return: fires once the connections are closed and the file saved.
        """
        if self._started is None:
            self.running = 0
            return succeed(None)
        self._stopping_identity = True
        self.persistence.stop_loading()
        self.is_started = False
        for call in self._redials.values():
            if call.active():
                call.cancel()
        self._redials.clear()
        if self._greylist_countdown.running:
            self._greylist_countdown.stop()
        if self._checkpoints.running:
            self._checkpoints.stop()
        if self._memory_trims.running:
            self._memory_trims.stop()
        if self.keepalive is not None:
            self.keepalive.stop()
        if self.maintenance is not None:
            self.maintenance.stop()
        if self.seeds is not None:
            self.seeds.stop()
        self.reresolver.stop()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await super().stopService()  # type: ignore[no-untyped-call]  # unannotated MultiService, as in __init__
        if self.listening_port is not None:
            port, self.listening_port = self.listening_port, None
            await maybeDeferred(port.stopListening)
        await self.tear_down_connections()
        self.refusals.stop()
        await self.save_peers()

    def save_peers(self) -> Deferred[None]:
        """
        Save the known peers, points and bans to the peers file, atomically
        and mostly off the reactor thread (see L{p2pool.pool.persistence}).

        @return: fires once a save begun after this call has ended; never
            fails (errors are logged as C{save_error_peers} events and
            counted in C{persistence.failures}).
        """
        return self.persistence.save()

    def tear_down_connections(self) -> Deferred[None]:
        """
        Close every connection and pending handshake, for good: a step of
        the shutdown (L{stopService} runs it). From then on the pool makes
        and accepts no connection, each ending at once with
        C{pool_destroyed}.

        @return: fires when all are closed.
        """
        return self._handler.tear_down()

    def destroy(self) -> Deferred[None]:
        """
        Close every connection (for good, see L{tear_down_connections}),
        then save the known peers.
        """
        d = self.tear_down_connections()
        d.addCallback(lambda _: self.save_peers())
        return d

    # -- queries -----------------------------------------------------------

    @property
    def directory(self) -> Directory:
        """
        The known points and peers, the running connections and our own
        points; their one owner, whose methods are the transitions.
        """
        return self._directory

    @property
    def connect_handler(self) -> ConnectHandler:
        """
        Runs every connection from dial or accept to close (pending
        handshakes: C{connect_handler.pending_incoming}).
        """
        return self._handler

    @property
    def metadata_config(self) -> Any:
        """
        The application's C{IPeerMetadataConfig} (the pool's default one
        when the application provides none): initial metadata, score, and
        the peers file encoding.
        """
        return self._meta

    @property
    def peer_id(self) -> PeerId:
        """
        This node's peer id.

        @raise RuntimeError: the identity is not loaded yet (the pool has
            not started, and was not given one).
        """
        if self.identity is None:
            raise RuntimeError("the pool has no identity yet: it is loaded when the service starts (or give identity=)")
        return self.identity.peer_id

    def now(self) -> float:
        """
        The pool's current time.
        """
        return self._clock.seconds()

    def active_connections(self) -> int:
        """
        How many connections are running.
        """
        return len(self._connections)

    def bytes_totals(self) -> tuple[int, int]:
        """
        Bytes sent and received by this pool since it started (frames,
        before encryption), over all connections, open or closed.
        """
        return self._handler.bytes_totals()

    def connected_peer_ids(self) -> list[PeerId]:
        """
        The peer ids with a running connection (Tezos returns their infos:
        see L{connected_peers}).
        """
        return list(self._connections)

    def connected_peers(self) -> dict[PeerId, PeerInfo]:
        """
        What is known of each peer with a running connection, by peer id
        (the table Tezos's C{connected_peer_ids} returns); a copy.
        """
        peer = self._directory.peer
        return {peer_id: info for peer_id in self._connections if (info := peer(peer_id)) is not None}

    def score(self, metadata: Any) -> float:
        """
        The application's score of a peer's metadata.
        """
        return float(self._meta.score(metadata))

    def slot_threshold(self) -> int:
        """
        How many running connections make a new one refused: the
        maintenance C{max_threshold} when maintenance runs, else
        C{max_connections}.
        """
        if self.config.maintenance_idle_time is not None:
            return self.config.maintenance_bounds()[3]
        return self.config.max_connections

    def list_known_points(self, ignore_private: bool, size: int = 50) -> list[Point]:
        """
        Up to C{size} known points to advertise: 3/5 the best ones, 2/5 at
        random, never banned ones; with C{ignore_private} only points known
        to be public nodes.

        @raise ValueError: C{size} is negative.
        """
        banned = self.acl.banned_addr if self.acl.bans_addresses() else None
        return self._directory.list_known_points(ignore_private, size, banned)

    # -- registration ------------------------------------------------------

    def register_point(
        self,
        point: Point,
        trusted: bool | None = None,
        expected_peer_id: PeerId | None = None,
        *,
        source: TrustSource | None = None,
    ) -> PointInfo:
        """
        Know C{point}. A new point may first make room by forgetting old
        disconnected untrusted points (C{max_known_points}); a known one
        gets its trusted flag (None leaves it) and expected peer id updated.

        @param source: where the trust given or taken by C{trusted} comes
            from: by default C{True} is trust through the API (saved in
            the peers file) and C{False} removes trust from every source;
            L{TrustSource.CONFIG} is the configured C{trusted_points},
            which is not saved.
        @raise TypeError: C{point} is not a L{Point} (L{Point.parse} makes
            one from C{"host:port"}), or C{expected_peer_id} not a L{PeerId}.
        """
        info = self._directory.point(point)
        if info is None:
            check_point(point)
            if expected_peer_id is not None:
                check_peer_id(expected_peer_id, "expected_peer_id")
            trust = changed_trust(UNTRUSTED, True, source) if trusted else UNTRUSTED
            info = PointInfo(point, trusted=trust, expected_peer_id=expected_peer_id)
            removed = self._directory.add_point(info, self._clock.seconds())
            if removed:
                self.events.emit(EventKind.GC_POINTS, removed=len(removed))
            self.events.emit(EventKind.NEW_POINT, point=str(point))
            if self.maintenance is not None:
                self.maintenance.news()
        else:
            if trusted is not None:
                self._directory.set_point_trusted(info, trusted, source)
            if expected_peer_id is not None:
                self.set_expected_peer_id(point, expected_peer_id)
        if info.trust is not UNTRUSTED:
            self.schedule_redial(info)
        return info

    def unregister_point(self, point: Point) -> None:
        """
        Forget C{point} (a connection to it, if any, goes on).
        """
        self._directory.remove_point(point)

    def register_new_point(
        self, point: Point, trusted: bool | None = None, expected_peer_id: PeerId | None = None
    ) -> PointInfo | None:
        """
        Like L{register_point}, but None for one of our own points.
        """
        if self._directory.is_own_point(point):
            return None
        return self.register_point(point, trusted, expected_peer_id)

    def register_list_of_new_points(
        self,
        points: Iterable[Point],
        medium: str,
        source: str,
        trusted: bool | None = None,
        source_group: str | None = None,
    ) -> None:
        """
        Register points learnt from C{source} through C{medium} (e.g.
        C{"advertise"}, C{"nack"}).

        With a C{source_group} (the network group of the peer, or the
        bootstrap URL, that sent them), the points are learnt from the
        network: those outside this node's reachability class are dropped,
        new ones are accounted to C{source_group} (which holds at most its
        share of the never connected points, C{max_source_group_share}),
        and C{trusted} is ignored. Without one, they are registered as the
        operator's (L{register_new_point}).
        """
        points = list(points)
        self.events.emit(EventKind.GET_POINTS, medium=medium, source=source, points=len(points))
        if source_group is None:
            own = self._directory.own_points
            for point in points:
                if point not in own:
                    self.register_point(point, trusted)
            return
        reach = self.reach
        reachable = [point for point in points if learnt_point_refusal(point, reach) is None]
        unreachable = len(points) - len(reachable)
        refused = 0
        for point in self._directory.unknown_points(reachable):
            if not self._learn_point(point, source_group):
                refused += 1
        if unreachable or refused:
            self.events.emit(
                EventKind.POINTS_DROPPED, medium=medium, source=source, unreachable=unreachable, refused=refused
            )

    def _learn_point(self, point: Point, source_group: str) -> bool:
        """
        Know C{point}, learnt from C{source_group}, unless it is known
        already or is our own; False when the directory refuses it (see
        L{Directory.add_learnt_point}).
        """
        if self._directory.knows_point(point) or self._directory.is_own_point(point):
            return True
        info = PointInfo(point, source_group=source_group)
        removed = self._directory.add_learnt_point(info, self.now())
        if removed is None:
            return False
        if removed:
            self.events.emit(EventKind.GC_POINTS, removed=len(removed))
        self.events.emit(EventKind.NEW_POINT, point=str(point))
        # A point its group's budget cannot dial yet is no news: a flood
        # from one group does not keep waking maintenance.
        if self.maintenance is not None and not self.dial_budget.wait(source_group, self.now()):
            self.maintenance.news()
        return True

    def register_peer(self, peer_id: PeerId) -> PeerInfo:
        """
        Know C{peer_id}; a new peer may first make room by forgetting the
        lowest-scored disconnected untrusted peers (C{max_known_peer_ids}).

        @raise TypeError: C{peer_id} is not a L{PeerId}.
        """
        info = self._directory.peer(peer_id)
        if info is None:
            check_peer_id(peer_id)
            info = PeerInfo(peer_id, created=self.now(), metadata=self._initial_metadata())
            failures: list[Failure] = []
            removed = self._directory.add_peer(info, lambda i: ranking_score(self.score, i.metadata, failures))
            report_failures(failures)
            if removed:
                self.events.emit(EventKind.GC_PEER_IDS, removed=len(removed))
            self.events.emit(EventKind.NEW_PEER, peer_id=str(peer_id))
            if self.maintenance is not None:
                self.maintenance.news()
        return info

    def _initial_metadata(self) -> Any:
        """
        The application's metadata of a new peer; None when it fails
        (logged), so that the peer is known all the same.
        """
        try:
            return self._meta.initial_metadata()
        except Exception:
            self._log.failure("the application could not make the metadata of a new peer")
            return None

    def add_to_id_points(self, point: Point) -> None:
        """
        Remember C{point} as ourselves, and forget it as a known point.
        """
        self._directory.add_own_point(point)

    def set_expected_peer_id(self, point: Point, peer_id: PeerId) -> Deferred[None]:
        """
        Expect C{peer_id} at a known C{point} (an unknown one is left
        alone): a connection there with another peer greylists the
        address, and a running one is closed.

        @return: fires once the connection closed for it, if any, has
            closed; at once otherwise.
        @raise TypeError: C{peer_id} is not a L{PeerId}.
        """
        check_peer_id(peer_id)
        info = self._directory.point(point)
        if info is None:
            return succeed(None)
        self._directory.set_expected_peer_id(info, peer_id)
        current = info.current_peer_id
        if current is None or current == peer_id:
            return succeed(None)
        if info.state is PointState.RUNNING:
            self.greylist_addr(point.ip)
            conn = self._connection(current)
            if conn is not None:
                return conn.disconnect(DisconnectReason.UNEXPECTED_PEER_ID)
        elif info.state is PointState.ACCEPTED:
            self.greylist_addr(point.ip)
        return succeed(None)

    # -- ACL -----------------------------------------------------------------

    def greylist_addr(self, addr: str) -> None:
        """
        Greylist an address for about C{ip_greylist_cleanup_delay}.
        """
        self.acl.ip_greylist.add(addr, self.now())
        self.events.emit(EventKind.GREYLISTED_ADDR, addr=addr)

    def greylist_peer(self, peer_id: PeerId, addr: str | None = None) -> None:
        """
        Greylist a peer id, and C{addr} when given, else the address it is
        connected from or was last reachable at. Unlike Tezos, this works
        for any known peer, not only one that is connected.

        @raise TypeError: C{peer_id} is not a L{PeerId}.
        @raise AddressError: C{addr} is not an IP address (nothing is
            greylisted then).
        """
        check_peer_id(peer_id)
        if addr is None:
            addr = self._peer_address(peer_id)
        if addr is not None:
            self.greylist_addr(addr)
        self.acl.peer_greylist.add(peer_id)
        self.events.emit(EventKind.GREYLISTED_PEER, peer_id=str(peer_id))

    def _peer_address(self, peer_id: PeerId) -> str | None:
        """
        The address C{peer_id} is connected from, else the one it was
        last reachable at, if any.
        """
        conn = self._connection(peer_id)
        if conn is not None:
            return conn.remote_ip
        info = self._directory.peer(peer_id)
        if info is None or info.last_seen is None:
            return None
        last = max(
            (
                s
                for s in (info.last_established_connection, info.last_disconnection, info.last_rejected_connection)
                if s
            ),
            key=lambda s: s[1],
        )
        return last[0].ip if last[0] is not None else None

    def clear_greylist(self) -> None:
        """
        Empty the address greylist, its listing included.
        """
        self.acl.ip_greylist.clear()

    def gc_greylist(self) -> None:
        """
        Age the address greylist by one step and drop expired listings.
        """
        self.acl.ip_greylist.gc()

    def acl_clear(self) -> None:
        """
        Empty all four lists: banned addresses and peers, greylists.
        """
        self.acl.clear()

    # -- messaging ---------------------------------------------------------

    def send(self, peer_id: PeerId, data: bytes) -> Deferred[None]:
        """
        Send an application message to a connected peer.

        @return: fires once the message is queued, which waits while the
            peer's send queue is full; fails with L{UnknownPeer} when the
            peer is not connected, L{InvalidMessageSize}, or
            L{ConnectionEnded} when the connection closes first.
        @raise TypeError: C{peer_id} is not a L{PeerId}, or C{data} is not
            bytes.
        """
        conn = self._connection(peer_id)
        if conn is None:
            check_peer_id(peer_id)
            return fail(UnknownPeer(f"no connection to {peer_id}"))
        return conn.send_when_room(data)

    def broadcast(self, data: bytes) -> int:
        """
        Send an application message to every connected peer whose send
        queue has room; the others are skipped (counted in
        C{broadcast_skipped}).

        @return: how many peers it was sent to.
        @raise InvalidMessageSize: C{data} is too large.
        @raise TypeError: C{data} is not bytes (whether or not a peer is
            connected).
        """
        try:
            size = memoryview(data).nbytes
        except TypeError:
            raise not_bytes(data) from None
        if size > self.config.max_message_size:
            raise InvalidMessageSize(
                f"message of {size} bytes exceeds max_message_size ({self.config.max_message_size})"
            )
        # Framed once: every queue holds the same bytes.
        frame = encode_message(data)
        count = 0
        for conn in list(self._connections.values()):
            if not conn.is_open:
                continue
            try:
                conn.send_encoded(frame)
            except SendQueueFull:
                self.broadcast_skipped += 1
            else:
                count += 1
        return count

    # -- connections ---------------------------------------------------------

    def connect(self, point: Point, timeout: float | None = None) -> Deferred[Connection]:
        """
        Dial C{point} and run the handshake.

        @return: fires with the L{Connection}, or fails with a L{P2PError}
            (L{PointBanned}, L{PendingConnection}, L{Connected},
            L{TooManyConnections}, L{PrivateMode}, L{ConnectionFailed},
            L{Timeout}, L{RejectedByNack}, L{Myself}, ...). Cancelling it
            (C{addTimeout} does) abandons the dial, which the pool reports
            as a C{connection_failed} or C{authentication_failed} event.
        @param timeout: seconds allowed for the TCP connection and the
            handshake; C{connection_timeout} when None.
        @raise TypeError: C{point} is not a L{Point} (L{Point.parse} makes
            one from C{"host:port"}), or C{timeout} not a number.
        @raise ValueError: C{timeout} is not a positive finite number.
        """
        check_point(point)
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__} {timeout!r}")
            if not (math.isfinite(timeout) and timeout > 0):
                raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        return self._handler.connect(point, timeout)

    def maintain(self) -> Deferred[None]:
        """
        Run a maintenance pass now.

        @return: fires when the pass has ended; at once when the connection
            count is already in range. Fails with L{MaintenanceDisabled}
            when C{maintenance_idle_time} is false.
        """
        if self.maintenance is None:
            return fail(MaintenanceDisabled("maintenance is disabled (maintenance_idle_time = false)"))
        return self.maintenance.maintain()

    def request_seeds(self) -> None:
        """
        Fetch the bootstrap URLs whose back-off allows it now (nothing
        when none are configured); maintenance asks when it has no point
        left to dial.
        """
        if self.seeds is not None:
            self.seeds.request()

    def schedule_redial(self, info: PointInfo, delay: float | None = None) -> None:
        """
        Keep a trusted point connected: dial it again once its back-off
        allows (after C{delay} seconds if given). Nothing happens for an
        untrusted or connected point, before the pool has started, or when
        a redial is already scheduled.
        """
        if not self.is_started or not info.trusted or info.point in self._redials:
            return
        if info.state is not PointState.DISCONNECTED:
            return
        if delay is None:
            delay = max(0.0, (info.reconnection_time or 0.0) - self.now()) + 0.01
        self._redials[info.point] = self._clock.callLater(delay, self._redial, info.point)

    def _redial(self, point: Point) -> None:
        del self._redials[point]
        info = self._directory.point(point)
        if info is None or not info.trusted or info.state is not PointState.DISCONNECTED:
            return
        self._dial_quietly(point)

    def _dial_quietly(self, point: Point) -> None:
        """
        Dial C{point}; the outcome is reported as pool events.
        """
        self.connect(point).addErrback(lambda f: f.trap(P2PError))
