# -*- test-case-name: tests.test_testing -*-
"""
An in-memory network for testing applications built on pools: no sockets,
a simulated clock, and every outcome determined by a seed.

Many real L{Pool}s run in one process, each on its own simulated host
address, with their real TLS, handshake, maintenance and messaging; only
time and the network are simulated::

    network = MemoryNetwork(seed=1)
    a = network.add_pool("10.0.0.1")
    b = network.add_pool("10.0.0.2")
    d = a.connect(Point("10.0.0.2", 9732))
    network.advance(1.0)            # the TLS and pool handshakes run here
    conn = successResultOf(d)

The pieces:

  - L{SimulatedClock}: an C{IReactorTime} whose time moves only when told
    (L{SimulatedClock.advance}); delayed calls live in a heap, so scheduling
    costs O(log n) however many calls are pending.
  - L{MemoryNetwork}: the clock, a seeded random generator, the listening
    ports of every host, DNS names and partitions; it builds pools
    (L{MemoryNetwork.add_pool}) with deterministic identities.
  - L{NodeReactor}: what a pool on one host address sees as its reactor
    (time, TCP, name resolution, threads run inline).
  - L{MemoryTransport}: one end of a simulated TCP connection; bytes written
    reach the other end one C{latency} later, in order, in one delivery per
    burst of writes.

See C{docs/TESTING.md} for a complete example and what is and is not
simulated.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import heapq
import numbers
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.error import (
    AlreadyCalled,
    AlreadyCancelled,
    CannotListenError,
    ConnectBindError,
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    NotConnectingError,
    TimeoutError,
    UserError,
)
from twisted.internet.interfaces import (
    IConnector,
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorFromThreads,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from p2pool.config import PoolConfig
from p2pool.core.addressing import AddressError, PeerId, Point, normalise_ip
from p2pool.core.identity import Identity
from p2pool.events import PoolEvent
from p2pool.interfaces import IPoolApplication
from p2pool.pool.contracts import IPoolReactor
from p2pool.pool.service import Pool
from p2pool.testing.simulation_channel import SimulationNotary

__all__ = [
    "DEFAULT_PORT",
    "SIMULATION_CHANNEL",
    "TLS_CHANNEL",
    "MemoryConnector",
    "MemoryNetwork",
    "MemoryPort",
    "MemoryTransport",
    "NodeReactor",
    "SimulatedClock",
]

#: The channel of a L{MemoryNetwork}'s pools by default: real TLS 1.3, as
#: every node runs it.
TLS_CHANNEL = "tls"
#: For simulations only: pools authenticate each other through the network
#: instead of TLS and nothing is encrypted
#: (L{p2pool.testing.simulation_channel}).
SIMULATION_CHANNEL = "simulation-only"
_CHANNELS = (TLS_CHANNEL, SIMULATION_CHANNEL)

#: The port L{MemoryNetwork.add_pool} makes pools listen on.
DEFAULT_PORT = 9732
#: The first port handed out for port 0 and for the client side of
#: connections (the IANA dynamic range).
EPHEMERAL_PORTS = (49152, 65535)

_log = Logger()

Address = IPv4Address | IPv6Address
EventObserver = Callable[[float, str, PoolEvent], object]


def _address(ip: str, port: int) -> Address:
    """
    The Twisted address of C{ip}:C{port}, IPv4 or IPv6 as C{ip} is.
    """
    return IPv6Address("TCP", ip, port) if ":" in ip else IPv4Address("TCP", ip, port)


def _host(ip: object, name: str = "ip") -> str:
    """
    The canonical text of the host address C{ip}.

    @param name: what C{ip} is, for the errors.
    @raise TypeError: C{ip} is not text (C{ipaddress} would take the int
        1 for 0.0.0.1).
    @raise AddressError: C{ip} is not an IP address.
    """
    if not isinstance(ip, str):
        raise TypeError(f"{name} must be an IP address as text, not {type(ip).__name__} {ip!r:.80}")
    return normalise_ip(ip)


def _check_port(port: object) -> None:
    """
    @raise TypeError: C{port} is not an int.
    @raise OverflowError: C{port} is not within 0-65535 (what a socket
        raises, so that a test fails as the program would).
    """
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"port must be an int, not {type(port).__name__} {port!r:.80}")
    if not 0 <= port <= 65535:
        raise OverflowError(f"port must be 0-65535, got {port}")


builtin_callable = callable


def _is_number(value: object) -> bool:
    """
    Whether C{value} is a real number (int, float, Fraction, numpy's...),
    a bool excepted.
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _nanoseconds(seconds: float, name: str = "seconds") -> int:
    """
    C{seconds} as a whole number of nanoseconds.

    @param name: what C{seconds} is, for the error.
    @raise TypeError: C{seconds} is not a number.
    @raise ValueError: C{seconds} is not finite, or too large to count in
        nanoseconds.
    """
    kind = seconds.__class__
    if kind is not float and kind is not int:
        # Other real numbers (Fraction, numpy's) become floats. Anything
        # else (a str: "1" * 10**9 is a string of a billion characters) is
        # refused before any arithmetic.
        if not _is_number(seconds):
            raise TypeError(f"{name} must be a number of seconds, not {type(seconds).__name__} {seconds!r:.80}")
        seconds = float(seconds)
    try:
        return round(seconds * 1_000_000_000)
    except (OverflowError, ValueError):
        raise ValueError(f"{name} must be a finite number of seconds, got {seconds!r}") from None


# -- the clock ----------------------------------------------------------------


@implementer(IDelayedCall)
def _cancelled() -> None:
    """
    What a call that ran or was cancelled holds instead of its function.
    """


@implementer(IDelayedCall)
class _DelayedCall:
    """
    A call scheduled on a L{SimulatedClock}.

    The clock's heap holds C{(time, seq, call)} entries, C{time} in integer
    nanoseconds; an entry whose C{seq} is no longer the call's (the call was
    reset or delayed) or whose call is no longer active is stale and skipped
    when popped.
    """

    __slots__ = ("time_ns", "seq", "func", "args", "kw", "cancelled", "called", "_clock")

    def __init__(
        self,
        clock: SimulatedClock,
        time: int,
        seq: int,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kw: dict[str, Any],
    ) -> None:
        self._clock = clock
        self.time_ns = time
        self.seq = seq
        self.func = func
        self.args = args
        self.kw = kw
        self.cancelled = False
        self.called = False

    def getTime(self) -> float:
        """
        When the call will run, in clock seconds.
        """
        return self.time_ns / 1e9

    def cancel(self) -> None:
        """
        Do not run the call.

        @raise AlreadyCancelled: it was cancelled before.
        @raise AlreadyCalled: it has run.
        """
        if self.cancelled:
            raise AlreadyCancelled()
        if self.called:
            raise AlreadyCalled()
        self.cancelled = True
        # As Twisted's DelayedCall does: a cancelled call keeps nothing alive.
        self.func = _cancelled
        self.args = ()
        self.kw = {}
        self._clock.call_cancelled(self)

    def delay(self, secondsLater: float) -> None:
        """
        Run the call C{secondsLater} seconds later than planned.
        """
        self._check_active()
        self._clock.reschedule(self, self.time_ns + _nanoseconds(secondsLater, "secondsLater"))

    def reset(self, secondsFromNow: float) -> None:
        """
        Run the call C{secondsFromNow} seconds from now instead.
        """
        self._check_active()
        self._clock.reschedule(self, self._clock.now_ns + _nanoseconds(secondsFromNow, "secondsFromNow"))

    def active(self) -> bool:
        """
        The call has neither run nor been cancelled.
        """
        return not (self.cancelled or self.called)

    def _check_active(self) -> None:
        if self.cancelled:
            raise AlreadyCancelled()
        if self.called:
            raise AlreadyCalled()

    def __repr__(self) -> str:
        name = getattr(self.func, "__qualname__", None) or repr(self.func)
        state = "cancelled" if self.cancelled else "called" if self.called else "pending"
        return f"<_DelayedCall {name} at {self.time_ns / 1e9:.9f} {state}>"


@implementer(IReactorTime)
class SimulatedClock:
    """
    Simulated time: C{seconds()} moves only through L{advance}, which runs
    the delayed calls that fall due, in time order (first scheduled first on
    ties).

    Unlike C{twisted.internet.task.Clock}, which sorts all its calls at each
    C{callLater}, calls are kept in a heap: scheduling, cancelling and
    running cost O(log n). Cancelled calls stay in the heap until their time
    comes or until they make up most of it.

    Time is counted in whole nanoseconds (delays are rounded to the
    nearest), so sums are exact: ten C{advance(0.1)} reach exactly the time
    of a call made with C{callLater(1.0)}.

    An exception raised by a call is logged, as a real reactor does (trial
    then fails the test with it), and the other calls still run.

    @ivar calls_run: how many calls have run since the clock was made.
    """

    _COMPACT_MIN = 4096

    def __init__(self, start: float = 0.0) -> None:
        """
        @param start: the initial value of C{seconds()}.
        @raise TypeError: C{start} is not a number.
        @raise ValueError: C{start} is not finite.
        """
        self._ns = _nanoseconds(start, "start")
        self._now = self._ns / 1e9
        self._heap: list[tuple[int, int, _DelayedCall]] = []
        self._seq = 0
        self._active = 0
        self._depth = 0
        self.calls_run = 0

    # IReactorTime

    def seconds(self) -> float:
        """
        The current simulated time.
        """
        return self._now

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> IDelayedCall:
        """
        Run C{callable(*args, **kw)} C{delay} seconds from now.

        @raise TypeError: C{delay} is not a number, or C{callable} is not
            callable.
        @raise ValueError: C{delay} is negative or not finite.
        """
        time = self._ns + _nanoseconds(delay, "delay")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay!r}")
        if not builtin_callable(callable):
            raise TypeError(f"{callable!r} is not callable")
        self._seq += 1
        call = _DelayedCall(self, time, self._seq, callable, args, kw)
        heapq.heappush(self._heap, (call.time_ns, call.seq, call))
        self._active += 1
        return call

    def getDelayedCalls(self) -> list[IDelayedCall]:
        """
        The calls still to run, in the order they will run.
        """
        return [entry[2] for entry in sorted(self._heap) if self._is_live(*entry)]

    # simulation

    def pending(self) -> int:
        """
        How many calls are still to run.
        """
        return self._active

    def heap_size(self) -> int:
        """
        How many entries the call heap holds, cancelled and rescheduled
        ones included; compaction keeps it within about twice L{pending}
        once it is large.
        """
        return len(self._heap)

    def next_call_time(self) -> float | None:
        """
        When the next call is due, or None when none is pending.
        """
        heap = self._heap
        while heap and not self._is_live(*heap[0]):
            heapq.heappop(heap)
        return heap[0][0] / 1e9 if heap else None

    @property
    def advancing(self) -> bool:
        """
        Whether a call run by L{advance} is running now.
        """
        return self._depth > 0

    def advance(self, seconds: float) -> None:
        """
        Move time forward by C{seconds}, running every call due by then in
        time order, including calls scheduled meanwhile for a time within
        the interval. During each call, C{seconds()} is that call's time.

        @raise TypeError: C{seconds} is not a number.
        @raise ValueError: C{seconds} is negative or not finite.
        """
        target = self._ns + _nanoseconds(seconds, "seconds")
        if seconds < 0:
            raise ValueError(f"cannot advance by {seconds!r} seconds")
        self._advance_to(target)

    def _advance_to(self, target: int) -> None:
        """
        Run the calls due by C{target} (nanoseconds), then move there.
        """
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= target:
            time, seq, call = pop(heap)
            if call.seq != seq or call.cancelled or call.called:
                continue
            if time > self._ns:
                self._ns = time
                self._now = time / 1e9
            call.called = True
            self._active -= 1
            self.calls_run += 1
            func, args, kw = call.func, call.args, call.kw
            call.func = _cancelled
            call.args = ()
            call.kw = {}
            self._depth += 1
            try:
                func(*args, **kw)
            except Exception:
                _log.failure("Unhandled error in simulated delayed call {call!r}", call=call)
            finally:
                self._depth -= 1
        if target > self._ns:
            self._ns = target
            self._now = target / 1e9

    def run_until(self, predicate: Callable[[], object], timeout: float = 60.0, step: float = 0.1) -> bool:
        """
        Advance C{step} seconds at a time until C{predicate()} is true or
        C{timeout} simulated seconds have passed.

        @return: whether the predicate became true (it is checked first,
            then after each step).
        @raise TypeError: C{predicate} is not callable (C{run_until(x ==
            y)} instead of C{run_until(lambda: x == y)}), or C{timeout} or
            C{step} is not a number.
        @raise ValueError: C{step} is not positive, or C{timeout} negative,
            or either is not finite (a run with no end).
        """
        if not builtin_callable(predicate):
            raise TypeError(f"predicate must be callable (a function returning whether to stop), not {predicate!r:.80}")
        deadline = self._ns + _nanoseconds(timeout, "timeout")
        step_ns = max(1, _nanoseconds(step, "step"))
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout!r}")
        if not step > 0:
            raise ValueError(f"step must be > 0, got {step!r}")
        while True:
            if predicate():
                return True
            remaining = deadline - self._ns
            if remaining <= 0:
                return False
            self._advance_to(self._ns + min(step_ns, remaining))

    # bookkeeping for the delayed calls (called by _DelayedCall)

    @property
    def now_ns(self) -> int:
        """
        The current simulated time, in whole nanoseconds.
        """
        return self._ns

    @staticmethod
    def _is_live(time: int, seq: int, call: _DelayedCall) -> bool:
        return call.seq == seq and not (call.cancelled or call.called)

    def call_cancelled(self, call: _DelayedCall) -> None:
        """
        C{call}, one of this clock's, was cancelled: it no longer counts as
        pending (its heap entry is dropped later).
        """
        self._active -= 1
        self._maybe_compact()

    def reschedule(self, call: _DelayedCall, time: int) -> None:
        """
        Run C{call}, one of this clock's, at C{time} (nanoseconds) instead.
        """
        self._seq += 1
        call.time_ns = time
        call.seq = self._seq
        heapq.heappush(self._heap, (time, call.seq, call))
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        """
        Drop stale entries once they outnumber the live calls.
        """
        heap = self._heap
        if len(heap) > self._COMPACT_MIN and len(heap) > 2 * self._active:
            # In place: an advance under way holds this list.
            heap[:] = [entry for entry in heap if self._is_live(*entry)]
            heapq.heapify(heap)


