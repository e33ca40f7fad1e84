"""
Flow control (issue 13): the sans-I/O pieces of L{p2pool.core.flow}, then each
mechanism on the in-memory network: bounded send queues and the node
budget, the no-progress abort, the close grace period, reading paused by
the application (explicitly or by Deferreds it returns), the control-frame
rate cap, the bandwidth limits, the receive budget and the pace large
frames must keep.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from p2pool.config import PoolConfig
from p2pool.core.addressing import Point
from p2pool.core.flow import (
    CHUNK_SIZE,
    PRODUCER_HIGH_WATER,
    PRODUCER_LOW_WATER,
    ByteBudget,
    FairShare,
    FlowLimits,
    FrameArrival,
    FrameReservation,
    ReadGate,
    ReceiveBudget,
    SendQueue,
    TokenBucket,
)
from p2pool.core.states import PointState
from p2pool.core.wire import LARGE_FRAME, Ping, encode, encode_message
from p2pool.core.wire import frame as wire_frame
from p2pool.errors import ConnectionEnded, DisconnectReason, SendQueueFull
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork
from p2pool.transport.connection import Connection
from tests.helpers import RecordingApp

KIB = 1024


class SendQueueTests(SynchronousTestCase):
    def test_bound_and_budget(self) -> None:
        budget = ByteBudget(300)
        a, b = SendQueue(200, budget), SendQueue(200, budget)
        self.assertTrue(a.fits(500), "an empty queue takes one frame of any size the budget allows")
        a.push(b"x" * 150)
        self.assertTrue(a.fits(50))
        self.assertFalse(a.fits(51), "the queue's own limit")
        b.push(b"y" * 100)
        self.assertFalse(b.fits(100), "the node budget")
        self.assertEqual(budget.used, 250)
        self.assertEqual(a.pop_chunk(100), b"x" * 100)
        self.assertEqual((a.queued, budget.used), (50, 150))
        a.clear()
        b.clear()
        self.assertEqual(budget.used, 0)

    def test_budget_takes_one_oversized_frame_alone(self) -> None:
        budget = ByteBudget(10)
        self.assertTrue(budget.fits(100))
        budget.take(100)
        self.assertFalse(budget.fits(1))

    def test_chunks_join_and_cut_frames(self) -> None:
        q = SendQueue(1000, ByteBudget(1000))
        for frame in (b"aaa", b"bb", b"cccc"):
            q.push(frame)
        self.assertEqual(q.pop_chunk(4), b"aaab")
        self.assertEqual(q.pop_chunk(100), b"bcccc")
        self.assertEqual(q.queued, 0)

    def test_chunks_at_most_chunk_size(self) -> None:
        """
        Small frames are handed over joined in chunks of at most
        L{CHUNK_SIZE}; a frame larger than a chunk goes in pieces.
        """
        q = SendQueue(10 * CHUNK_SIZE, ByteBudget(10 * CHUNK_SIZE))
        frame = b"f" * 1000
        for _ in range(300):
            q.push(frame)
        big = bytes(range(256)) * (CHUNK_SIZE // 128)  # two chunks' worth
        q.push(big)
        chunks = []
        for _ in range(20):  # 2 + 300 * 1000 / CHUNK_SIZE chunks are enough
            if not q.queued:
                break
            chunk = q.pop_chunk(CHUNK_SIZE)
            self.assertTrue(0 < len(chunk) <= CHUNK_SIZE)
            chunks.append(chunk)
        self.assertEqual(b"".join(chunks), frame * 300 + big)
        self.assertEqual(len(chunks[0]), CHUNK_SIZE // 1000 * 1000, "whole frames up to a chunk")
        self.assertEqual(q.budget.used, 0)
        self.assertEqual(q.pop_chunk(CHUNK_SIZE), b"")

    @given(
        st.lists(
            st.one_of(
                st.tuples(st.just("push"), st.integers(1, 3 * CHUNK_SIZE)),
                st.tuples(st.just("offer"), st.integers(1, 3 * CHUNK_SIZE)),
                st.tuples(st.just("pop"), st.integers(1, 2 * CHUNK_SIZE)),
            ),
            max_size=40,
        )
    )
    def test_bytes_out_are_bytes_in(self, ops: list[tuple[str, int]]) -> None:
        """
        Whatever the mix of frames and chunk sizes, the queue hands over
        exactly the bytes queued, in order, never more than asked, and
        counts them in the queue and the node budget.
        """
        budget = ByteBudget(4 * CHUNK_SIZE)
        q = SendQueue(2 * CHUNK_SIZE, budget)
        expected = bytearray()
        out = bytearray()
        for n, (op, size) in enumerate(ops):
            frame = bytes([n % 251]) * size
            if op == "pop":
                pending = len(expected) - len(out)
                chunk = q.pop_chunk(size)
                self.assertLessEqual(len(chunk), size)
                self.assertEqual(bool(chunk), pending > 0, "a chunk whenever bytes wait")
                out += chunk
            elif op == "push":
                if q.fits(size):
                    q.push(frame)
                    expected += frame
            else:
                fits = q.fits(size)
                high_water = q.offer(frame)
                self.assertEqual(high_water is not None, fits)
                if fits:
                    expected += frame
                    self.assertEqual(high_water, q.high_water)
            self.assertEqual(q.queued, len(expected) - len(out))
            self.assertEqual(budget.used, q.queued)
        for _ in range(10):  # the queue holds at most 2 chunks and one frame
            out += q.pop_chunk(CHUNK_SIZE)
        self.assertEqual(q.queued, 0)
        self.assertEqual(bytes(out), bytes(expected))

    def test_producer_marks(self) -> None:
        """
        A producer pauses at L{PRODUCER_HIGH_WATER} and resumes at
        L{PRODUCER_LOW_WATER} on a large queue, at three quarters and half
        of a small one.
        """
        large = SendQueue(100 * CHUNK_SIZE, ByteBudget(1000 * CHUNK_SIZE))
        large.push(b"x" * (PRODUCER_HIGH_WATER - 1))
        self.assertFalse(large.high_water)
        large.push(b"x")
        self.assertTrue(large.high_water)
        self.assertFalse(large.has_room)
        large.pop_chunk(PRODUCER_HIGH_WATER - PRODUCER_LOW_WATER)
        self.assertTrue(large.has_room)
        small = SendQueue(1000, ByteBudget(10_000))
        small.push(b"x" * 749)
        self.assertFalse(small.high_water)
        small.push(b"x")
        self.assertTrue(small.high_water)
        small.pop_chunk(250)
        self.assertTrue(small.has_room)

    def test_stall(self) -> None:
        q = SendQueue(10, ByteBudget(10))
        self.assertFalse(q.stalled(100.0, 1.0))
        q.transport_full(5.0)
        q.transport_full(6.0)
        self.assertFalse(q.stalled(7.0, 5.0))
        self.assertTrue(q.stalled(10.0, 5.0), "since the first time it filled")
        q.transport_drained()
        self.assertFalse(q.stalled(100.0, 5.0))
        self.assertTrue(q.writable)


class ReceiveBudgetTests(SynchronousTestCase):
    """
    L{ReceiveBudget} and L{FrameReservation}, driven directly.
    """

    def setUp(self) -> None:
        self.budget = ReceiveBudget(100)
        self.granted: list[str] = []

    def reservation(self, name: str) -> FrameReservation:
        return self.budget.reservation(lambda: self.granted.append(name))

    def test_reserve_and_release(self) -> None:
        a, b = self.reservation("a"), self.reservation("b")
        self.assertTrue(a.take(60))
        self.assertTrue(b.take(40), "exactly the limit fits")
        self.assertEqual((self.budget.used, self.budget.peak, self.budget.waited), (100, 100, 0))
        a.release()
        self.assertEqual((self.budget.used, a.size, a.held), (40, 0, False))
        self.assertTrue(a.take(60), "a reservation is taken again for the next frame")
        self.assertRaises(ValueError, a.take, 1)
        a.release()
        b.release()
        self.assertEqual((self.budget.used, self.budget.peak), (0, 100))
        self.assertEqual(self.granted, [], "nothing waited")

    def test_release_is_exactly_once(self) -> None:
        a, b = self.reservation("a"), self.reservation("b")
        a.take(70)
        b.take(20)
        a.release()
        a.release()
        self.assertEqual(self.budget.used, 20, "a second release gives nothing back twice")
        waiting = self.reservation("w")
        self.assertTrue(waiting.take(80))
        c = self.reservation("c")
        self.assertFalse(c.take(10))
        c.release()
        c.release()
        self.assertEqual((self.budget.used, self.budget.waiting), (100, 0))
        waiting.release()
        b.release()
        self.assertEqual(self.granted, [], "a withdrawn waiter is never granted")
        self.assertEqual(self.budget.used, 0)

    def test_waiters_granted_first_come_first_served(self) -> None:
        holder = self.reservation("holder")
        holder.take(90)
        big, small = self.reservation("big"), self.reservation("small")
        self.assertFalse(big.take(60))
        self.assertFalse(small.take(5), "it would fit, but must not overtake the waiter before it")
        self.assertEqual((self.budget.waiting, self.budget.waited), (2, 2))
        holder.release()
        self.assertEqual(self.granted, ["big", "small"], "in order, all that fit")
        self.assertTrue(big.held and small.held)
        self.assertEqual(self.budget.used, 65)
        late = self.reservation("late")
        self.assertFalse(late.take(41))
        small.release()
        self.assertEqual(self.granted, ["big", "small"], "40 free: still not enough for late")
        big.release()
        self.assertEqual(self.granted, ["big", "small", "late"])
        late.release()
        self.assertEqual((self.budget.used, self.budget.waiting), (0, 0))

    def test_withdrawn_first_waiter_lets_the_next_in(self) -> None:
        holder = self.reservation("holder")
        holder.take(50)
        first, second = self.reservation("first"), self.reservation("second")
        first.take(80)
        second.take(30)
        self.assertEqual(self.granted, [])
        first.release()  # its connection closed while it waited
        self.assertEqual(self.granted, ["second"])
        self.assertEqual((self.budget.used, self.budget.waiting), (80, 0))
        holder.release()
        second.release()
        self.assertEqual(self.budget.used, 0)

    def test_frame_larger_than_the_budget_goes_alone(self) -> None:
        holder, huge = self.reservation("holder"), self.reservation("huge")
        holder.take(10)
        self.assertFalse(huge.take(150))
        holder.release()
        self.assertEqual(self.granted, ["huge"])
        self.assertEqual(self.budget.used, 150)
        huge.release()
        self.assertEqual(self.budget.used, 0)

    @given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 120)), max_size=60))
    def test_never_past_the_limit_and_nothing_leaks(self, ops: list[tuple[int, int]]) -> None:
        """
        Any sequence of takes and releases by six connections: the budget
        never holds more than its limit (but for one frame alone), waiters
        are granted in the order they came, and once every reservation has
        ended nothing is held.
        """
        budget = ReceiveBudget(200)
        granted: list[int] = []
        queue: list[int] = []
        conns = [budget.reservation(lambda i=i: granted.append(i)) for i in range(6)]  # type: ignore[misc]
        for who, size in ops:
            conn = conns[who]
            if conn.size:
                if not conn.held:
                    queue.remove(who)
                conn.release()
            elif not conn.take(size):
                queue.append(who)
            while granted:
                self.assertEqual(granted.pop(0), queue.pop(0), "first come first served")
            held = sum(c.size for c in conns if c.held)
            self.assertEqual(budget.used, held)
            self.assertTrue(budget.used <= 200 or sum(1 for c in conns if c.held) == 1)
            self.assertEqual(budget.waiting, len(queue))
        for conn in conns:
            conn.release()
        self.assertEqual((budget.used, budget.waiting), (0, 0))


class FrameArrivalTests(SynchronousTestCase):
    """
    L{FrameArrival}, driven directly: 100 bytes per second, 2 s of grace.
    """

    def test_silent_frame_is_overdue_after_the_grace(self) -> None:
        arrival = FrameArrival(100.0, 2.0)
        arrival.start(10.0)
        self.assertTrue(arrival.running)
        self.assertEqual(arrival.left(0, 10.0), 2.0)
        self.assertEqual(arrival.left(0, 11.5), 0.5)
        self.assertEqual(arrival.left(0, 12.0), 0.0)
        self.assertEqual(arrival.spent(12.0), 2.0)

    def test_bytes_arrived_extend_the_deadline(self) -> None:
        arrival = FrameArrival(100.0, 2.0)
        arrival.start(0.0)
        self.assertEqual(arrival.left(300, 4.0), 1.0, "3 s earned by 300 bytes, 4 spent")
        self.assertEqual(arrival.left(500, 4.0), 3.0)

    def test_time_not_read_is_not_counted(self) -> None:
        arrival = FrameArrival(100.0, 2.0)
        arrival.start(0.0)
        arrival.stop(1.5)
        arrival.stop(3.0)
        self.assertFalse(arrival.running)
        self.assertEqual(arrival.left(0, 100.0), 0.5, "stopped at 1.5 s of reading")
        arrival.start(100.0)
        arrival.start(100.2)
        self.assertEqual(arrival.spent(100.25), 1.75, "a second start changes nothing")
        self.assertEqual(arrival.left(0, 100.5), 0.0)

    def test_limits_from_config(self) -> None:
        flow = FlowLimits.from_config(PoolConfig(min_frame_receive_rate=1000, frame_receive_grace=3.0))
        arrival = flow.frame_arrival()
        self.assertEqual((arrival.rate, arrival.grace), (1000, 3.0))
        defaults = FlowLimits.from_config(PoolConfig()).frame_arrival()
        self.assertEqual((defaults.rate, defaults.grace), (64 * KIB, 10.0))


class ReadGateTests(SynchronousTestCase):
    def test_reasons(self) -> None:
        gate = ReadGate()
        self.assertTrue(gate.pause(ReadGate.APPLICATION))
        self.assertFalse(gate.pause(ReadGate.REQUESTED), "already paused")
        self.assertFalse(gate.resume(ReadGate.APPLICATION), "another reason holds")
        self.assertFalse(gate.resume(ReadGate.DOWNLOAD), "not a reason")
        self.assertTrue(gate.resume(ReadGate.REQUESTED))
        self.assertFalse(gate.paused)


class RateTests(SynchronousTestCase):
    def test_token_bucket_wait(self) -> None:
        bucket = TokenBucket(2.0, 4.0, now=0.0)
        self.assertEqual(bucket.take(3, 0.0), 2)
        self.assertEqual(bucket.wait(1, 0.0), 0.25)
        self.assertEqual(bucket.wait(1, 0.25), 0.0)

    def test_fair_share_equal_among_users(self) -> None:
        share = FairShare(1000.0, window=0.1)  # 100 bytes per window
        self.assertEqual(share.allowance("a", 0.0), 100.0, "alone, a has it all")
        self.assertEqual(share.allowance("b", 0.0), 50.0)
        self.assertEqual(share.allowance("a", 0.0), 50.0)
        share.consume("a", 80, 0.0)
        self.assertEqual(share.allowance("a", 0.05), 0.0)
        self.assertEqual(share.allowance("b", 0.05), 50.0)
        self.assertAlmostEqual(share.wait("a", 0.05), 0.05)
        self.assertEqual(share.wait("b", 0.05), 0.0)

    def test_fair_share_carries_overshoot(self) -> None:
        share = FairShare(1000.0, window=0.1)
        share.consume("a", 250, 0.0)  # one read cannot be cut
        self.assertAlmostEqual(share.wait("a", 0.0), 0.2, msg="150 owed: repaid by the end of window 2")
        self.assertEqual(share.allowance("a", 0.1), 0.0)
        self.assertEqual(share.allowance("a", 0.2), 50.0)
        share.consume("a", 1000, 0.2)
        self.assertEqual(share.allowance("a", 0.75), 0.0, "5 windows later, 450 still owed")
        self.assertEqual(share.allowance("a", 1.2), 50.0)

    def test_fair_share_forgets_idle_users(self) -> None:
        share = FairShare(1000.0, window=0.1)
        share.allowance("a", 0.0)
        share.allowance("b", 0.0)
        self.assertEqual(share.allowance("a", 0.35), 100.0, "b was idle for whole windows")
        share.forget("a")
        self.assertEqual(share.allowance("c", 0.35), 100.0)


class _Network(SynchronousTestCase):
    """
    Two pools, A dialing B, on the in-memory network.
    """

    settings: dict[str, Any] = {}

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=5, latency=0.01)
        self.addCleanup(self.network.stop)
        self.events: list[Any] = []
        self.network.observe(lambda time, ip, event: self.events.append(event) if ip == "10.1.0.1" else None)
        self.app_a, self.app_b = self.make_app(), self.make_app()
        settings: dict[str, Any] = dict(maintenance_idle_time=None, keepalive_interval=None, send_queue_size=64 * KIB)
        settings.update(self.settings)
        self.a = self.network.add_pool("10.1.0.1", app=self.app_a, **settings)
        self.b = self.network.add_pool("10.2.0.1", app=self.app_b, **settings)
        d = self.a.connect(Point("10.2.0.1", 9732))
        self.network.advance(1.0)
        self.conn: Connection = self.successResultOf(d)
        self.remote: Connection = self.b.connections.list()[0]

    def make_app(self) -> Any:
        return RecordingApp()

    def named(self, name: str) -> list[Any]:
        return [e for e in self.events if e.event == name]

    def fill(self, conn: Connection, size: int = 8 * KIB) -> int:
        """
        Send to C{conn} until its queue refuses; return how many went.
        """
        sent = 0
        while True:
            try:
                conn.send(b"m" * size)
            except SendQueueFull:
                return sent
            sent += 1
            self.assertLess(sent, 10_000, "the queue never filled")


class SendQueueNetworkTests(_Network):
    def test_full_queue_refuses_and_bounds(self) -> None:
        self.remote.pause_reading()
        self.network.advance(0.1)
        sent = self.fill(self.conn)
        self.assertGreater(sent, 0)
        self.assertLessEqual(self.conn.send_queue_bytes, 64 * KIB)
        self.assertEqual(self.a.flow.budget.used, self.conn.send_queue_bytes)
        self.assertEqual(len(self.named("send_queue_full")), 1)
        # broadcast skips the full peer and counts it.
        self.assertEqual(self.a.broadcast(b"g" * 16 * KIB), 0)
        self.assertEqual(self.a.broadcast_skipped, 1)
        # Pool.send waits for room, in order.
        waiting = self.a.send(self.b.peer_id, b"l" * 16 * KIB)
        self.assertNoResult(waiting)
        self.remote.resume_reading()
        self.network.advance(2.0)
        self.successResultOf(waiting)
        received = [m for _, m in self.app_b.messages]
        self.assertEqual(len(received), sent + 1)
        self.assertEqual(received[-1], b"l" * 16 * KIB)
        self.assertEqual(self.a.flow.budget.used, 0)

    def test_node_budget_bounds_all_connections(self) -> None:
        self.a.flow.budget.limit = 40 * KIB
        self.remote.pause_reading()
        self.network.advance(0.1)
        self.fill(self.conn)
        self.assertLessEqual(self.a.flow.budget.used, 40 * KIB)

    def test_control_answers_dropped_when_full(self) -> None:
        self.remote.pause_reading()
        self.network.advance(0.1)
        self.fill(self.conn)
        room = 64 * KIB - self.conn.send_queue_bytes
        ping = encode(Ping())
        for _ in range(room // len(ping) + 100):
            self.conn.send_control(ping)
        self.assertLessEqual(self.conn.send_queue_bytes, 64 * KIB)
        self.assertEqual(self.conn._protocol.send_queue.dropped_control, 100)

    def test_producer_paused_and_resumed(self) -> None:
        calls: list[str] = []

        class Producer:
            def pauseProducing(self) -> None:
                calls.append("pause")

            def resumeProducing(self) -> None:
                calls.append("resume")

            def stopProducing(self) -> None:
                calls.append("stop")

        self.conn.register_producer(Producer())
        self.remote.pause_reading()
        self.network.advance(0.1)
        self.fill(self.conn)
        self.assertEqual(calls, ["pause"])
        self.remote.resume_reading()
        self.network.advance(2.0)
        self.assertEqual(calls, ["pause", "resume"])
        self.conn.disconnect()
        self.network.advance(1.0)
        self.assertEqual(calls, ["pause", "resume", "stop"], "stopped when the connection closes, as by a transport")


class StallTests(_Network):
    settings = dict(send_stall_timeout=30.0)

    def test_no_progress_aborts_and_frees_the_slot(self) -> None:
        self.remote.pause_reading()
        self.network.advance(0.1)
        self.fill(self.conn)
        self.network.advance(20.0)
        self.assertTrue(self.conn.is_open, "not yet")
        self.network.advance(11.0)
        self.assertFalse(self.conn.is_open)
        self.assertEqual(self.conn.reason.reason, DisconnectReason.SEND_STALLED)  # type: ignore[union-attr]
        (event,) = self.named("send_stalled")
        self.assertGreaterEqual(event.fields["seconds"], 30.0)
        self.assertEqual(self.a.active_connections(), 0)
        self.assertEqual(self.a.points.info(Point("10.2.0.1", 9732)).state, PointState.DISCONNECTED)  # type: ignore[union-attr]
        self.assertEqual(self.a.flow.budget.used, 0, "the queue is freed")
        # The slot is free: the pool dials B again.
        self.remote.resume_reading()
        self.network.advance(1.0)
        self.assertEqual(self.b.active_connections(), 0, "B saw the abort")
        d = self.a.connect(Point("10.2.0.1", 9732))
        self.network.advance(1.0)
        self.successResultOf(d)

    def test_slow_progress_is_not_a_stall(self) -> None:
        self.remote.pause_reading()
        self.network.advance(0.1)
        self.fill(self.conn)
        for _ in range(4):
            self.network.advance(25.0)
            self.remote.resume_reading()
            self.network.advance(0.5)
            self.remote.pause_reading()
            self.fill(self.conn)
        self.assertTrue(self.conn.is_open)

    def test_close_grace_period_frees_the_socket(self) -> None:
        """
        A peer that does not read: our goodbye cannot be flushed, so the
        socket is aborted after close_grace_period.
        """
        self.remote.pause_reading()
        self.network.advance(0.1)
        self.fill(self.conn)
        closed = self.conn.disconnect()
        self.network.advance(1.0)
        self.assertNoResult(closed)
        self.network.advance(1.5)
        self.successResultOf(closed)
        self.assertEqual(len(self.named("close_timeout")), 1)
        self.assertEqual(self.b.active_connections(), 0, "B's side is gone too")


class ReadingTests(_Network):
    def test_pause_and_resume_reading(self) -> None:
        self.remote.pause_reading()
        self.assertTrue(self.remote.reading_paused)
        for i in range(5):
            self.conn.send(b"%d" % i)
        self.network.advance(1.0)
        self.assertEqual(self.app_b.messages, [])
        self.remote.resume_reading()
        self.network.advance(0.1)
        self.assertEqual([m for _, m in self.app_b.messages], [b"0", b"1", b"2", b"3", b"4"])

    def test_paused_connection_is_not_idle(self) -> None:
        """
        Keepalive does not close a connection because we stopped reading it.
        """
        keepalive = self.network.add_pool("10.3.0.1", keepalive_interval=10.0, maintenance_idle_time=None)
        d = keepalive.connect(Point("10.2.0.1", 9732))
        self.network.advance(1.0)
        conn = self.successResultOf(d)
        conn.pause_reading()
        self.network.advance(100.0)
        self.assertTrue(conn.is_open)


class _DeferringApp(RecordingApp):
    """
    Returns an unfired Deferred for each message, as an application that
    handles messages one at a time with I/O does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Deferred[None]] = []

    def message_received(self, conn: Any, data: bytes) -> Deferred[None]:
        super().message_received(conn, data)
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        return d


