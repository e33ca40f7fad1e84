# -*- test-case-name: tests.test_resolver -*-
"""
Periodic DNS re-resolution of the trusted and bootstrap points configured
by host name (C{seed.example.org:9732}), so that a peer that changes
address is found again.

Each named point is resolved again after 60 s, then after a delay that
doubles (up to 1 h) while its address is unchanged, and drops back to 60 s
when it changes. A new address is registered like the configured point
(trusted flag and expected peer id carried over) and reported as a
C{point_address_changed} event; a trusted old address loses its configured
trust (not trust given through the API) unless another configured name
still resolves to it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pool.core.addressing import AddressError, Point, PointSpec
from p2pool.core.lifetime import weak_owner
from p2pool.core.states import TrustSource
from p2pool.events import EventKind
from p2pool.pool.contracts import ResolverPool

__all__ = ["RERESOLVE_CAP", "RERESOLVE_INITIAL", "Reresolver"]

#: Seconds before the first re-resolution, and after an address change.
RERESOLVE_INITIAL = 60.0
#: Longest delay between two re-resolutions of one name, in seconds.
RERESOLVE_CAP = 3600.0
#: Random spread of each delay, as a fraction of it.
JITTER = 0.1


@attrs.define
class _Named:
    """
    One configured point with a DNS name, and what is known of it.
    """

    spec: PointSpec
    trusted: bool
    delay: float = RERESOLVE_INITIAL
    current: Point | None = None
    call: IDelayedCall | None = None
    running: Deferred[Any] | None = None


class Reresolver:
    """
    Re-resolves a pool's named trusted and bootstrap points periodically.

    @ivar named: the named points being watched.
    """

    _log = Logger()

    def __init__(
        self,
        pool: ResolverPool,
        specs: Sequence[tuple[PointSpec, bool]],
        *,
        resolve: Callable[[str], Any],
        clock: IReactorTime,
        rng: random.Random | None = None,
    ) -> None:
        """
        @param pool: the pool to register new addresses with.
        @param specs: configured points and whether each is trusted; those
            given by IP address are ignored.
        @param resolve: host name to IP address (a Deferred or a value),
            e.g. the reactor's C{resolve}.
        @param clock: paces re-resolution.
        """
        self._pool = weak_owner(pool)
        self._resolve = resolve
        self._clock = clock
        self._rng = rng or random.Random()
        self.named = [_Named(spec, trusted) for spec, trusted in specs if spec.point is None]
        self._running = False

    def start(self) -> None:
        """
        Schedule the first re-resolution of every named point.
        """
        self._running = True
        for entry in self.named:
            self._schedule(entry)

    def stop(self) -> None:
        """
        Cancel the scheduled and running re-resolutions.
        """
        self._running = False
        for entry in self.named:
            if entry.call is not None and entry.call.active():
                entry.call.cancel()
            entry.call = None
            if entry.running is not None:
                entry.running.cancel()

    def _schedule(self, entry: _Named) -> None:
        delay = entry.delay * self._rng.uniform(1 - JITTER, 1 + JITTER)
        entry.call = self._clock.callLater(delay, self._tick, entry)

    def _tick(self, entry: _Named) -> None:
        entry.call = None
        d: Deferred[Any] = maybeDeferred(self._resolve, entry.spec.host)
        entry.running = d
        d.addCallbacks(lambda address: self._resolved(entry, address), lambda f: self._failed(entry, f))
        d.addBoth(lambda _: self._next(entry))

    def _next(self, entry: _Named) -> None:
        entry.running = None
        if self._running:
            self._schedule(entry)

    def _failed(self, entry: _Named, failure: Failure) -> None:
        if not self._running:
            return
        entry.delay = min(entry.delay * 2, RERESOLVE_CAP)
        self._log.warn(
            "cannot re-resolve configured point {spec}: {error}", spec=str(entry.spec), error=failure.getErrorMessage()
        )

    def _resolved(self, entry: _Named, address: str) -> None:
        if not self._running:
            return
        try:
            point = Point(address, entry.spec.port)
        except AddressError as e:
            entry.delay = min(entry.delay * 2, RERESOLVE_CAP)
            self._log.warn("re-resolving {spec} gave {error}", spec=str(entry.spec), error=str(e))
            return
        old = entry.current
        if point == old:
            entry.delay = min(entry.delay * 2, RERESOLVE_CAP)
            return
        entry.current = point
        pool = self._pool
        pool.register_point(
            point,
            trusted=True if entry.trusted else None,
            expected_peer_id=entry.spec.expected_peer_id,
            source=TrustSource.CONFIG,
        )
        if old is None:
            entry.delay = min(entry.delay * 2, RERESOLVE_CAP)
            return
        entry.delay = RERESOLVE_INITIAL
        if entry.trusted and not any(e.trusted and e.current == old for e in self.named if e is not entry):
            configured = {s.point for s in pool.config.trusted_points if s.point is not None}
            if old not in configured and pool.points.info(old) is not None:
                pool.register_point(old, trusted=False, source=TrustSource.CONFIG)
        pool.events.emit(EventKind.POINT_ADDRESS_CHANGED, spec=str(entry.spec), old=str(old), new=str(point))
        self._log.info(
            "configured point {spec} moved from {old} to {new}", spec=str(entry.spec), old=str(old), new=str(point)
        )
