# -*- test-case-name: tests.test_admin_limits -*-
"""
The admin API's connection limits (issue 14, item 4): the sans-I/O
L{ConnectionTable} (caps, and who gives way to a newcomer), the
L{AdminChannel} deadlines driven by a L{Clock} over in-memory transports,
and the same over real sockets on loopback: a slowloris client is cut by
the request deadline, the caps shed idle and slow connections first, and a
fresh client is served while hundreds of slow ones try to hold the API.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, LoopingCall
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from p2pool.admin.limits import ConnectionTable, Phase
from p2pool.admin.service import CLOSE_GRACE, AdminService, AdminSite
from p2pool.pool.refusals import RefusalLog
from tests.adminhelpers import start_admin
from tests.helpers import async_test, start_node, wait_for
from tests.test_metrics import Scrape


class TableTests(SynchronousTestCase):
    """
    L{ConnectionTable}: the caps and the choice of who gives way.
    """

    def setUp(self) -> None:
        self.table: ConnectionTable[str] = ConnectionTable(max_connections=4, max_per_address=2)

    def fill(self, *entries: tuple[str, str, Phase]) -> None:
        for name, address, phase in entries:
            admission = self.table.admit(address)
            self.assertEqual((admission.admitted, admission.shed), (True, ()), name)
            self.table.add(name, address)
            self.table.set_phase(name, phase)

    def test_room_left(self) -> None:
        self.fill(("a", "10.0.0.1", Phase.BUSY), ("b", "10.0.0.2", Phase.IDLE))
        self.assertEqual(len(self.table), 2)
        self.assertEqual(self.table.phases(), {Phase.READING: 0, Phase.BUSY: 1, Phase.IDLE: 1})

    def test_address_cap_sheds_idle_then_reading_never_busy(self) -> None:
        self.fill(("reading", "10.0.0.1", Phase.READING), ("idle", "10.0.0.1", Phase.IDLE))
        first = self.table.admit("10.0.0.1")
        self.assertEqual((first.admitted, first.shed), (True, (("idle", "shed_idle"),)))
        self.assertNotIn("idle", self.table)
        self.table.add("busy", "10.0.0.1")
        self.table.set_phase("busy", Phase.BUSY)
        second = self.table.admit("10.0.0.1")
        self.assertEqual((second.admitted, second.shed), (True, (("reading", "shed_reading"),)))
        self.table.add("busy2", "10.0.0.1")
        self.table.set_phase("busy2", Phase.BUSY)
        third = self.table.admit("10.0.0.1")
        self.assertEqual((third.admitted, third.shed, third.refusal), (False, (), "too_many_from_address"))
        self.assertEqual(self.table.count("10.0.0.1"), 2)

    def test_total_cap_sheds_oldest_idle_else_a_reader_of_the_most_represented_address(self) -> None:
        """
        At the total cap: the oldest idle connection anywhere gives way;
        without one, the oldest reader of the address holding the most.
        """
        I, R, B = Phase.IDLE, Phase.READING, Phase.BUSY  # noqa: E741 (a table of phases)
        for entries, expected in (
            ([("old-idle", 1, I), ("reading", 2, R), ("new-idle", 3, I), ("busy", 4, B)], ("old-idle", "shed_idle")),
            ([("lone", 1, R), ("crowd-1", 2, R), ("crowd-2", 2, R), ("busy", 3, B)], ("crowd-1", "shed_reading")),
        ):
            self.table = ConnectionTable(max_connections=4, max_per_address=2)
            self.fill(*((name, f"10.0.0.{host}", phase) for name, host, phase in entries))
            admission = self.table.admit("10.0.0.9")
            self.assertEqual((admission.admitted, admission.shed), (True, (expected,)))

    def test_total_cap_all_busy_refuses(self) -> None:
        self.fill(*((f"busy-{i}", f"10.0.0.{i}", Phase.BUSY) for i in range(4)))
        admission = self.table.admit("10.0.0.9")
        self.assertEqual((admission.admitted, admission.refusal), (False, "too_many_connections"))
        self.assertEqual(len(self.table), 4)

    def test_phase_change_renews_age(self) -> None:
        self.fill(("a", "10.0.0.1", Phase.IDLE), ("b", "10.0.0.2", Phase.IDLE), ("c", "10.0.0.3", Phase.BUSY))
        self.fill(("d", "10.0.0.4", Phase.BUSY))
        self.table.set_phase("a", Phase.READING)
        self.table.set_phase("a", Phase.IDLE)
        self.assertEqual(self.table.admit("10.0.0.5").shed, (("b", "shed_idle"),))

    def test_remove_is_idempotent(self) -> None:
        self.fill(("a", "10.0.0.1", Phase.IDLE))
        self.table.remove("a")
        self.table.remove("a")
        self.table.set_phase("a", Phase.BUSY)
        self.assertEqual((len(self.table), self.table.count("10.0.0.1")), (0, 0))

    def test_caps_must_be_positive(self) -> None:
        self.assertRaises(ValueError, ConnectionTable, 0, 1)
        self.assertRaises(ValueError, ConnectionTable, 1, 0)


class _Pages(Resource):
    """
    C{/hang} is answered only when the test says so; anything else at once.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hanging: list[Any] = []

    def render(self, request: Any) -> Any:
        if request.path == b"/hang":
            self.hanging.append(request)
            return NOT_DONE_YET
        return b"ok"