# -- listening ports and connectors -------------------------------------------


@implementer(IListeningPort)
class MemoryPort:
    """
    A port listening on the memory network at C{ip}:C{port}.

    @ivar factory: the factory that builds the protocol of each accepted
        connection (returning None refuses it).
    @ivar backlog: the backlog asked for (not enforced).
    """

    def __init__(self, reactor: NodeReactor, ip: str, port: int, factory: IProtocolFactory, backlog: int) -> None:
        self.reactor = reactor
        self.ip = ip
        self.port = port
        self.factory = factory
        self.backlog = backlog
        self.listening = False

    def startListening(self) -> None:
        """
        Take the address and start the factory.

        @raise CannotListenError: the address is taken.
        """
        if self.listening:
            return
        self.reactor.network.bind(self)
        self.listening = True
        self.factory.doStart()

    def stopListening(self) -> Deferred[None]:
        """
        Release the address (accepted connections go on) and stop the
        factory.
        """
        if self.listening:
            self.listening = False
            self.reactor.network.unbind(self)
            self.factory.doStop()
        return succeed(None)

    loseConnection = stopListening

    def getHost(self) -> Address:
        return _address(self.ip, self.port)

    def __repr__(self) -> str:
        return f"<MemoryPort {self.ip}:{self.port} {'listening' if self.listening else 'closed'}>"


