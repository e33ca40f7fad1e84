# -*- test-case-name: tests.test_pool_api -*-
"""
The C{pool.connections}, C{pool.peers} and C{pool.points} views: the
functions of Tezos's C{P2p_pool.Connection}, C{Peers} and C{Points}
submodules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, TypeVar

from p2pool.addressing import PeerId, Point
from p2pool.connection import Connection
from p2pool.errors import DisconnectReason
from p2pool.lifetime import weak_owner
from p2pool.state import PeerInfo, PeerState, PointInfo, PointState

if TYPE_CHECKING:
    from p2pool.pool import Pool

__all__ = ["ConnectionsView", "PeersView", "PointsView"]

A = TypeVar("A")


class ConnectionsView:
    """
    The running connections (Tezos C{P2p_pool.Connection}).
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = weak_owner(pool)

    def list(self) -> list[Connection]:
        """
        The running connections.
        """
        return list(self._pool._connections.values())

    def __iter__(self) -> Iterator[Connection]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._pool._connections)

    def iter(self, f: Callable[[Connection], object]) -> None:
        for conn in self.list():
            f(conn)

    def fold(self, init: A, f: Callable[[PeerId, Connection, A], A]) -> A:
        acc = init
        for conn in self.list():
            acc = f(conn.peer_id, conn, acc)
        return acc

    def find_by_peer_id(self, peer_id: PeerId) -> Optional[Connection]:
        """
        The running connection to C{peer_id}, if any.
        """
        return self._pool._connections.get(peer_id)

    def find_by_point(self, point: Point) -> Optional[Connection]:
        """
        The running connection at C{point}, if any.
        """
        info = self._pool._points.get(point)
        if info is None or info.state is not PointState.RUNNING or info.current_peer_id is None:
            return None
        return self._pool._connections.get(info.current_peer_id)

    def _candidates(self, different_than: Optional[Connection], no_private: bool) -> list[Connection]:
        return [
            c
            for c in self._pool._connections.values()
            if c is not different_than and not (no_private and c.private)
        ]

    def random_connection(self, different_than: Optional[Connection] = None, no_private: bool = False) -> Optional[Connection]:
        """
        A running connection chosen uniformly, possibly excluding one and
        private peers.
        """
        candidates = self._candidates(different_than, no_private)
        return self._pool._rng.choice(candidates) if candidates else None

    def random_addr(self, different_than: Optional[Connection] = None, no_private: bool = False) -> Optional[tuple[Point, PeerId]]:
        """
        The point and peer id of a random running connection whose peer
        listens (has a known point).
        """
        candidates = [c for c in self._candidates(different_than, no_private) if c.point is not None and c.point.port]
        if not candidates:
            return None
        conn = self._pool._rng.choice(candidates)
        assert conn.point is not None
        return conn.point, conn.peer_id

    def propose_swap_request(self) -> Optional[tuple[Point, PeerId, Connection]]:
        """
        A swap to propose: a random non-private recipient and another
        random non-private peer to offer it.
        """
        recipient = self.random_connection(no_private=True)
        if recipient is None:
            return None
        offer = self.random_addr(different_than=recipient, no_private=True)
        if offer is None:
            return None
        return offer[0], offer[1], recipient


