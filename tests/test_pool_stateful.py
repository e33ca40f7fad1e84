"""
A Hypothesis state machine driving random sequences of pool operations
(register, ban, greylist, connection state changes, GC) and checking the
table invariants after every step.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point
from p2pool.core.states import PeerState, PointState
from p2pool.pool.service import Pool
from tests.helpers import identity

POINTS = [Point(f"10.0.0.{i}", 9732) for i in range(12)]
PEERS = [PeerId(bytes([i]) * 16) for i in range(1, 10)]
MAX_POINTS, TARGET_POINTS = 6, 4
MAX_PEERS, TARGET_PEERS = 5, 3

points = st.sampled_from(POINTS)
peers = st.sampled_from(PEERS)


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = MemoryReactorClock()
        config = PoolConfig(
            listen=Point("127.0.0.2", 0),
            expected_proof_of_work=0,
            max_known_points=(MAX_POINTS, TARGET_POINTS),
            max_known_peer_ids=(MAX_PEERS, TARGET_PEERS),
            peer_greylist_size=3,
            ip_greylist_cleanup_delay=16.0,
            ip_greylist_size_in_kilobytes=1,
            data_dir="unused",
        )
        self.pool = Pool(config, reactor=self.clock, identity=identity(0))

    def now(self) -> float:
        return self.clock.seconds()

    @rule(point=points, trusted=st.sampled_from([None, True, False]))
    def register_point(self, point: Point, trusted: Any) -> None:
        before = len(self.pool.points)
        new = self.pool.points.info(point) is None
        pinned = sum(1 for i in self.pool.points if i.trusted or i.state is not PointState.DISCONNECTED)
        info = self.pool.register_point(point, trusted=trusted)
        if new and before >= MAX_POINTS:
            # GC never overshoots: the target, unless pinned points exceed it.
            assert len(self.pool.points) <= max(TARGET_POINTS, pinned + 1)
        elif new:
            assert len(self.pool.points) == before + 1
        assert self.pool.points.info(point) is info
        if trusted is not None:
            assert info.trusted is trusted

    @rule(peer=peers)
    def register_peer(self, peer: PeerId) -> None:
        assert self.pool.register_peer(peer).peer_id == peer

    @rule(point=points)
    def ban_point(self, point: Point) -> None:
        self.pool.points.ban(point)
        assert self.pool.points.banned(point)

    @rule(point=points)
    def unban_point(self, point: Point) -> None:
        self.pool.points.unban(point)
        assert not self.pool.acl.ip_blacklist.mem(point.ip)

    @rule(point=points)
    def greylist(self, point: Point) -> None:
        self.pool.greylist_addr(point.ip)
        assert self.pool.points.banned(point)

    @rule(peer=peers)
    def greylist_peer(self, peer: PeerId) -> None:
        self.pool.greylist_peer(peer)
        assert self.pool.peers.banned(peer)

    @rule()
    def age_greylist(self) -> None:
        self.pool.gc_greylist()

    @rule()
    def clear_acl(self) -> None:
        self.pool.acl_clear()
        assert not any(self.pool.points.banned(p) for p in POINTS)

    @rule(point=points, peer=peers)
    def connect(self, point: Point, peer: PeerId) -> None:
        info = self.pool.points.info(point)
        peer_info = self.pool.peers.info(peer)
        if info is None or info.state is not PointState.DISCONNECTED:
            return
        if peer_info is None or peer_info.state is not PeerState.DISCONNECTED:
            return
        directory = self.pool.directory
        directory.point_requested(info, self.now())
        directory.point_accepted(info, peer, self.now())
        directory.point_running(info, peer, self.now())
        directory.peer_running(peer_info, point, self.now())
        directory.set_known_public(info, True)

    @rule(point=points)
    def disconnect(self, point: Point) -> None:
        info = self.pool.points.info(point)
        if info is None or info.state is not PointState.RUNNING:
            return
        peer = self.pool.peers.info(info.current_peer_id)  # type: ignore[arg-type]
        self.pool.directory.point_disconnected(info, self.now())
        if peer is not None and peer.state is not PeerState.DISCONNECTED:
            self.pool.directory.peer_disconnected(peer, self.now())

    @rule(dt=st.floats(min_value=0.0, max_value=5.0))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule(size=st.integers(min_value=0, max_value=8), ignore_private=st.booleans())
    def listing(self, size: int, ignore_private: bool) -> None:
        listed = self.pool.list_known_points(ignore_private, size)
        assert len(listed) <= size
        assert len(set(listed)) == len(listed)
        for point in listed:
            info = self.pool.points.info(point)
            assert info is not None
            assert not self.pool.points.banned(point)
            assert info.known_public or not ignore_private

    @invariant()
    def greylist_within_bounds(self) -> None:
        assert len(self.pool.acl.peer_greylist) <= 3

    @invariant()
    def tables_consistent(self) -> None:
        assert self.pool.directory.index_errors() == []
        for info in self.pool.peers:
            if info.state is PeerState.RUNNING:
                assert info.current_point is not None


class PoolStateMachineTests(SynchronousTestCase):
    def test_random_operations_keep_invariants(self) -> None:
        run = settings(max_examples=50, stateful_step_count=40, deadline=None)(PoolMachine).TestCase
        run("runTest").runTest()

    def test_trusted_and_running_survive_gc(self) -> None:
        machine = PoolMachine()
        pool = machine.pool
        pool.register_point(POINTS[0], trusted=True)
        pool.register_peer(PEERS[0])
        pool.register_point(POINTS[1])
        machine.connect(POINTS[1], PEERS[0])
        self.assertEqual(pool.points.info(POINTS[1]).state, PointState.RUNNING)  # type: ignore[union-attr]
        for point in POINTS[2:]:
            pool.register_point(point)
        self.assertIsNotNone(pool.points.info(POINTS[0]))
        self.assertIsNotNone(pool.points.info(POINTS[1]))
        self.assertLessEqual(len(pool.points), MAX_POINTS)