class DeferredAppTests(_Network):
    settings = dict(max_pending_messages=3)

    def make_app(self) -> Any:
        return _DeferringApp()

    def test_outstanding_messages_pause_reading(self) -> None:
        for i in range(20):
            self.conn.send(b"%02d" % i)
        self.network.advance(1.0)
        self.assertEqual(len(self.app_b.messages), 3, "reading paused at max_pending_messages")
        self.assertTrue(self.remote.reading_paused)
        self.assertEqual(self.remote.pending_messages, 3)
        delivered = 3
        while self.app_b.pending:
            self.app_b.pending.pop(0).callback(None)
            self.network.advance(0.1)
            self.assertLessEqual(len(self.app_b.pending), 3)
            delivered = len(self.app_b.messages)
        self.assertEqual(delivered, 20)
        self.assertEqual([m for _, m in self.app_b.messages], [b"%02d" % i for i in range(20)], "in order, none lost")
        self.assertFalse(self.remote.reading_paused)

    def test_failed_deferred_is_logged_and_released(self) -> None:
        self.conn.send(b"x")
        self.network.advance(0.5)
        self.app_b.pending.pop().errback(ValueError("app broke"))
        self.assertEqual(self.remote.pending_messages, 0)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class _CoroutineApp(RecordingApp):
    def __init__(self) -> None:
        super().__init__()
        self.gates: list[Deferred[None]] = []

    async def handle(self, conn: Any, data: bytes) -> None:
        gate: Deferred[None] = Deferred()
        self.gates.append(gate)
        await gate
        super().message_received(conn, data)

    def message_received(self, conn: Any, data: bytes) -> Any:
        return self.handle(conn, data)


