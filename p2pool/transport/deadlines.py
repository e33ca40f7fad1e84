# -*- test-case-name: tests.test_deadlines -*-
"""
The deadlines of many connections (handshake timeouts, close grace
periods) on one timer of the clock.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

__all__ = ["LATE", "Deadlines"]

#: A timer this many seconds late woke from a stall (the process was stopped,
#: or the machine or a long callback held it): the reactor first reads what
#: arrived meanwhile, then what is due is judged. A deadline then falls due
#: after the bytes that would have met it, not before them.
LATE = 1.0

#: One pending deadline: when it is due, and what to call then.
_Entry = tuple[float, Callable[..., object], tuple[Any, ...]]


class Deadlines:
    """
    Callbacks due some seconds after they are set, each under a key that
    cancels it, all on one timer of the clock: setting or cancelling a
    deadline is a dictionary operation, where a C{callLater} per deadline
    is a C{DelayedCall} placed in the reactor's heap of timed calls (about
    ten Python comparisons with a few hundred pending) and a cancel.

    Deadlines set with the same delay fall due in the order they were set,
    so each delay keeps its own queue in that order, and the timer is set
    for the earliest deadline of all. When the clock goes back, a deadline
    set after the jump is due no earlier than those set before it in its
    queue (a timer of the reactor is late by the jump too).

    The timer is not cancelled when the last deadline is: the next
    deadline set is most likely due after it, and the timer, finding
    nothing due, then sets itself for the next deadline pending, if any.
    After L{stop}, it is cancelled as soon as nothing is pending. A queue
    left empty stays until the timer runs (the next deadline of its delay
    most likely follows soon), which drops it.

    A timer that wakes more than L{LATE} seconds after its time (the
    process was stopped or starved) judges nothing at once: it lets the
    reactor read first, so that a handshake or a frame that arrived during
    the stall is not timed out behind its own bytes.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        #: Pending deadlines by delay, each queue in the order they were
        #: set (an empty one kept until the timer runs).
        self._queues: dict[float, collections.OrderedDict[Hashable, _Entry]] = {}
        #: The delay (the queue) of each pending key.
        self._delay_of: dict[Hashable, float] = {}
        self._call: IDelayedCall | None = None
        self._call_at = 0.0
        self._stopped = False
        #: The timer woke late and gave the reactor a turn to read.
        self._read_first = False

    def __len__(self) -> int:
        return len(self._delay_of)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._delay_of

    def set(self, key: Hashable, delay: float, callback: Callable[..., object], *args: Any) -> None:
        """
        Call C{callback(*args)} C{delay} seconds from now, unless C{key} is
        cancelled first; a deadline pending under C{key} is replaced.
        """
        if key in self._delay_of:
            self.cancel(key)
        due = self._clock.seconds() + delay
        queue = self._queues.get(delay)
        if queue is None:
            queue = self._queues[delay] = collections.OrderedDict()
        elif queue and due < (last := next(reversed(queue.values())))[0]:
            due = last[0]
        queue[key] = (due, callback, args)
        self._delay_of[key] = delay
        call = self._call
        if call is None or due < self._call_at:
            self._arm(due)

    def cancel(self, key: Hashable) -> None:
        """
        Cancel the deadline pending under C{key}, if there is one.
        """
        delay = self._delay_of.pop(key, None)
        if delay is None:
            return
        del self._queues[delay][key]
        if self._stopped and not self._delay_of:
            self._disarm()

    def stop(self) -> None:
        """
        From now on, leave no timer set while nothing is pending (when the
        pool stops: the reactor is then left clean).
        """
        self._stopped = True
        if not self._delay_of:
            self._disarm()

    def _arm(self, due: float) -> None:
        if self._call is not None:
            self._call.cancel()
        self._read_first = False
        self._call_at = due
        self._call = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._run)

    def _disarm(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None
        self._read_first = False

    def _run(self) -> None:
        """
        The timer: call what is due, then set the timer for what is next.
        """
        self._call = None
        now = self._clock.seconds()
        if now - self._call_at > LATE and not self._read_first:
            # The reactor runs timers before reading: let it read once.
            self._read_first = True
            self._call = self._clock.callLater(0, self._run)
            return
        self._read_first = False
        due_now: list[_Entry] = []
        for delay, queue in list(self._queues.items()):
            while queue:
                key, entry = next(iter(queue.items()))
                if entry[0] > now:
                    break
                del queue[key]
                del self._delay_of[key]
                due_now.append(entry)
            if not queue:
                del self._queues[delay]
        for _, callback, args in due_now:
            try:
                callback(*args)
            except Exception:
                self._log.failure("a deadline's callback failed")
        if due_now:
            # The callbacks may have set and cancelled deadlines: the
            # queues they left empty are dropped too.
            for delay in [delay for delay, queue in self._queues.items() if not queue]:
                del self._queues[delay]
        if self._queues:
            first = min(next(iter(queue.values()))[0] for queue in self._queues.values())
            if self._call is None or first < self._call_at:
                self._arm(first)
