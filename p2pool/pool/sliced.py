# -*- test-case-name: tests.test_sliced,tests.test_keepalive,tests.test_traffic -*-
"""
A walk over many items, a slice per reactor turn (or spread over a span of
time), so that work on every connection of a node with thousands of them
never holds the reactor long, nor makes thousands of peers answer at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["SlicedWalk"]

T = TypeVar("T")


class SlicedWalk(Generic[T]):
    """
    Calls C{visit(item)} for each item of a walk, C{slice_size} items per
    reactor turn, then C{done()}. One walk runs at a time.

    A walk may be spread over C{span} seconds: its slices then come at even
    intervals from the first (now) to the last (C{span} seconds later).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._items: Sequence[T] = ()
        self._visit: Callable[[T], object] | None = None
        self._done: Callable[[], object] | None = None
        self._position = 0
        self._slice_size = 1
        self._pause = 0.0
        self._next: IDelayedCall | None = None

    @property
    def running(self) -> bool:
        """
        A walk is under way.
        """
        return self._visit is not None

    def start(
        self,
        items: Sequence[T],
        slice_size: int,
        visit: Callable[[T], object],
        done: Callable[[], object],
        span: float = 0.0,
    ) -> None:
        """
        Walk C{items}: the first slice now, the others at the next turns,
        or at even intervals over C{span} seconds.

        @raise RuntimeError: a walk is under way.
        @raise ValueError: C{span} is negative.
        """
        if self.running:
            raise RuntimeError("a walk is under way")
        if span < 0:
            raise ValueError(f"SlicedWalk: span must not be negative, not {span!r}")
        size = max(1, slice_size)
        slices = -(-len(items) // size)
        self._items, self._slice_size, self._visit, self._done = items, size, visit, done
        self._pause = span / (slices - 1) if slices > 1 else 0.0
        self._position = 0
        self._step()

    def stop(self) -> None:
        """
        Abandon the walk under way, if any (C{done} is not called).
        """
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
        self._items, self._visit, self._done = (), None, None

    def _step(self) -> None:
        self._next = None
        visit, done = self._visit, self._done
        if visit is None or done is None:
            return
        start = self._position
        end = min(start + self._slice_size, len(self._items))
        for item in self._items[start:end]:
            visit(item)
            if self._visit is not visit:
                return  # stopped (or restarted) by the visit itself
        if end < len(self._items):
            self._position = end
            self._next = self._clock.callLater(self._pause, self._step)
            return
        self._items, self._visit, self._done = (), None, None
        done()