class CoroutineAppTests(_Network):
    settings = dict(max_pending_messages=2)

    def make_app(self) -> Any:
        return _CoroutineApp()

    def test_awaitable_counts_as_pending(self) -> None:
        for i in range(5):
            self.conn.send(b"%d" % i)
        self.network.advance(1.0)
        self.assertEqual(len(self.app_b.gates), 2)
        while self.app_b.gates:
            self.app_b.gates.pop(0).callback(None)
            self.network.advance(0.1)
        self.assertEqual([m for _, m in self.app_b.messages], [b"%d" % i for i in range(5)])


class ControlRateTests(_Network):
    settings = dict(max_control_frame_rate=10.0)

    def test_ping_flood_is_paced(self) -> None:
        pongs_before = self.conn.bytes_received
        self.conn._protocol.write(encode(Ping()) * 200)
        self.network.advance(1.0)
        answered = (self.conn.bytes_received - pongs_before) // len(encode(Ping()))
        # A burst of 20 plus 10 per second.
        self.assertLessEqual(answered, 20 + 10 + 1)
        self.assertTrue(self.remote.reading_paused)
        self.network.advance(20.0)
        answered = (self.conn.bytes_received - pongs_before) // len(encode(Ping()))
        self.assertEqual(answered, 200, "every frame is handled, at the capped rate")
        self.assertTrue(self.remote.is_open)