@implementer(IConnector)
class MemoryConnector:
    """
    An outgoing connection attempt, as C{connectTCP} returns: after the
    network latency it reaches the listener at the destination, or fails.

    The state is C{"disconnected"}, C{"connecting"} or C{"connected"}, as
    for Twisted's connectors; the factory may call L{connect} again from
    C{clientConnectionFailed} or C{clientConnectionLost} to retry.
    """

    def __init__(
        self,
        reactor: NodeReactor,
        host: str,
        port: int,
        factory: Any,
        timeout: float | None,
        bind_ip: str,
    ) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.factory = factory
        self.timeout = timeout
        self.bind_ip = bind_ip
        self.state = "disconnected"
        self.transport: MemoryTransport | None = None
        self._factory_started = False
        #: The latency of the link this attempt makes (drawn per attempt).
        self.latency = reactor.network.latency
        self._attempt_call: IDelayedCall | None = None
        self._timeout_call: IDelayedCall | None = None

    def connect(self) -> None:
        """
        Start (or restart) the attempt.
        """
        if self.state != "disconnected":
            raise RuntimeError("can't connect in this state")
        self.state = "connecting"
        if not self._factory_started:
            self.factory.doStart()
            self._factory_started = True
        network = self.reactor.network
        clock = network.clock
        if self.timeout is not None:
            self._timeout_call = clock.callLater(self.timeout, self.fail, Failure(TimeoutError()))
        self.latency = network.link_latency()
        self._attempt_call = clock.callLater(self.latency, self._attempt)
        self.factory.startedConnecting(self)

    def stopConnecting(self) -> None:
        """
        Abandon the attempt: the factory's C{clientConnectionFailed} gets a
        C{UserError}.

        @raise NotConnectingError: no attempt is under way.
        """
        if self.state != "connecting":
            raise NotConnectingError("we're not trying to connect")
        self.fail(Failure(UserError()))

    def disconnect(self) -> None:
        """
        Stop connecting, or close the connection.
        """
        if self.state == "connecting":
            self.stopConnecting()
        elif self.state == "connected" and self.transport is not None:
            self.transport.loseConnection()

    def getDestination(self) -> Address:
        return _address(self.host, self.port)

    def _cancel_calls(self) -> None:
        for call in (self._attempt_call, self._timeout_call):
            if call is not None and call.active():
                call.cancel()
        self._attempt_call = self._timeout_call = None
        self.reactor.network.forget_attempt(self)

    def fail(self, reason: Failure) -> None:
        """
        The attempt failed because of C{reason} (refused, timed out, no
        such name): the factory's C{clientConnectionFailed} is told.
        Nothing happens unless connecting.
        """
        if self.state != "connecting":
            return
        self._cancel_calls()
        self.state = "disconnected"
        self.factory.clientConnectionFailed(self, reason)
        if self.state == "disconnected":
            self.factory.doStop()
            self._factory_started = False

    def _attempt(self) -> None:
        """
        The attempt reaches the destination after the network latency.
        """
        self._attempt_call = None
        if self.state != "connecting":
            return
        self.reactor.network.arrive(self)

    def answer_again(self) -> None:
        """
        An attempt left unanswered (by a dropping partition) reaches its
        destination after the latency, unless it is over.
        """
        if self.state == "connecting" and self._attempt_call is None:
            self._attempt_call = self.reactor.network.clock.callLater(self.latency, self._attempt)

    def connected(self, transport: MemoryTransport, server_address: Address) -> IProtocol | None:
        """
        The attempt reached a listener: C{transport} is this side of the
        new connection; the factory builds the protocol (None refuses).
        """
        self._cancel_calls()
        self.state = "connected"
        self.transport = transport
        return self.factory.buildProtocol(server_address)  # type: ignore[no-any-return]

    def connection_lost(self, reason: Failure) -> None:
        """
        The connection made by this connector closed: the factory's
        C{clientConnectionLost} is told.
        """
        self.state = "disconnected"
        self.transport = None
        self.factory.clientConnectionLost(self, reason)
        if self.state == "disconnected":
            self.factory.doStop()
            self._factory_started = False

    def __repr__(self) -> str:
        return f"<MemoryConnector {self.bind_ip} -> {self.host}:{self.port} {self.state}>"


# -- connections ----------------------------------------------------------------


class _Link:
    """
    One simulated TCP connection: two L{MemoryTransport}s and whether it is
    closed.
    """

    __slots__ = ("network", "serial", "latency", "client", "server", "closed")

    def __init__(self, network: MemoryNetwork, serial: int, latency: float) -> None:
        self.network = network
        self.serial = serial
        self.latency = latency
        self.client: MemoryTransport
        self.server: MemoryTransport
        self.closed = False

    def finish(self, initiator: MemoryTransport) -> None:
        """
        Close cleanly, now: both sides see C{ConnectionDone}, the side that
        closed first.
        """
        if self.closed:
            return
        self._shut()
        done = Failure(ConnectionDone())
        initiator.report_lost(done)
        initiator.peer.report_lost(done)

    def abort(self, initiator: MemoryTransport | None, reason: Failure | None = None) -> None:
        """
        Close at once, dropping what is in flight; both sides see
        C{connectionLost} at the next clock turn: the initiator
        C{reason} (C{ConnectionAborted} by default), the other side
        C{ConnectionLost}. Without an initiator (a partition), both see
        C{ConnectionLost}.
        """
        if self.closed:
            return
        self._shut()
        if initiator is None:
            lost = Failure(ConnectionLost("network partition"))
            first, first_reason = self.client, lost
            second, second_reason = self.server, lost
        else:
            first, first_reason = initiator, reason or Failure(ConnectionAborted())
            second, second_reason = initiator.peer, Failure(ConnectionLost("connection reset by peer"))
        self.network.clock.callLater(0, self._report, first, first_reason, second, second_reason)

    @staticmethod
    def _report(first: MemoryTransport, first_reason: Failure, second: MemoryTransport, second_reason: Failure) -> None:
        first.report_lost(first_reason)
        second.report_lost(second_reason)

    def _shut(self) -> None:
        self.closed = True
        self.network.link_closed(self)
        for side in (self.client, self.server):
            side.drop_in_flight()


