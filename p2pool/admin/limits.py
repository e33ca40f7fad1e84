# -*- test-case-name: tests.test_admin_limits -*-
"""
The admin API's connection table: the open HTTP connections by address
and phase, the caps on them, and which connection gives way to a newcomer
when a cap is reached (sans-I/O; L{p2pool.admin.service} applies it).

A connection is in one of three phases: L{Phase.READING} a request (from
the moment it opens, or from its first byte after the previous answer),
L{Phase.BUSY} answering one, or L{Phase.IDLE} between requests
(keep-alive). When a newcomer would exceed a cap, the oldest idle
connection in the cap's scope gives way; failing that, the connection that
has been reading its request the longest (a slow or stalled client), from
the address holding the most connections; connections being answered are
never closed for a newcomer, which is refused when they fill the cap.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from typing import Generic, TypeVar

import attrs

__all__ = ["Admission", "ConnectionTable", "Phase"]

C = TypeVar("C", bound=Hashable)


class Phase(enum.Enum):
    """
    What an admin HTTP connection is doing.
    """

    READING = "reading"
    BUSY = "busy"
    IDLE = "idle"


@attrs.frozen
class Admission(Generic[C]):
    """
    The decision on a new connection.

    @ivar admitted: whether it may open.
    @ivar shed: connections to close to make room for it (already removed
        from the table), with the reason of each (C{shed_idle},
        C{shed_reading}).
    @ivar refusal: why it is refused (C{too_many_connections},
        C{too_many_from_address}), when it is.
    """

    admitted: bool
    shed: tuple[tuple[C, str], ...] = ()
    refusal: str | None = None


@attrs.define
class _Entry:
    address: str
    phase: Phase
    #: Order of the last phase change (smaller = longer in this phase).
    since: int


class ConnectionTable(Generic[C]):
    """
    The open connections, at most C{max_connections} in all and
    C{max_per_address} per address (see the module docstring for who gives
    way to a newcomer).
    """

    def __init__(self, max_connections: int, max_per_address: int) -> None:
        if max_connections < 1 or max_per_address < 1:
            raise ValueError("the caps must be at least 1")
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self._entries: dict[C, _Entry] = {}
        self._by_address: dict[str, dict[C, None]] = {}
        self._serial = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, conn: object) -> bool:
        return conn in self._entries

    def connections(self) -> list[C]:
        """
        The open connections, oldest first.
        """
        return list(self._entries)

    def count(self, address: str) -> int:
        """
        How many connections C{address} holds.
        """
        return len(self._by_address.get(address, ()))

    def phases(self) -> dict[Phase, int]:
        """
        How many connections are in each phase.
        """
        counts = {phase: 0 for phase in Phase}
        for entry in self._entries.values():
            counts[entry.phase] += 1
        return counts

    def _tick(self) -> int:
        self._serial += 1
        return self._serial

    def add(self, conn: C, address: str) -> None:
        """
        A connection opened (admitted by L{admit}); it starts reading its
        first request.
        """
        if conn in self._entries:
            raise ValueError(f"{conn!r} is already in the table")
        self._entries[conn] = _Entry(address, Phase.READING, self._tick())
        self._by_address.setdefault(address, {})[conn] = None

    def set_phase(self, conn: C, phase: Phase) -> None:
        """
        A connection entered C{phase} (ignored once it left the table).
        """
        entry = self._entries.get(conn)
        if entry is not None:
            entry.phase = phase
            entry.since = self._tick()

    def remove(self, conn: C) -> None:
        """
        A connection closed (or is being closed); idempotent.
        """
        entry = self._entries.pop(conn, None)
        if entry is None:
            return
        conns = self._by_address[entry.address]
        del conns[conn]
        if not conns:
            del self._by_address[entry.address]

    def _oldest(self, conns: list[C], phase: Phase) -> C | None:
        candidates = [c for c in conns if self._entries[c].phase is phase]
        return min(candidates, key=lambda c: self._entries[c].since, default=None)

    def _victim_within(self, conns: list[C]) -> tuple[C, str] | None:
        idle = self._oldest(conns, Phase.IDLE)
        if idle is not None:
            return idle, "shed_idle"
        reading = self._oldest(conns, Phase.READING)
        if reading is not None:
            return reading, "shed_reading"
        return None

    def _victim_overall(self) -> tuple[C, str] | None:
        idle = self._oldest(list(self._entries), Phase.IDLE)
        if idle is not None:
            return idle, "shed_idle"
        readers: dict[str, int] = {}
        for entry in self._entries.values():
            if entry.phase is Phase.READING:
                readers[entry.address] = self.count(entry.address)
        if not readers:
            return None
        crowded = max(readers, key=lambda address: readers[address])
        reading = self._oldest(list(self._by_address[crowded]), Phase.READING)
        assert reading is not None
        return reading, "shed_reading"

    def admit(self, address: str) -> Admission[C]:
        """
        Decide on a new connection from C{address}: admit it, possibly
        closing others to make room (they leave the table now), or refuse
        it. The caller then L{add}s it when it opens.
        """
        shed: list[tuple[C, str]] = []
        if self.count(address) >= self.max_per_address:
            victim = self._victim_within(list(self._by_address[address]))
            if victim is None:
                return Admission(False, refusal="too_many_from_address")
            shed.append(victim)
            self.remove(victim[0])
        if len(self._entries) >= self.max_connections:
            # Only reached with nothing shed above: shedding one of the
            # address's connections leaves room under the total cap.
            victim = self._victim_overall()
            if victim is None:
                return Admission(False, refusal="too_many_connections")
            shed.append(victim)
            self.remove(victim[0])
        return Admission(True, tuple(shed))