class _Bandwidth(SynchronousTestCase):
    """
    One node with a bandwidth limit and two peers.
    """

    def start(self, **limits: Any) -> None:
        self.network = MemoryNetwork(seed=9, latency=0.005)
        self.addCleanup(self.network.stop)
        settings: dict[str, Any] = dict(maintenance_idle_time=None, keepalive_interval=None)
        self.apps = [RecordingApp() for _ in range(3)]
        self.hub = self.network.add_pool("10.1.0.1", app=self.apps[0], **settings, **limits)
        self.peers: list[Pool] = []
        self.conns: list[Connection] = []
        for i, ip in enumerate(("10.2.0.1", "10.3.0.1"), start=1):
            pool = self.network.add_pool(ip, app=self.apps[i], **settings)
            d = self.hub.connect(Point(ip, 9732))
            self.network.advance(1.0)
            self.conns.append(self.successResultOf(d))
            self.peers.append(pool)


class BandwidthTests(_Bandwidth):
    def test_upload_shared_equally(self) -> None:
        self.start(max_upload_speed=100 * KIB)
        sent = [c.bytes_sent for c in self.conns]
        pending = [c.send_when_room(b"u" * 4 * KIB) for c in self.conns for _ in range(200)]
        self.network.advance(5.0)
        moved = [c.bytes_sent - s for c, s in zip(self.conns, sent)]
        self.assertLessEqual(sum(moved), 100 * KIB * 5.2)
        self.assertGreater(sum(moved), 100 * KIB * 4.5)
        self.assertLess(abs(moved[0] - moved[1]), 0.1 * max(moved), f"equal shares: {moved}")
        self.network.advance(60.0)
        for d in pending:
            self.successResultOf(d)

    def test_download_shared_equally(self) -> None:
        self.start(max_download_speed=100 * KIB)
        hub_side = [p.connections.list()[0] for p in self.peers]
        received = [c.bytes_received for c in self.conns]
        for conn in hub_side:
            for _ in range(200):
                conn.send_when_room(b"d" * 4 * KIB)
        self.network.advance(5.0)
        moved = [c.bytes_received - r for c, r in zip(self.conns, received)]
        # A read may overshoot its share by one chunk (what one write hands over).
        self.assertLessEqual(sum(moved), 100 * KIB * 5 + 4 * CHUNK_SIZE)
        self.assertGreater(sum(moved), 100 * KIB * 4.5)
        self.assertLess(abs(moved[0] - moved[1]), 0.15 * max(moved), f"equal shares: {moved}")

    def test_unlimited_by_default(self) -> None:
        self.start()
        self.assertIsNone(self.hub.flow.upload)
        self.assertIsNone(self.hub.flow.download)