class ChannelTests(SynchronousTestCase):
    """
    L{AdminChannel} deadlines and phases, on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.pages = _Pages()
        self.table: ConnectionTable[Any] = ConnectionTable(4, 2)
        self.refusals = RefusalLog(self.clock, None, lambda summary: None)
        self.site = AdminSite(self.pages, self.table, self.refusals, 10.0, 60.0, self.clock)

    def connect(self, host: str = "10.0.0.1") -> tuple[Any, StringTransport]:
        address = IPv4Address("TCP", host, 40000)
        self.assertTrue(self.site.admit(host))
        channel = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        channel.makeConnection(transport)
        return channel, transport

    def test_slowloris_cut_at_the_deadline(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        for i in range(9):
            self.clock.advance(1)
            channel.dataReceived(b"X-Slow-%d: 1\r\n" % i)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnected, "cut 10 s after the connection opened, header lines or not")
        self.assertEqual(self.refusals.totals(), {"request_timeout": 1})
        channel.connectionLost(Failure(Exception("aborted")))
        self.assertEqual((len(self.table), len(self.site.open)), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_silent_connection_cut_at_the_deadline(self) -> None:
        _, transport = self.connect()
        self.clock.advance(10)
        self.assertTrue(transport.disconnected)

    def test_slow_body_cut_at_the_deadline(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
        for _ in range(9):
            channel.dataReceived(b"x")
            self.clock.advance(1)
        self.clock.advance(1)
        self.assertTrue(transport.disconnected)

    def test_keep_alive_phases(self) -> None:
        channel, transport = self.connect()
        self.assertEqual(self.table.phases()[Phase.READING], 1)
        channel.dataReceived(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(self.table.phases()[Phase.BUSY], 1)
        self.clock.advance(1000)
        self.assertFalse(transport.disconnecting, "no deadline while the request is answered")
        self.pages.hanging[0].write(b"done")
        self.pages.hanging[0].finish()
        self.assertIn(b"done", transport.value())
        self.assertEqual(self.table.phases()[Phase.IDLE], 1)
        self.clock.advance(59)
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        self.assertEqual(self.table.phases()[Phase.READING], 1, "a new request's first byte starts its deadline")
        self.clock.advance(9)
        channel.dataReceived(b"Host: x\r\n\r\n")
        self.assertEqual(self.table.phases()[Phase.IDLE], 1)
        self.assertEqual(transport.value().count(b"HTTP/1.1 200"), 2)
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting, "idle for idle_timeout: closed")
        self.assertFalse(transport.disconnected, "an idle connection is closed gracefully")
        self.assertEqual(self.refusals.totals(), {})

    def test_pipelined_partial_request_gets_a_deadline(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n")
        self.pages.hanging[0].finish()
        self.assertEqual(self.table.phases()[Phase.READING], 1)
        self.clock.advance(10)
        self.assertTrue(transport.disconnected)

    def test_shed_for_a_newcomer(self) -> None:
        first, first_transport = self.connect()
        _, second_transport = self.connect()
        first.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.connect()
        self.assertTrue(first_transport.disconnecting, "the idle connection of the address gave way")
        self.assertFalse(second_transport.disconnecting)
        self.assertEqual(self.refusals.totals(), {"shed_idle": 1})
        self.assertNotIn(first, self.table)

    def test_idle_connection_gives_way_after_its_answer(self) -> None:
        """
        An idle connection closed for a newcomer is closed gracefully, so
        that an answer still on its way is delivered (a client that sent
        C{Connection: close} and has not read its answer yet lost it when
        the connection was aborted), and aborted after L{CLOSE_GRACE}.
        """
        first, first_transport = self.connect()
        self.connect()
        first.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertIn(b"ok", first_transport.value())
        self.assertEqual(self.table.phases()[Phase.IDLE], 1)
        self.connect()
        self.assertEqual(self.refusals.totals(), {"shed_idle": 1})
        self.assertTrue(first_transport.disconnecting)
        self.assertFalse(first_transport.disconnected, "not aborted: the answer is still delivered")
        self.clock.advance(CLOSE_GRACE)
        self.assertTrue(first_transport.disconnected, "aborted once the grace period is over")
        first.connectionLost(Failure(Exception("aborted")))
        self.assertEqual(len(self.site.open), 2)
        left = sorted(call.func.__name__ for call in self.clock.getDelayedCalls())
        self.assertEqual(left, ["_request_timed_out"] * 2, "only the deadlines of the two others")


class _Raw(Protocol):
    """
    A raw HTTP client: what it received, and when it was closed.
    """

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[None] = Deferred()
        self.is_closed = False
        self._drip: LoopingCall | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.is_closed = True
        if self._drip is not None and self._drip.running:
            self._drip.stop()
        self.closed.callback(None)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def drip(self, interval: float) -> None:
        """
        Start a request and send one more header line every C{interval}
        seconds, never ending it.
        """
        self.send(b"GET /network/self HTTP/1.1\r\n")
        lines = iter(range(10**6))
        self._drip = LoopingCall(lambda: self.send(b"X-Slow-%d: 1\r\n" % next(lines)))
        self._drip.start(interval, now=False)

    def close(self) -> None:
        if not self.is_closed and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]


#: A complete request that keeps the connection alive.
REQUEST = b"GET /network/self HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class SocketTests(TestCase):
    """
    The limits over real TCP connections on loopback.
    """

    timeout = 60

    async def client(self, admin: AdminService, source: str) -> _Raw:
        address = admin.address
        assert address is not None
        endpoint = TCP4ClientEndpoint(reactor, address.ip, address.port, bindAddress=(source, 0))
        protocol = _Raw()
        await connectProtocol(endpoint, protocol)
        self.addCleanup(protocol.close)
        return protocol

    async def answered(self, admin: AdminService, client: _Raw) -> None:
        peer_id = str(admin.pool.peer_id).encode()
        await wait_for(lambda: peer_id in client.data or client.is_closed, timeout=20)
        self.assertIn(peer_id, client.data)

    async def served(self, admin: AdminService, source: str) -> _Raw:
        """
        A client from C{source} that sent a whole request and was answered.
        """
        client = await self.client(admin, source)
        client.send(REQUEST)
        await self.answered(admin, client)
        return client

    async def close_all(self, admin: AdminService, clients: list[_Raw]) -> None:
        for client in clients:
            client.close()
        await wait_for(lambda: admin.open_connections == 0)

    @async_test
    async def test_slowloris_cut_by_the_request_deadline(self) -> None:
        node = await start_node(self, "127.0.0.81", 0)
        admin = await start_admin(self, node.pool, "127.0.0.81", request_timeout=1.5, idle_timeout=600.0)
        slow = await self.client(admin, "127.0.0.82")
        slow.drip(0.25)
        await wait_for(lambda: slow.is_closed, timeout=30)
        self.assertEqual(admin.refusals.totals(), {"request_timeout": 1})
        self.assertNotIn(b"HTTP/1.1", slow.data, "closed without an answer")
        await self.served(admin, "127.0.0.83")

    @async_test
    async def test_caps_shed_idle_then_slow_and_refuse_when_all_busy(self) -> None:
        node = await start_node(self, "127.0.0.84", 0)
        admin = await start_admin(
            self, node.pool, "127.0.0.84", max_connections=3, request_timeout=600.0, idle_timeout=600.0
        )
        idle = [await self.served(admin, f"127.0.1.{i + 1}") for i in range(3)]
        await wait_for(lambda: admin.connections.phases()[Phase.IDLE] == 3)
        # A fourth client: the oldest idle connection gives way.
        newcomer = await self.served(admin, "127.0.1.4")
        await wait_for(lambda: idle[0].is_closed)
        self.assertFalse(idle[1].is_closed or idle[2].is_closed)
        await self.close_all(admin, idle[1:] + [newcomer])
        # Slow clients take every slot: a newcomer still gets in, in place
        # of a slow one from the address holding the most connections.
        slow = [await self.client(admin, address) for address in ("127.0.2.1", "127.0.2.1", "127.0.2.2")]
        for client in slow:
            client.send(b"GET /network/self HTTP/1.1\r\n")
        await wait_for(lambda: admin.connections.phases()[Phase.READING] == 3)
        fresh = await self.served(admin, "127.0.2.3")
        await wait_for(lambda: slow[0].is_closed)
        self.assertFalse(slow[1].is_closed or slow[2].is_closed)
        await self.close_all(admin, slow[1:] + [fresh])
        # Connections being answered (event streams) are never shed.
        streams = [await self.client(admin, f"127.0.3.{i + 1}") for i in range(3)]
        for client in streams:
            client.send(b"GET /network/log HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await wait_for(lambda: admin.connections.phases()[Phase.BUSY] == 3)
        refused = await self.client(admin, "127.0.3.4")
        await wait_for(lambda: refused.is_closed)
        self.assertEqual(refused.data, b"")
        self.assertFalse(any(client.is_closed for client in streams))
        self.assertEqual(admin.refusals.totals(), {"shed_idle": 1, "shed_reading": 1, "too_many_connections": 1})
        scrape = Scrape(admin.metrics.render().decode("utf-8"))
        self.assertEqual(scrape.value("p2pool_admin_refusals", reason="shed_reading"), 1.0)
        self.assertEqual(scrape.value("p2pool_admin_connections", phase="busy"), 3.0)

    @async_test
    async def test_fresh_client_served_during_a_slowloris_flood(self) -> None:
        """
        240 slow connections from 4 addresses (more than the caps hold): a
        client from a fifth address is answered, and the slow ones never
        hold more than the per-address cap each.
        """
        node = await start_node(self, "127.0.0.85", 0)
        admin = await start_admin(self, node.pool, "127.0.0.85", request_timeout=600.0)
        config = admin.config
        slow: list[_Raw] = []
        for i in range(240):
            client = await self.client(admin, f"127.0.4.{i % 4 + 1}")
            if not client.is_closed:
                client.drip(2.0)
            slow.append(client)
        for i in range(4):
            self.assertLessEqual(admin.connections.count(f"127.0.4.{i + 1}"), config.max_connections_per_address)
        await self.served(admin, "127.0.4.9")
        totals = admin.refusals.totals()
        self.assertGreaterEqual(totals.get("shed_reading", 0), 240 - 4 * config.max_connections_per_address)
