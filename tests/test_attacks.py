"""
The attacks of issue 13 against real nodes on loopback (TCP and TLS), one
test each, bounded by deadlines: a slow reader is aborted for lack of
progress, a ping flood is paced by the control-frame cap, a silent reader's
socket is freed by the close grace period, an application that takes
its time holds the sender back without losing or reordering anything, and
peers dribbling large frames cannot make the node buffer past its receive
budget, nor hold it without keeping the pace of min_frame_receive_rate.
bench/attack.py measures the same attacks against separate processes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase

from p2pool.config import PoolConfig
from p2pool.core.wire import Ping, encode, encode_message
from p2pool.errors import DisconnectReason, SendQueueFull
from p2pool.transport.connection import Connection
from tests.helpers import Node, async_test, start_node, wait_for

#: The library's close grace period.
CLOSE_GRACE_PERIOD = PoolConfig().close_grace_period

KIB = 1024


def _keep_sending(test: TestCase, conn: Connection, size: int = 64 * KIB) -> LoopingCall:
    """
    Send to C{conn} whenever its queue has room, until it closes.
    """

    def more() -> None:
        while conn.is_open:
            try:
                conn.send(b"z" * size)
            except SendQueueFull:
                return

    loop = LoopingCall(more)
    loop.clock = reactor
    loop.start(0.01)
    test.addCleanup(lambda: loop.stop() if loop.running else None)
    return loop


async def _pair(
    test: TestCase, victim_config: dict[str, Any], attacker_config: dict[str, Any]
) -> tuple[Node, Node, Connection]:
    """
    A victim and an attacker, the attacker dialing; return the victim's
    connection to the attacker. Both have the library's close grace period
    unless their configs say otherwise: an attack leaves a side that no
    longer reads, whose closes end by the grace period's abort.
    """
    victim = await start_node(test, "127.0.0.2", 0, **{"close_grace_period": CLOSE_GRACE_PERIOD, **victim_config})
    attacker = await start_node(test, "127.0.0.3", 1, **{"close_grace_period": CLOSE_GRACE_PERIOD, **attacker_config})
    await attacker.pool.connect(victim.point)
    await wait_for(lambda: victim.pool.active_connections() == 1)
    return victim, attacker, victim.pool.connections.list()[0]


class SlowReaderTests(TestCase):
    timeout = 120

    @async_test
    async def test_slow_reader_is_aborted(self) -> None:
        victim, attacker, conn = await _pair(self, dict(send_queue_size=256 * KIB, send_stall_timeout=1.0), {})
        attacker.pool.connections.list()[0].pause_reading()
        _keep_sending(self, conn)
        await wait_for(lambda: conn.reason is not None, timeout=90)
        self.assertEqual(conn.reason.reason, DisconnectReason.SEND_STALLED)  # type: ignore[union-attr]
        self.assertEqual(len(victim.named("send_stalled")), 1)
        self.assertLessEqual(max(e.fields["queued"] for e in victim.named("send_queue_full")), 256 * KIB)
        self.assertEqual(victim.pool.flow.budget.used, 0, "the queue is freed")
        self.assertEqual(victim.pool.active_connections(), 0, "the slot is freed")


class PingFloodTests(TestCase):
    timeout = 120

    @async_test
    async def test_ping_flood_is_paced_and_honest_peers_get_through(self) -> None:
        victim, attacker, conn = await _pair(self, dict(max_control_frame_rate=50.0), {})
        honest = await start_node(self, "127.0.0.4", 2)
        honest_conn = await honest.pool.connect(victim.point)
        flooder = attacker.pool.connections.list()[0]
        flooder.pause_reading()
        burst = encode(Ping()) * 10_000

        def flood() -> None:
            if flooder.is_open and flooder.send_queue_bytes == 0:
                flooder._protocol.write(burst)

        loop = LoopingCall(flood)
        loop.start(0.005)
        self.addCleanup(lambda: loop.stop() if loop.running else None)
        await wait_for(lambda: conn.reading_paused)
        self.assertLessEqual(conn._protocol.decoder.buffered, 128 * KIB, "what waits is one read, not the flood")
        honest_conn.send(b"still served")
        await wait_for(lambda: [m for _, m in victim.app.messages] == [b"still served"])
        self.assertTrue(conn.is_open, "a flood is paced, not a reason to disconnect")


class SilentReaderTests(TestCase):
    timeout = 120

    @async_test
    async def test_idle_close_frees_the_socket(self) -> None:
        victim, attacker, conn = await _pair(
            self,
            dict(keepalive_interval=0.5, send_stall_timeout=3600.0, close_grace_period=1.0, send_queue_size=256 * KIB),
            dict(keepalive_interval=None),
        )
        attacker.pool.connections.list()[0].pause_reading()
        _keep_sending(self, conn)
        await wait_for(lambda: conn.reason is not None, timeout=30)
        self.assertEqual(conn.reason.reason, DisconnectReason.IDLE_TIMEOUT)  # type: ignore[union-attr]
        self.assertEqual(len(victim.named("close_timeout")), 1, "the goodbye could not be flushed: aborted")
        # The TLS layer is told of the loss once the TCP socket has closed.
        self.assertFalse(conn._protocol.transport.connected, "the socket is closed")  # type: ignore[union-attr]
        self.assertEqual(victim.pool.active_connections(), 0)


class _SlowApp:
    """
    Takes one message per tick: each message_received returns a Deferred.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.pending: list[Deferred[None]] = []
        self.most_pending = 0

    def message_received(self, conn: Any, data: bytes) -> Deferred[None]:
        self.received.append(data)
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        self.most_pending = max(self.most_pending, len(self.pending))
        return d

    def tick(self) -> None:
        if self.pending:
            self.pending.pop(0).callback(None)