class ConnectionEndedTests(_Network):
    def test_waiting_send_fails_when_the_connection_closes(self) -> None:
        self.remote.pause_reading()
        self.network.advance(0.1)
        self.fill(self.conn)
        waiting = self.conn.send_when_room(b"n" * 64 * KIB)
        self.conn._protocol.fail(ConnectionEnded(DisconnectReason.REQUESTED), abort=True)
        self.network.advance(0.1)
        failure = self.failureResultOf(waiting, ConnectionEnded)
        self.assertEqual(failure.value.reason, DisconnectReason.REQUESTED)


class CancelledSendTests(_Network):
    def test_cancelled_waiting_send_is_not_sent(self) -> None:
        """
        A message whose C{send_when_room} Deferred was cancelled (as
        C{addTimeout} does) leaves the wait: it is never sent, and the
        messages around it keep their order.
        """
        self.remote.pause_reading()
        self.network.advance(0.1)
        self.fill(self.conn)
        waits = [self.conn.send_when_room(b"%d" % i * 8 * KIB) for i in range(3)]
        self.assertNoResult(waits[0])
        waits[1].cancel()
        self.failureResultOf(waits[1], CancelledError)
        self.remote.resume_reading()
        self.network.advance(2.0)
        self.successResultOf(waits[0])
        self.successResultOf(waits[2])
        self.assertEqual([m[:1] for _, m in self.app_b.messages if m[:1] != b"m"], [b"0", b"2"])


