# -*- test-case-name: tests.test_persistence -*-
"""
The pool's side of the peers file, on the reactor thread: copying its
tables into a L{Snapshot} for a save (L{snapshot_pool}), and putting a
loaded file's records into them (L{apply_content}).

Both go through the pool's public L{Directory} (its known points and
peers) and the application's metadata codec, never the pool's own fields.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
from twisted.internet.task import deferLater

from p2pool.core.addressing import Point
from p2pool.core.directory import Directory
from p2pool.core.states import PeerInfo, PointInfo, TrustSource
from p2pool.events import EventKind
from p2pool.pool.persistence.document import NO_METADATA, PeerRow, PeersFileContent, PointRow, RecordProblem, Snapshot
from p2pool.pool.persistence.encoder import metadata_texts

if TYPE_CHECKING:
    from p2pool.pool.contracts import PersistedPool

__all__ = ["Applied", "SNAPSHOT_SLICE", "apply_content", "snapshot_pool"]

#: Records copied per reactor turn when taking a snapshot.
SNAPSHOT_SLICE = 2000

T = TypeVar("T")


# ---------------------------------------------------------------------------
# Saving


class _TurnBudget:
    """
    The records a snapshot may still copy in this reactor turn.
    """

    def __init__(self, clock: Any, slice_size: int) -> None:
        self._clock = clock
        self._slice_size = slice_size
        self.left = slice_size

    async def next_turn(self) -> None:
        await deferLater(self._clock, 0, lambda: None)
        self.left = self._slice_size

    async def take(self, wanted: int) -> int:
        """
        How many of C{wanted} records to copy now, after waiting for the
        next turn if this one has no room left.
        """
        if self.left <= 0:
            await self.next_turn()
        count = min(wanted, self.left)
        self.left -= count
        return count


_NOT_ENCODED = object()


def _peer_rows(infos: list[PeerInfo], encode: Callable[[Any], Any]) -> tuple[list[PeerRow], int]:
    """
    The rows of C{infos}, their metadata encoded by the application and
    turned into JSON text; and how many peers' metadata could not be
    (their rows have C{null}).
    """
    values = []
    for info in infos:
        try:
            values.append(encode(info.metadata))
        except Exception:
            values.append(_NOT_ENCODED)
    texts = metadata_texts(values)
    rows = [
        (
            info.peer_id,
            info.created,
            TrustSource.API in info.trust,
            text or "null",
            info.last_failed_connection,
            info.last_rejected_connection,
            info.last_established_connection,
            info.last_disconnection,
            tuple(info.events),
        )
        for info, text in zip(infos, texts)
    ]
    return rows, texts.count(None)


def _point_row(info: PointInfo) -> PointRow:
    return (
        info.point,
        TrustSource.API in info.trust,
        info.expected_peer_id,
        info.known_public,
        info.last_failed_connection,
        info.last_rejected_connection,
        info.last_established_connection,
        info.last_disconnection,
        info.source_group,
    )


async def snapshot_pool(pool: PersistedPool, clock: Any, slice_size: int = SNAPSHOT_SLICE) -> Snapshot:
    """
    Copy C{pool}'s peers, points and bans into a L{Snapshot}, running at
    most C{slice_size} records per reactor turn (so a large table never
    holds the reactor long). Records added while the snapshot is taken may
    be missed: they are in the next one.

    The application's C{encode_metadata} runs here, on the reactor thread,
    and its result is turned into JSON text at once.
    """
    directory = pool.directory
    encode = pool.metadata_config.encode_metadata
    peer_infos = list(directory.peers())
    saved_at = pool.now()
    banned_ips = pool.acl.ip_blacklist.listing()
    blacklist = pool.acl.peer_blacklist
    banned_peers = blacklist.own_listing()
    by_ip = [(addr, peer_id) for addr, ids in blacklist.by_addr().items() for peer_id in ids]
    budget = _TurnBudget(clock, slice_size)
    peers: list[PeerRow] = []
    errors = 0
    done = 0
    while done < len(peer_infos):
        count = await budget.take(len(peer_infos) - done)
        rows, failed = _peer_rows(peer_infos[done : done + count], encode)
        peers.extend(rows)
        errors += failed
        done += count
    # Copying a large table takes milliseconds: when the points do not
    # fit in what is left of this turn, copy them in the next one.
    if directory.point_count() > budget.left:
        await budget.next_turn()
    point_infos = list(directory.points())
    points: list[PointRow] = []
    while len(points) < len(point_infos):
        count = await budget.take(len(point_infos) - len(points))
        points.extend([_point_row(info) for info in point_infos[len(points) : len(points) + count]])
    return Snapshot(pool.config.network, saved_at, peers, points, banned_ips, banned_peers, errors, by_ip)


# ---------------------------------------------------------------------------
# Loading


@attrs.frozen
class Applied:
    """
    What L{apply_content} put into a pool.

    @ivar established: the loaded points that had an established
        connection, most recent first.
    """

    peers: int
    points: int
    banned_ips: int
    banned_peers: int
    problems: list[RecordProblem]
    established: list[Point]


def _first_of_each(
    infos: list[T], key: Callable[[T], Hashable], section: str, what: str, problems: list[RecordProblem]
) -> Iterator[tuple[int, T]]:
    """
    The records of C{infos} (with their index) whose key no earlier one
    has; a repeat is skipped and reported in C{problems}.
    """
    seen: set[Hashable] = set()
    for index, info in enumerate(infos):
        value = key(info)
        if value in seen:
            problems.append(RecordProblem(section, index, f"duplicate {what} {value}"))
            continue
        seen.add(value)
        yield index, info


def _add_peers(pool: PersistedPool, content: PeersFileContent, own_id: Any, problems: list[RecordProblem]) -> int:
    """
    Add the loaded peers the pool does not know, their metadata decoded by
    the application; the number added.
    """
    meta = pool.metadata_config
    directory = pool.directory
    added = 0
    for index, info in _first_of_each(content.peers, lambda i: i.peer_id, "peers", "peer_id", problems):
        if info.peer_id == own_id or directory.knows_peer(info.peer_id):
            continue
        encoded = info.metadata
        if encoded is NO_METADATA:
            info.metadata = meta.initial_metadata()
        else:
            try:
                info.metadata = meta.decode_metadata(encoded)
            except Exception as e:
                problems.append(RecordProblem("peers", index, f"peer_metadata: {e}; the initial metadata is used"))
                info.metadata = meta.initial_metadata()
        directory.restore_peer(info)
        added += 1
    return added


def _add_points(directory: Directory, content: PeersFileContent, problems: list[RecordProblem]) -> list[PointInfo]:
    """
    Add the loaded points the pool does not know and that are not its
    own; the points added.
    """
    fresh = [
        info
        for _, info in _first_of_each(content.points, lambda i: i.point, "points", "point", problems)
        if not directory.knows_point(info.point) and not directory.is_own_point(info.point)
    ]
    # The table keeps its points ordered by last_seen and appends in O(1)
    # when times come in order: add them oldest first.
    fresh.sort(key=lambda i: (i.last_seen is not None, i.last_seen or 0.0))
    for info in fresh:
        directory.restore_point(info)
    return fresh


def apply_content(pool: PersistedPool, content: PeersFileContent) -> Applied:
    """
    Put a loaded file's peers (Disconnected, with their times, events,
    trusted flags and metadata decoded by the application), points (with
    their trusted flags, expected peer ids, times and C{known_public}) and
    bans into C{pool}. Peers and points the pool already knows stay as
    they are, and so do its own points; a record repeating an earlier one
    is skipped. A table over its C{max_known_*} limit is then trimmed as
    the pool's GC does.
    """
    directory = pool.directory
    problems: list[RecordProblem] = []
    own_id = pool.identity.peer_id if pool.identity is not None else None
    added_peers = _add_peers(pool, content, own_id, problems)
    fresh = _add_points(directory, content, problems)
    for entry in content.banned_ips:
        pool.acl.ip_blacklist.ban(entry)
    for banned in content.banned_peers:
        pool.acl.peer_blacklist.ban(banned)
    for addr, banned in content.peer_bans_by_ip:
        pool.acl.peer_blacklist.ban(banned, addr)
    removed_points = directory.trim_points(pool.now())
    if removed_points:
        pool.events.emit(EventKind.GC_POINTS, removed=len(removed_points))
    removed_peers = directory.trim_peers(lambda i: pool.score(i.metadata))
    if removed_peers:
        pool.events.emit(EventKind.GC_PEER_IDS, removed=len(removed_peers))
    connected = [i for i in fresh if i.last_established_connection is not None and directory.knows_point(i.point)]
    connected.sort(key=lambda i: i.last_established_connection[1], reverse=True)  # type: ignore[index]
    return Applied(
        peers=added_peers - len(removed_peers),
        points=len(fresh) - len(removed_points),
        banned_ips=len(content.banned_ips),
        banned_peers=len(set(content.banned_peers).union(p for _, p in content.peer_bans_by_ip)),
        problems=problems,
        established=[i.point for i in connected],
    )
