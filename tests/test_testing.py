# -*- test-case-name: tests.test_testing -*-
"""
The in-memory network of L{p2pool.testing}: its clock, its TCP and its
partitions on their own, then real pools running on it.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Any

from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
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
    IHalfCloseableProtocol,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from p2pool.config import PoolConfig
from p2pool.core.addressing import Point, PointSpec
from p2pool.core.states import PointState
from p2pool.errors import ConnectionFailed, DisconnectReason, IdentityCheckFailure, P2PError, Timeout
from p2pool.events import EventKind
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork, NodeReactor, SimulatedClock
from tests.helpers import RecordingApp

IP_A, IP_B, IP_C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def _point(ip: str) -> Point:
    return Point(ip, 9732)


def _spec(network: MemoryNetwork, ip: str) -> PointSpec:
    """
    The trusted-point spec of the pool at C{ip}, with its peer id pinned.
    """
    return PointSpec(ip, 9732, network.identity(ip).peer_id)


_App = RecordingApp


class _Recorder(Protocol):
    """
    A raw protocol that records what happens to it.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.made = False
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.reason = reason


class _RecordingClientFactory(ClientFactory):
    """
    Builds one L{_Recorder} and records the connector's outcome.
    """

    def __init__(self) -> None:
        self.protocol_instance = _Recorder()
        self.failed: list[Failure] = []
        self.lost: list[Failure] = []
        self.started = 0
        self.stopped = 0

    def doStart(self) -> None:
        self.started += 1

    def doStop(self) -> None:
        self.stopped += 1

    def buildProtocol(self, addr: Any) -> _Recorder:
        self.protocol_instance.factory = self
        return self.protocol_instance

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.failed.append(reason)

    def clientConnectionLost(self, connector: Any, reason: Failure) -> None:
        self.lost.append(reason)


class _ServerFactory(Factory):
    """
    Builds L{_Recorder}s and keeps them; refuses when C{refuse} is set.
    """

    def __init__(self, refuse: bool = False) -> None:
        self.built: list[_Recorder] = []
        self.refuse = refuse
        self.addresses: list[Any] = []

    def buildProtocol(self, addr: Any) -> _Recorder | None:
        self.addresses.append(addr)
        if self.refuse:
            return None
        protocol = _Recorder()
        self.built.append(protocol)
        return protocol


@implementer(IHalfCloseableProtocol)
class _HalfCloseable(_Recorder):
    """
    A recorder that survives the other side shutting its write side.
    """

    def __init__(self) -> None:
        super().__init__()
        self.halves: list[str] = []

    def readConnectionLost(self) -> None:
        self.halves.append("read")

    def writeConnectionLost(self) -> None:
        self.halves.append("write")


class _HalfCloseableServerFactory(_ServerFactory):
    def buildProtocol(self, addr: Any) -> _HalfCloseable:
        protocol = _HalfCloseable()
        self.built.append(protocol)
        return protocol


