"""
Helpers for tests that run real nodes on loopback addresses.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater

from p2pool.config import PoolConfig
from p2pool.core.addressing import Point, PointSpec
from p2pool.core.identity import Identity
from p2pool.events import EventKind, PoolEvent
from p2pool.interfaces import BasePoolApplication
from p2pool.pool.service import Pool

_identities: list[Identity] = []


def identity(index: int) -> Identity:
    """
    The C{index}th test identity (proof of work 0), made once per run.
    """
    while len(_identities) <= index:
        _identities.append(Identity.generate(0))
    return _identities[index]


def closed_port(test: Any, ip: str) -> int:
    """
    A TCP port on C{ip} where nothing listens until C{test} ends: a socket
    is bound to it (without C{SO_REUSEADDR}) and never listens, so a
    connection there is refused and no other socket can take the port
    meanwhile. The socket is closed when the test ends.
    """
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    test.addCleanup(held.close)
    held.bind((ip, 0))
    return int(held.getsockname()[1])


class RecordingApp(BasePoolApplication):
    """
    An application that records what happens to it.
    """

    def __init__(self) -> None:
        self.made: list[Any] = []
        self.messages: list[tuple[Any, bytes]] = []
        self.lost: list[tuple[Any, Any]] = []

    def connection_made(self, conn: Any) -> None:
        self.made.append(conn)

    def message_received(self, conn: Any, data: bytes) -> None:
        self.messages.append((conn, data))

    def connection_lost(self, conn: Any, reason: Any) -> None:
        self.lost.append((conn, reason))


@attrs.define
class Node:
    """
    A started pool with its application and recorded events.
    """

    pool: Pool
    app: RecordingApp
    events: list[PoolEvent]

    @property
    def point(self) -> Point:
        host = self.pool.listening_port.getHost()  # type: ignore[union-attr]
        return Point(host.host, host.port)

    @property
    def spec(self) -> PointSpec:
        return PointSpec(self.point.ip, self.point.port, self.pool.peer_id)

    def named(self, event: EventKind) -> list[PoolEvent]:
        return [e for e in self.events if e.event == event]


#: The close grace period of the test nodes, longer than any test. The
#: grace runs on the reactor's clock from the moment a goodbye (a Nack or
#: Disconnect, then the TLS close) is queued, and a goodbye queued while
#: the reactor handles input is written only at its next turn: when the
#: test process is descheduled for longer than the grace just then (a busy
#: machine), the grace is over as the process resumes, its timer runs
#: before the write, the close is aborted and the goodbye never leaves the
#: process, so that the peer sees connection_lost, not what it was told. A
#: peer that does its part of the close ends it long before this; a test
#: whose peer never does (one that stops reading) sets a grace of its own.
GOODBYE_GRACE_PERIOD = 300.0
#: The authentication timeout of the test nodes, longer than a test: the
#: library's 5 s runs on the reactor's clock from the TCP connection, so a
#: test process descheduled for that long in mid-handshake (a busy machine)
#: has the handshake's own bytes waiting in the socket when the timeout's
#: timer runs, and a handshake that did nothing wrong is aborted. The tests
#: of the timeout set their own.
HANDSHAKE_TIMEOUT = 300.0

#: The authentication timeout of nodes that must time out a stalled
#: handshake and then still serve a real peer: short enough to wait for,
#: long enough for a real handshake on a busy machine, where the test
#: process may be descheduled for seconds in the middle of it (the timer
#: then runs before the handshake's bytes are read). (When exactly a stall
#: is closed is checked on a simulated clock in test_floods.)
STALL_TIMEOUT = 10.0


async def start_node(test: Any, ip: str, index: int, **config: Any) -> Node:
    """
    Start a pool on C{ip} (on a port the system picks: L{Node.point} says
    which) with test identity C{index}; it is stopped when the test ends.
    Its close grace period is L{GOODBYE_GRACE_PERIOD} and its
    authentication timeout L{HANDSHAKE_TIMEOUT} unless C{config} says
    otherwise.
    """
    settings: dict[str, Any] = dict(
        listen=Point(ip, 0),
        expected_proof_of_work=0,
        maintenance_idle_time=None,
        close_grace_period=GOODBYE_GRACE_PERIOD,
        authentication_timeout=HANDSHAKE_TIMEOUT,
        data_dir=test.mktemp(),
    )
    settings.update(config)
    pool_options = {k: settings.pop(k) for k in ("p2p_versions", "application_versions", "identity") if k in settings}
    events: list[PoolEvent] = []
    app = RecordingApp()
    pool = Pool(
        PoolConfig(**settings),
        app,
        identity=pool_options.pop("identity", identity(index)),
        log=events.append,
        **pool_options,
    )
    pool.startService()
    test.addCleanup(lambda: pool.stopService() if pool.running else None)
    await pool.when_started()
    return Node(pool, app, events)


def async_test(f: Callable[[Any], Any]) -> Callable[[Any], Deferred[Any]]:
    """
    Run an C{async def} test method as a trial test returning a Deferred.
    """

    def run(self: Any) -> Deferred[Any]:
        return ensureDeferred(f(self))

    run.__name__ = f.__name__
    run.__doc__ = f.__doc__
    return run


def describe(predicate: Callable[[], object]) -> str:
    """
    What C{predicate} checks, for a failure message: a function's name,
    or the source line of a lambda.
    """
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    if "<lambda>" not in name:
        return name
    try:
        lines, _ = inspect.getsourcelines(predicate)
    except (OSError, TypeError):
        return name
    return " ".join(line.strip() for line in lines)


async def wait_for(
    predicate: Callable[[], object], timeout: float = 30.0, what: str | None = None, step: float = 0.02
) -> None:
    """
    Wait until C{predicate()} is true, checking every C{step} seconds;
    fail, saying what was awaited (C{what}, or the predicate's source),
    once C{timeout} seconds have passed on the reactor's clock.
    C{predicate} may be an C{async def} function (one that asks a server,
    say): its answer is awaited before each check.
    """
    deadline = reactor.seconds() + timeout

    async def met() -> object:
        answer = predicate()
        return (await answer) if inspect.isawaitable(answer) else answer

    while not await met():
        if reactor.seconds() >= deadline:
            raise AssertionError(f"not met within {timeout} s: {what or describe(predicate)}")
        await deferLater(reactor, min(step, max(0.0, deadline - reactor.seconds())), lambda: None)


def only(items: list[Any], what: str | None = None) -> Any:
    assert len(items) == 1, f"expected one {what or 'item'}, got {items!r}"
    return items[0]
