# -*- test-case-name: tests.test_persistence -*-
"""
A pool's peers file as a service: loaded once at start, saved at every
checkpoint, at shutdown and on request, one save at a time, with every
outcome reported as a pool event and in the log, never raised.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pool.core.addressing import Point
from p2pool.core.lifetime import weak_owner
from p2pool.events import EventKind
from p2pool.pool.persistence.document import RecordProblem
from p2pool.pool.persistence.snapshot import apply_bans, apply_content_in_slices, loading_order, snapshot_pool
from p2pool.pool.persistence.store import LoadOutcome, file_fingerprint, read_head, read_peers_file, write_snapshot

if TYPE_CHECKING:
    from p2pool.config import PoolConfig
    from p2pool.pool.contracts import PersistedPool

__all__ = ["MAX_REPORTED_PROBLEMS", "PeersFile", "RESTART_DIAL_SPREAD"]

#: Skipped records reported one by one at load; the rest are counted.
MAX_REPORTED_PROBLEMS = 100
#: Seconds over which a pool without maintenance spreads its dials to the
#: loaded points it was connected to before the restart.
RESTART_DIAL_SPREAD = 3.0

_log = Logger()

#: The configuration key that bounds each section's table.
_LIMIT_KEYS = {"peers": "max_known_peer_ids", "points": "max_known_points"}


def _table_limits(config: PoolConfig) -> dict[str, int]:
    """
    The most records of each section the tables can hold (their C{max}):
    a load builds no more, trusted records aside.
    """
    limits = {}
    for section, key in _LIMIT_KEYS.items():
        bounds = getattr(config, key)
        if bounds is not None:
            limits[section] = bounds[0]
    return limits


T = TypeVar("T")


def _read_for_loading(path: str, network: str, max_size: int | None, limits: dict[str, int]) -> LoadOutcome:
    """
    L{read_peers_file}, then the points put in the order the table takes
    them fastest (L{loading_order}); blocking, for a thread.
    """
    outcome = read_peers_file(path, network, None, max_size, limits)
    if outcome.content is not None:
        outcome.content.points.sort(key=loading_order)
    return outcome


class PeersFile:
    """
    A pool's peers file: loaded once at start, saved at checkpoints, at
    shutdown and by C{save_peers}.

    Saves run one at a time; asking for a save while one runs schedules a
    single follow-up that every such request waits for. A save never
    fails: problems are logged (C{save_error_peers}) and counted.

    Nothing is written before the file has been loaded (a pool stopped
    before it started must not replace a good file with empty tables), nor
    while a refused file (newer format, other network) is in place.

    @ivar path: the file.
    @ivar loaded: the file has been loaded, records included (or found
        missing or damaged); false while the pool listens and the records
        go in, and for good after L{stop_loading}.
    @ivar load_outcome: what loading found.
    @ivar writing_disabled: why saves are skipped (C{"format"},
        C{"network"}), or None.
    @ivar saves: successful saves.
    @ivar failures: failed saves (the C{persistence_failures} metric).
    @ivar last_error: the error of the last failed save.
    @ivar last_save_duration: wall-clock seconds of the last successful
        save, snapshot included.
    @ivar last_save_at: pool time of the last successful save's snapshot.
    @ivar last_save_bytes: size of the last file written.
    @ivar restart_points: the loaded points that had an established
        connection, most recent first.
    """

    def __init__(self, pool: PersistedPool, reactor: Any) -> None:
        self._pool = weak_owner(pool)
        self._reactor = reactor
        self.path = pool.config.peers_path
        self.loaded = False
        self.load_outcome: LoadOutcome | None = None
        self.writing_disabled: str | None = None
        self._refused_fingerprint: tuple[int, int, int] | None = None
        self.saves = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_save_duration: float | None = None
        self.last_save_at: float | None = None
        self.last_save_bytes: int | None = None
        self.restart_points: list[Point] = []
        self._opened: Deferred[None] | None = None
        #: The file whose bans are in force (put in by L{open}).
        self._bans_from: str | None = None
        self._read_outcome: LoadOutcome | None = None
        self._stopping = False
        self._busy = False
        self._pending: list[Deferred[None]] | None = None

    def _in_thread(self, f: Callable[..., T], *args: Any) -> Deferred[T]:
        """
        Run blocking C{f} in the reactor's thread pool; inline when the
        reactor has none (a memory reactor in tests).
        """
        get_pool = getattr(self._reactor, "getThreadPool", None)
        if get_pool is None:
            return maybeDeferred(f, *args)
        return deferToThreadPool(self._reactor, get_pool(), f, *args)

    # -- loading -------------------------------------------------------------

    def open(self) -> Deferred[None]:
        """
        Put the file's bans in force, reading only its head when its bans
        come before its records (as this version writes them); else the
        whole file is read here, and L{load} puts in what was read. Fires
        once the bans are in force; never fails.
        """
        if self._opened is None:
            self._opened = Deferred.fromCoroutine(self._open())
            self._opened.addErrback(lambda f: _log.failure("Cannot read the bans of {path}", f, path=self.path))
        d: Deferred[None] = Deferred()
        self._opened.addBoth(lambda _: d.callback(None))
        return d

    async def _open(self) -> None:
        pool = self._pool
        if not os.path.lexists(self.path):
            return
        try:
            head = await self._in_thread(read_head, self.path, pool.config.network, pool.config.peers_file_size_limit)
        except Exception:
            head = None
        if head is not None:
            apply_bans(pool, head.banned_ips, head.banned_peers, head.peer_bans_by_ip)
            self._bans_from = self.path
            return
        # No head before the records (an older layout, or a file that is
        # damaged, refused or too large): the bans are known once it is
        # read whole.
        outcome = self._read_outcome = await self._read()
        if outcome.content is not None:
            content = outcome.content
            apply_bans(pool, content.banned_ips, content.banned_peers, content.peer_bans_by_ip)
            self._bans_from = outcome.source

    async def _read(self) -> LoadOutcome:
        """
        Read and decode the whole file in a thread (see L{read_peers_file}).
        """
        pool = self._pool
        network = pool.config.network
        try:
            if os.path.lexists(self.path):
                args = (self.path, network, pool.config.peers_file_size_limit, _table_limits(pool.config))
                return await self._in_thread(_read_for_loading, *args)
            # Nothing to read: no need to wait for a thread (a fresh pool
            # starts within the same reactor turn).
            return read_peers_file(self.path, network)
        except Exception as e:
            return LoadOutcome("damaged", source=self.path, error=f"{type(e).__name__}: {e}")

    def load(self) -> Deferred[LoadOutcome]:
        """
        Put the file's bans in force (L{open}, unless done), then read the
        file in a thread and put its records into the pool, a slice per
        reactor turn (the pool runs meanwhile: see L{apply_content_in_slices}).
        Fires with the L{LoadOutcome} once they are in and C{loaded} is
        set, or when L{stop_loading} was called meanwhile (C{loaded} then
        stays false, and nothing is saved over the file); never fails.
        """
        return Deferred.fromCoroutine(self._load())

    def stop_loading(self) -> None:
        """
        Stop putting records into the pool (the pool stops): the load
        ends after the current slice, not loaded.
        """
        self._stopping = True

    async def _load(self) -> LoadOutcome:
        pool = self._pool
        await self.open()
        outcome = self._read_outcome
        self._read_outcome = None
        if outcome is None:
            outcome = await self._read()
        self.load_outcome = outcome
        if self._stopping:
            return outcome
        self._report_unusable(outcome)
        if outcome.content is not None:
            if not await self._apply(outcome):
                return outcome
        elif outcome.status != "refused":
            pool.events.emit(
                EventKind.LOAD_PEERS,
                path=self.path,
                status=outcome.status,
                peers=0,
                points=0,
                banned_ips=0,
                banned_peers=0,
                skipped=0,
                duration=outcome.duration,
            )
        self.loaded = True
        return outcome

    def _report_unusable(self, outcome: LoadOutcome) -> None:
        """
        Report a refused file (and stop saving over it) or a damaged one.
        """
        pool = self._pool
        if outcome.status == "refused":
            self.writing_disabled = outcome.refused
            self._refused_fingerprint = outcome.fingerprint
            pool.events.emit(EventKind.LOAD_REFUSED_PEERS, path=self.path, reason=outcome.refused, error=outcome.error)
            _log.error(
                "Peers file {path} not loaded: {error}. The node starts with empty tables and will not "
                "overwrite the file; move it away (or delete it) to let it save its peers again.",
                path=self.path,
                error=outcome.error,
            )
        elif outcome.status in ("recovered", "damaged"):
            pool.events.emit(
                EventKind.LOAD_ERROR_PEERS,
                path=self.path,
                error=outcome.error,
                moved_to=outcome.moved_to,
                used_backup=outcome.status == "recovered",
            )
            _log.error(
                "Peers file {path} {problem} ({error}); moved to {moved_to}; {what}.",
                path=self.path,
                problem="is too large" if outcome.too_large else "is damaged",
                error=outcome.error,
                moved_to=outcome.moved_to,
                what="loaded the previous generation " + str(outcome.source)
                if outcome.status == "recovered"
                else "starting with empty tables",
            )

    async def _apply(self, outcome: LoadOutcome) -> bool:
        """
        Put a loaded file's content into the pool and report what was
        skipped (the first L{MAX_REPORTED_PROBLEMS} records one by one).

        @return: false when the load was stopped on the way.
        """
        pool = self._pool
        content = outcome.content
        assert content is not None
        started = time.perf_counter()
        try:
            applied = await apply_content_in_slices(
                pool, content, self._reactor, bans=outcome.source != self._bans_from, stopped=lambda: self._stopping
            )
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            pool.events.emit(
                EventKind.LOAD_ERROR_PEERS, path=outcome.source, error=error, moved_to=None, used_backup=False
            )
            _log.failure("Cannot load the peers from {path}", path=outcome.source)
            return True
        if applied is None:
            return False
        self.restart_points = applied.established
        problems = [*content.skipped, *applied.problems]
        self._report_skipped(outcome.source, problems, content.unlisted)
        for section, count in content.left_out.items():
            _log.warn(
                "Peers file {path}: {count} {section} beyond the table's limit (p2p.{key}) were not loaded",
                path=outcome.source,
                count=count,
                section=section,
                key=_LIMIT_KEYS[section],
            )
        duration = outcome.duration + time.perf_counter() - started
        _log.info(
            "Peers file {path} loaded: {peers} peers, {points} points ({merged_peers} peers and {merged_points} "
            "points merged into what the pool learnt meanwhile) in {duration:.2f} s",
            path=outcome.source,
            peers=applied.peers,
            points=applied.points,
            merged_peers=applied.merged_peers,
            merged_points=applied.merged_points,
            duration=duration,
        )
        pool.events.emit(
            EventKind.LOAD_PEERS,
            path=outcome.source,
            status=outcome.status,
            peers=applied.peers,
            points=applied.points,
            banned_ips=applied.banned_ips,
            banned_peers=applied.banned_peers,
            skipped=len(problems) + content.unlisted,
            duration=duration,
        )
        return True

    def _report_skipped(self, source: str | None, problems: list[RecordProblem], unlisted: int) -> None:
        """
        Report the records skipped at load: the first
        L{MAX_REPORTED_PROBLEMS} of C{problems} one by one, the rest and
        the C{unlisted} ones as a count.
        """
        for problem in problems[:MAX_REPORTED_PROBLEMS]:
            self._pool.events.emit(
                EventKind.LOAD_RECORD_SKIPPED,
                path=source,
                section=problem.section,
                index=problem.index,
                problem=problem.problem,
            )
            _log.warn(
                "Peers file {path}: {section}[{index}] skipped: {problem}",
                path=source,
                section=problem.section,
                index=problem.index,
                problem=problem.problem,
            )
        more = max(0, len(problems) - MAX_REPORTED_PROBLEMS) + unlisted
        if more:
            _log.warn("Peers file {path}: {count} more records skipped", path=source, count=more)

    # -- saving --------------------------------------------------------------

    def save(self) -> Deferred[None]:
        """
        Save the pool's tables. Fires when a save that started after this
        call has ended (written, skipped or failed); never fails.
        """
        d: Deferred[None] = Deferred()
        if self._busy:
            if self._pending is None:
                self._pending = []
            self._pending.append(d)
        else:
            self._run([d])
        return d

    def _run(self, waiters: list[Deferred[None]]) -> None:
        self._busy = True

        def finished(result: object) -> None:
            if isinstance(result, Failure):
                _log.failure("peers file save failed unexpectedly", result)
            # Settle the state before firing the waiters: one of them may
            # ask for another save at once.
            pending, self._pending = self._pending, None
            if pending:
                self._run(pending)
            else:
                self._busy = False
            for waiter in waiters:
                waiter.callback(None)

        Deferred.fromCoroutine(self._save_once()).addBoth(finished)

    def _writable(self) -> bool:
        """
        Whether a save may write now; re-enables writing once a refused
        file has been moved, deleted or replaced.
        """
        pool = self._pool
        if not self.loaded:
            pool.events.emit(EventKind.SAVE_SKIPPED_PEERS, path=self.path, reason="not loaded yet")
            return False
        if self.writing_disabled is None:
            return True
        if file_fingerprint(self.path) == self._refused_fingerprint:
            pool.events.emit(
                EventKind.SAVE_SKIPPED_PEERS, path=self.path, reason=f"refused file in place ({self.writing_disabled})"
            )
            return False
        _log.info("Peers file {path} was moved or replaced: saving peers again", path=self.path)
        pool.events.emit(EventKind.SAVE_ENABLED_PEERS, path=self.path)
        self.writing_disabled = None
        self._refused_fingerprint = None
        return True

    async def _save_once(self) -> None:
        pool = self._pool
        if not self._writable():
            return
        pool.events.emit(EventKind.SAVE_METADATA, path=self.path)
        started = time.perf_counter()
        try:
            snapshot = await snapshot_pool(pool, self._reactor)
            if snapshot.metadata_errors:
                pool.events.emit(EventKind.SAVE_METADATA_ERRORS, path=self.path, peers=snapshot.metadata_errors)
            peers, points = snapshot.peer_count, snapshot.point_count
            size = await self._in_thread(write_snapshot, self.path, snapshot)
        except Exception as e:
            self.failures += 1
            self.last_error = f"{type(e).__name__}: {e}"
            pool.events.emit(EventKind.SAVE_ERROR_PEERS, path=self.path, error=self.last_error)
            _log.error("Cannot save the peers file {path}: {error}", path=self.path, error=self.last_error)
            return
        limit = pool.config.peers_file_size_limit
        if limit is not None and size > limit:
            _log.warn(
                "The peers file {path} just written ({size} bytes) is larger than p2p.max_peers_file_size "
                "({limit} bytes): the next start will move it aside unread; raise max_peers_file_size",
                path=self.path,
                size=size,
                limit=limit,
            )
        self.saves += 1
        self.last_save_duration = time.perf_counter() - started
        self.last_save_at = snapshot.saved_at
        self.last_save_bytes = size
        pool.events.emit(
            EventKind.SAVE_PEERS,
            path=self.path,
            peers=peers,
            points=points,
            size=size,
            duration=self.last_save_duration,
        )
