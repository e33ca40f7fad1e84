"""
What the pool's collaborators may ask of the pool.

The connect handler, the answerer, maintenance, the views, DNS
re-resolution and the seed fetcher each depend on one of the
C{typing.Protocol}s below, which L{p2pool.pool.Pool} satisfies, and not
on the pool module: the pool imports them, never the reverse. The state
they read and change (points, peers, connections) has its own owner,
L{p2pool.core.directory.Directory}, handed to them directly (or, for the peers
file, reached as C{pool.directory}).

This module imports nothing above the records it names, so that any
module may depend on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFromThreads,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
)

from p2pool.config import PoolConfig
from p2pool.core.acl import ACL
from p2pool.core.addressing import PeerId, Point
from p2pool.core.directory import Directory
from p2pool.core.flow import FlowLimits
from p2pool.core.identity import Identity
from p2pool.core.states import PeerInfo, PointInfo, TrustSource
from p2pool.events import EventLog
from p2pool.interfaces import IPeerMetadataConfig, IPoolApplication
from p2pool.transport.connection import Connection

__all__ = [
    "AnswererPool",
    "ConnectionCountWatcher",
    "Dialer",
    "HandlerPool",
    "IPoolReactor",
    "MaintenancePool",
    "PeerRegistry",
    "PersistedPool",
    "PointLookup",
    "PointRegistry",
    "ResolverPool",
    "SeedPool",
    "installed_reactor",
]


class IPoolReactor(IReactorCore, IReactorTCP, IReactorTime, IReactorThreads, IReactorFromThreads):
    """
    What a node asks of its reactor: TCP, time, name resolution and start
    and stop (C{IReactorCore}), and threads. Twisted's default reactors
    provide all of these, but declare each interface alone; this one only
    names their intersection for the type checker.
    """


def installed_reactor() -> IPoolReactor:
    """
    The global (installed) reactor, importing it on first use.
    """
    from twisted.internet import reactor

    # The module attribute is replaced by the installed reactor, an object
    # providing IPoolReactor's parts, which a type checker cannot see.
    return cast(IPoolReactor, reactor)


class PointRegistry(Protocol):
    """
    Learning and advertising points: registration runs the pool's
    garbage collection, events, maintenance wake-ups and trusted redials.
    """

    def register_point(
        self, point: Point, trusted: bool | None = None, expected_peer_id: PeerId | None = None
    ) -> PointInfo:
        """
        Know C{point} (see L{p2pool.pool.Pool.register_point}).
        """

    def register_new_point(
        self, point: Point, trusted: bool | None = None, expected_peer_id: PeerId | None = None
    ) -> PointInfo | None:
        """
        Like L{register_point}, but None for one of our own points.
        """

    def register_list_of_new_points(
        self,
        points: Iterable[Point],
        medium: str,
        source: str,
        trusted: bool | None = None,
        source_group: str | None = None,
    ) -> None:
        """
        Register points learnt from C{source} (in C{source_group}) through
        C{medium} (see L{p2pool.pool.Pool.register_list_of_new_points}).
        """

    def list_known_points(self, ignore_private: bool, size: int = 50) -> list[Point]:
        """
        Up to C{size} known points to advertise.
        """


class PeerRegistry(Protocol):
    """
    Knowing peers: registration runs the pool's garbage collection, events
    and maintenance wake-ups.
    """

    def register_peer(self, peer_id: PeerId) -> PeerInfo:
        """
        Know C{peer_id} (see L{p2pool.pool.Pool.register_peer}).
        """

    def score(self, metadata: Any) -> float:
        """
        The application's score of a peer's metadata.
        """


class Dialer(Protocol):
    """
    Dialing a point and running the handshake.
    """

    def connect(self, point: Point, timeout: float | None = None) -> Deferred[Connection]:
        """
        Dial C{point} (see L{p2pool.pool.Pool.connect}).
        """


class ConnectionCountWatcher(Protocol):
    """
    What is told when a connection starts or ends (maintenance).
    """

    def connection_established(self) -> None:
        """
        A connection opened.
        """

    def connection_lost(self) -> None:
        """
        A connection closed.
        """


class RoundTripMeter(Protocol):
    """
    What measures the round trips of running connections (the keepalive).
    """

    def pong_received(self, conn: Connection) -> None:
        """
        A C{Pong} arrived on C{conn}.
        """

    def lowest_round_trip(self, conn: Connection) -> float | None:
        """
        The lowest round trip measured on C{conn}, in seconds, if any.
        """


class HandlerPool(PointRegistry, PeerRegistry, Protocol):
    """
    What the connect handler asks of the pool.
    """

    @property
    def config(self) -> PoolConfig:
        """
        The pool's configuration.
        """

    @property
    def acl(self) -> ACL:
        """
        The ban and grey lists.
        """

    @property
    def events(self) -> EventLog:
        """
        Where pool events go.
        """

    @property
    def app(self) -> IPoolApplication:
        """
        The embedded application.
        """

    @property
    def flow(self) -> FlowLimits:
        """
        The flow-control limits and node-wide budgets.
        """

    @property
    def maintenance(self) -> ConnectionCountWatcher | None:
        """
        The maintenance worker, when maintenance runs.
        """

    @property
    def keepalive(self) -> RoundTripMeter | None:
        """
        The keepalive, which measures round trips, unless disabled.
        """

    @property
    def is_started(self) -> bool:
        """
        The pool listens and may dial.
        """

    @property
    def peer_id(self) -> PeerId:
        """
        This node's peer id.
        """

    def slot_threshold(self) -> int:
        """
        How many running connections make a new one refused.
        """

    def now(self) -> float:
        """
        The pool's current time.
        """

    def greylist_addr(self, addr: str) -> None:
        """
        Greylist an address.
        """

    def greylist_peer(self, peer_id: PeerId, addr: str | None = None) -> None:
        """
        Greylist a peer id and its address (C{addr} when given).
        """

    def schedule_redial(self, info: PointInfo, delay: float | None = None) -> None:
        """
        Keep a trusted point connected: dial it again when allowed.
        """


class AnswererPool(PointRegistry, Dialer, Protocol):
    """
    What the answerer of control frames asks of the pool: points to
    advertise, points learnt, dials for swaps, and where C{Pong}s go.
    """

    @property
    def keepalive(self) -> RoundTripMeter | None:
        """
        The keepalive, told of each C{Pong}, unless disabled.
        """


class MaintenancePool(Dialer, Protocol):
    """
    What maintenance asks of the pool: dials, and points from the
    bootstrap URLs when no known point is left.
    """

    def request_seeds(self) -> None:
        """
        Fetch the bootstrap URLs now (when there are any).
        """


class PointLookup(Protocol):
    """
    Reading what is known of a point.
    """

    def info(self, point: Point) -> PointInfo | None:
        """
        What is known of C{point}, if it is known.
        """


class ResolverPool(Protocol):
    """
    What DNS re-resolution of the configured points asks of the pool.
    """

    @property
    def config(self) -> PoolConfig:
        """
        The pool's configuration (its trusted points).
        """

    @property
    def events(self) -> EventLog:
        """
        Where pool events go.
        """

    @property
    def points(self) -> PointLookup:
        """
        The known points.
        """

    def register_point(
        self,
        point: Point,
        trusted: bool | None = None,
        expected_peer_id: PeerId | None = None,
        *,
        source: TrustSource | None = None,
    ) -> Any:
        """
        Know C{point} (see L{p2pool.pool.Pool.register_point}).
        """


class SeedPool(PointRegistry, Protocol):
    """
    What the seed fetcher asks of the pool: registering the points it
    fetched, and reporting.
    """

    def set_expected_peer_id(self, point: Point, peer_id: PeerId) -> Deferred[None]:
        """
        Expect C{peer_id} at a known C{point} (see
        L{p2pool.pool.Pool.set_expected_peer_id}); fires once a connection
        it closes has closed.
        """

    @property
    def events(self) -> EventLog:
        """
        Where pool events go.
        """


class PersistedPool(Protocol):
    """
    What the peers file (L{p2pool.pool.persistence}) asks of the pool: the
    directory to snapshot and restore, the bans, the application's
    metadata codec and score, and reporting.
    """

    @property
    def config(self) -> PoolConfig:
        """
        The pool's configuration (network, peers file path).
        """

    @property
    def events(self) -> EventLog:
        """
        Where pool events go.
        """

    @property
    def acl(self) -> ACL:
        """
        The ban lists saved with the peers.
        """

    @property
    def identity(self) -> Identity | None:
        """
        This node's identity, once loaded (its own peer id is never
        restored as a peer).
        """

    @property
    def directory(self) -> Directory:
        """
        The known points and peers.
        """

    @property
    def metadata_config(self) -> IPeerMetadataConfig:
        """
        The application's C{IPeerMetadataConfig}: C{initial_metadata},
        C{encode_metadata}, C{decode_metadata}.
        """

    def now(self) -> float:
        """
        The pool's current time.
        """

    def score(self, metadata: Any) -> float:
        """
        The application's score of a peer's metadata.
        """