class AsyncApplicationTests(TestCase):
    timeout = 120

    @async_test
    async def test_slow_application_holds_the_sender_back(self) -> None:
        victim, sender, conn = await _pair(self, dict(max_pending_messages=3), {})
        app = _SlowApp()
        victim.app.message_received = app.message_received  # type: ignore[method-assign]
        loop = LoopingCall(app.tick)
        loop.start(0.01)
        self.addCleanup(lambda: loop.stop() if loop.running else None)
        out = sender.pool.connections.list()[0]
        messages = [b"%04d" % i + b"p" * 16 * KIB for i in range(600)]
        queued = [out.send_when_room(m) for m in messages]
        await wait_for(lambda: conn.reading_paused)
        self.assertFalse(all(d.called for d in queued), "the sender is held back")
        await wait_for(lambda: len(app.received) == 600, timeout=90)
        self.assertEqual(app.received, messages, "in order, none lost")
        self.assertLessEqual(app.most_pending, 3)


class DribbledFramesTests(TestCase):
    timeout = 120

    async def attacked(self, attackers: int, grace: float) -> tuple[Node, list[Connection], Node, Connection]:
        """
        A node whose receive budget holds two 256 KiB frames, with a
        C{grace} of seconds for a frame to get going, connected to from
        C{attackers} nodes and then one honest node: the node, the
        attackers' connections, the honest node and its connection.
        """
        frame_size = 256 * KIB + 5
        victim = await start_node(
            self,
            "127.0.0.2",
            0,
            max_message_size=256 * KIB,
            receive_buffer_budget=2 * frame_size,
            frame_receive_grace=grace,
        )
        connections: list[Connection] = []
        for i in range(attackers):
            attacker = await start_node(self, f"127.0.0.{i + 3}", i + 1)
            connections.append(await attacker.pool.connect(victim.point))
        honest = await start_node(self, "127.0.0.9", 9)
        honest_conn = await honest.pool.connect(victim.point)
        await wait_for(lambda: victim.pool.active_connections() == attackers + 1)
        return victim, connections, honest, honest_conn

    @async_test
    async def test_dribblers_cannot_buffer_past_the_receive_budget(self) -> None:
        """
        Four attackers each announce a 256 KiB frame and dribble its body,
        never ending it, to a node whose receive budget holds two such
        frames: two are read, the other two are not read past what they
        had sent when their reservation could not be had, and an honest
        peer is served all along.
        """
        frame_size = 256 * KIB + 5
        # The budget alone: the pace frames must keep (the next test) does
        # not close the holders, however long the test takes.
        victim, attackers, honest, honest_conn = await self.attacked(4, grace=3600.0)
        budget = victim.pool.flow.receive_budget
        victims_side = {str(c.peer_id): c for c in victim.pool.connections.list()}
        body = encode_message(b"d" * 256 * KIB)[: frame_size - 1]
        sent = [0] * 4

        def dribble() -> None:
            for i, conn in enumerate(attackers):
                if conn.is_open and sent[i] < len(body):
                    piece = body[sent[i] : sent[i] + 2 * KIB]
                    conn._protocol.write(piece)
                    sent[i] += len(piece)

        loop = LoopingCall(dribble)
        loop.start(0.005)
        self.addCleanup(lambda: loop.stop() if loop.running else None)
        await wait_for(lambda: budget.waiting == 2)
        waiting = [victims_side[str(c.peer_id)] for c in victim.pool.connections.list() if c.reading_paused]
        self.assertEqual(len(waiting), 2)
        read = [c.bytes_received for c in waiting]
        # The two holders read on, up to their whole frame but one byte.
        await wait_for(lambda: min(sent) == len(body))
        holders = [c for c in victims_side.values() if c not in waiting and c.peer_id != honest.pool.peer_id]
        await wait_for(lambda: all(c._protocol.decoder.buffered == len(body) for c in holders))
        self.assertEqual([c.bytes_received for c in waiting], read, "a waiting connection is not read")
        for conn in waiting:
            self.assertLessEqual(conn._protocol.decoder.buffered, 128 * KIB, "it holds what it had read: one read")
        self.assertEqual((budget.used, budget.peak), (2 * frame_size, 2 * frame_size))
        buffered = sum(c._protocol.decoder.buffered for c in victims_side.values())
        self.assertLessEqual(buffered, budget.limit + 2 * 128 * KIB)
        honest_conn.send(b"still served")
        await wait_for(lambda: [m for _, m in victim.app.messages] == [b"still served"])
        self.assertEqual(len(victim.named("receive_budget_full")), 1)
        for conn in attackers:
            conn.disconnect(abort=True)
        await wait_for(lambda: victim.pool.active_connections() == 1)
        self.assertEqual((budget.used, budget.waiting), (0, 0))

    @async_test
    async def test_dribblers_are_closed_and_their_room_freed(self) -> None:
        """
        Two attackers announce a 256 KiB frame each to a node whose receive
        budget holds two, then send ten bytes a second: once 2 s of grace
        are over they are aborted (C{frame_too_slow}), not greylisted, and
        their room goes to an honest peer's frame that waited behind them,
        which arrives.
        """
        frame_size = 256 * KIB + 5
        victim, attackers, honest, honest_conn = await self.attacked(2, grace=2.0)
        budget = victim.pool.flow.receive_budget
        victims_side = [c for c in victim.pool.connections.list() if c.peer_id != honest.pool.peer_id]
        body = encode_message(b"d" * 256 * KIB)
        sent = [1000, 1000]
        for conn in attackers:
            conn._protocol.write(body[:1000])
        await wait_for(lambda: budget.used == 2 * frame_size)
        honest_message = b"h" * 256 * KIB
        honest_conn.send(honest_message)
        await wait_for(lambda: budget.waiting == 1)

        def dribble() -> None:
            for i, conn in enumerate(attackers):
                if conn.is_open:
                    conn._protocol.write(body[sent[i] : sent[i] + 1])
                    sent[i] += 1

        loop = LoopingCall(dribble)
        loop.start(0.1)
        self.addCleanup(lambda: loop.stop() if loop.running else None)
        await wait_for(lambda: [m for _, m in victim.app.messages] == [honest_message])
        await wait_for(lambda: victim.pool.active_connections() == 1)
        for conn in victims_side:
            self.assertEqual(conn.reason.reason, DisconnectReason.FRAME_TOO_SLOW)  # type: ignore[union-attr]
        events = victim.named("frame_too_slow")
        self.assertEqual(len(events), 2)
        for event in events:
            self.assertEqual(event.fields["size"], frame_size)
            self.assertGreaterEqual(event.fields["seconds"], 2.0)
        self.assertEqual(victim.named("greylisted_peer") + victim.named("greylisted_addr"), [])
        self.assertEqual((budget.used, budget.waiting, budget.peak), (0, 0, 2 * frame_size))
