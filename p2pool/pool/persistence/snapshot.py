# -*- test-case-name: tests.test_persistence -*-
"""
The pool's side of the peers file, on the reactor thread: copying its
tables into a L{Snapshot} for a save (L{snapshot_pool}), and putting a
loaded file's records into them (L{apply_content}).

Both go through the pool's public L{Directory} (its known points and
peers) and the application's metadata codec, never the pool's own fields.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

import attrs
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from p2pool.core.addressing import Point
from p2pool.core.states import (
    UNTRUSTED,
    PeerInfo,
    PointInfo,
    TrustSource,
    known_public_of,
    peer_id_of,
    point_of,
    source_group_of,
)
from p2pool.events import EventKind
from p2pool.pool.persistence.document import (
    NO_METADATA,
    PEER_ROW_SIZE,
    POINT_ROW_SIZE,
    PeersFileContent,
    RecordProblem,
    Snapshot,
)
from p2pool.pool.persistence.encoder import metadata_texts
from p2pool.pool.scoring import ranking_score, report_failures

if TYPE_CHECKING:
    from p2pool.pool.contracts import PersistedPool

__all__ = [
    "APPLY_SLICE",
    "Applied",
    "SNAPSHOT_SLICE",
    "apply_bans",
    "apply_content",
    "apply_content_in_slices",
    "loading_order",
    "snapshot_pool",
]

R = TypeVar("R")

#: Records copied per reactor turn when taking a snapshot.
SNAPSHOT_SLICE = 2000
#: Records of a loaded file put into the tables per reactor turn.
APPLY_SLICE = 1000

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


def _add_peer_columns(columns: list[list[Any]], infos: list[PeerInfo], encode: Callable[[Any], Any]) -> int:
    """
    Append C{infos} to the peer C{columns} of a snapshot (L{PeerRow}), their
    metadata encoded by the application and turned into JSON text.

    @return: how many peers' metadata could not be (their rows have
        C{null}).
    """
    values = []
    for info in infos:
        try:
            values.append(encode(info.metadata))
        except Exception:
            values.append(_NOT_ENCODED)
    texts = metadata_texts(values)
    peer_ids, created, trusted, metadata = columns[:4]
    peer_ids.extend(map(peer_id_of, infos))
    created.extend(map(_CREATED, infos))
    trusted.extend(map(_trusted_by_api, infos))
    metadata.extend([text or "null" for text in texts])
    for column, values_of_infos in zip(columns[4:12], zip(*map(PeerInfo.stamp_values, infos))):
        column.extend(values_of_infos)
    columns[12].extend(map(PeerInfo.event_values, infos))
    return texts.count(None)


def _add_point_columns(columns: list[list[Any]], infos: list[PointInfo]) -> None:
    """
    Append C{infos} to the point C{columns} of a snapshot (L{PointRow}).
    """
    points, trusted, expected, known_public, failed = columns[:5]
    points.extend(map(point_of, infos))
    trusted.extend(map(_trusted_by_api, infos))
    expected.extend(map(_EXPECTED_PEER_ID, infos))
    known_public.extend(map(known_public_of, infos))
    failed.extend(map(_LAST_FAILED, infos))
    for column, values_of_infos in zip(columns[5:11], zip(*map(PointInfo.stamp_values, infos))):
        column.extend(values_of_infos)
    columns[11].extend(map(source_group_of, infos))


def _trusted_by_api(info: PeerInfo | PointInfo) -> bool:
    return info.trust is not UNTRUSTED and TrustSource.API in info.trust


_CREATED = operator.attrgetter("created")
_EXPECTED_PEER_ID = operator.attrgetter("expected_peer_id")
_LAST_FAILED = operator.attrgetter("last_failed_connection")


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
    peers: list[list[Any]] = [[] for _ in range(PEER_ROW_SIZE)]
    errors = 0
    done = 0
    while done < len(peer_infos):
        count = await budget.take(len(peer_infos) - done)
        errors += _add_peer_columns(peers, peer_infos[done : done + count], encode)
        done += count
    # Copying a large table takes milliseconds: when the points do not
    # fit in what is left of this turn, copy them in the next one.
    if directory.point_count() > budget.left:
        await budget.next_turn()
    point_infos = list(directory.points())
    points: list[list[Any]] = [[] for _ in range(POINT_ROW_SIZE)]
    done = 0
    while done < len(point_infos):
        count = await budget.take(len(point_infos) - done)
        _add_point_columns(points, point_infos[done : done + count])
        done += count
    return Snapshot(pool.config.network, saved_at, peers, points, banned_ips, banned_peers, errors, by_ip)


# ---------------------------------------------------------------------------
# Loading


@attrs.frozen
class Applied:
    """
    What L{apply_content} put into a pool.

    @ivar peers: peers added (net of those the table's trim removed).
    @ivar points: points added (likewise).
    @ivar merged_peers: loaded peers the pool knew already, merged into
        its records (see L{PeerInfo.absorb}).
    @ivar merged_points: loaded points likewise (see L{PointInfo.absorb}).
    @ivar established: the loaded points that had an established
        connection, most recent first: the C{expected_connections} most
        recent at most (those a pool without maintenance dials again).
    """

    peers: int
    points: int
    banned_ips: int
    banned_peers: int
    problems: list[RecordProblem]
    established: list[Point]
    merged_peers: int = 0
    merged_points: int = 0


def loading_order(info: PointInfo) -> tuple[bool, float]:
    """
    The order the points of a loaded file are best put into the table:
    never seen first, then by C{last_seen} (the table appends each in
    constant time).
    """
    last_seen = info.last_seen
    return (last_seen is not None, last_seen or 0.0)


class _Application:
    """
    A loaded file's content being put into a pool, a slice of records at
    a time (L{steps}).
    """

    def __init__(self, pool: PersistedPool, content: PeersFileContent, slice_size: int) -> None:
        self._pool = pool
        self._content = content
        self._slice_size = slice_size
        self.problems: list[RecordProblem] = []
        self.added_peers = self.merged_peers = self.merged_points = 0
        self.added_points = 0
        #: The most recently established of the points added, as
        #: (time, order, info) in ascending order: at most
        #: _keep_established of them.
        self._established: list[tuple[float, int, PointInfo]] = []
        self._keep_established = pool.config.expected_connections
        self._order = itertools.count()

    def steps(self, bans: bool) -> Iterator[int]:
        """
        Put the content in, pausing after each slice (yielding how many
        records it held): the bans
        (unless C{bans} is false: they are in force already), the peers,
        the points; then trim the tables to their limits.
        """
        pool, content = self._pool, self._content
        if bans:
            apply_bans(pool, content.banned_ips, content.banned_peers, content.peer_bans_by_ip)
        size = self._slice_size
        for start in range(0, len(content.peers), size):
            peers = content.peers[start : start + size]
            self._add_peers(start, peers)
            yield len(peers)
        for start in range(0, len(content.points), size):
            points = content.points[start : start + size]
            self._add_points(points)
            yield len(points)

    def _add_peers(self, start: int, infos: list[PeerInfo]) -> None:
        """
        Add the loaded peers the pool does not know, their metadata
        decoded by the application, and merge those it knows (a peer
        given twice: its first record is added, the others merged into
        it, as one at a time).
        """
        pool = self._pool
        meta = pool.metadata_config
        directory = pool.directory
        own_id = pool.identity.peer_id if pool.identity is not None else None
        if own_id is not None and own_id in map(peer_id_of, infos):
            own = {id(info) for info in infos if info.peer_id == own_id}
        else:
            own = set()
        initial, decode = meta.initial_metadata, meta.decode_metadata
        # The records whose metadata is not the file's (none, or refused),
        # and the refusals by record index.
        undecoded: set[int] = set()
        refused: list[tuple[int, PeerInfo, Exception]] = []
        for index, info in enumerate(infos, start):
            if own and id(info) in own:
                continue
            encoded = info.metadata
            if encoded is NO_METADATA:
                info.metadata = initial()
                undecoded.add(id(info))
                continue
            try:
                info.metadata = decode(encoded)
            except Exception as e:
                info.metadata = initial()
                undecoded.add(id(info))
                refused.append((index, info, e))
        candidates = [info for info in infos if id(info) not in own] if own else infos
        added = directory.restore_peers(candidates)
        self.added_peers += len(added)
        for info in _left_out(candidates, added):
            # Known: the file's metadata (the peer's history) replaces what
            # the application has not changed since the peer came back.
            known = directory.peer(info.peer_id)
            assert known is not None
            unchanged = id(info) not in undecoded and _unchanged(known.metadata, initial())
            directory.merge_peer(info, unchanged)
            self.merged_peers += 1
        if refused:
            fresh = set(map(id, added))
            for index, info, error in refused:
                problem = "the initial metadata is used" if id(info) in fresh else "the current metadata is kept"
                self.problems.append(RecordProblem("peers", index, f"peer_metadata: {error}; {problem}"))

    def _add_points(self, infos: list[PointInfo]) -> None:
        """
        Add the loaded points the pool does not know and that are not its
        own; merge those it knows (a point given twice: its first record is
        added, the others merged into it, as one at a time).
        """
        directory = self._pool.directory
        fresh = directory.restore_points(infos)
        self.added_points += len(fresh)
        for info in _left_out(infos, fresh):
            if directory.merge_point(info):
                self.merged_points += 1
        keep = self._keep_established
        if keep > 0:
            times = PointInfo.established_times(fresh)
            established = list(map(operator.is_not, times, itertools.repeat(None)))
            kept_times = cast("Iterator[float]", itertools.compress(times, established))  # no None left
            batch = zip(kept_times, self._order, itertools.compress(fresh, established))
            self._established = sorted(itertools.chain(self._established, batch))[-keep:]

    def result(self) -> Applied:
        """
        Trim the tables to their limits; what was put in.
        """
        pool, content, directory = self._pool, self._content, self._pool.directory
        removed_points = directory.trim_points(pool.now())
        if removed_points:
            pool.events.emit(EventKind.GC_POINTS, removed=len(removed_points))
        failures: list[Failure] = []
        removed_peers = directory.trim_peers(lambda i: ranking_score(pool.score, i.metadata, failures))
        report_failures(failures)
        if removed_peers:
            pool.events.emit(EventKind.GC_PEER_IDS, removed=len(removed_peers))
        connected = sorted(
            (item for item in self._established if directory.knows_point(item[2].point)), key=lambda item: item[:2]
        )
        return Applied(
            peers=self.added_peers - len(removed_peers),
            points=self.added_points - len(removed_points),
            banned_ips=len(content.banned_ips),
            banned_peers=len(set(content.banned_peers).union(p for _, p in content.peer_bans_by_ip)),
            problems=self.problems,
            established=[info.point for _, _, info in reversed(connected)],
            merged_peers=self.merged_peers,
            merged_points=self.merged_points,
        )


def _left_out(infos: list[R], added: list[R]) -> list[R]:
    """
    Those of C{infos} that are not (the very objects) in C{added}, in
    their order.
    """
    if len(added) == len(infos):
        return []
    kept = set(map(id, added))
    return [info for info in infos if id(info) not in kept]


def _unchanged(metadata: Any, initial: Any) -> bool:
    """
    Whether C{metadata} is still the initial metadata (equal to it).
    """
    try:
        return bool(metadata == initial)
    except Exception:
        return False


def apply_bans(pool: PersistedPool, ips: list[str], peers: list[Any], peers_by_ip: list[tuple[str, Any]]) -> None:
    """
    Put a file's bans into C{pool}'s lists (a ban already there stays as
    it is).
    """
    for entry in ips:
        pool.acl.ip_blacklist.ban(entry)
    for banned in peers:
        pool.acl.peer_blacklist.ban(banned)
    for addr, banned in peers_by_ip:
        pool.acl.peer_blacklist.ban(banned, addr)


def apply_content(pool: PersistedPool, content: PeersFileContent, bans: bool = True) -> Applied:
    """
    Put a loaded file's peers (Disconnected, with their times, events,
    trusted flags and metadata decoded by the application), points (with
    their trusted flags, expected peer ids, times and C{known_public}) and
    bans into C{pool}, all at once (L{apply_content_in_slices} spreads the
    work over reactor turns).

    A peer or point the pool knows already (it connected, or was
    configured or learnt, since the pool started) keeps its record, into
    which the file's is merged (L{PeerInfo.absorb}, L{PointInfo.absorb}):
    live state wins, the file adds its trust, its history and, for a peer
    whose metadata the application has not changed from the initial one,
    its metadata. The pool's own points are not added. A table over its
    C{max_known_*} limit is then trimmed as the pool's GC does.

    @param bans: also put the file's bans in (false when they are in
        force already).
    """
    application = _Application(pool, content, max(1, len(content.peers) + len(content.points)))
    for _ in application.steps(bans):
        pass
    return application.result()


async def apply_content_in_slices(
    pool: PersistedPool,
    content: PeersFileContent,
    clock: Any,
    bans: bool = True,
    slice_size: int = APPLY_SLICE,
    stopped: Callable[[], bool] = lambda: False,
) -> Applied | None:
    """
    L{apply_content}, C{slice_size} records per reactor turn, so that the
    pool runs (and accepts connections) meanwhile. None when C{stopped()}
    becomes true between two slices: what was put in so far stays.
    """
    application = _Application(pool, content, slice_size)
    done = 0
    for count in application.steps(bans):
        done += count
        # A file smaller than a slice goes in within this turn.
        if done >= slice_size:
            done = 0
            await deferLater(clock, 0, lambda: None)
            if stopped():
                return None
    return application.result()
