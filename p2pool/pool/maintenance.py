# -*- test-case-name: tests.test_maintenance -*-
"""
Connection-count maintenance (Tezos C{P2p_maintenance}): keeps the number
of running connections between the thresholds derived from
C{min/expected/max_connections}, dialing known points when there are too
few (asking peers for more when none is left), closing random connections
when there are too many, and proposing swaps when in range. Never connected
points learnt from peers are dialed within their source group's budget
(L{p2pool.core.dial_budget}).
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList, DeferredSemaphore
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from p2pool.config import PoolConfig
from p2pool.core.acl import ACL
from p2pool.core.addressing import Point, netgroup
from p2pool.core.dial_budget import DialBudget
from p2pool.core.directory import Directory
from p2pool.core.lifetime import value_on, weak_owner
from p2pool.core.states import PointInfo, PointState
from p2pool.core.wire import Bootstrap, SwapRequest, encode
from p2pool.errors import DisconnectReason, P2PError
from p2pool.events import EventKind, EventLog
from p2pool.pool.contracts import MaintenancePool

__all__ = ["Maintenance", "choose_candidates"]

#: Seconds to wait for new points after asking peers (Tezos
#: time_between_looking_for_peers), jittered by +/-20%.
TIME_BETWEEN_LOOKING_FOR_PEERS = 5.0
#: Bootstrap requests sent to the connected peers before maintenance lets
#: the reactor run other work (a node with thousands of peers sends them all).
BOOTSTRAP_CHUNK = 256
#: Repair rounds in one maintenance pass before waiting for the next
#: trigger; Tezos loops without limit.
MAX_ROUNDS = 20
#: Dials are started spread over this many seconds, at random.
DIAL_SPREAD = 0.05

_BOOTSTRAP = encode(Bootstrap())


def _always(info: PointInfo) -> bool:
    return True


def _dial_order(info: PointInfo) -> tuple[bool, bool, float]:
    """
    The order of L{choose_candidates}: trusted points first, then points
    never missed, then those whose last miss is oldest.
    """
    miss = info.last_miss
    return (not info.trusted, miss is not None, miss or 0.0)


def choose_candidates(
    infos: list[PointInfo],
    count: int,
    outbound_groups: collections.Counter[str],
    shuffle: Callable[[list[PointInfo]], None],
    allow: Callable[[PointInfo], bool] = _always,
) -> list[PointInfo]:
    """
    Up to C{count} points to dial: trusted points first, then points never
    missed, then those whose last miss is oldest; within that order,
    points whose network group has no outbound connection yet (nor a
    point chosen before them) come first, so that one group cannot take
    many outbound slots while other groups are available.

    @param allow: asked of each point about to be chosen, which it may
        refuse (a spent dial budget; it takes the budget of those it
        allows). While a point of a group without an outbound connection
        is refused, no point of a group that has one is chosen: diversity
        waits for the budget rather than give way to a crowded group.
    """
    shuffle(infos)
    infos.sort(key=_dial_order)
    chosen: list[PointInfo] = []
    groups = collections.Counter(outbound_groups)
    rest: list[PointInfo] = []
    waiting = False
    for info in infos:
        if len(chosen) >= count:
            break
        group = netgroup(info.point.ip)
        if info.trusted or groups[group] == 0:
            if allow(info):
                chosen.append(info)
                groups[group] += 1
            else:
                waiting = True
        else:
            rest.append(info)
    if waiting:
        return chosen
    for info in rest:
        if len(chosen) >= count:
            break
        if allow(info):
            chosen.append(info)
    return chosen


class Maintenance:
    """
    The maintenance worker of one pool.

    @ivar bounds: C{(min_threshold, min_target, max_target, max_threshold)}.
    """

    _log = Logger()

    def __init__(
        self,
        pool: MaintenancePool,
        directory: Directory,
        *,
        config: PoolConfig,
        acl: ACL,
        events: EventLog,
        clock: IReactorTime,
        rng: random.Random,
        dial_budget: DialBudget,
    ) -> None:
        """
        @param pool: dials points, and fetches the bootstrap URLs.
        @param directory: the known points and running connections.
        @param acl: banned points are not dialed.
        @param dial_budget: a dial of a never connected learnt point spends
            its source group's budget; without one left, the point waits.
        """
        self._pool = weak_owner(pool)
        self._directory = directory
        self._config = config
        self._acl = acl
        self._events = events
        self._clock = clock
        self._rng = rng
        self._budget = dial_budget
        self.bounds = config.maintenance_bounds()
        self.idle_time: float = config.maintenance_idle_time or 0.0
        self._semaphore = DeferredSemaphore(config.max_concurrent_dials)
        self._running = False
        self._again: str | None = None
        self._idle_call: IDelayedCall | None = None
        self._waiters: list[Deferred[None]] = []
        self._news: Deferred[None] | None = None
        self._news_timer: IDelayedCall | None = None
        self._delays: set[Deferred[bool]] = set()
        self._stopped = True

    # -- triggers ------------------------------------------------------------

    def start(self) -> None:
        """
        Run a first pass now, then whenever triggered or idle.
        """
        self._stopped = False
        self.trigger("activation")

    def stop(self) -> None:
        """
        Stop scheduling passes.
        """
        self._stopped = True
        for call in (self._idle_call, self._news_timer):
            if call is not None and call.active():
                call.cancel()
        for delay in list(self._delays):
            delay.cancel()
        self._wake()
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def maintain(self) -> Deferred[None]:
        """
        Run a maintenance pass; fires when it has ended (at once if the
        connection count is already in range).
        """
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        self.trigger("external")
        return d

    def trigger(self, motive: str) -> None:
        """
        Start a pass, or another one after the running pass.
        """
        if self._stopped:
            return
        if self._running:
            self._again = motive
            return
        Deferred.fromCoroutine(self._pass(motive)).addErrback(self._failed)

    def connection_lost(self) -> None:
        """
        A connection closed: too few left triggers maintenance.
        """
        if len(self._directory.connections) < self._config.min_connections:
            self.trigger("too_few_connections")

    def connection_established(self) -> None:
        """
        A connection opened: too many triggers maintenance.
        """
        if len(self._directory.connections) >= self._config.max_connections:
            self.trigger("too_many_connections")

    def news(self) -> None:
        """
        A new point or peer is known: wake a pass waiting for some.
        """
        self._wake()

    def _wake(self) -> None:
        news, self._news = self._news, None
        if news is not None:
            news.callback(None)

    def _failed(self, failure: Any) -> None:
        self._log.failure("maintenance pass failed", failure)

    # -- the pass ------------------------------------------------------------

    def _in_range(self) -> bool:
        n = len(self._directory.connections)
        return self.bounds[0] <= n <= self.bounds[3]

    async def _pass(self, motive: str) -> None:
        clock, events, connections = self._clock, self._events, self._directory.connections
        self._running = True
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        started = clock.seconds()
        repaired = False
        try:
            for _ in range(MAX_ROUNDS):
                if self._stopped or self._in_range():
                    break
                if not repaired:
                    events.emit(EventKind.MAINTENANCE_STARTED, motive=motive, connections=len(connections))
                    repaired = True
                n = len(connections)
                if n < self.bounds[0]:
                    await self._too_few(n)
                else:
                    await self._too_many(n)
            if repaired:
                events.emit(
                    EventKind.MAINTENANCE_ENDED, duration=clock.seconds() - started, connections=len(connections)
                )
            if not self._stopped and self._in_range():
                self.send_swap_request()
        finally:
            self._running = False
            self._finish()

    def _finish(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)
        if self._stopped:
            return
        if self._again is not None:
            motive, self._again = self._again, None
            self._clock.callLater(0, self.trigger, motive)
        else:
            self._idle_call = self._clock.callLater(self.idle_time, self.trigger, "idle")

    # -- too few ---------------------------------------------------------------

    async def _too_few(self, n: int) -> None:
        self._events.emit(EventKind.TOO_FEW_CONNECTIONS, connections=n)
        min_to_contact = self.bounds[1] - n
        max_to_contact = self.bounds[2] - n
        start = self._clock.seconds()
        seen: set[Point] = set()
        while min_to_contact > 0 and not self._stopped:
            candidates = self._candidates(seen, start, max_to_contact)
            if not candidates:
                await self._ask_for_more_contacts()
                return
            seen.update(info.point for info in candidates)
            established = await self._dial(candidates)
            min_to_contact -= established
            max_to_contact -= established

    def _candidates(self, seen: set[Point], start: float, count: int) -> list[PointInfo]:
        now = self._clock.seconds()
        private = self._config.private_mode
        banned = self._acl.banned_addr if self._acl.bans_addresses() else None
        found = []
        disconnected = PointState.DISCONNECTED
        # The cheap tests first: most known points are connected, or wait
        # out their back-off.
        for info in self._directory.points():
            if info.state is not disconnected or info.cannot_reconnect_yet(now) or info.point in seen:
                continue
            miss = info.last_miss
            if (miss is not None and miss > start) or (private and not info.trusted):
                continue
            if banned is not None and banned(info.point.ip):
                continue
            found.append(info)
        outbound = collections.Counter(
            netgroup(c.remote_ip) for c in self._directory.connections.values() if not c.incoming
        )
        return choose_candidates(
            found, max(count, 0), outbound, self._rng.shuffle, lambda info: self._budget.allow(info, now)
        )

    async def _dial(self, candidates: list[PointInfo]) -> int:
        """
        Dial every candidate, at most C{max_concurrent_dials} at once, each
        after a short random delay; return how many connected.
        """

        def dial(point: Point) -> Deferred[Any]:
            return self._semaphore.run(self._dial_one, point)

        results = await DeferredList([dial(info.point) for info in candidates], consumeErrors=True)
        return sum(1 for ok, value in results if ok and value)

    async def _pause(self, seconds: float = 0.0) -> bool:
        """
        Wait C{seconds} (at least one turn of the reactor, letting it run
        other work); whether maintenance still runs afterwards.
        """
        # A cancelled wait (stop) is taken as a value, not raised into this
        # frame (see p2pool.core.lifetime): from Python 3.12 a finished
        # coroutine's frame keeps its callers' frames, Twisted's holding
        # the Failure, so a CancelledError with this frame in its traceback
        # would tie the maintenance into a cycle.
        delay = deferLater(self._clock, seconds, lambda: True).addErrback(value_on(False, CancelledError))
        self._delays.add(delay)
        try:
            waited: bool = await delay
        finally:
            self._delays.discard(delay)
        return waited and not self._stopped

    async def _dial_one(self, point: Point) -> bool:
        if not await self._pause(self._rng.uniform(0, DIAL_SPREAD)):
            return False
        # A point forgotten meanwhile (garbage-collected, or given way to a
        # newer point of its source group) is not brought back by a dial.
        if self._directory.point(point) is None:
            return False
        connected: bool = await self._pool.connect(point).addCallbacks(lambda _: True, value_on(False, P2PError))
        return connected

    async def _ask_for_more_contacts(self) -> None:
        """
        Send Bootstrap to every public peer, then wait for a new point or
        peer, or a few seconds.
        """
        config = self._config
        if not config.private_mode and not config.disable_peer_discovery:
            for index, conn in enumerate(list(self._directory.connections.values())):
                if index and index % BOOTSTRAP_CHUNK == 0 and not await self._pause():
                    return
                if not conn.private and conn.is_open:
                    conn.send_control(_BOOTSTRAP)
                    self._events.emit(EventKind.BOOTSTRAP_SENT, peer_id=str(conn.peer_id))
        self._pool.request_seeds()
        delay = TIME_BETWEEN_LOOKING_FOR_PEERS * self._rng.uniform(0.8, 1.2)
        news: Deferred[None] = Deferred()
        self._news = news
        self._news_timer = self._clock.callLater(delay, self._wake)
        await news
        if self._news_timer.active():
            self._news_timer.cancel()

    # -- too many --------------------------------------------------------------

    async def _too_many(self, n: int) -> None:
        self._events.emit(EventKind.TOO_MANY_CONNECTIONS, connections=n)
        count = n - self.bounds[2]
        directory = self._directory
        candidates = [c for c in directory.connections.values() if not directory.is_trusted(c)]
        self._rng.shuffle(candidates)
        await DeferredList([c.disconnect(DisconnectReason.MAINTENANCE_TOO_MANY) for c in candidates[:count]])

    # -- swap ------------------------------------------------------------------

    def send_swap_request(self) -> None:
        """
        Propose to a random public peer to swap one of our peers for one of
        its own (Tezos C{send_swap_request}); not in private mode, nor
        when swaps are disabled.
        """
        if self._config.private_mode or self._config.swap_linger is None:
            return
        proposal = self._directory.propose_swap_request()
        if proposal is None:
            return
        point, peer_id, recipient = proposal
        recipient.last_sent_swap_request = (self._clock.seconds(), peer_id)
        recipient.send_control(encode(SwapRequest(point, peer_id)))
        self._events.emit(
            EventKind.SWAP_REQUEST_SENT, peer_id=str(recipient.peer_id), point=str(point), proposed=str(peer_id)
        )
