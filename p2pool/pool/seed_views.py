# -*- test-case-name: tests.test_pool_api -*-
"""
The C{pool.connections}, C{pool.peers} and C{pool.points} views: the
functions of Tezos's C{P2p_pool.Connection}, C{Peers} and C{Points}
submodules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from p2pool.core.acl import ACL, canonical_entry, entry_contains
from p2pool.core.addressing import PeerId, Point, check_peer_id, check_point
from p2pool.core.directory import Directory
from p2pool.core.lifetime import weak_owner
from p2pool.core.states import PeerInfo, PeerState, PointInfo, PointState
from p2pool.errors import DisconnectReason
from p2pool.events import EventKind, EventLog
from p2pool.interfaces import IPeerMetadataConfig
from p2pool.pool.contracts import PeerRegistry, PointRegistry
from p2pool.transport.connection import Connection

__all__ = ["ConnectionsView", "PeersView", "PointsView"]

A = TypeVar("A")


class ConnectionsView:
    """
    The running connections (Tezos C{P2p_pool.Connection}).
    """

    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._connections = directory.connections
        self._connection = directory.connection

    def list(self) -> list[Connection]:
        """
        The running connections.
        """
        return list(self._connections.values())

    def __iter__(self) -> Iterator[Connection]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._connections)

    def iter(self, f: Callable[[Connection], object]) -> None:
        for conn in self.list():
            f(conn)

    def fold(self, init: A, f: Callable[[PeerId, Connection, A], A]) -> A:
        acc = init
        for conn in self.list():
            acc = f(conn.peer_id, conn, acc)
        return acc

    def find_by_peer_id(self, peer_id: PeerId) -> Connection | None:
        """
        The running connection to C{peer_id}, if any.
        """
        return self._connection(peer_id)

    def find_by_point(self, point: Point) -> Connection | None:
        """
        The running connection at C{point}, if any.
        """
        return self._directory.connection_at(point)

    def random_connection(
        self, different_than: Connection | None = None, no_private: bool = False
    ) -> Connection | None:
        """
        A running connection chosen uniformly, possibly excluding one and
        private peers.
        """
        return self._directory.random_connection(different_than, no_private)

    def random_addr(
        self, different_than: Connection | None = None, no_private: bool = False
    ) -> tuple[Point, PeerId] | None:
        """
        The point and peer id of a random running connection whose peer
        listens (has a known point).
        """
        return self._directory.random_addr(different_than, no_private)

    def propose_swap_request(self) -> tuple[Point, PeerId, Connection] | None:
        """
        A swap to propose: a random non-private recipient and another
        random non-private peer to offer it.
        """
        return self._directory.propose_swap_request()


class PeersView:
    """
    The known peers (Tezos C{P2p_pool.Peers}).
    """

    def __init__(
        self, directory: Directory, acl: ACL, events: EventLog, registry: PeerRegistry, meta: IPeerMetadataConfig
    ) -> None:
        """
        @param registry: knows new peers (the pool).
        @param meta: the application's C{IPeerMetadataConfig}.
        """
        self._directory = directory
        self._acl = acl
        self._events = events
        self._registry = weak_owner(registry)
        self._meta = meta
        self._peer = directory.peer

    def info(self, peer_id: PeerId) -> PeerInfo | None:
        check_peer_id(peer_id)
        return self._peer(peer_id)

    def __iter__(self) -> Iterator[PeerInfo]:
        return self._directory.peers()

    def __len__(self) -> int:
        return self._directory.peer_count()

    def iter_known(self, f: Callable[[PeerId, PeerInfo], object]) -> None:
        for info in self._directory.peers():
            f(info.peer_id, info)

    def fold_known(self, init: A, f: Callable[[PeerId, PeerInfo, A], A]) -> A:
        acc = init
        for info in self._directory.peers():
            acc = f(info.peer_id, info, acc)
        return acc

    def fold_connected(self, init: A, f: Callable[[PeerId, PeerInfo, A], A]) -> A:
        """
        Fold over the peers with a running connection, as Tezos does
        (peers still in the handshake, Accepted, are left out).
        """
        acc = init
        for info in self._directory.peers():
            if info.state is PeerState.RUNNING:
                acc = f(info.peer_id, info, acc)
        return acc

    def get_peer_metadata(self, peer_id: PeerId) -> Any:
        """
        The peer's metadata; fresh initial metadata for an unknown peer.
        """
        check_peer_id(peer_id)
        info = self._directory.peer(peer_id)
        return info.metadata if info is not None else self._meta.initial_metadata()

    def set_peer_metadata(self, peer_id: PeerId, metadata: Any) -> None:
        """
        Set the peer's metadata, knowing the peer first if needed.
        """
        check_peer_id(peer_id)
        self._directory.set_peer_metadata(self._registry.register_peer(peer_id), metadata)

    def get_score(self, peer_id: PeerId) -> float:
        check_peer_id(peer_id)
        return float(self._registry.score(self.get_peer_metadata(peer_id)))

    def ban(self, peer_id: PeerId) -> None:
        """
        Blacklist the peer and disconnect it.
        """
        check_peer_id(peer_id)
        self._acl.peer_blacklist.ban(peer_id)
        self._events.emit(EventKind.PEER_BANNED, peer_id=str(peer_id))
        conn = self._directory.connection(peer_id)
        if conn is not None:
            conn.disconnect(DisconnectReason.PEER_BANNED)

    def unban(self, peer_id: PeerId) -> None:
        """
        Remove the peer from the blacklist and the greylist.
        """
        check_peer_id(peer_id)
        self._acl.unban_peer(peer_id)

    def banned(self, peer_id: PeerId) -> bool:
        check_peer_id(peer_id)
        return self._acl.banned_peer(peer_id)

    def get_trusted(self, peer_id: PeerId) -> bool:
        check_peer_id(peer_id)
        info = self._directory.peer(peer_id)
        return info is not None and info.trusted

    def trust(self, peer_id: PeerId) -> None:
        """
        Unban the peer and mark it trusted.
        """
        check_peer_id(peer_id)
        self.unban(peer_id)
        self._directory.set_peer_trusted(self._registry.register_peer(peer_id), True)

    def untrust(self, peer_id: PeerId) -> None:
        check_peer_id(peer_id)
        info = self._directory.peer(peer_id)
        if info is not None:
            self._directory.set_peer_trusted(info, False)

    def get_greylisted_list(self) -> list[PeerId]:
        return self._acl.peer_greylist.listing()


class PointsView:
    """
    The known points (Tezos C{P2p_pool.Points}).
    """

    def __init__(self, directory: Directory, acl: ACL, events: EventLog, registry: PointRegistry) -> None:
        """
        @param registry: knows new points (the pool).
        """
        self._directory = directory
        self._acl = acl
        self._events = events
        self._registry = weak_owner(registry)
        self._point = directory.point

    def info(self, point: Point) -> PointInfo | None:
        check_point(point)
        return self._point(point)

    def __iter__(self) -> Iterator[PointInfo]:
        return self._directory.points()

    def __len__(self) -> int:
        return self._directory.point_count()

    def iter_known(self, f: Callable[[Point, PointInfo], object]) -> None:
        for info in self._directory.points():
            f(info.point, info)

    def fold_known(self, init: A, f: Callable[[Point, PointInfo, A], A]) -> A:
        acc = init
        for info in self._directory.points():
            acc = f(info.point, info, acc)
        return acc

    def fold_connected(self, init: A, f: Callable[[Point, PointInfo, A], A]) -> A:
        """
        Fold over the points with a running connection, as Tezos does
        (points still being dialed or in the handshake, Requested or
        Accepted, are left out).
        """
        acc = init
        for info in self._directory.points():
            if info.state is PointState.RUNNING:
                acc = f(info.point, info, acc)
        return acc

    def banned(self, point: Point) -> bool:
        """
        The point's address is blacklisted or greylisted (the port is
        ignored).
        """
        check_point(point)
        return self._acl.banned_addr(point.ip)

    def ban(self, point: Point, ban_peers: bool = True) -> None:
        """
        Blacklist the point's address and disconnect every connection
        from it, blacklisting their peers too when C{ban_peers}. Those
        peer bans belong to the address ban: L{unban} lifts them.
        """
        check_point(point)
        acl = self._acl
        acl.ip_blacklist.ban(point.ip)
        self._events.emit(EventKind.POINT_BANNED, addr=point.ip)
        entry = canonical_entry(point.ip)
        for conn in list(self._directory.connections.values()):
            if conn.remote_ip == point.ip:
                if ban_peers:
                    acl.peer_blacklist.ban(conn.peer_id, entry)
                conn.disconnect(DisconnectReason.IP_BANNED)

    def ban_addr(self, addr: str) -> int:
        """
        Blacklist an address or a CIDR range (C{192.0.2.0/24},
        C{2001:db8::/32}) and close the connections from inside it. Unlike
        L{ban}, no peer id is banned with it.

        @return: how many connections were closed.
        @raise AddressError: C{addr} is neither an address nor a range.
        """
        entry = canonical_entry(addr)
        self._acl.ip_blacklist.ban(entry)
        self._events.emit(EventKind.POINT_BANNED, addr=entry)
        inside = [conn for conn in self._directory.connections.values() if entry_contains(entry, conn.remote_ip)]
        for conn in inside:
            conn.disconnect(DisconnectReason.IP_BANNED)
        return len(inside)

    def unban_addr(self, addr: str) -> bool:
        """
        Lift the ban of exactly this address or range (an address inside a
        banned range stays banned), and ungreylist a single address.

        @return: whether it was banned.
        @raise AddressError: C{addr} is neither an address nor a range.
        """
        acl = self._acl
        entry = canonical_entry(addr)
        banned = entry in acl.ip_blacklist.listing()
        acl.unban_addr(entry)
        return banned

    def unban(self, point: Point) -> None:
        """
        Unban the point's address, lift the peer bans that banning it
        placed (a peer banned on its own stays banned), and unban the
        peers connected from it.
        """
        check_point(point)
        self._acl.unban_addr(point.ip)
        for conn in list(self._directory.connections.values()):
            if conn.remote_ip == point.ip:
                self._acl.unban_peer(conn.peer_id)

    def get_trusted(self, point: Point) -> bool:
        check_point(point)
        info = self._directory.point(point)
        return info is not None and info.trusted

    def trust(self, point: Point) -> None:
        """
        Unban the point and know it as trusted.
        """
        check_point(point)
        self.unban(point)
        self._registry.register_point(point, trusted=True)

    def untrust(self, point: Point) -> None:
        check_point(point)
        info = self._directory.point(point)
        if info is not None:
            self._directory.set_point_trusted(info, False)

    def get_greylisted_list(self) -> list[str]:
        return self._acl.ip_greylist.listing()

    def greylisted_list_not_reliable_since(self) -> float | None:
        return self._acl.ip_greylist.not_reliable_since