@implementer(ITCPTransport, IConsumer, IPushProducer)
class MemoryTransport:
    """
    One end of a simulated TCP connection.

    What is written reaches the other end's protocol one link latency later,
    in order: the first write of a burst schedules a single delivery that
    carries everything written until it runs. There is no bandwidth limit
    and nothing is ever lost, except when the connection is aborted.

    Like a TCP transport, a registered streaming producer is paused when
    more than L{buffer_size} bytes written are not yet read by the other
    side's protocol (in flight, or held there while it is paused), and
    resumed once all of them are read.

    @ivar protocol: the protocol this transport feeds.
    @ivar peer: the transport at the other end.
    @ivar bytes_sent: bytes written so far.
    @ivar bytes_received: bytes delivered to the protocol so far.
    @ivar connector: the connector, on the connecting side.
    """

    disconnecting = False
    disconnected = False
    connected = False
    #: The high-water mark of unread bytes (Twisted's C{bufferSize}).
    buffer_size = 65536

    def __init__(
        self, link: _Link, host: Address, peer_address: Address, connector: MemoryConnector | None = None
    ) -> None:
        self._link = link
        self._clock = link.network.clock
        self._host = host
        self._peer_address = peer_address
        self.connector = connector
        self.protocol: IProtocol = Protocol()
        self.peer: MemoryTransport
        self.bytes_sent = 0
        self.bytes_received = 0
        self.producer: Any | None = None
        self.streaming = False
        self._outgoing: list[bytes] = []
        self._delivery: IDelayedCall | None = None
        self._paused = False
        self._held: list[bytes] = []
        self._eof_pending = False
        self._write_closed = False
        self._no_delay = False
        self._keep_alive = False
        self._unread = 0
        self._producer_paused = False

    def start(self, protocol: IProtocol) -> None:
        """
        Connect C{protocol} to this end of the new connection.
        """
        self.protocol = protocol
        self.connected = True
        protocol.makeConnection(self)

    # ITransport

    def write(self, data: bytes) -> None:
        """
        Send C{data}; dropped once the connection is closed or its write
        side shut down.
        """
        if isinstance(data, str):
            raise TypeError("data must be bytes, not str")
        if self._link.closed or self._write_closed or not data:
            return
        self._outgoing.append(bytes(data))
        size = len(data)
        self.bytes_sent += size
        self._link.network.bytes_sent += size
        self._unread += size
        if (
            self._unread > self.buffer_size
            and self.streaming
            and self.producer is not None
            and not self._producer_paused
        ):
            self._producer_paused = True
            self._guarded(self.producer.pauseProducing)
        if self._delivery is None:
            self._delivery = self._clock.callLater(self._link.latency, self._deliver)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """
        Close after what was written is delivered; both sides then see
        C{ConnectionDone}.
        """
        if self._link.closed or self.disconnecting:
            return
        self.disconnecting = True
        if self._delivery is None:
            self._delivery = self._clock.callLater(self._link.latency, self._deliver)

    def abortConnection(self) -> None:
        """
        Close at once, dropping what is in flight both ways; this side sees
        C{ConnectionAborted}, the other C{ConnectionLost}, at the next
        clock turn.
        """
        self._link.abort(self)

    def loseWriteConnection(self) -> None:
        """
        Shut the write side after what was written is delivered: the other
        side then reads end of stream (C{readConnectionLost} if its protocol
        is half-closeable, else the connection closes).
        """
        if self._link.closed or self._write_closed:
            return
        self._eof_pending = True
        if self._delivery is None:
            self._delivery = self._clock.callLater(self._link.latency, self._deliver)

    def getPeer(self) -> Address:
        return self._peer_address

    def getHost(self) -> Address:
        return self._host

    def getTcpNoDelay(self) -> bool:
        return self._no_delay

    def setTcpNoDelay(self, enabled: bool) -> None:
        self._no_delay = bool(enabled)

    def getTcpKeepAlive(self) -> bool:
        return self._keep_alive

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self._keep_alive = bool(enabled)

    def logPrefix(self) -> str:
        return f"MemoryTransport,{self._host.host}"

    # IConsumer: a streaming producer is paused past buffer_size unread bytes.

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """
        Accept C{producer}. A streaming producer is paused past
        L{buffer_size} unread bytes; a pull producer is asked for data now
        and after each delivery.

        @raise RuntimeError: a producer is already registered.
        """
        if self.producer is not None:
            raise RuntimeError(
                f"Cannot register producer {producer!r}, because producer {self.producer!r} was never unregistered."
            )
        if self._link.closed:
            producer.stopProducing()
            return
        self.producer = producer
        self.streaming = bool(streaming)
        if not streaming:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self.producer = None
        self.streaming = False
        self._producer_paused = False

    def read_by_peer(self, size: int) -> None:
        """
        The other side's protocol read C{size} bytes written here; once all
        are read, a paused producer resumes.
        """
        self._unread -= size
        if self._unread <= 0 and self._producer_paused and self.producer is not None and not self._link.closed:
            self._producer_paused = False
            self._guarded(self.producer.resumeProducing)

    # IPushProducer: pausing stops delivery to this side's protocol.

    def pauseProducing(self) -> None:
        """
        Stop handing received data to the protocol; it waits (and is
        dropped if the connection closes meanwhile).
        """
        self._paused = True

    def resumeProducing(self) -> None:
        """
        Hand received data to the protocol again (what waited arrives at
        the next clock turn).
        """
        if not self._paused:
            return
        self._paused = False
        if self._held:
            self._clock.callLater(0, self._release_held)

    def stopProducing(self) -> None:
        self.loseConnection()

    # delivery

    def _deliver(self) -> None:
        """
        Hand everything written since the last delivery to the other side,
        then close if asked to.
        """
        self._delivery = None
        link = self._link
        if link.closed:
            return
        if self._outgoing:
            outgoing = self._outgoing
            data = outgoing[0] if len(outgoing) == 1 else b"".join(outgoing)
            self._outgoing = []
            self.peer.receive(data)
            if link.closed:
                return
            if self.producer is not None and not self.streaming:
                self._guarded(self.producer.resumeProducing)
            if link.closed or self._delivery is not None:
                return
        if self._eof_pending:
            self._eof_pending = False
            self._write_closed = True
            if IHalfCloseableProtocol.providedBy(self.protocol):
                self._guarded(self.protocol.writeConnectionLost)
            self.peer.receive_eof()
            if link.closed:
                return
        if self.disconnecting:
            link.finish(self)

    # called by the other end and by the link

    def receive(self, data: bytes) -> None:
        """
        Bytes from the other end: to the protocol now, or held while this
        side is paused.
        """
        if self._paused or self._held:
            self._held.append(data)
            return
        self.bytes_received += len(data)
        self._guarded(self.protocol.dataReceived, data)
        self.peer.read_by_peer(len(data))

    def _release_held(self) -> None:
        while self._held and not self._paused and not self._link.closed:
            data = self._held.pop(0)
            self.bytes_received += len(data)
            self._guarded(self.protocol.dataReceived, data)
            self.peer.read_by_peer(len(data))

    def receive_eof(self) -> None:
        """
        The other side shut its write side.
        """
        if not IHalfCloseableProtocol.providedBy(self.protocol):
            self._link.finish(self.peer)
        elif self._write_closed:
            self._guarded(self.protocol.readConnectionLost)
            self._link.finish(self.peer)
        else:
            self._guarded(self.protocol.readConnectionLost)

    def _guarded(self, f: Callable[..., Any], *args: Any) -> None:
        """
        Call into the protocol; an exception is logged and aborts the
        connection, as a real reactor does.
        """
        try:
            f(*args)
        except Exception:
            failure = Failure()
            _log.failure("Unhandled error in protocol {protocol!r}", failure, protocol=self.protocol)
            self._link.abort(self, failure)

    def drop_in_flight(self) -> None:
        """
        The link is closed: drop what this side has written and not yet
        delivered.
        """
        self.disconnecting = True
        self._outgoing.clear()
        if self._delivery is not None:
            if self._delivery.active():
                self._delivery.cancel()
            self._delivery = None

    def report_lost(self, reason: Failure) -> None:
        """
        The connection is gone: tell the producer, the protocol and the
        connector, once.
        """
        if self.disconnected:
            return
        self.connected = False
        self.disconnecting = True
        self.disconnected = True
        self._held.clear()
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                producer.stopProducing()
            except Exception:
                _log.failure("Unhandled error stopping producer {producer!r}", producer=producer)
        # As Twisted's TCP transport does: the protocol is let go.
        protocol, self.protocol = self.protocol, Protocol()
        try:
            protocol.connectionLost(reason)
        except Exception:
            _log.failure("Unhandled error in connectionLost of {protocol!r}", protocol=protocol)
        if self.connector is not None:
            self.connector.connection_lost(reason)

    def __repr__(self) -> str:
        return f"<MemoryTransport {self._host.host}:{self._host.port} -> {self._peer_address.host}:{self._peer_address.port}>"


