# -*- test-case-name: tests.test_directory -*-
"""
The pool's directory: the known points, the known peers, the running
connections and this node's own points, with one owner.

Every change goes through a method of L{Directory} (the transitions:
point requested, accepted, running, disconnected; peer accepted, running,
disconnected; connection added, removed; ...), and each transition keeps
the indexes of the tables right itself. Other modules read the records and
the connection mapping, and ask the directory to change them.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from p2pool.config import PoolConfig, ReconnectionConfig
from p2pool.core.addressing import PeerId, Point, netgroup
from p2pool.core.states import PeerInfo, PointInfo, PointState, TrustSource, changed_trust
from p2pool.core.tables import PeerTable, PointTable
from p2pool.transport.connection import Connection

__all__ = ["MY_POINTS_SIZE", "Directory"]

#: How many of our own points the pool remembers (Tezos my_id_points).
MY_POINTS_SIZE = 7


class Directory:
    """
    The known points and peers, the running connections and our own
    points of one pool.

    The lookups by key are the tables' own C{get}, bound here so that a
    lookup through the directory costs no more than one in the table:

    @ivar point: what is known of a point, or None.
    @ivar peer: what is known of a peer id, or None.
    @ivar connection: the running connection to a peer id, or None.
    """

    def __init__(
        self, points: PointTable, peers: PeerTable, reconnection: ReconnectionConfig, rng: random.Random
    ) -> None:
        """
        @param points: the table of known points, given empty; the
            directory owns it from now on.
        @param peers: the table of known peers, likewise.
        @param reconnection: the back-off after a failed or ended
            connection.
        @param rng: jitters back-offs and makes the random choices.
        """
        self._rng = rng
        self._reconnection = reconnection
        self._points = points
        self._peers = peers
        self._connections: dict[PeerId, Connection] = {}
        self._connections_view: Mapping[PeerId, Connection] = MappingProxyType(self._connections)
        self.point: Callable[[Point], PointInfo | None] = points.get
        self.peer: Callable[[PeerId], PeerInfo | None] = peers.get
        self.connection: Callable[[PeerId], Connection | None] = self._connections.get
        #: Running incoming connections by network group (kept by
        #: connection_added / connection_removed).
        self._incoming_by_netgroup: collections.Counter[str] = collections.Counter()
        #: The network groups of two or more of them (kept with the counts).
        self._crowded_netgroups: set[str] = set()
        self._own_points: collections.OrderedDict[Point, None] = collections.OrderedDict()
        self._own_points_view: Mapping[Point, None] = MappingProxyType(self._own_points)

    @classmethod
    def from_config(cls, config: PoolConfig, rng: random.Random) -> Directory:
        """
        An empty directory with the table limits (C{max_known_points},
        C{max_source_group_share}, C{max_known_peer_ids}) and reconnection
        back-off of C{config}.
        """
        points = PointTable(config.max_known_points, rng, config.max_source_group_share)
        return cls(points, PeerTable(config.max_known_peer_ids), config.reconnection, rng)

    @property
    def connections(self) -> Mapping[PeerId, Connection]:
        """
        The running connections by peer id, read-only (changed by
        L{connection_added} and L{connection_removed}).
        """
        return self._connections_view

    @property
    def own_points(self) -> Mapping[Point, None]:
        """
        The points found to be this node itself, oldest first, read-only
        (changed by L{add_own_point}).
        """
        return self._own_points_view

    # -- points: queries -----------------------------------------------------

    def points(self) -> Iterator[PointInfo]:
        """
        The known points (a copy: the table may change while it is used).
        """
        return iter(self._points)

    def point_count(self) -> int:
        """
        How many points are known.
        """
        return len(self._points)

    def knows_point(self, point: Point) -> bool:
        return point in self._points

    def is_own_point(self, point: Point) -> bool:
        """
        Whether C{point} was found to be this node itself.
        """
        return point in self._own_points

    def unknown_points(self, points: Iterable[Point]) -> list[Point]:
        """
        Those of C{points} neither known nor our own, in their order (a
        point list from a peer is mostly known points: one call for all).
        """
        own = self._own_points
        return [point for point in self._points.unknown(points) if point not in own]

    def list_known_points(self, ignore_private: bool, size: int, banned: Callable[[str], bool] | None) -> list[Point]:
        """
        Up to C{size} known points to advertise, none for which C{banned}
        is true (None: no address is banned; see
        L{PointTable.list_known_points}).

        @raise ValueError: C{size} is negative.
        """
        return self._points.list_known_points(ignore_private, size, banned)

    def index_errors(self) -> list[str]:
        """
        Where the point indexes disagree with the points (empty when they
        agree); for tests and debugging.
        """
        return self._points.index_errors()

    # -- points: transitions -------------------------------------------------

    def add_point(self, info: PointInfo, now: float) -> list[Point]:
        """
        Know a new point, first forgetting the disconnected untrusted points
        that missed longest ago when the table is full.

        @return: the points forgotten.
        """
        removed = self._points.gc(now)
        self._points.add(info)
        return removed

    def add_learnt_point(self, info: PointInfo, now: float) -> list[Point] | None:
        """
        Know a new point learnt from the source group C{info.source_group}:
        when that group holds its share of never connected points, its
        oldest learnt one is forgotten first; when the table is full, never
        connected points are, never one that has connected (see
        L{PointTable.make_room_for}).

        @return: the points forgotten, or None when the point is refused.
        """
        assert info.source_group is not None, "a learnt point has a source group"
        removed = self._points.make_room_for(info.source_group, now)
        if removed is not None:
            self._points.add(info)
        return removed

    def learnt_count(self, group: str) -> int:
        """
        How many points learnt from source group C{group} never connected.
        """
        return self._points.learnt_count(group)

    def learnt_groups(self) -> dict[str, int]:
        """
        For each source group, how many points learnt from it never
        connected.
        """
        return self._points.learnt_groups()

    def remove_point(self, point: Point) -> PointInfo | None:
        """
        Forget C{point}; what was known of it, if anything.
        """
        return self._points.remove(point)

    def add_own_point(self, point: Point) -> None:
        """
        Remember C{point} as this node itself (the latest L{MY_POINTS_SIZE}
        are kept), and forget it as a known point.
        """
        own = self._own_points
        own[point] = None
        own.move_to_end(point)
        while len(own) > MY_POINTS_SIZE:
            own.popitem(last=False)
        self._points.remove(point)

    def point_requested(self, info: PointInfo, now: float) -> None:
        """
        We dial C{info}'s point.
        """
        self._points.set_requested(info, now)

    def point_accepted(self, info: PointInfo, peer_id: PeerId, now: float) -> None:
        """
        A handshake with C{peer_id} at C{info}'s point was accepted.
        """
        self._points.set_accepted(info, peer_id, now)

    def point_running(self, info: PointInfo, peer_id: PeerId, now: float) -> None:
        """
        The connection to C{peer_id} at C{info}'s point runs.
        """
        self._points.set_running(info, peer_id, now)

    def point_disconnected(self, info: PointInfo, now: float, requested: bool = False) -> None:
        """
        C{info}'s point is back to Disconnected, its reconnection back-off
        set by the C{reconnection} configuration (see
        L{PointInfo.set_disconnected}).
        """
        self._points.set_disconnected(info, now, self._reconnection, self._rng, requested)

    def set_known_public(self, info: PointInfo, known_public: bool) -> None:
        """
        Whether C{info}'s point is a public node (only those are advertised
        to others).
        """
        self._points.set_known_public(info, known_public)

    def set_point_trusted(self, info: PointInfo, trusted: bool, source: TrustSource | None = None) -> None:
        """
        Trust C{info}'s point from C{source} (the API when None), or stop
        trusting it from C{source} (from every source when None).
        """
        info.trust = changed_trust(info.trust, trusted, source)

    def set_expected_peer_id(self, info: PointInfo, peer_id: PeerId | None) -> None:
        """
        Expect C{peer_id} at C{info}'s point (None: any peer).
        """
        info.expected_peer_id = peer_id

    def trim_points(self, now: float) -> list[Point]:
        """
        Bring the points table, when over its C{max_known_points} limit,
        back within target as adding one more point would (after
        L{restore_point}).

        @return: the points forgotten.
        """
        return self._points.gc(now)

    def restore_point(self, info: PointInfo) -> bool:
        """
        Know a point loaded from the peers file, unless it is known already
        or is our own; no garbage collection (see L{trim_points}).

        @return: whether it was added.
        """
        point = info.point
        if point in self._points or point in self._own_points:
            return False
        self._points.add(info)
        return True

    def restore_points(self, infos: list[PointInfo]) -> list[PointInfo]:
        """
        Know the points loaded from the peers file that are neither known
        nor our own, as L{restore_point} would one at a time (of a point
        given twice, the first record), in bulk (L{PointTable.add_many});
        cheapest when they come ordered by C{last_seen}, never-seen ones
        first.

        @return: those added, in their order.
        """
        own = self._own_points
        return self._points.add_many([info for info in infos if info.point not in own] if own else infos)

    def merge_point(self, loaded: PointInfo) -> bool:
        """
        Add what the peers file knew of a point to the record of it the
        pool built since it started (see L{PointInfo.absorb} for what is
        kept from each).

        @return: whether the point is known (else nothing happens).
        """
        info = self._points.get(loaded.point)
        if info is None:
            return False
        self._points.absorb(info, loaded)
        return True

    # -- peers: queries --------------------------------------------------------

    def peers(self) -> Iterator[PeerInfo]:
        """
        The known peers (a copy: the table may change while it is used).
        """
        return iter(self._peers)

    def peer_count(self) -> int:
        """
        How many peers are known.
        """
        return len(self._peers)

    def knows_peer(self, peer_id: PeerId) -> bool:
        return peer_id in self._peers

    # -- peers: transitions ----------------------------------------------------

    def add_peer(self, info: PeerInfo, score: Callable[[PeerInfo], float]) -> list[PeerId]:
        """
        Know a new peer, first forgetting the lowest-scored disconnected
        untrusted peers when the table is full.

        @return: the peers forgotten.
        """
        removed = self._peers.gc(score)
        self._peers.add(info)
        return removed

    def peer_accepted(self, info: PeerInfo, point: Point | None, now: float) -> None:
        """
        A handshake with C{info}'s peer, reachable at C{point}, was accepted.
        """
        info.set_accepted(point, now)

    def peer_running(self, info: PeerInfo, point: Point | None, now: float) -> None:
        """
        The connection to C{info}'s peer runs.
        """
        info.set_running(point, now)

    def peer_disconnected(self, info: PeerInfo, now: float, requested: bool = False) -> None:
        """
        C{info}'s peer is back to Disconnected.
        """
        info.set_disconnected(now, requested)

    def set_peer_trusted(self, info: PeerInfo, trusted: bool, source: TrustSource | None = None) -> None:
        """
        Trust C{info}'s peer from C{source} (the API when None), or stop
        trusting it from C{source} (from every source when None).
        """
        info.trust = changed_trust(info.trust, trusted, source)

    def set_peer_metadata(self, info: PeerInfo, metadata: Any) -> None:
        info.metadata = metadata

    def restore_peer(self, info: PeerInfo) -> bool:
        """
        Know a peer loaded from the peers file, unless it is known already;
        no garbage collection (see L{trim_peers}).

        @return: whether it was added.
        """
        if info.peer_id in self._peers:
            return False
        self._peers.add(info)
        return True

    def restore_peers(self, infos: list[PeerInfo]) -> list[PeerInfo]:
        """
        Know the peers loaded from the peers file that are not known, as
        L{restore_peer} would one at a time (of a peer given twice, the
        first record), in bulk.

        @return: those added, in their order.
        """
        return self._peers.add_many(infos)

    def merge_peer(self, loaded: PeerInfo, metadata: bool) -> bool:
        """
        Add what the peers file knew of a peer to the record of it the
        pool built since it started, the file's metadata in place of the
        record's when C{metadata} (see L{PeerInfo.absorb}).

        @return: whether the peer is known (else nothing happens).
        """
        info = self._peers.get(loaded.peer_id)
        if info is None:
            return False
        info.absorb(loaded, metadata)
        return True

    def trim_peers(self, score: Callable[[PeerInfo], float]) -> list[PeerId]:
        """
        Bring the peers table, when over its C{max_known_peer_ids} limit,
        back within target as adding one more peer would (after
        L{restore_peer}).

        @return: the peers forgotten.
        """
        return self._peers.gc(score)

    # -- connections -----------------------------------------------------------

    def connection_added(self, conn: Connection) -> None:
        """
        C{conn} runs: it is the connection to its peer (in place of any
        other).
        """
        replaced = self._connections.get(conn.peer_id)
        if replaced is not None and replaced is not conn:
            self._count_incoming(replaced, -1)
        if replaced is not conn:
            self._count_incoming(conn, 1)
        self._connections[conn.peer_id] = conn

    def connection_removed(self, conn: Connection) -> None:
        """
        C{conn} no longer runs (nothing happens when another connection to
        its peer has replaced it).
        """
        if self._connections.get(conn.peer_id) is conn:
            del self._connections[conn.peer_id]
            self._count_incoming(conn, -1)

    def _count_incoming(self, conn: Connection, step: int) -> None:
        if not conn.incoming:
            return
        group = netgroup(conn.remote_ip)
        count = self._incoming_by_netgroup[group] + step
        if count:
            self._incoming_by_netgroup[group] = count
        else:
            del self._incoming_by_netgroup[group]
        if count >= 2:
            self._crowded_netgroups.add(group)
        else:
            self._crowded_netgroups.discard(group)

    def incoming_in_netgroup(self, group: str) -> int:
        """
        How many running incoming connections come from the network group
        C{group} (see L{p2pool.core.addressing.netgroup}); constant time.
        """
        return self._incoming_by_netgroup[group]

    def crowded_netgroup_besides(self, group: str) -> bool:
        """
        Whether two or more running incoming connections come from one
        network group other than C{group}; constant time (the groups are
        kept by L{connection_added} and L{connection_removed}). Without
        one, no eviction is possible (see
        L{p2pool.core.eviction.eviction_victim}).
        """
        crowded = self._crowded_netgroups
        return len(crowded) > 1 or (bool(crowded) and group not in crowded)

    def connection_at(self, point: Point) -> Connection | None:
        """
        The running connection at C{point}, if any.
        """
        info = self._points.get(point)
        if info is None or info.state is not PointState.RUNNING or info.current_peer_id is None:
            return None
        return self._connections.get(info.current_peer_id)

    def is_trusted(self, conn: Connection) -> bool:
        """
        Whether C{conn}'s peer or point is trusted.
        """
        peer = self._peers.get(conn.peer_id)
        point = self._points.get(conn.point) if conn.point is not None else None
        return bool((peer is not None and peer.trusted) or (point is not None and point.trusted))

    def _candidates(self, different_than: Connection | None, no_private: bool) -> list[Connection]:
        return [c for c in self._connections.values() if c is not different_than and not (no_private and c.private)]

    def random_connection(
        self, different_than: Connection | None = None, no_private: bool = False
    ) -> Connection | None:
        """
        A running connection chosen uniformly, possibly excluding one and
        private peers.
        """
        candidates = self._candidates(different_than, no_private)
        return self._rng.choice(candidates) if candidates else None

    def random_addr(
        self, different_than: Connection | None = None, no_private: bool = False
    ) -> tuple[Point, PeerId] | None:
        """
        The point and peer id of a random running connection whose peer
        listens (has a known point).
        """
        candidates = [c for c in self._candidates(different_than, no_private) if c.point is not None and c.point.port]
        if not candidates:
            return None
        conn = self._rng.choice(candidates)
        assert conn.point is not None
        return conn.point, conn.peer_id

    def propose_swap_request(self) -> tuple[Point, PeerId, Connection] | None:
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