class SimulatedClockTests(SynchronousTestCase):
    """
    L{SimulatedClock} runs delayed calls in time order, FIFO on ties.
    """

    def test_provides_reactor_time(self) -> None:
        self.assertTrue(IReactorTime.providedBy(SimulatedClock()))
        self.assertEqual(SimulatedClock(start=5.0).seconds(), 5.0)

    def test_time_order_and_fifo_ties(self) -> None:
        clock = SimulatedClock()
        ran: list[tuple[str, float]] = []
        for name, delay in [("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("b3", 2.0)]:
            clock.callLater(delay, lambda n=name: ran.append((n, clock.seconds())))
        clock.advance(2.5)
        self.assertEqual(ran, [("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("b3", 2.0)])
        self.assertEqual(clock.seconds(), 2.5)
        self.assertEqual(clock.pending(), 1)
        clock.advance(0.5)
        self.assertEqual(ran[-1], ("c", 3.0))
        self.assertEqual(clock.pending(), 0)

    def test_calls_scheduled_during_advance(self) -> None:
        """
        A call scheduled while advancing runs in the same advance when it is
        due by the target time, and after the calls due before it.
        """
        clock = SimulatedClock()
        ran: list[str] = []

        def first() -> None:
            ran.append("first")
            clock.callLater(0, ran.append, "now")
            clock.callLater(0.5, ran.append, "within")
            clock.callLater(5, ran.append, "beyond")

        clock.callLater(1, first)
        clock.callLater(1.2, ran.append, "second")
        clock.advance(2)
        self.assertEqual(ran, ["first", "now", "second", "within"])
        clock.advance(4)
        self.assertEqual(ran[-1], "beyond")

    def test_cancel(self) -> None:
        clock = SimulatedClock()
        ran: list[int] = []
        call = clock.callLater(1, ran.append, 1)
        other = clock.callLater(1, ran.append, 2)
        self.assertTrue(call.active())
        self.assertEqual(clock.pending(), 2)
        call.cancel()
        self.assertFalse(call.active())
        self.assertEqual(clock.pending(), 1)
        self.assertRaises(AlreadyCancelled, call.cancel)
        self.assertEqual(clock.getDelayedCalls(), [other])
        clock.advance(1)
        self.assertEqual(ran, [2])
        self.assertRaises(AlreadyCalled, other.cancel)
        self.assertRaises(AlreadyCalled, other.reset, 1)
        self.assertRaises(AlreadyCancelled, call.delay, 1)

    def test_reset_and_delay(self) -> None:
        clock = SimulatedClock()
        ran: list[tuple[str, float]] = []
        moved = clock.callLater(1, lambda: ran.append(("moved", clock.seconds())))
        clock.callLater(2, lambda: ran.append(("fixed", clock.seconds())))
        delayed = clock.callLater(1.5, lambda: ran.append(("delayed", clock.seconds())))
        clock.advance(0.5)
        moved.reset(2.5)
        self.assertEqual(moved.getTime(), 3.0)
        delayed.delay(2)
        self.assertEqual(delayed.getTime(), 3.5)
        self.assertEqual(clock.getDelayedCalls()[0].getTime(), 2.0)
        clock.advance(10)
        self.assertEqual(ran, [("fixed", 2.0), ("moved", 3.0), ("delayed", 3.5)])
        self.assertEqual(clock.pending(), 0)

    def test_time_is_exact(self) -> None:
        """
        Time is counted in nanoseconds: ten advances of 0.1 s reach a call
        made for 1 s, and seconds() shows no rounding drift.
        """
        clock = SimulatedClock()
        ran: list[float] = []
        clock.callLater(1.0, lambda: ran.append(clock.seconds()))
        for _ in range(10):
            clock.advance(0.1)
        self.assertEqual(ran, [1.0])
        self.assertEqual(clock.seconds(), 1.0)
        self.assertEqual(clock.callLater(0.3, ran.append, 0).getTime(), 1.3)

    def test_arguments_and_validation(self) -> None:
        clock = SimulatedClock()
        got: list[Any] = []
        clock.callLater(0, lambda *a, **kw: got.append((a, kw)), 1, 2, key="v")
        clock.advance(0)
        self.assertEqual(got, [((1, 2), {"key": "v"})])
        self.assertRaises(ValueError, clock.callLater, -1, got.append)
        self.assertRaises(TypeError, clock.callLater, 1, "not callable")
        self.assertRaises(ValueError, clock.advance, -0.1)

    def test_run_until(self) -> None:
        clock = SimulatedClock()
        flag: list[bool] = []
        clock.callLater(3.05, flag.append, True)
        self.assertTrue(clock.run_until(lambda: flag, timeout=10, step=0.5))
        self.assertAlmostEqual(clock.seconds(), 3.5)
        self.assertFalse(clock.run_until(lambda: False, timeout=2, step=0.3))
        self.assertAlmostEqual(clock.seconds(), 5.5)
        self.assertRaises(ValueError, clock.run_until, lambda: True, 1, 0)

    def test_error_in_call_is_logged_and_others_run(self) -> None:
        clock = SimulatedClock()
        ran: list[int] = []
        clock.callLater(1, lambda: 1 / 0)
        clock.callLater(2, ran.append, 2)
        clock.advance(3)
        self.assertEqual(ran, [2])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_many_cancelled_calls_are_compacted(self) -> None:
        clock = SimulatedClock()
        ran: list[int] = []
        calls = [clock.callLater(100 + i, ran.append, i) for i in range(20000)]
        for i, call in enumerate(calls):
            if i % 100:
                call.cancel()
        self.assertEqual(clock.pending(), 200)
        self.assertLess(clock.heap_size(), 10000)
        self.assertEqual(clock.next_call_time(), 100)
        clock.advance(30000)
        self.assertEqual(ran, list(range(0, 20000, 100)))

    def test_compaction_during_advance(self) -> None:
        """
        Calls cancelled and scheduled by a call while the clock advances,
        enough to compact the heap, still run on time.
        """
        clock = SimulatedClock()
        ran: list[tuple[str, float]] = []
        doomed = [clock.callLater(50, ran.append, ("doomed", 0.0)) for _ in range(10000)]

        def churn() -> None:
            for call in doomed:
                call.cancel()
            clock.callLater(1, lambda: ran.append(("after", clock.seconds())))

        clock.callLater(1, churn)
        clock.callLater(3, lambda: ran.append(("fixed", clock.seconds())))
        clock.advance(10)
        self.assertEqual(ran, [("after", 2.0), ("fixed", 3.0)])
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertLess(clock.heap_size(), 5000, "compacted")

    def test_looping_call(self) -> None:
        clock = SimulatedClock()
        counts: list[int] = []
        loop = LoopingCall.withCount(counts.append)
        loop.clock = clock
        loop.start(1.0, now=False)
        clock.advance(3.5)
        loop.stop()
        self.assertEqual(counts, [1, 1, 1])


class NodeReactorTCPTests(SynchronousTestCase):
    """
    Listening and connecting on the memory network, without pools.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=3, latency=0.01)
        self.a = self.network.reactor(IP_A)
        self.b = self.network.reactor(IP_B)

    def connect(
        self, factory: _ServerFactory | None = None, **kw: Any
    ) -> tuple[_RecordingClientFactory, _ServerFactory, Any]:
        server = factory or _ServerFactory()
        self.b.listenTCP(9732, server)
        client = _RecordingClientFactory()
        connector = self.a.connectTCP(IP_B, 9732, client, **kw)
        return client, server, connector

    def test_one_reactor_per_address(self) -> None:
        self.assertIs(self.network.reactor("10.0.0.1"), self.a)
        self.assertTrue(IReactorTCP.providedBy(self.a))
        self.assertTrue(IReactorTime.providedBy(self.a))
        self.assertIs(self.a.seconds(), self.network.clock.seconds())

    def test_listen(self) -> None:
        port = self.a.listenTCP(0, _ServerFactory())
        self.assertEqual((port.getHost().host, port.getHost().port), (IP_A, 49152))
        self.assertEqual(self.a.listenTCP(0, _ServerFactory(), interface="0.0.0.0").getHost().port, 49153)
        self.assertEqual(self.a.listenTCP(9732, _ServerFactory(), interface=IP_A).getHost().port, 9732)
        self.assertRaises(CannotListenError, self.a.listenTCP, 9732, _ServerFactory())
        self.assertRaises(CannotListenError, self.a.listenTCP, 9733, _ServerFactory(), interface=IP_B)
        self.successResultOf(port.stopListening())
        self.assertEqual(self.a.listenTCP(49152, _ServerFactory()).getHost().port, 49152)

    def test_connect_and_exchange(self) -> None:
        client, server, connector = self.connect()
        self.network.advance(0.009)
        self.assertEqual(server.built, [])
        self.network.advance(0.001)
        (accepted,) = server.built
        sent = client.protocol_instance
        self.assertEqual(connector.state, "connected")
        transport = sent.transport
        self.assertTrue(ITCPTransport.providedBy(transport))
        self.assertEqual((transport.getHost().host, transport.getHost().port), (IP_A, 49152))
        self.assertEqual((transport.getPeer().host, transport.getPeer().port), (IP_B, 9732))
        self.assertEqual((accepted.transport.getPeer().host, accepted.transport.getPeer().port), (IP_A, 49152))
        self.assertEqual(server.addresses[0].host, IP_A)
        for chunk in (b"one ", b"two ", b"three"):
            transport.write(chunk)
        transport.writeSequence([b" four", b" five"])
        self.network.advance(0.009)
        self.assertEqual(accepted.received, [])
        self.network.advance(0.001)
        self.assertEqual(accepted.received, [b"one two three four five"], "a burst of writes is one delivery")
        self.assertEqual(transport.bytes_sent, 23)
        self.assertEqual(accepted.transport.bytes_received, 23)
        accepted.transport.write(b"back")
        self.network.advance(0.01)
        self.assertEqual(sent.received, [b"back"])
        self.assertRaises(TypeError, transport.write, "text")

    def test_lose_connection_delivers_then_closes(self) -> None:
        client, server, _ = self.connect()
        self.network.advance(0.01)
        (accepted,) = server.built
        sent = client.protocol_instance
        sent.transport.write(b"last words")
        sent.transport.loseConnection()
        sent.transport.write(b" and more")
        self.network.advance(0.01)
        self.assertEqual(accepted.received, [b"last words and more"])
        self.assertTrue(sent.reason.check(ConnectionDone))
        self.assertTrue(accepted.reason.check(ConnectionDone))
        self.assertEqual(len(client.lost), 1)
        self.assertEqual(client.stopped, 1)
        sent.transport.write(b"dropped")
        self.network.advance(1)
        self.assertEqual(accepted.received, [b"last words and more"])

    def test_half_close(self) -> None:
        """
        After C{loseWriteConnection}, a half-closeable peer reads end of
        stream and may still answer; the connection closes when both
        sides have shut their write side. Another peer just closes.
        """
        client, server, _ = self.connect(_HalfCloseableServerFactory())
        self.network.advance(0.01)
        (accepted,) = server.built
        sent = client.protocol_instance
        sent.transport.write(b"question")
        sent.transport.loseWriteConnection()
        self.network.advance(0.01)
        self.assertEqual((accepted.received, accepted.halves), ([b"question"], ["read"]))
        accepted.transport.write(b"answer")
        accepted.transport.loseWriteConnection()
        self.network.advance(0.01)
        self.assertEqual(sent.received, [b"answer"])
        self.assertEqual(accepted.halves, ["read", "write"])
        self.assertTrue(sent.reason.check(ConnectionDone))
        self.assertTrue(accepted.reason.check(ConnectionDone))
        plain = _RecordingClientFactory()
        self.a.connectTCP(IP_B, 9732, plain)
        self.network.advance(0.01)
        server.built[1].transport.loseWriteConnection()
        self.network.advance(0.01)
        self.assertTrue(plain.protocol_instance.reason.check(ConnectionDone))

    def test_abort_connection_drops_what_is_in_flight(self) -> None:
        client, server, _ = self.connect()
        self.network.advance(0.01)
        (accepted,) = server.built
        sent = client.protocol_instance
        sent.transport.write(b"lost")
        accepted.transport.write(b"lost too")
        sent.transport.abortConnection()
        self.assertIsNone(sent.reason, "connectionLost is not called reentrantly")
        self.network.advance(0)
        self.assertTrue(sent.reason.check(ConnectionAborted))
        self.assertTrue(accepted.reason.check(ConnectionLost))
        self.network.advance(1)
        self.assertEqual((sent.received, accepted.received), ([], []))

    def test_refused_without_listener(self) -> None:
        client = _RecordingClientFactory()
        self.a.connectTCP(IP_C, 9732, client)
        self.network.advance(0.005)
        self.assertEqual(client.failed, [])
        self.network.advance(0.005)
        (reason,) = client.failed
        self.assertTrue(reason.check(ConnectionRefusedError))
        self.assertEqual((client.started, client.stopped), (1, 1))

    def test_refused_by_factory(self) -> None:
        """
        A listener whose factory returns None accepts the connection and
        closes it at once.
        """
        client, server, _ = self.connect(_ServerFactory(refuse=True))
        self.network.advance(0.01)
        self.assertEqual(client.failed, [])
        self.assertTrue(client.protocol_instance.made)
        self.assertIsNone(client.protocol_instance.reason)
        self.network.advance(0.01)
        self.assertTrue(client.protocol_instance.reason.check(ConnectionDone))
        self.assertEqual(len(server.addresses), 1)

    def test_stop_connecting_and_disconnect(self) -> None:
        client, server, connector = self.connect()
        connector.stopConnecting()
        self.assertTrue(client.failed[0].check(UserError))
        self.assertRaises(NotConnectingError, connector.stopConnecting)
        self.network.advance(1)
        self.assertEqual(server.built, [])
        connector.connect()
        self.network.advance(0.01)
        self.assertEqual(len(server.built), 1)
        self.assertEqual(connector.getDestination().port, 9732)
        connector.disconnect()
        self.network.advance(0.01)
        self.assertTrue(server.built[0].reason.check(ConnectionDone))

    def test_bind_address(self) -> None:
        client, server, _ = self.connect(bindAddress=(IP_A, 0))
        self.network.advance(0.01)
        self.assertEqual(server.addresses[0].host, IP_A)
        other = _RecordingClientFactory()
        self.a.connectTCP(IP_B, 9732, other, bindAddress=(IP_C, 0))
        self.network.advance(0.01)
        self.assertTrue(other.failed[0].check(ConnectBindError))

    def test_names(self) -> None:
        self.network.add_name("Node-B.example.", IP_B)
        self.assertEqual(self.successResultOf(self.a.resolve("node-b.example")), IP_B)
        self.assertEqual(self.successResultOf(self.a.resolve(IP_C)), IP_C)
        self.failureResultOf(self.a.resolve("nowhere.example"), DNSLookupError)
        client = _RecordingClientFactory()
        self.b.listenTCP(9732, _ServerFactory())
        self.a.connectTCP("node-b.example", 9732, client)
        unknown = _RecordingClientFactory()
        self.a.connectTCP("nowhere.example", 9732, unknown)
        self.network.advance(0.01)
        self.assertIsNotNone(client.protocol_instance.transport)
        self.assertTrue(unknown.failed[0].check(DNSLookupError))

    def test_threads_run_at_next_turn(self) -> None:
        ran: list[str] = []
        self.a.callFromThread(ran.append, "from thread")
        self.a.callWhenRunning(ran.append, "when running")
        results: list[Any] = []
        self.a.getThreadPool().callInThreadWithCallback(lambda ok, r: results.append((ok, r)), lambda: 42)
        self.assertEqual(ran, [])
        self.assertEqual(results, [(True, 42)])
        self.network.advance(0)
        self.assertEqual(ran, ["from thread", "when running"])

    def test_pause_producing_holds_data(self) -> None:
        client, server, _ = self.connect()
        self.network.advance(0.01)
        (accepted,) = server.built
        accepted.transport.pauseProducing()
        client.protocol_instance.transport.write(b"wait")
        self.network.advance(0.01)
        self.assertEqual(accepted.received, [])
        accepted.transport.resumeProducing()
        self.network.advance(0)
        self.assertEqual(accepted.received, [b"wait"])

    def test_pull_producer(self) -> None:
        """
        A pull producer is asked for more after each delivery.
        """
        client, server, _ = self.connect()
        self.network.advance(0.01)
        (accepted,) = server.built
        transport = client.protocol_instance.transport
        chunks = [b"1", b"2", b"3"]

        class Pull:
            def resumeProducing(self) -> None:
                if chunks:
                    transport.write(chunks.pop(0))
                else:
                    transport.unregisterProducer()

            def stopProducing(self) -> None:
                chunks.clear()

        transport.registerProducer(Pull(), False)
        self.assertRaises(RuntimeError, transport.registerProducer, Pull(), True)
        self.network.advance(0.1)
        self.assertEqual(accepted.received, [b"1", b"2", b"3"])
        self.assertIsNone(transport.producer)

    def test_protocol_error_aborts_and_is_logged(self) -> None:
        client, server, _ = self.connect()
        self.network.advance(0.01)
        (accepted,) = server.built
        accepted.dataReceived = lambda data: 1 / 0  # type: ignore[method-assign]
        client.protocol_instance.transport.write(b"boom")
        self.network.advance(0.02)
        self.assertTrue(accepted.reason.check(ZeroDivisionError))
        self.assertTrue(client.protocol_instance.reason.check(ConnectionLost))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class PartitionTests(SynchronousTestCase):
    """
    Partitions cut links between groups of addresses.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(latency=0.01)
        self.servers = {ip: _ServerFactory() for ip in (IP_B, IP_C)}
        for ip, factory in self.servers.items():
            self.network.reactor(ip).listenTCP(80, factory)

    def dial(self, ip: str, timeout: float = 30) -> _RecordingClientFactory:
        client = _RecordingClientFactory()
        self.network.reactor(IP_A).connectTCP(ip, 80, client, timeout=timeout)
        return client

    def test_partition_aborts_and_refuses(self) -> None:
        to_b, to_c = self.dial(IP_B), self.dial(IP_C)
        self.network.advance(0.01)
        self.network.partition([IP_A], [IP_B])
        self.assertTrue(self.network.is_cut(IP_B, IP_A))
        self.assertFalse(self.network.is_cut(IP_A, IP_C))
        self.network.advance(0)
        self.assertTrue(to_b.protocol_instance.reason.check(ConnectionLost))
        self.assertTrue(self.servers[IP_B].built[0].reason.check(ConnectionLost))
        self.assertIsNone(to_c.protocol_instance.reason)
        again = self.dial(IP_B)
        self.network.advance(0.01)
        self.assertTrue(again.failed[0].check(ConnectionRefusedError))
        self.network.heal()
        healed = self.dial(IP_B)
        self.network.advance(0.01)
        self.assertEqual(len(self.servers[IP_B].built), 2)
        self.assertIsNotNone(healed.protocol_instance.transport)
        self.assertRaises(ValueError, self.network.partition, [IP_A], [IP_A, IP_B])

    def test_dropping_partition_times_out(self) -> None:
        self.network.partition([IP_A], [IP_B, IP_C], drop=True)
        late = self.dial(IP_B, timeout=5)
        self.network.advance(4.9)
        self.assertEqual(late.failed, [])
        self.network.advance(0.1)
        self.assertTrue(late.failed[0].check(TimeoutError))
        waiting = self.dial(IP_C, timeout=5)
        self.network.advance(1)
        self.network.heal()
        self.network.advance(0.01)
        self.assertEqual(waiting.failed, [])
        self.assertEqual(len(self.servers[IP_C].built), 1, "answered once healed")


class PoolOnNetworkTests(SynchronousTestCase):
    """
    Real pools on the memory network.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=7)
        self.addCleanup(self.network.stop)

    def add(self, ip: str, **config: Any) -> tuple[Pool, _App]:
        app = _App()
        config.setdefault("maintenance_idle_time", None)
        return self.network.add_pool(ip, app=app, **config), app

    def test_add_pool(self) -> None:
        pool, _ = self.add(IP_A)
        self.assertIs(self.network.pools[IP_A], pool)
        self.assertTrue(pool.is_started)
        self.assertIsInstance(pool.listening_port.reactor, NodeReactor)
        self.assertEqual(pool.peer_id, self.network.identity(IP_A).peer_id)
        self.assertEqual(pool.config.listen, Point(IP_A, 9732))
        self.assertEqual(pool.config.expected_proof_of_work, 0)
        self.assertEqual(pool.listening_port.getHost().port, 9732)
        self.assertRaises(ValueError, self.network.add_pool, IP_A)
        self.assertNotEqual(self.network.identity(IP_A).peer_id, self.network.identity(IP_B).peer_id)
        self.assertEqual(MemoryNetwork(seed=7).identity(IP_A).peer_id, pool.peer_id)
        self.assertNotEqual(MemoryNetwork(seed=8).identity(IP_A).peer_id, pool.peer_id)

    def test_add_pool_not_started_and_start_failure(self) -> None:
        pool = self.network.add_pool(IP_B, start=False)
        self.assertFalse(pool.running)
        pool.startService()
        self.successResultOf(pool.when_started())
        self.network.reactor(IP_C).listenTCP(9732, _ServerFactory())
        self.assertRaises(CannotListenError, self.network.add_pool, IP_C)
        self.assertEqual(self.flushLoggedErrors(), [], "logged in one line, not as a traceback")

    def test_connect_and_messages_both_ways(self) -> None:
        a, app_a = self.add(IP_A, max_message_size=2 << 20)
        b, app_b = self.add(IP_B, max_message_size=2 << 20)
        d = a.connect(_point(IP_B))
        self.assertNoResult(d)
        self.network.advance(0.1)
        conn = self.successResultOf(d)
        self.assertEqual(conn.peer_id, b.peer_id)
        self.assertEqual(b.connected_peer_ids(), [a.peer_id])
        self.assertTrue(app_b.made[0].incoming)
        self.assertEqual((conn.remote_ip, app_b.made[0].remote_ip), (IP_B, IP_A), "each side's address of the other")
        small, large = b"x", bytes(range(256)) * 4096
        self.successResultOf(a.send(b.peer_id, small))
        self.successResultOf(a.send(b.peer_id, large))
        self.successResultOf(b.send(a.peer_id, large))
        self.successResultOf(b.send(a.peer_id, small))
        self.network.advance(0.1)
        self.assertEqual([m for _, m in app_b.messages], [small, large])
        self.assertEqual([m for _, m in app_a.messages], [large, small])
        self.assertEqual(app_b.messages[0][0].peer_id, a.peer_id)
        self.assertGreater(self.network.bytes_sent, 2 * len(large))

    def test_refused_connection(self) -> None:
        a, _ = self.add(IP_A)
        d = a.connect(_point(IP_C))
        self.network.advance(0.1)
        self.failureResultOf(d, ConnectionFailed)
        info = a.points.info(_point(IP_C))
        self.assertIsNotNone(info.last_failed_connection)

    def test_banned_address_refused_before_tls(self) -> None:
        a, _ = self.add(IP_A)
        b, app_b = self.add(IP_B)
        events: list[str] = []
        b.events.callbacks.append(lambda e: events.append(e.event))
        b.points.ban(_point(IP_A))
        d = a.connect(_point(IP_B))
        self.network.advance(0.1)
        self.failureResultOf(d, P2PError)
        self.assertIn(EventKind.INCOMING_CONNECTION_BANNED, events)
        self.assertNotIn(EventKind.INCOMING_CONNECTION, events)
        self.assertEqual((a.active_connections(), b.active_connections(), app_b.made), (0, 0, []))

    def test_bytes_of_a_refused_handshake_counted_once(self) -> None:
        """
        The bytes of a handshake that ends in a refusal count in the
        pool's totals while it runs and after it closes, once.
        """
        a, _ = self.add(IP_A)
        b, _ = self.add(IP_B)
        b.peers.ban(a.peer_id)
        d = a.connect(_point(IP_B))
        self.assertEqual(a.bytes_totals(), (0, 0))
        self.network.advance(0.1)
        self.failureResultOf(d, P2PError)
        sent, received = a.bytes_totals()
        self.assertGreater(sent, 0, "the Hello")
        self.assertGreater(b.bytes_totals()[1], 0)
        self.network.advance(10.0)
        self.assertEqual(a.bytes_totals(), (sent, received), "closed: counted once")
        self.assertEqual((a.active_connections(), b.active_connections()), (0, 0))

    def test_raw_garbage_through_an_endpoint(self) -> None:
        """
        Twisted endpoints work on a node reactor: plain-text garbage sent to
        a pool fails its TLS handshake and is closed.
        """
        b, _ = self.add(IP_B)
        events: list[Any] = []
        b.events.callbacks.append(events.append)
        raw = _Recorder()
        endpoint = TCP4ClientEndpoint(self.network.reactor("10.0.0.66"), IP_B, 9732)
        d = connectProtocol(endpoint, raw)
        self.network.advance(0.1)
        self.assertIs(self.successResultOf(d), raw)
        raw.transport.write(b"\x00\x10Hello, world. This is garbage, greylist me !")
        self.network.advance(0.1)
        self.assertIsNotNone(raw.reason)
        (failed,) = [e for e in events if e.event == EventKind.AUTHENTICATION_FAILED]
        self.assertEqual((failed.fields["error"], failed.fields["addr"]), ("InvalidAuth", "10.0.0.66"))

    def test_dials_in_flight_each_check_their_pin(self) -> None:
        """
        Two dials of one pool at once, through its one TLS client factory:
        the point pinned to another peer id is refused during TLS (before
        any Hello reaches the acceptance decision), the other connects.
        """
        a, _ = self.add(IP_A)
        b, _ = self.add(IP_B)
        c, _ = self.add(IP_C)
        events: list[Any] = []
        a.events.callbacks.append(events.append)
        a.register_point(_point(IP_B), expected_peer_id=c.peer_id)
        a.register_point(_point(IP_C), expected_peer_id=c.peer_id)
        to_b, to_c = a.connect(_point(IP_B)), a.connect(_point(IP_C))
        self.network.advance(0.1)
        refused = self.failureResultOf(to_b, IdentityCheckFailure).value
        self.assertEqual((refused.expected_peer_id, refused.received_peer_id), (c.peer_id, b.peer_id))
        # The error names the dialed point, also in the event's detail.
        self.assertEqual(refused.point, _point(IP_B))
        self.assertEqual(self.successResultOf(to_c).peer_id, c.peer_id)
        (failed,) = [e for e in events if e.event == EventKind.AUTHENTICATION_FAILED]
        self.assertEqual(failed.fields["error"], "IdentityCheckFailure")
        self.assertEqual(failed.fields["detail"], f"expected peer {c.peer_id} at {_point(IP_B)}, found {b.peer_id}")
        self.assertNotIn(EventKind.AUTHENTICATE_STATUS_PEER_ID_INCORRECT, [e.event for e in events])
        self.assertEqual((b.active_connections(), c.active_connections()), (0, 1))

    def test_connection_metadata_through_pool_options(self) -> None:
        a, _ = self.add(IP_A, pool_options={"connection_metadata": b"hello from a"})
        b, app_b = self.add(IP_B)
        a.connect(_point(IP_B))
        self.network.advance(0.1)
        self.assertEqual(app_b.made[0].remote_metadata, b"hello from a")

    def test_trusted_points_by_name(self) -> None:
        self.network.add_name("b.example", IP_B)
        b, _ = self.add(IP_B)
        a, _ = self.add(IP_A, trusted_points=(PointSpec("b.example", 9732, self.network.identity(IP_B).peer_id),))
        self.assertTrue(self.network.run_until(lambda: a.active_connections() == 1, timeout=5))
        self.assertEqual(a.connected_peer_ids(), [b.peer_id])

    def test_three_trusted_pools_connect(self) -> None:
        ips = [IP_A, IP_B, IP_C]
        pools = [self.add(ip, trusted_points=tuple(_spec(self.network, o) for o in ips if o != ip))[0] for ip in ips]
        self.network.advance(1)
        self.assertEqual([p.active_connections() for p in pools], [2, 2, 2])
        for pool in pools:
            expected = {self.network.identity(o).peer_id for o in ips if self.network.pools[o] is not pool}
            self.assertEqual(set(pool.connected_peer_ids()), expected)

    def test_partition_then_heal(self) -> None:
        ips = [IP_A, IP_B, IP_C]
        added = [self.add(ip, trusted_points=tuple(_spec(self.network, o) for o in ips if o != ip)) for ip in ips]
        pools = [p for p, _ in added]
        self.network.advance(1)
        self.assertEqual([p.active_connections() for p in pools], [2, 2, 2])
        self.network.partition([IP_A], [IP_B, IP_C])
        self.network.advance(0.1)
        self.assertEqual([p.active_connections() for p in pools], [0, 1, 1])
        self.assertEqual(
            [reason.reason for _, reason in added[0][1].lost],
            [DisconnectReason.CONNECTION_LOST, DisconnectReason.CONNECTION_LOST],
        )
        self.network.advance(120)
        self.assertEqual([p.active_connections() for p in pools], [0, 1, 1], "redials fail while partitioned")
        self.network.heal()
        self.assertTrue(self.network.run_until(lambda: all(p.active_connections() == 2 for p in pools), timeout=600))
        self.assertGreater(self.network.seconds(), 121)

    def test_dial_timeout_when_nothing_answers(self) -> None:
        """
        A listener that accepts but never speaks TLS: the pool's
        C{connection_timeout} ends the dial with L{Timeout}.
        """
        self.network.reactor(IP_B).listenTCP(9732, Factory.forProtocol(Protocol))
        a, _ = self.add(IP_A, connection_timeout=2.5)
        d = a.connect(_point(IP_B))
        self.network.advance(2.4)
        self.assertNoResult(d)
        self.network.advance(0.1)
        self.failureResultOf(d, Timeout)

    def test_dial_timeout_across_dropping_partition(self) -> None:
        """
        Across a partition that drops packets, the TCP connect timeout
        (C{int(connection_timeout)}) fails the dial before the pool's own.
        """
        a, _ = self.add(IP_A, connection_timeout=3)
        self.add(IP_B)
        self.network.partition([IP_A], [IP_B], drop=True)
        d = a.connect(_point(IP_B))
        self.network.advance(2.9)
        self.assertNoResult(d)
        self.network.advance(0.2)
        failure = self.failureResultOf(d, ConnectionFailed)
        self.assertIn("timeout", failure.getErrorMessage())

    def test_dial_abandoned_by_its_own_timeout(self) -> None:
        """
        A dial whose own timeout (shorter than the TCP connect timeout)
        passes while the TCP connection is still being made is abandoned:
        it fails once, with L{Timeout}, and its point is free again.
        """
        a, _ = self.add(IP_A, connection_timeout=3)
        self.add(IP_B)
        self.network.partition([IP_A], [IP_B], drop=True)
        d = a.connect(_point(IP_B), timeout=1.5)
        self.network.advance(1.4)
        self.assertNoResult(d)
        self.network.advance(0.2)
        self.failureResultOf(d, Timeout)
        info = a.points.info(_point(IP_B))
        assert info is not None
        self.assertEqual(info.state, PointState.DISCONNECTED)
        self.network.advance(5)
        self.assertEqual(a.active_connections(), 0)

    def test_restart(self) -> None:
        """
        A pool removed and added again at the same address comes back with
        the same identity, and its trusted peer reconnects to it.
        """
        a, app_a = self.add(IP_A, trusted_points=(_spec(self.network, IP_B),))
        b, _ = self.add(IP_B)
        self.network.advance(1)
        self.assertEqual(a.connected_peer_ids(), [b.peer_id])
        stopped = self.network.remove_pool(IP_B)
        self.network.advance(0.1)
        self.successResultOf(stopped)
        self.assertNotIn(IP_B, self.network.pools)
        self.assertEqual(a.active_connections(), 0)
        self.assertEqual(app_a.lost[0][1].reason, DisconnectReason.REMOTE_DISCONNECT)
        self.assertTrue(os.path.exists(b.config.peers_path), "saved when stopped")
        again, _ = self.add(IP_B)
        self.assertTrue(again.is_started, "started even though reading its peers file takes a clock turn")
        self.assertIsNot(again, b)
        self.assertEqual(again.peer_id, b.peer_id)
        self.assertTrue(self.network.run_until(lambda: again.active_connections() == 1, timeout=120))
        self.assertRaises(KeyError, self.network.remove_pool, IP_C)

    def test_ipv6_pools(self) -> None:
        a, _ = self.add("fd00::1")
        b, app_b = self.add("fd00::2")
        d = a.connect(Point("fd00::2", 9732))
        self.network.advance(0.1)
        self.assertEqual(self.successResultOf(d).peer_id, b.peer_id)
        self.assertEqual(app_b.made[0].remote_ip, "fd00::1")

    def test_pool_without_identity_creates_its_file(self) -> None:
        """
        A pool given no identity searches one in the reactor's thread pool,
        which runs inline; its result arrives at the next clock turn.
        """
        config = self.network.default_config(IP_A, maintenance_idle_time=None)
        pool = Pool(config, reactor=self.network.reactor(IP_A))
        pool.startService()
        self.addCleanup(pool.stopService)
        started = pool.when_started()
        self.assertNoResult(started)
        self.network.advance(0)
        self.successResultOf(started)
        self.assertTrue(os.path.exists(config.identity_path))
        self.assertNotEqual(pool.peer_id, self.network.identity(IP_A).peer_id)

    def test_stop(self) -> None:
        a, app_a = self.add(IP_A)
        b, _ = self.add(IP_B)
        a.connect(_point(IP_B))
        self.network.advance(0.1)
        self.successResultOf(self.network.stop())
        self.assertFalse(a.running or b.running)
        self.assertEqual((a.active_connections(), b.active_connections()), (0, 0))
        self.assertEqual(app_a.lost[0][1].reason, DisconnectReason.POOL_DESTROYED)
        self.assertEqual(self.network.link_count, 0)


class LogLevelTests(SynchronousTestCase):
    """
    The level of pool events a network's pools hand to C{twisted.logger}.
    """

    def logged(self, network: MemoryNetwork) -> tuple[list[str], list[str]]:
        """
        Two pools connect: the pool events that reached the global log, and
        those the network's observer got.
        """
        logged: list[str] = []

        def record(event: dict[str, Any]) -> None:
            if "p2pool_event" in event:
                logged.append(event["p2pool_event"])

        globalLogPublisher.addObserver(record)
        self.addCleanup(globalLogPublisher.removeObserver, record)
        observed: list[str] = []
        network.observe(lambda t, ip, e: observed.append(e.event.value))
        a = network.add_pool(IP_A, maintenance_idle_time=None)
        network.add_pool(IP_B, maintenance_idle_time=None)
        d = a.connect(_point(IP_B))
        network.advance(1.0)
        self.successResultOf(d)
        network.stop()
        return logged, observed

    def test_default_logs_every_event(self) -> None:
        network = MemoryNetwork(seed=3)
        self.assertEqual(network.log_level, LogLevel.debug)
        logged, observed = self.logged(network)
        self.assertIn(EventKind.CONNECTION_ESTABLISHED, logged)
        self.assertIn(EventKind.NEW_POINT, logged, "debug events too")
        # All but those the refusal summary counts instead of a line.
        self.assertEqual(sorted(logged + ["incoming_connection"]), sorted(observed))

    def test_declared_level(self) -> None:
        """
        Events below the declared level stay out of the log; the
        observers get every event all the same.
        """
        network = MemoryNetwork(seed=3, log_level=LogLevel.info)
        logged, observed = self.logged(network)
        self.assertEqual(network.pools[IP_A].events.log_level, LogLevel.info)
        self.assertIn(EventKind.CONNECTION_ESTABLISHED, logged)
        self.assertNotIn(EventKind.NEW_POINT, logged)
        self.assertIn(EventKind.NEW_POINT, observed)
        self.assertEqual(sorted(self.logged(MemoryNetwork(seed=3))[1]), sorted(observed))

    def test_warn_logs_no_pool_event(self) -> None:
        logged, observed = self.logged(MemoryNetwork(seed=3, log_level=LogLevel.warn))
        self.assertEqual(logged, [])
        self.assertIn(EventKind.CONNECTION_ESTABLISHED, observed)


def _scenario(seed: int) -> list[tuple[float, str, str]]:
    """
    Five pools, trusted in a ring, with messages, a partition and a heal;
    every pool event as C{(time, ip, event)}.
    """
    network = MemoryNetwork(seed=seed, latency=0.002)
    events: list[tuple[float, str, str]] = []
    network.observe(lambda t, ip, e: events.append((t, ip, e.event)))
    ips = [f"10.0.{i}.1" for i in range(5)]
    for i, ip in enumerate(ips):
        ring = (ips[(i - 1) % 5], ips[(i + 1) % 5])
        network.add_pool(ip, trusted_points=tuple(_spec(network, o) for o in ring))
    network.advance(2)
    for pool in network.pools.values():
        pool.broadcast(b"hello")
    network.partition(ips[:2], ips[2:])
    network.advance(90)
    network.heal()
    network.advance(150)
    network.stop()
    return events


class DeterminismTests(SynchronousTestCase):
    """
    The same seed and calls give the same events at the same times.
    """

    def test_same_seed_same_events(self) -> None:
        first, second = _scenario(11), _scenario(11)
        self.assertEqual(first, second)
        names = {name for _, _, name in first}
        self.assertTrue(
            {EventKind.CONNECTION_ESTABLISHED, EventKind.EXTERNAL_DISCONNECTION, EventKind.CONNECTION_FAILED} <= names,
            names,
        )
        self.assertGreater(len(first), 100)

    def test_jitter_is_seeded(self) -> None:
        def arrivals(seed: int) -> list[float]:
            network = MemoryNetwork(seed=seed, latency=0.01, jitter=0.5)
            times: list[float] = []
            server = _ServerFactory()
            server.buildProtocol = lambda addr: times.append(network.seconds())  # type: ignore[method-assign]
            network.reactor(IP_B).listenTCP(80, server)
            for _ in range(10):
                network.reactor(IP_A).connectTCP(IP_B, 80, _RecordingClientFactory())
            network.advance(1)
            return times

        first = arrivals(1)
        self.assertEqual(first, arrivals(1))
        self.assertNotEqual(first, arrivals(2))
        self.assertTrue(all(0.005 <= t <= 0.015 for t in first), first)
        self.assertGreater(len(set(first)), 1)
        self.assertRaises(ValueError, MemoryNetwork, jitter=1.5)


class MisuseTests(SynchronousTestCase):
    """
    A wrong argument to the clock or the network is refused at once, by an
    error naming it, not later by an obscure one (or a hang).
    """

    def assertRefused(self, error: type[Exception], name: str, f: Any, *args: Any, **kw: Any) -> None:
        """
        C{f(*args, **kw)} raises C{error}, and its message names C{name}.
        """
        raised = self.assertRaises(error, f, *args, **kw)
        self.assertIn(name, str(raised))

    def test_clock_durations(self) -> None:
        clock = SimulatedClock()
        call = clock.callLater(1, lambda: None)
        self.assertRefused(TypeError, "delay", clock.callLater, "1", print)
        self.assertRefused(ValueError, "delay", clock.callLater, math.inf, print)
        self.assertRefused(TypeError, "seconds", clock.advance, "1")
        self.assertRefused(TypeError, "seconds", clock.advance, None)
        self.assertRefused(ValueError, "seconds", clock.advance, math.inf)
        self.assertRefused(ValueError, "seconds", clock.advance, 1e300)
        self.assertRefused(ValueError, "seconds", clock.advance, math.nan)
        self.assertRefused(TypeError, "secondsFromNow", call.reset, [1])
        self.assertRefused(ValueError, "secondsLater", call.delay, math.nan)
        self.assertRefused(TypeError, "start", SimulatedClock, "0")
        self.assertRefused(TypeError, "predicate", clock.run_until, True)
        self.assertRefused(ValueError, "timeout", clock.run_until, lambda: False, math.inf)
        self.assertRefused(ValueError, "timeout", clock.run_until, lambda: False, -1)
        self.assertEqual((clock.seconds(), clock.pending()), (0.0, 1), "nothing ran, nothing was scheduled")
        clock.advance(Fraction(1, 2))
        clock.advance(10**6)
        self.assertEqual(clock.seconds(), 1_000_000.5)

    def test_network_arguments(self) -> None:
        self.assertRefused(TypeError, "seed", MemoryNetwork, None)
        self.assertRefused(TypeError, "seed", MemoryNetwork, "1")
        self.assertRefused(TypeError, "seed", MemoryNetwork, True)
        self.assertRefused(TypeError, "latency", MemoryNetwork, latency="0.1")
        self.assertRefused(ValueError, "latency", MemoryNetwork, latency=math.inf)
        self.assertRefused(TypeError, "jitter", MemoryNetwork, jitter="0.1")
        self.assertRefused(TypeError, "log_level", MemoryNetwork, log_level="warn")
        self.assertRefused(TypeError, "data_dir", MemoryNetwork, data_dir=3)

    def test_misspelled_setting(self) -> None:
        """
        A setting that is not a C{PoolConfig} field is refused by name,
        with the nearest field, and no pool is made.
        """
        network = MemoryNetwork(seed=1)
        self.addCleanup(network.stop)
        self.assertRefused(
            TypeError,
            "'max_conections' is not a PoolConfig setting (did you mean max_connections?)",
            network.add_pool,
            "10.0.0.1",
            max_conections=5,
        )
        self.assertRefused(
            TypeError, "'colour' is not a PoolConfig setting", network.default_config, "10.0.0.1", colour=1
        )
        config = network.default_config("10.0.0.2")
        self.assertRefused(
            TypeError, "did you mean max_connections?", network.add_pool, "10.0.0.2", config=config, max_connection=5
        )
        self.assertEqual(network.pools, {})
        self.assertEqual(network.add_pool("10.0.0.1", max_connections=60).config.max_connections, 60)

    def test_raw_reactor_arguments(self) -> None:
        """
        A port a socket would refuse is refused, as a socket does, instead
        of listening at 10.0.0.1:70000 or at the text "80", where nothing
        can connect.
        """
        reactor = MemoryNetwork().reactor(IP_A)
        factory = _ServerFactory()
        self.assertRefused(OverflowError, "70000", reactor.listenTCP, 70000, factory)
        self.assertRefused(OverflowError, "-1", reactor.listenTCP, -1, factory)
        self.assertRefused(TypeError, "port", reactor.listenTCP, "80", factory)
        client = _RecordingClientFactory()
        self.assertRefused(OverflowError, "65536", reactor.connectTCP, IP_B, 65536, client)
        self.assertRefused(TypeError, "host", reactor.connectTCP, 167772162, 80, client)
        self.assertRefused(ValueError, "timeout", reactor.connectTCP, IP_B, 80, client, timeout=-1)
        self.assertRefused(ValueError, "timeout", reactor.connectTCP, IP_B, 80, client, timeout=math.inf)
        self.assertEqual(reactor.network.clock.pending(), 0, "no attempt was started")

    def test_huge_seed(self) -> None:
        """
        A seed too long to write in decimal still derives identities, the
        same ones every time.
        """
        seed = 10**5000
        network = MemoryNetwork(seed=seed)
        self.addCleanup(network.stop)
        peer_id = network.identity(IP_A).peer_id
        self.assertEqual(MemoryNetwork(seed=seed).identity(IP_A).peer_id, peer_id)
        self.assertNotEqual(MemoryNetwork(seed=seed + 1).identity(IP_A).peer_id, peer_id)
        self.assertEqual(network.add_pool(IP_A).peer_id, peer_id)
        self.assertIn("seed=", repr(network))

    def test_addresses(self) -> None:
        network = MemoryNetwork()
        self.addCleanup(network.stop)
        self.assertRefused(TypeError, "ip", network.add_pool, 1)
        self.assertRefused(TypeError, "ip", network.reactor, 167772161)
        self.assertRefused(TypeError, "name", network.add_name, 3, IP_A)
        self.assertRefused(TypeError, "group_a", network.partition, IP_A, [IP_B])
        self.assertRefused(TypeError, "group_b", network.partition, [IP_A], IP_B)
        self.assertRefused(KeyError, IP_C, network.remove_pool, IP_C)
        self.assertEqual(network.pools, {})

    def test_callbacks(self) -> None:
        network = MemoryNetwork()
        self.addCleanup(network.stop)
        self.assertRefused(TypeError, "observer", network.observe, 3)
        self.assertRefused(TypeError, "log", network.add_pool, IP_A, log=[])
        self.assertRefused(TypeError, "config", network.add_pool, IP_A, config={"max_connections": 3})
        self.assertEqual(network.pools, {})

    def test_pools_sharing_a_peers_file(self) -> None:
        """
        Two pools given one configuration would overwrite each other's
        peers file: the second is refused.
        """
        network = MemoryNetwork()
        self.addCleanup(network.stop)
        config = PoolConfig(expected_proof_of_work=0, data_dir=self.mktemp())
        network.add_pool(IP_A, config=config)
        self.assertRefused(ValueError, IP_A, network.add_pool, IP_B, config=config)
        self.assertEqual(list(network.pools), [IP_A])
        network.add_pool(IP_B, config=config, data_dir=self.mktemp())
        removed = network.remove_pool(IP_A)
        self.assertRefused(ValueError, IP_A, network.add_pool, IP_C, config=config)
        self.assertTrue(network.run_until(lambda: removed.called, timeout=5))
        network.add_pool(IP_C, config=config)

    def test_failed_start_keeps_nothing(self) -> None:
        """
        A pool that could not start is neither kept nor left running: once
        the cause is gone, the address takes a pool again.
        """
        network = MemoryNetwork()
        self.addCleanup(network.stop)
        squatter = network.reactor(IP_A).listenTCP(9732, _ServerFactory())
        self.assertRaises(CannotListenError, network.add_pool, IP_A)
        self.assertEqual(network.pools, {})
        network.advance(1)
        self.assertEqual(network.clock.getDelayedCalls(), [], "no timer of the failed pool goes on")
        squatter.stopListening()
        self.assertTrue(network.add_pool(IP_A).is_started)

    def test_add_while_the_removed_pool_stops(self) -> None:
        """
        A pool added where the removed one has not finished stopping would
        miss its last peers file, and have its own overwritten by it: it is
        refused until the removal is over; stop() waits for it too.
        """
        network = MemoryNetwork(latency=0.01)
        network.add_pool(IP_A)
        network.add_pool(IP_B).connect(_point(IP_A))
        network.advance(1)
        removed = network.remove_pool(IP_A)
        self.assertNoResult(removed)
        self.assertRefused(ValueError, "still stopping", network.add_pool, IP_A)
        self.assertTrue(network.run_until(lambda: removed.called, timeout=5))
        again = network.add_pool(IP_A)
        self.assertIsNotNone(again.peers.info(network.identity(IP_B).peer_id), "it read the last peers file")
        network.remove_pool(IP_A)
        self.successResultOf(network.stop())
        self.assertRefused(RuntimeError, "stopped", network.add_pool, IP_A)

    def test_stop_twice_then_add(self) -> None:
        network = MemoryNetwork()
        network.add_pool(IP_A)
        self.assertRefused(ValueError, "timeout", network.stop, -1)
        self.assertTrue(network.pools[IP_A].running, "a refused stop stops nothing")
        self.successResultOf(network.stop())
        self.successResultOf(network.stop())
        self.assertRefused(RuntimeError, "stopped", network.add_pool, IP_B)
        self.assertRefused(RuntimeError, "stopped", network.default_config, IP_B)


class ScaleTests(SynchronousTestCase):
    """
    Twenty pools in a ring of trusted points converge quickly (in simulated
    time; how fast the simulator runs is measured by C{bench/simulate.py},
    not asserted here).
    """

    def test_twenty_pool_ring(self) -> None:
        network = MemoryNetwork(seed=20)
        self.addCleanup(network.stop)
        ips = [f"10.{i}.0.1" for i in range(20)]
        for i, ip in enumerate(ips):
            ring = (ips[(i - 1) % 20], ips[(i + 1) % 20])
            network.add_pool(ip, trusted_points=tuple(_spec(network, o) for o in ring))

        def neighbours_connected() -> bool:
            for i, ip in enumerate(ips):
                connected = set(network.pools[ip].connected_peer_ids())
                for other in (ips[(i - 1) % 20], ips[(i + 1) % 20]):
                    if network.identity(other).peer_id not in connected:
                        return False
            return True

        self.assertTrue(network.run_until(neighbours_connected, timeout=10))
        self.assertLess(network.seconds(), 2)