# -- the fake reactor of one host -------------------------------------------------


class _InlineThreadPool:
    """
    A thread pool that runs the work inline, on the simulation's thread:
    its result is delivered through C{callFromThread}, so at the next clock
    turn.
    """

    def __init__(self, reactor: NodeReactor) -> None:
        self._reactor = reactor

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, Any], object], func: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        try:
            result = func(*args, **kw)
        except Exception:
            onResult(False, Failure())
        else:
            onResult(True, result)

    def callInThread(self, func: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self._reactor.callFromThread(func, *args, **kw)


_ANY_ADDRESS = ("", "0.0.0.0", "::")


@implementer(IReactorTime, IReactorTCP, IReactorThreads, IReactorFromThreads)
class NodeReactor:
    """
    The reactor of one host of a L{MemoryNetwork}: time from the network's
    clock, TCP on the memory network from this host's address, name
    resolution from the network's names, and "threads" that run inline.

    @ivar network: the network.
    @ivar ip: this host's address.
    @ivar running: always True (the simulation is the running reactor).
    """

    running = True

    def __init__(self, network: MemoryNetwork, ip: str) -> None:
        self.network = network
        self.ip = ip
        self._clock = network.clock
        self._thread_pool = _InlineThreadPool(self)

    # IReactorTime

    def seconds(self) -> float:
        return self._clock.seconds()

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> IDelayedCall:
        return self._clock.callLater(delay, callable, *args, **kw)

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return self._clock.getDelayedCalls()

    # IReactorTCP

    def listenTCP(self, port: int, factory: IProtocolFactory, backlog: int = 50, interface: str = "") -> MemoryPort:
        """
        Listen on C{interface}:C{port} (any address means this host's);
        port 0 takes a free port from 49152 up.

        @raise CannotListenError: the address is not this host's, or the
            port is taken.
        @raise TypeError: C{port} is not an int.
        @raise OverflowError: C{port} is not within 0-65535 (as a socket's
            C{bind} raises).
        """
        _check_port(port)
        ip = self._local_ip(interface, port, for_listen=True)
        if port == 0:
            port = self.network.ephemeral_port(ip)
        listening = MemoryPort(self, ip, port, factory, backlog)
        listening.startListening()
        return listening

    def connectTCP(
        self,
        host: str,
        port: int,
        factory: Any,
        timeout: float | None = 30,
        bindAddress: tuple[str, int] | None = None,
    ) -> MemoryConnector:
        """
        Connect to C{host}:C{port} from this host (or from C{bindAddress},
        which must be this host's address). C{host} may be a name added
        with L{MemoryNetwork.add_name}.

        @raise TypeError: C{host} is not text, C{port} not an int, or
            C{timeout} not a number.
        @raise OverflowError: C{port} is not within 0-65535.
        @raise ValueError: C{timeout} is negative or not finite.
        """
        if not isinstance(host, str):
            raise TypeError(f"host must be an address or a name as text, not {type(host).__name__} {host!r:.80}")
        _check_port(port)
        if timeout is not None:
            _nanoseconds(timeout, "timeout")
            if timeout < 0:
                raise ValueError(f"timeout must be >= 0, got {timeout!r}")
        bind_ip = self.ip
        if bindAddress is not None:
            bind_ip = bindAddress[0]
        connector = MemoryConnector(self, host, port, factory, timeout, bind_ip)
        connector.connect()
        return connector

    # names

    def resolve(self, name: str, timeout: Any = (1, 3, 11, 45)) -> Deferred[str]:
        """
        The address of C{name}: an IP address is its own; other names
        come from L{MemoryNetwork.add_name}.

        @return: a fired Deferred; failed with C{DNSLookupError} for an
            unknown name.
        """
        ip = self.network.lookup(name)
        if ip is None:
            return fail(DNSLookupError(name))
        return succeed(ip)

    # threads and lifecycle

    def callFromThread(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """
        Run C{callable} at the next clock turn.
        """
        self._clock.callLater(0, callable, *args, **kw)

    def callInThread(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """
        Run C{callable} at the next clock turn (there are no threads).
        """
        self._clock.callLater(0, callable, *args, **kw)

    # Not a ThreadPool, but it has the methods deferToThread and
    # callInThread use, which is all a simulated node needs.
    def getThreadPool(self) -> _InlineThreadPool:  # type: ignore[override]
        """
        A thread pool that runs work inline.
        """
        return self._thread_pool

    def suggestThreadPoolSize(self, size: int) -> None:
        """
        Ignored: there are no threads.
        """

    def callWhenRunning(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """
        Run C{callable} at the next clock turn (the reactor is running).
        """
        self._clock.callLater(0, callable, *args, **kw)

    def addSystemEventTrigger(
        self, phase: str, eventType: str, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> tuple[str, str, int]:
        """
        Accepted and ignored: the simulation has no startup or shutdown.
        """
        return (phase, eventType, id(callable))

    def removeSystemEventTrigger(self, triggerID: Any) -> None:
        """
        Accepted and ignored.
        """

    # helpers

    def _local_ip(self, interface: str, port: int, for_listen: bool) -> str:
        if interface in _ANY_ADDRESS:
            return self.ip
        try:
            ip = normalise_ip(interface)
        except AddressError:
            raise CannotListenError(
                interface, port, OSError(errno.EADDRNOTAVAIL, f"{interface!r} is not an address")
            ) from None
        if ip != self.ip:
            raise CannotListenError(
                interface, port, OSError(errno.EADDRNOTAVAIL, f"{ip} is not this host's address ({self.ip})")
            )
        return ip

    def __repr__(self) -> str:
        return f"<NodeReactor {self.ip}>"


# -- the network -----------------------------------------------------------------


@attrs.frozen
class _Cut:
    """
    A partition: no traffic between the two groups.
    """

    a: frozenset[str]
    b: frozenset[str]
    drop: bool

    def separates(self, x: str, y: str) -> bool:
        return (x in self.a and y in self.b) or (x in self.b and y in self.a)


class MemoryNetwork:
    """
    A simulated network of hosts, with its clock, random generator, listening
    ports, DNS names and partitions; it builds and tracks pools.

    Everything is determined by C{seed} and the calls made: two networks
    with the same seed, driven the same way, produce the same events at the
    same simulated times.

    @ivar clock: the L{SimulatedClock} shared by every host.
    @ivar random: the network's C{random.Random(seed)} (drawn from for
        latency jitter; tests may use it too).
    @ivar seed: the seed.
    @ivar latency: the one-way latency of each connection, in seconds.
    @ivar jitter: each connection's latency is drawn from
        C{latency * [1 - jitter, 1 + jitter]}.
    @ivar pools: the pools added, by host address.
    @ivar channel: L{TLS_CHANNEL} or L{SIMULATION_CHANNEL}.
    @ivar log_level: the lowest level of pool events its pools hand to
        C{twisted.logger} (L{p2pool.events.EventLog.log_level}).
    @ivar bytes_sent: bytes written on all connections so far.
    @ivar connections_made: connections established so far.
    """

    def __init__(
        self,
        seed: int = 0,
        latency: float = 0.001,
        *,
        jitter: float = 0.0,
        data_dir: str | None = None,
        channel: str = TLS_CHANNEL,
        log_level: LogLevel | None = LogLevel.debug,
    ) -> None:
        """
        @param seed: determines identities, pools' random choices and
            latency jitter.
        @param latency: one-way latency of every connection, in seconds.
        @param jitter: spread of each connection's latency, as a fraction
            of C{latency} (0 to 1).
        @param data_dir: where pools' data directories go; by default a
            temporary directory made on the first L{add_pool} and removed
            by L{stop}.
        @param channel: what carries the pools' connections: L{TLS_CHANNEL}
            (real TLS, the default), or L{SIMULATION_CHANNEL}, which keeps
            the identities, the TLS handshake's flights and timing and
            everything above TLS (Hello, proof of work, pins, every pool
            decision, framing, codec) but does no cryptography: much
            cheaper, for large simulations only.
        @param log_level: the lowest level of pool events the pools hand
            to C{twisted.logger}, as declared by whoever set the log up
            (L{p2pool.events.EventLog.log_level}; C{None}: none). By
            default every event is logged, as by a pool whose log is not
            declared; a simulation that keeps only warnings declares
            C{LogLevel.warn}, and its pools then build no event that
            nobody wants. Callbacks (C{log}, L{observe}) get every event
            whatever the level.
        @raise TypeError: an argument is of the wrong type (the seed not an
            C{int}: C{None} would make a network no run can replay).
        @raise ValueError: an argument is out of range.
        """
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, not {type(seed).__name__} {seed!r:.80}")
        if channel not in _CHANNELS:
            raise ValueError(f"channel must be one of {_CHANNELS}, got {channel!r}")
        _nanoseconds(latency, "latency")
        if latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency!r}")
        if not _is_number(jitter):
            raise TypeError(
                f"jitter must be a number (a fraction of latency), not {type(jitter).__name__} {jitter!r:.80}"
            )
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter!r}")
        if log_level is not None and log_level not in tuple(LogLevel.iterconstants()):
            raise TypeError(f"log_level must be a twisted.logger.LogLevel or None, not {log_level!r:.80}")
        if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(f"data_dir must be a path, not {type(data_dir).__name__} {data_dir!r:.80}")
        self.seed = seed
        #: The seed as text, for deriving identities: in decimal, or in
        #: hexadecimal beyond 2,048 bits (Python converts at most a few
        #: thousand digits to decimal; 2,048 bits are below any limit it
        #: can be set to, so the same seed gives the same text in every
        #: process).
        self._seed_text = str(seed) if seed.bit_length() <= 2048 else hex(seed)
        self.latency = float(latency)
        self.jitter = float(jitter)
        self.clock = SimulatedClock()
        self.random = random.Random(seed)
        self.pools: dict[str, Pool] = {}
        self.bytes_sent = 0
        self.connections_made = 0
        self._reactors: dict[str, NodeReactor] = {}
        self._listeners: dict[tuple[str, int], MemoryPort] = {}
        self._next_port: dict[str, int] = {}
        self._names: dict[str, str] = {}
        self._identities: dict[str, Identity] = {}
        self._cuts: list[_Cut] = []
        self._links: dict[int, _Link] = {}
        self._link_serial = 0
        self._dropped: dict[int, MemoryConnector] = {}
        self._observers: list[EventObserver] = []
        self._data_dir = os.fspath(data_dir) if data_dir is not None else None
        self._own_data_dir: str | None = None
        self._stopped = False
        #: Pools removed (L{remove_pool}) that have not finished stopping.
        self._stopping: dict[str, Pool] = {}
        #: The address of the pool writing each peers file (absolute
        #: path), and the reverse, for pools added or stopping.
        self._peers_files: dict[str, str] = {}
        self._peers_file_of: dict[str, str] = {}
        self.channel = channel
        self.log_level = log_level
        self._notary = SimulationNotary() if channel == SIMULATION_CHANNEL else None

    # hosts

    def reactor(self, ip: str) -> NodeReactor:
        """
        The reactor of host C{ip} (one per address).

        @raise AddressError: C{ip} is not an IP address.
        """
        ip = _host(ip)
        node = self._reactors.get(ip)
        if node is None:
            node = self._reactors[ip] = NodeReactor(self, ip)
        return node

    def add_name(self, name: str, ip: str) -> None:
        """
        Make C{name} resolve to C{ip} (for DNS-named points).
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be text, not {type(name).__name__} {name!r:.80}")
        self._names[self._name_key(name)] = _host(ip)

    def identity(self, ip: str) -> Identity:
        """
        The identity L{add_pool} gives the pool at C{ip} by default: an
        Ed25519 key derived from the seed and the address, with an all-zero
        proof-of-work stamp (valid for C{expected_proof_of_work = 0}).
        """
        ip = _host(ip)
        identity = self._identities.get(ip)
        if identity is None:
            key = Ed25519PrivateKey.from_private_bytes(self._derive("identity", ip))
            public = key.public_key().public_bytes_raw()
            identity = Identity(
                private_key=key,
                public_key=public,
                peer_id=PeerId.from_public_key(public),
                proof_of_work_stamp=bytes(24),
            )
            self._identities[ip] = identity
        return identity

    def default_config(self, ip: str, **overrides: Any) -> PoolConfig:
        """
        The configuration L{add_pool} uses by default: C{PoolConfig}
        defaults, listening on C{ip}:9732, no proof of work, a data
        directory of its own; with C{overrides}.

        @raise RuntimeError: the network was stopped (L{stop}).
        @raise TypeError: an override names no C{PoolConfig} field.
        """
        ip = _host(ip)
        self._check_not_stopped()
        _check_config_names(overrides)
        base = PoolConfig(listen=Point(ip, DEFAULT_PORT), expected_proof_of_work=0, data_dir=self._pool_dir(ip))
        return attrs.evolve(base, **overrides) if overrides else base

    def _check_not_stopped(self) -> None:
        """
        @raise RuntimeError: the network was stopped, and with it went the
            directory of its pools' files.
        """
        if self._stopped:
            raise RuntimeError(
                "the network was stopped (its pools' files are gone): make a new MemoryNetwork,"
                " with data_dir=... to keep the pools' files across networks"
            )

    def add_pool(
        self,
        ip: str,
        *,
        app: IPoolApplication | None = None,
        config: PoolConfig | None = None,
        identity: Identity | None = None,
        log: Callable[[PoolEvent], object] | None = None,
        start: bool = True,
        pool_options: Mapping[str, Any] | None = None,
        **config_overrides: Any,
    ) -> Pool:
        """
        Make a pool on host C{ip} and, unless C{start} is false, start it.

        A start that needs a clock turn (reading an existing peers file in
        the reactor's thread pool, whose result arrives through
        C{callFromThread}) is completed by running the calls due now
        (C{advance(0)}), so the pool returned has started; when called from
        a delayed call, or when the start needs simulated time, the pool
        starts as the clock advances (see C{pool.when_started()}).

        @param app: the application (default: one that ignores everything).
        @param config: the configuration, used as given (mind
            C{expected_proof_of_work}: the default identities have none);
            default: L{default_config}.
        @param identity: default: L{identity}C{(ip)}.
        @param log: a callback for the pool's events.
        @param pool_options: more keyword arguments for L{Pool} (e.g.
            C{application_versions}).
        @param config_overrides: configuration fields to change (e.g.
            C{trusted_points=...}, C{maintenance_idle_time=None}).
        @return: the pool, which is also in L{pools}.
        @raise TypeError: C{ip} is not text, C{config} not a
            L{PoolConfig}, or C{log} not callable.
        @raise ValueError: there is already a pool at C{ip}, or another
            pool writes the same peers file (a C{config} given without a
            C{data_dir} of its own).
        @raise RuntimeError: the network was stopped (its pools' data
            directory is gone).
        @raise Exception: the pool failed to start (e.g. its port is
            taken); it is stopped and not kept.
        """
        ip = _host(ip)
        self._check_not_stopped()
        if ip in self.pools:
            raise ValueError(f"there is already a pool at {ip}")
        if ip in self._stopping:
            # Its last save of the peers file would overwrite the new
            # pool's, which would not have read it.
            raise ValueError(
                f"the pool removed from {ip} is still stopping: advance the clock until the Deferred"
                f" remove_pool returned has fired (e.g. network.run_until(lambda: d.called))"
            )
        if config is None:
            config = self.default_config(ip, **config_overrides)
        elif not isinstance(config, PoolConfig):
            raise TypeError(
                f"config must be a PoolConfig (network.default_config(ip, ...) makes one),"
                f" not {type(config).__name__} {config!r:.80}"
            )
        elif config_overrides:
            _check_config_names(config_overrides)
            config = attrs.evolve(config, **config_overrides)
        if log is not None and not builtin_callable(log):
            raise TypeError(f"log must be callable (it gets each PoolEvent), not {log!r:.80}")
        peers_path = os.path.abspath(config.peers_path)
        writer = self._peers_files.get(peers_path)
        if writer is not None:
            raise ValueError(
                f"the pool at {writer} already writes its peers file to {config.peers_path}:"
                f" give the pool at {ip} a data_dir of its own (default_config(ip) has one)"
            )
        options = dict(pool_options or {})
        if self._notary is not None:
            options.setdefault("channel", self._notary)
        pool = Pool(
            config,
            app,
            # A NodeReactor provides all a pool uses of its reactor; of
            # IReactorCore it has resolve and system triggers, not run/stop.
            reactor=cast(IPoolReactor, self.reactor(ip)),
            identity=identity if identity is not None else self.identity(ip),
            log=log,
            rng=random.Random(int.from_bytes(self._derive("rng", ip), "big")),
            **options,
        )
        pool.events.log_level = self.log_level
        for observer in self._observers:
            pool.events.callbacks.append(self._observer_callback(observer, ip))
        self.pools[ip] = pool
        self._peers_files[peers_path] = ip
        self._peers_file_of[ip] = peers_path
        if start:
            pool.startService()
            outcome: list[Any] = []
            pool.when_started().addBoth(outcome.append)
            if not outcome and not self.clock.advancing:
                self.clock.advance(0)
            if outcome and isinstance(outcome[0], Failure):
                # Nothing of a pool that could not start is kept: the
                # address is free for another try.
                del self.pools[ip]
                del self._peers_files[peers_path]
                del self._peers_file_of[ip]
                pool.stopService()
                outcome[0].raiseException()
        return pool

    def remove_pool(self, ip: str) -> Deferred[None]:
        """
        Stop the pool at C{ip} and forget it, so that another can be added
        there: C{add_pool(ip)} again restarts the node with the same
        identity, once this one has stopped. Its port is released at once;
        its connections close, and it saves its peers file, as the clock
        advances.

        @return: the pool's C{stopService} Deferred.
        @raise KeyError: there is no pool at C{ip}.
        """
        ip = _host(ip)
        if ip not in self.pools:
            raise KeyError(f"no pool at {ip}")
        pool = self.pools.pop(ip)
        if not pool.running:
            self._removed(None, ip, pool)
            return succeed(None)
        stopping = pool.stopService()
        if stopping.called:
            self._removed(None, ip, pool)
        else:
            self._stopping[ip] = pool
            stopping.addBoth(self._removed, ip, pool)
        return stopping

    def _removed(self, result: object, ip: str, pool: Pool) -> object:
        """
        C{pool}, removed from C{ip}, has stopped (its peers file is free):
        C{result} passes on.
        """
        if self._stopping.get(ip) is pool:
            del self._stopping[ip]
        if ip not in self.pools:
            # (Once its address has no pool again: the pool added there
            # now owns the entries.)
            peers_path = self._peers_file_of.pop(ip, None)
            if peers_path is not None:
                del self._peers_files[peers_path]
        return result

    def observe(self, observer: EventObserver) -> None:
        """
        Call C{observer(time, ip, event)} for every event of every pool,
        those already added and those added later.

        @raise TypeError: C{observer} is not callable.
        """
        if not builtin_callable(observer):
            raise TypeError(f"observer must be callable (time, ip, event), not {observer!r:.80}")
        self._observers.append(observer)
        for ip, pool in self.pools.items():
            pool.events.callbacks.append(self._observer_callback(observer, ip))

    # time

    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} of simulated time pass (see L{SimulatedClock.advance}).
        """
        self.clock.advance(seconds)

    def run_until(self, predicate: Callable[[], object], timeout: float = 60.0, step: float = 0.1) -> bool:
        """
        Advance C{step} seconds at a time until C{predicate()} is true or
        C{timeout} simulated seconds have passed; whether it became true.
        """
        return self.clock.run_until(predicate, timeout, step)

    def seconds(self) -> float:
        """
        The current simulated time.
        """
        return self.clock.seconds()

    # partitions

    def partition(self, group_a: Iterable[str], group_b: Iterable[str], *, drop: bool = False) -> None:
        """
        Cut every link between the two groups of addresses: connections
        between them are aborted (both sides see C{ConnectionLost} at the
        next clock turn) and new connections between them fail.

        @param drop: new connection attempts get no answer (as when packets
            are dropped) and fail only at their own timeout, instead of
            being refused at once.
        @raise TypeError: a group is one address (text), not a group.
        @raise ValueError: an address is in both groups.
        """
        a = self._group(group_a, "group_a")
        b = self._group(group_b, "group_b")
        if a & b:
            raise ValueError(f"addresses in both groups: {sorted(a & b)}")
        cut = _Cut(a, b, drop)
        self._cuts.append(cut)
        for link in list(self._links.values()):
            if cut.separates(link.client.getHost().host, link.server.getHost().host):
                link.abort(None)

    @staticmethod
    def _group(ips: Iterable[str], name: str) -> frozenset[str]:
        """
        The addresses of a group given to L{partition}.

        @raise TypeError: C{ips} is one address instead of a group.
        """
        if isinstance(ips, str):
            raise TypeError(f"{name} must be a group of addresses, not the text {ips!r} (write [{ips!r}])")
        return frozenset(_host(ip, f"an address of {name}") for ip in ips)

    def heal(self) -> None:
        """
        Remove every cut. Connection attempts that were getting no answer
        are answered after the latency (if their timeout has not run out).
        """
        self._cuts.clear()
        dropped = list(self._dropped.values())
        self._dropped.clear()
        for connector in dropped:
            connector.answer_again()

    @property
    def link_count(self) -> int:
        """
        How many simulated connections are open.
        """
        return len(self._links)

    def is_cut(self, ip_a: str, ip_b: str) -> bool:
        """
        Whether a partition separates the two addresses.
        """
        return self._cut_between(_host(ip_a, "ip_a"), _host(ip_b, "ip_b")) is not None

    # stopping

    def stop(self, timeout: float = 60.0) -> Deferred[None]:
        """
        Stop every running pool, advancing the clock until they, and the
        pools being removed (L{remove_pool}), have closed their connections
        and saved their files (at most C{timeout} simulated seconds), and
        remove the temporary data directory.

        Stopping again does nothing more; pools can no longer be added.

        @return: a Deferred, fired unless some pool took longer than
            C{timeout} to stop; it fails with the first error of a pool's
            C{stopService}.
        @raise TypeError: C{timeout} is not a number.
        @raise ValueError: C{timeout} is negative or not finite.
        """
        _nanoseconds(timeout, "timeout")
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout!r}")
        self._stopped = True
        stopping = [pool.stopService() for pool in self.pools.values() if pool.running]
        done = DeferredList(stopping, consumeErrors=True)
        finished: list[Any] = []
        done.addCallback(finished.append)
        self.run_until(lambda: bool(finished) and not self._stopping, timeout, step=max(self.latency, 0.001))
        if self._own_data_dir is not None:
            shutil.rmtree(self._own_data_dir, ignore_errors=True)
            self._own_data_dir = None
        if not finished or self._stopping:
            return Deferred()
        for ok, result in finished[0]:
            if not ok:
                return fail(result)
        return succeed(None)

    # internals: addresses, names, ports

    def _derive(self, purpose: str, ip: str) -> bytes:
        """
        32 bytes determined by the seed, C{purpose} and C{ip}.
        """
        return hashlib.sha256(f"p2pool.testing/{purpose}/{self._seed_text}/{ip}".encode()).digest()

    @staticmethod
    def _name_key(name: str) -> str:
        return name.lower().rstrip(".")

    # wiring of the simulated pieces (called by ports, connectors, links
    # and node reactors)

    def lookup(self, name: str) -> str | None:
        """
        The address of C{name}: an IP address is its own; other names
        come from L{add_name}; None when unknown.
        """
        try:
            return normalise_ip(name)
        except AddressError:
            return self._names.get(self._name_key(name))

    def _pool_dir(self, ip: str) -> str:
        base = self._data_dir
        if base is None:
            if self._own_data_dir is None:
                self._own_data_dir = tempfile.mkdtemp(prefix="p2pool-memory-network-")
            base = self._own_data_dir
        return os.path.join(base, ip.replace(":", "_"))

    def ephemeral_port(self, ip: str) -> int:
        """
        A free port at C{ip}, from the dynamic range.

        @raise CannotListenError: none is left.
        """
        low, high = EPHEMERAL_PORTS
        port = self._next_port.get(ip, low)
        for _ in range(high - low + 1):
            candidate = port
            port = port + 1 if port < high else low
            if (ip, candidate) not in self._listeners:
                self._next_port[ip] = port
                return candidate
        raise CannotListenError(ip, 0, OSError(errno.EADDRINUSE, "no free port left"))

    def bind(self, port: MemoryPort) -> None:
        """
        C{port} listens at its address.

        @raise CannotListenError: the address is taken.
        """
        key = (port.ip, port.port)
        if key in self._listeners:
            raise CannotListenError(port.ip, port.port, OSError(errno.EADDRINUSE, "address already in use"))
        self._listeners[key] = port

    def unbind(self, port: MemoryPort) -> None:
        """
        C{port} no longer listens.
        """
        if self._listeners.get((port.ip, port.port)) is port:
            del self._listeners[(port.ip, port.port)]

    def link_latency(self) -> float:
        """
        The latency of a new link: L{latency}, jittered by L{jitter}.
        """
        if self.jitter:
            return self.latency * (1.0 + self.jitter * (2.0 * self.random.random() - 1.0))
        return self.latency

    def _cut_between(self, x: str, y: str) -> _Cut | None:
        for cut in self._cuts:
            if cut.separates(x, y):
                return cut
        return None

    # internals: connecting

    def forget_attempt(self, connector: MemoryConnector) -> None:
        """
        C{connector}'s attempt is over: it no longer waits for a partition
        to heal.
        """
        self._dropped.pop(id(connector), None)

    def link_closed(self, link: _Link) -> None:
        """
        C{link} has closed.
        """
        self._links.pop(link.serial, None)

    def arrive(self, connector: MemoryConnector) -> None:
        """
        A connection attempt reaches its destination: connect, refuse, or
        (across a dropping partition) let it hang.
        """
        source = connector.reactor
        dest_ip = self.lookup(connector.host)
        if dest_ip is None:
            connector.fail(Failure(DNSLookupError(connector.host)))
            return
        bind = connector.bind_ip
        client_ip = source.ip if bind in _ANY_ADDRESS else self.lookup(bind)
        if client_ip != source.ip:
            connector.fail(
                Failure(ConnectBindError(errno.EADDRNOTAVAIL, f"{bind} is not this host's address ({source.ip})"))
            )
            return
        cut = self._cut_between(client_ip, dest_ip)
        if cut is not None and cut.drop:
            self._dropped[id(connector)] = connector
            return
        listener = self._listeners.get((dest_ip, connector.port))
        if listener is None or cut is not None:
            connector.fail(Failure(ConnectionRefusedError()))
            return
        self._link_serial += 1
        link = _Link(self, self._link_serial, connector.latency)
        client_address = _address(client_ip, self.ephemeral_port(client_ip))
        server_address = _address(dest_ip, connector.port)
        client = MemoryTransport(link, client_address, server_address, connector)
        server = MemoryTransport(link, server_address, client_address)
        client.peer, server.peer = server, client
        link.client, link.server = client, server
        self._links[link.serial] = link
        self.connections_made += 1
        server_protocol = listener.factory.buildProtocol(client_address)
        client_protocol = connector.connected(client, server_address)
        server.start(server_protocol if server_protocol is not None else Protocol())
        if client_protocol is not None:
            client.start(client_protocol)
        else:
            client.start(Protocol())
            client.loseConnection()
        if server_protocol is None:
            server.loseConnection()

    # internals: events

    def _observer_callback(self, observer: EventObserver, ip: str) -> Callable[[PoolEvent], None]:
        clock = self.clock

        def forward(event: PoolEvent) -> None:
            observer(clock.seconds(), ip, event)

        return forward

    def __repr__(self) -> str:
        return f"<MemoryNetwork seed={self._seed_text:.40} t={self.clock.seconds():.3f} pools={len(self.pools)} links={len(self._links)}>"


def _check_config_names(overrides: Mapping[str, Any]) -> None:
    """
    @raise TypeError: a name in C{overrides} is not a L{PoolConfig} field,
        with the closest one when there is one.
    """
    fields = attrs.fields_dict(PoolConfig)
    for name in overrides:
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise TypeError(f"{name!r} is not a PoolConfig setting{hint}")