#: A large frame's body in the receive budget tests: 200 KiB.
FRAME_BODY = 200 * KIB
#: Its whole size, as reserved.
FRAME_SIZE = FRAME_BODY + 5


class _BudgetHub(SynchronousTestCase):
    """
    A hub whose receive budget holds two large frames, on a memory network,
    and five peers connected to it.
    """

    def build_hub(self, seed: int, **hub_settings: Any) -> None:
        self.network = MemoryNetwork(seed=seed, latency=0.01)
        self.addCleanup(self.network.stop)
        self.events: list[Any] = []
        self.network.observe(lambda time, ip, event: self.events.append(event) if ip == "10.1.0.1" else None)
        settings: dict[str, Any] = dict(maintenance_idle_time=None, keepalive_interval=None, max_message_size=256 * KIB)
        self.app = RecordingApp()
        self.hub = self.network.add_pool(
            "10.1.0.1", app=self.app, receive_buffer_budget=2 * FRAME_SIZE, **settings, **hub_settings
        )
        self.budget = self.hub.flow.receive_budget
        #: Each peer's connection to the hub, and the hub's to it.
        self.conns: list[Connection] = []
        self.hub_side: list[Connection] = []
        for i in range(5):
            peer = self.network.add_pool(f"10.{i + 2}.0.1", **settings)
            d = peer.connect(Point("10.1.0.1", 9732))
            self.network.advance(1.0)
            self.conns.append(self.successResultOf(d))
            hub_conn = self.hub.connections.find_by_peer_id(peer.peer_id)
            assert hub_conn is not None
            self.hub_side.append(hub_conn)


class ReceiveBudgetNetworkTests(_BudgetHub):
    """
    A hub whose receive budget holds two large frames, and five peers
    writing raw frames to it, a piece at a time.
    """

    def setUp(self) -> None:
        self.build_hub(13)

    def write(self, peer: int, data: bytes) -> None:
        """
        Peer C{peer} writes C{data} to the hub, as raw bytes, and it arrives.
        """
        self.conns[peer]._protocol.write(data)
        self.network.advance(0.1)

    def received(self, peer: int) -> list[bytes]:
        return [m for c, m in self.app.messages if c is self.hub_side[peer]]

    def test_reservation_waits_for_room_first_come_first_served(self) -> None:
        frames = [encode_message(bytes([i]) * FRAME_BODY) for i in range(4)]
        self.write(0, frames[0][:1000])
        self.write(1, frames[1][:1000])
        self.assertEqual((self.budget.used, self.budget.waiting), (2 * FRAME_SIZE, 0))
        self.write(2, frames[2][:1000])
        self.assertEqual(self.budget.waiting, 1, "peer 2 waits for room")
        self.assertTrue(self.hub_side[2].reading_paused)
        read = self.hub_side[2].bytes_received
        self.write(2, frames[2][1000:] + encode_message(b"after"))
        self.assertEqual(self.hub_side[2].bytes_received, read, "what peer 2 sends now is not read")
        self.write(3, frames[3][:1000])
        self.assertEqual(self.budget.waiting, 2, "peer 3 waits behind peer 2")
        (event,) = [e for e in self.events if e.event == "receive_budget_full"]
        self.assertEqual(event.fields["peer_id"], str(self.hub_side[2].peer_id))
        self.assertEqual((event.fields["size"], event.fields["budget_used"]), (FRAME_SIZE, 2 * FRAME_SIZE))
        # Small frames on another connection flow while the budget is spent.
        for i in range(5):
            self.conns[4].send(b"unrelated %d" % i)
        self.write(0, frames[0][1000:20_000])
        self.network.advance(0.5)
        self.assertEqual(self.received(4), [b"unrelated %d" % i for i in range(5)])
        self.assertEqual(self.received(2), [])
        self.assertEqual(len(self.received(0)), 0)
        self.assertEqual(self.budget.used, 2 * FRAME_SIZE, "the budget never holds more")
        # Peer 0's frame completes: its room goes to peer 2, the first waiter.
        self.write(0, frames[0][20_000:])
        self.network.advance(0.5)
        self.assertEqual(self.received(0), [frames[0][5:]])
        self.assertEqual(self.received(2), [frames[2][5:], b"after"], "delivered intact, in order")
        self.assertFalse(self.hub_side[2].reading_paused)
        self.assertEqual(
            (self.budget.used, self.budget.waiting),
            (2 * FRAME_SIZE, 0),
            "peer 2's frame was whole at once: its room went on to peer 3, next in line",
        )
        self.assertFalse(self.hub_side[3].reading_paused)
        self.write(1, frames[1][1000:])
        self.write(3, frames[3][1000:])
        self.network.advance(0.5)
        self.assertEqual(self.received(1), [frames[1][5:]])
        self.assertEqual(self.received(3), [frames[3][5:]])
        self.assertEqual((self.budget.used, self.budget.waiting, self.budget.peak), (0, 0, 2 * FRAME_SIZE))
        self.assertEqual(len([e for e in self.events if e.event == "receive_budget_full"]), 1)

    def test_small_messages_flow_while_the_budget_is_spent(self) -> None:
        self.write(0, encode_message(b"a" * FRAME_BODY)[:1000])
        self.write(1, encode_message(b"b" * FRAME_BODY)[:1000])
        self.write(2, encode_message(b"c" * FRAME_BODY)[:1000])
        self.assertTrue(self.hub_side[2].reading_paused)
        largest_small = encode_message(b"s" * (LARGE_FRAME - 5))
        for piece in range(0, len(largest_small), 10_000):
            self.write(3, largest_small[piece : piece + 10_000])
        self.conns[3].send(b"ping")
        self.network.advance(0.5)
        self.assertEqual(self.received(3), [largest_small[5:], b"ping"])
        self.assertEqual(self.budget.waiting, 1)

    def test_connection_closed_mid_frame_frees_its_reservation(self) -> None:
        self.write(0, encode_message(b"a" * FRAME_BODY)[:1000])
        self.write(1, encode_message(b"b" * FRAME_BODY)[:1000])
        waiting = encode_message(b"c" * FRAME_BODY)
        self.write(2, waiting[:1000])
        self.write(3, encode_message(b"d" * FRAME_BODY)[:1000])
        self.assertEqual(self.budget.waiting, 2)
        # A waiter that goes leaves the queue: nothing is granted to it.
        self.conns[3].disconnect(abort=True)
        self.network.advance(0.5)
        self.assertEqual((self.budget.used, self.budget.waiting), (2 * FRAME_SIZE, 1))
        # A holder that goes gives its frame's room to the first waiter.
        self.conns[0].disconnect(abort=True)
        self.network.advance(0.5)
        self.assertFalse(self.hub_side[0].is_open)
        self.assertEqual((self.budget.used, self.budget.waiting), (2 * FRAME_SIZE, 0))
        self.write(2, waiting[1000:])
        self.assertEqual(self.received(2), [waiting[5:]])
        self.hub_side[1].disconnect()
        self.network.advance(3.0)
        self.assertEqual((self.budget.used, self.budget.waiting), (0, 0))

    def test_malformed_large_frame_frees_its_reservation(self) -> None:
        """
        A large frame that turns out malformed when whole (an unknown kind)
        closes its connection, holding nothing.
        """
        bad = wire_frame(0x7F, b"x" * FRAME_BODY)
        self.write(0, bad[:1000])
        self.assertEqual(self.budget.used, FRAME_SIZE)
        self.write(0, bad[1000:])
        self.network.advance(3.0)
        self.assertFalse(self.hub_side[0].is_open)
        self.assertEqual(self.hub_side[0].reason.reason, DisconnectReason.DECODING_ERROR)  # type: ignore[union-attr]
        self.assertEqual((self.budget.used, self.budget.waiting), (0, 0))

    def test_oversized_frame_after_a_reservation_holds_nothing(self) -> None:
        """
        A frame over max_message_size is refused from its header, reserving
        nothing, even while the connection's last frame was reserved.
        """
        self.write(0, encode_message(b"a" * FRAME_BODY)[:1000])
        self.write(0, encode_message(b"a" * FRAME_BODY)[1000:] + encode_message(b"o" * 300 * KIB)[:1000])
        self.network.advance(3.0)
        self.assertFalse(self.hub_side[0].is_open)
        self.assertEqual(self.hub_side[0].reason.reason, DisconnectReason.MESSAGE_TOO_LARGE)  # type: ignore[union-attr]
        self.assertEqual((self.budget.used, self.budget.peak), (0, FRAME_SIZE))