class PeersView:
    """
    The known peers (Tezos C{P2p_pool.Peers}).
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = weak_owner(pool)

    def info(self, peer_id: PeerId) -> Optional[PeerInfo]:
        return self._pool._peers.get(peer_id)

    def __iter__(self) -> Iterator[PeerInfo]:
        return iter(self._pool._peers)

    def __len__(self) -> int:
        return len(self._pool._peers)

    def iter_known(self, f: Callable[[PeerId, PeerInfo], object]) -> None:
        for info in self._pool._peers:
            f(info.peer_id, info)

    def fold_known(self, init: A, f: Callable[[PeerId, PeerInfo, A], A]) -> A:
        acc = init
        for info in self._pool._peers:
            acc = f(info.peer_id, info, acc)
        return acc

    def fold_connected(self, init: A, f: Callable[[PeerId, PeerInfo, A], A]) -> A:
        acc = init
        for info in self._pool._peers:
            if info.state is not PeerState.DISCONNECTED:
                acc = f(info.peer_id, info, acc)
        return acc

    def get_peer_metadata(self, peer_id: PeerId) -> Any:
        """
        The peer's metadata; fresh initial metadata for an unknown peer.
        """
        info = self._pool._peers.get(peer_id)
        return info.metadata if info is not None else self._pool._meta.initial_metadata()

    def set_peer_metadata(self, peer_id: PeerId, metadata: Any) -> None:
        """
        Set the peer's metadata, knowing the peer first if needed.
        """
        self._pool.register_peer(peer_id).metadata = metadata

    def get_score(self, peer_id: PeerId) -> float:
        return float(self._pool.score(self.get_peer_metadata(peer_id)))

    def ban(self, peer_id: PeerId) -> None:
        """
        Blacklist the peer and disconnect it.
        """
        self._pool.acl.peer_blacklist.ban(peer_id)
        self._pool.events.emit("peer_banned", peer_id=str(peer_id))
        conn = self._pool._connections.get(peer_id)
        if conn is not None:
            conn.disconnect(DisconnectReason.PEER_BANNED)

    def unban(self, peer_id: PeerId) -> None:
        """
        Remove the peer from the blacklist and the greylist.
        """
        self._pool.acl.unban_peer(peer_id)

    def banned(self, peer_id: PeerId) -> bool:
        return self._pool.acl.banned_peer(peer_id)

    def get_trusted(self, peer_id: PeerId) -> bool:
        info = self._pool._peers.get(peer_id)
        return info is not None and info.trusted

    def trust(self, peer_id: PeerId) -> None:
        """
        Unban the peer and mark it trusted.
        """
        self.unban(peer_id)
        self._pool.register_peer(peer_id).trusted = True

    def untrust(self, peer_id: PeerId) -> None:
        info = self._pool._peers.get(peer_id)
        if info is not None:
            info.trusted = False

    def get_greylisted_list(self) -> list[PeerId]:
        return self._pool.acl.peer_greylist.listing()


class PointsView:
    """
    The known points (Tezos C{P2p_pool.Points}).
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = weak_owner(pool)

    def info(self, point: Point) -> Optional[PointInfo]:
        return self._pool._points.get(point)

    def __iter__(self) -> Iterator[PointInfo]:
        return iter(self._pool._points)

    def __len__(self) -> int:
        return len(self._pool._points)

    def iter_known(self, f: Callable[[Point, PointInfo], object]) -> None:
        for info in self._pool._points:
            f(info.point, info)

    def fold_known(self, init: A, f: Callable[[Point, PointInfo, A], A]) -> A:
        acc = init
        for info in self._pool._points:
            acc = f(info.point, info, acc)
        return acc

    def fold_connected(self, init: A, f: Callable[[Point, PointInfo, A], A]) -> A:
        acc = init
        for info in self._pool._points:
            if info.state is not PointState.DISCONNECTED:
                acc = f(info.point, info, acc)
        return acc

    def banned(self, point: Point) -> bool:
        """
        The point's address is blacklisted or greylisted (the port is
        ignored).
        """
        return self._pool.acl.banned_addr(point.ip)

    def ban(self, point: Point, ban_peers: bool = True) -> None:
        """
        Blacklist the point's address and disconnect every connection
        from it, blacklisting their peers too when C{ban_peers}.
        """
        acl = self._pool.acl
        acl.ip_blacklist.ban(point.ip)
        self._pool.events.emit("point_banned", addr=point.ip)
        for conn in list(self._pool._connections.values()):
            if conn.remote_ip == point.ip:
                if ban_peers:
                    acl.peer_blacklist.ban(conn.peer_id)
                conn.disconnect(DisconnectReason.IP_BANNED)

    def unban(self, point: Point) -> None:
        """
        Unban the point's address, and the peers connected from it.
        """
        self._pool.acl.unban_addr(point.ip)
        for conn in list(self._pool._connections.values()):
            if conn.remote_ip == point.ip:
                self._pool.acl.unban_peer(conn.peer_id)

    def get_trusted(self, point: Point) -> bool:
        info = self._pool._points.get(point)
        return info is not None and info.trusted

    def trust(self, point: Point) -> None:
        """
        Unban the point and know it as trusted.
        """
        self.unban(point)
        self._pool.register_point(point, trusted=True)

    def untrust(self, point: Point) -> None:
        info = self._pool._points.get(point)
        if info is not None:
            info.trusted = False

    def get_greylisted_list(self) -> list[str]:
        return self._pool.acl.ip_greylist.listing()

    def greylisted_list_not_reliable_since(self) -> Optional[float]:
        return self._pool.acl.ip_greylist.not_reliable_since
