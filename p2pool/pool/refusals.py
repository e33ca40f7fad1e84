# -*- test-case-name: tests.test_refusals -*-
"""
Refusals counted by reason and logged as one summary per reason per
interval, so that a flood of refused connections costs a counter
increment each, not a log line each.

L{RefusalLog} is the counter: the first refusal of a quiet period opens a
window of C{interval} seconds; when it ends, one L{RefusalSummary} per
reason refused during it goes to the C{report} callback. The pool keeps one
(C{pool.refusals}) fed from its events (L{RefusalLog.take_event}, see
L{refusal_of}); the admin API keeps another for its own connections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from p2pool.errors import motive_name, snake_case
from p2pool.events import EventKind, PoolEvent

__all__ = ["BEFORE_TLS_REASONS", "RefusalLog", "RefusalSummary", "event_reporter", "refusal_of"]

#: Distinct addresses remembered per reason and window (beyond, the count
#: says "at least").
ADDRESS_LIMIT = 1024
#: Addresses shown in a summary.
SAMPLE_SIZE = 4

#: Refusals of incoming connections before TLS: the reason of each event (the
#: log's summaries and the admin metrics' labels).
BEFORE_TLS_REASONS = {
    EventKind.INCOMING_CONNECTION_BANNED: "banned",
    EventKind.INCOMING_CONNECTION_TOO_MANY: "too_many_pending",
    EventKind.INCOMING_CONNECTION_NETGROUP_FULL: "netgroup_full",
}
#: Events of incoming connections whose own log line a summary replaces
#: without being a refusal: each incoming connection is then logged once,
#: by its outcome (C{connection_established}, or a refusal counted here).
_QUIET = frozenset({EventKind.INCOMING_CONNECTION})
#: Every event that can report a refusal (most events cannot: they are
#: passed over without looking at their fields).
_REFUSALS = frozenset(
    {*BEFORE_TLS_REASONS, EventKind.AUTHENTICATION_FAILED, EventKind.REQUEST_REJECTED, EventKind.REJECTING_REQUEST}
)


def refusal_of(event: PoolEvent) -> tuple[str, str] | None:
    """
    The reason and address of a refusal of an incoming connection that
    C{event} reports, or C{None} when it reports none.

    Reasons: C{banned} (banned or greylisted address), C{too_many_pending}
    (C{max_incoming_connections} handshakes under way),
    C{netgroup_full} (C{max_incoming_connections_per_netgroup}), before
    TLS; C{handshake_<error>} for an incoming handshake that failed
    (C{handshake_timeout}, C{handshake_invalid_auth}, ...), and
    C{nack_<motive>} for one this node nacked
    (C{nack_too_many_connections}, ...).
    """
    name, fields = event.event, event.fields
    if name not in _REFUSALS:
        return None
    address = str(fields.get("addr", ""))
    reason = BEFORE_TLS_REASONS.get(name)
    if reason is not None:
        return reason, address
    if fields.get("incoming") is not True:
        return None
    if name in (EventKind.AUTHENTICATION_FAILED, EventKind.REQUEST_REJECTED):
        return "handshake_" + snake_case(str(fields.get("error", "unknown"))), address
    if name is EventKind.REJECTING_REQUEST:
        motive = fields.get("motive", 0)
        return "nack_" + motive_name(motive if isinstance(motive, int) else 0), address
    return None


@attrs.frozen
class RefusalSummary:
    """
    The refusals of one reason during one window.

    @ivar reason: why they were refused.
    @ivar count: how many.
    @ivar addresses: how many distinct addresses (at most L{ADDRESS_LIMIT};
        C{more_addresses} says there were more).
    @ivar sample: the first few distinct addresses.
    @ivar seconds: how long the window lasted.
    """

    reason: str
    count: int
    addresses: int
    sample: tuple[str, ...]
    seconds: float
    more_addresses: bool = False

    def describe(self) -> str:
        """
        One line of text: C{"too_many_pending: 16674 in 60 s from 2
        addresses (127.0.0.2, 127.0.0.3)"}.
        """
        plural = "es" if self.addresses != 1 or self.more_addresses else ""
        count = f"{self.addresses}{'+' if self.more_addresses else ''}"
        shown = ", ".join(self.sample) + (", ..." if self.addresses > len(self.sample) or self.more_addresses else "")
        where = f" from {count} address{plural} ({shown})" if self.sample else ""
        return f"{self.reason}: {self.count} in {self.seconds:.0f} s{where}"


@attrs.define
class _Window:
    count: int = 0
    addresses: dict[str, None] = attrs.field(factory=dict)
    more_addresses: bool = False

    def add(self, address: str) -> None:
        self.count += 1
        if not address or address in self.addresses:
            return
        if len(self.addresses) < ADDRESS_LIMIT:
            self.addresses[address] = None
        else:
            self.more_addresses = True


class RefusalLog:
    """
    Counts refusals by reason, in total (L{totals}) and per window: the
    first refusal while no window is open opens one of C{interval} seconds,
    at whose end C{report} gets one L{RefusalSummary} per reason, then the
    log is quiet until the next refusal. With C{interval = None} every
    refusal is reported at once, alone.

    After L{stop} (which reports the open window), refusals are reported at
    once, so that nothing is left scheduled on the clock.
    """

    #: The events L{take_event} counts (those that can report a refusal):
    #: it must see them even when nothing else wants them (see
    #: L{p2pool.events.EventLog.summarised}).
    counted: frozenset[EventKind] = _REFUSALS

    def __init__(
        self,
        clock: IReactorTime,
        interval: float | None,
        report: Callable[[RefusalSummary], Any],
    ) -> None:
        self._clock = clock
        self.interval = interval
        self._report = report
        self._totals: dict[str, int] = {}
        self._window: dict[str, _Window] = {}
        self._opened_at = 0.0
        self._call: IDelayedCall | None = None
        self._stopped = False

    def totals(self) -> dict[str, int]:
        """
        Refusals counted since this log was made, by reason.
        """
        return dict(self._totals)

    def refused(self, reason: str, address: str = "") -> None:
        """
        Count one refusal of a connection from C{address} for C{reason}.
        """
        self._totals[reason] = self._totals.get(reason, 0) + 1
        if self.interval is None or self._stopped:
            self._report(RefusalSummary(reason, 1, 1 if address else 0, (address,) if address else (), 0.0))
            return
        if self._call is None:
            self._opened_at = self._clock.seconds()
            self._call = self._clock.callLater(self.interval, self._window_ended)
        self._window.setdefault(reason, _Window()).add(address)

    def take_event(self, event: PoolEvent) -> bool:
        """
        Count C{event} if it is a refusal (L{refusal_of}); return whether
        its own log line is to be left out, which it is when refusals are
        summarised (C{interval} set) and it is a refusal or an
        C{incoming_connection}. Meant as C{EventLog.summarise}.
        """
        refusal = refusal_of(event) if event.event in _REFUSALS else None
        if refusal is not None:
            self.refused(*refusal)
            # Reported at once (no interval) by refused(); the event's own
            # line would say the same thing twice.
            return True
        return self.interval is not None and event.event in _QUIET

    def _window_ended(self) -> None:
        self._call = None
        self.flush()

    def flush(self) -> None:
        """
        Report the open window now (one summary per reason) and close it.
        """
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        window, self._window = self._window, {}
        seconds = self._clock.seconds() - self._opened_at
        for reason, counts in window.items():
            addresses = tuple(counts.addresses)
            self._report(
                RefusalSummary(
                    reason, counts.count, len(addresses), addresses[:SAMPLE_SIZE], seconds, counts.more_addresses
                )
            )

    def stop(self) -> None:
        """
        Report the open window; from now on report each refusal at once.
        """
        self._stopped = True
        self.flush()


def event_reporter(emit: Callable[..., Any]) -> Callable[[RefusalSummary], None]:
    """
    A C{report} callback for L{RefusalLog} that emits each summary as a
    C{connections_refused} pool event (fields C{reason}, C{count},
    C{addresses}: distinct addresses counted up to L{ADDRESS_LIMIT},
    C{sample}: a few of them, comma-separated, and C{seconds}).

    @param emit: the pool's C{events.emit}.
    """

    def report(summary: RefusalSummary) -> None:
        emit(
            EventKind.CONNECTIONS_REFUSED,
            reason=summary.reason,
            count=summary.count,
            addresses=summary.addresses,
            sample=",".join(summary.sample),
            seconds=round(summary.seconds, 1),
        )

    return report