#: The pace of large frames in L{FrameReceiveRateTests}: 10 KiB/s after 2 s.
RATE = 10 * KIB
GRACE = 2.0


class _FramePace(_BudgetHub):
    """
    The hub of L{ReceiveBudgetNetworkTests} (a receive budget of two large
    frames, five peers writing raw bytes to it), whose large frames must
    arrive at 10 KiB/s after 2 s of grace: a 200 KiB frame so has 22 s of
    reading.
    """

    settings: dict[str, Any] = {}

    def setUp(self) -> None:
        self.build_hub(17, min_frame_receive_rate=RATE, frame_receive_grace=GRACE, **self.settings)
        self.frames = [encode_message(bytes([i]) * FRAME_BODY) for i in range(5)]
        #: How much of its frame each peer has written.
        self.sent = [0] * 5

    def write(self, peer: int, size: int, then: float = 0.1) -> None:
        """
        Peer C{peer} writes the next C{size} bytes of its frame; C{then}
        seconds pass.
        """
        start = self.sent[peer]
        self.conns[peer]._protocol.write(self.frames[peer][start : start + size])
        self.sent[peer] = min(len(self.frames[peer]), start + size)
        self.network.advance(then)

    def drip(self, peers: list[int], seconds: float, per_tenth: int = RATE // 10) -> None:
        """
        C{peers} each write C{per_tenth} bytes of their frame every 0.1 s
        for C{seconds} (the rate by default).
        """
        for _ in range(round(seconds * 10)):
            for peer in peers:
                if self.conns[peer].is_open:
                    start = self.sent[peer]
                    self.conns[peer]._protocol.write(self.frames[peer][start : start + per_tenth])
                    self.sent[peer] = min(len(self.frames[peer]), start + per_tenth)
            self.network.advance(0.1)

    def received(self, peer: int) -> list[bytes]:
        return [m for c, m in self.app.messages if c is self.hub_side[peer]]

    def assertFrameArrived(self, peer: int) -> None:
        """
        The hub received peer C{peer}'s frame, whole, and nothing else.
        """
        received = self.received(peer)
        self.assertEqual([len(m) for m in received], [FRAME_BODY])
        self.assertTrue(received[0] == self.frames[peer][5:], "intact")

    def named(self, name: str) -> list[Any]:
        return [e for e in self.events if e.event == name]


class FrameReceiveRateTests(_FramePace):
    def test_dribbler_is_closed_and_its_room_goes_to_the_next(self) -> None:
        """
        A peer that announces a large frame and then sends too little is
        aborted with C{frame_too_slow} once it is C{grace} behind the rate;
        its reservation goes at once to the connection waiting for it,
        whose frame then arrives. It is not greylisted.
        """
        self.write(0, 1000)
        self.write(1, 1000)
        self.write(2, 1000)
        self.assertEqual(self.budget.waiting, 1, "peer 2 waits for room")
        # Peer 0 dribbles at a tenth of the rate; peer 1 keeps the pace.
        self.drip([1], 1.0)
        self.drip([0], 1.0, per_tenth=RATE // 100)
        self.assertTrue(self.hub_side[0].is_open, "within its grace")
        self.drip([1], 1.5)
        self.assertFalse(self.hub_side[0].is_open)
        reason = self.hub_side[0].reason
        assert reason is not None
        self.assertEqual(reason.reason, DisconnectReason.FRAME_TOO_SLOW)
        (event,) = self.named("frame_too_slow")
        self.assertEqual(event.fields["peer_id"], str(self.hub_side[0].peer_id))
        self.assertEqual((event.fields["size"], event.fields["received"]), (FRAME_SIZE, 1000 + 10 * (RATE // 100)))
        # Its 2 s of grace and the 0.1 s its bytes earned, in whole seconds.
        self.assertGreaterEqual(event.fields["seconds"], GRACE + 0.1)
        self.assertLessEqual(event.fields["seconds"], GRACE + 1.1)
        self.assertIn("of a 204805-byte frame in", reason.detail)
        self.assertTrue(self.hub_side[1].is_open, "peer 1 keeps the pace")
        self.assertFalse(self.hub_side[2].reading_paused, "peer 0's room went to peer 2")
        self.assertEqual((self.budget.used, self.budget.waiting), (2 * FRAME_SIZE, 0))
        self.write(2, FRAME_SIZE, then=0.5)
        self.assertFrameArrived(2)
        self.assertEqual(self.named("greylisted_peer") + self.named("greylisted_addr"), [])
        self.assertEqual(self.budget.used, FRAME_SIZE)

    def test_silent_frame_is_closed_after_the_grace(self) -> None:
        self.write(0, 1000, then=0.0)
        self.network.advance(GRACE - 0.2)
        self.assertTrue(self.hub_side[0].is_open)
        self.network.advance(1.5)
        self.assertFalse(self.hub_side[0].is_open)
        self.assertEqual(self.hub_side[0].reason.reason, DisconnectReason.FRAME_TOO_SLOW)  # type: ignore[union-attr]
        self.assertEqual((self.budget.used, self.budget.waiting), (0, 0))

    def test_sender_at_the_rate_is_not_closed(self) -> None:
        """
        A frame sent at exactly the rate, with a stall of almost the grace
        in the middle, arrives: its peer is never behind by C{grace}.
        """
        self.write(0, 1000)
        self.drip([0], 8.0)
        self.network.advance(GRACE - 0.3)
        self.drip([0], 30.0)
        self.assertFrameArrived(0)
        self.assertTrue(self.hub_side[0].is_open)
        self.assertEqual(self.named("frame_too_slow"), [])
        self.assertEqual(self.budget.used, 0)

    def test_time_paused_by_the_application_is_not_counted(self) -> None:
        self.write(0, 1000)
        self.hub_side[0].pause_reading()
        self.drip([0], 1.0)
        self.network.advance(60.0)
        self.assertTrue(self.hub_side[0].is_open, "not read: its time does not count")
        self.hub_side[0].resume_reading()
        self.drip([0], 25.0)
        self.assertFrameArrived(0)
        self.assertEqual(self.named("frame_too_slow"), [])

    def test_time_waiting_for_the_budget_is_not_counted(self) -> None:
        """
        A frame that waited long for room in the receive budget has its
        whole grace once it is read.
        """
        self.write(0, 1000)
        self.write(1, 1000)
        self.write(2, 1000)
        self.drip([0, 1], 15.0)
        self.assertTrue(self.hub_side[2].reading_paused)
        self.assertTrue(self.hub_side[2].is_open, "not read: its time does not count")
        self.write(0, FRAME_SIZE, then=0.0)
        self.network.advance(GRACE - 0.2)
        self.assertFalse(self.hub_side[2].reading_paused)
        self.assertTrue(self.hub_side[2].is_open, "granted, it has its grace")
        self.network.advance(1.5)
        self.assertFalse(self.hub_side[2].is_open, "then it must keep the pace")
        self.assertEqual(self.hub_side[2].reason.reason, DisconnectReason.FRAME_TOO_SLOW)  # type: ignore[union-attr]
        self.assertFrameArrived(0)

    def test_small_frames_are_never_timed(self) -> None:
        """
        A frame of 64 KiB (header included) holds no reservation: dribbled
        for a minute, it arrives.
        """
        largest_small = encode_message(b"s" * (LARGE_FRAME - 5))
        for piece in range(0, len(largest_small), 1000):
            self.conns[3]._protocol.write(largest_small[piece : piece + 1000])
            self.network.advance(1.0)
        self.network.advance(0.5)
        self.assertEqual(self.received(3), [largest_small[5:]])
        self.assertTrue(self.hub_side[3].is_open)
        self.assertEqual((self.budget.peak, self.named("frame_too_slow")), (0, []))


class DownloadLimitedFrameTests(_FramePace):
    """
    The same hub with a download limit of 4 KiB/s, well below the 10 KiB/s
    its large frames must keep.
    """

    settings = dict(max_download_speed=4 * KIB)

    def test_time_paused_by_the_download_limit_is_not_counted(self) -> None:
        """
        A frame sent at 40 KiB/s is read at the node's own limit, slower
        than the pace it must keep: it arrives, its peer not blamed.
        """
        self.drip([0], 6.0, per_tenth=4 * KIB)
        self.assertEqual(self.sent[0], FRAME_SIZE)
        self.network.advance(20.0)
        self.assertTrue(self.hub_side[0].is_open)
        self.assertEqual(self.budget.used, FRAME_SIZE, "the frame is still arriving")
        self.network.advance(40.0)
        self.assertFrameArrived(0)
        self.assertEqual(self.named("frame_too_slow"), [])


class GossipBackpressureTests(SynchronousTestCase):
    """
    The gossip example passes on a Deferred from its on_message callback:
    a slow consumer holds the publisher back.
    """

    def test_on_message_deferreds_pause_reading(self) -> None:
        from p2pool.examples.gossip import Gossip

        network = MemoryNetwork(seed=6, latency=0.01)
        self.addCleanup(network.stop)
        pending: list[Deferred[None]] = []

        def on_message(message: Any, peer_id: Any) -> Deferred[None]:
            d: Deferred[None] = Deferred()
            pending.append(d)
            return d

        settings: dict[str, Any] = dict(maintenance_idle_time=None, keepalive_interval=None, max_pending_messages=2)
        publisher, consumer = Gossip(), Gossip(on_message=on_message)
        a = network.add_pool("10.1.0.1", app=publisher, **settings)
        b = network.add_pool("10.2.0.1", app=consumer, **settings)
        publisher.attach(a)
        consumer.attach(b)
        d = a.connect(Point("10.2.0.1", 9732))
        network.advance(1.0)
        self.successResultOf(d)
        for i in range(6):
            publisher.publish(b"%d" % i)
        network.advance(1.0)
        self.assertEqual(len(pending), 2)
        self.assertTrue(b.connections.list()[0].reading_paused)
        while pending:
            pending.pop(0).callback(None)
            network.advance(0.1)
        self.assertEqual(consumer.stats.delivered, 6)
