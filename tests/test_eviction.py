"""
Inbound eviction (issue 14, item 2): the sans-I/O choice of
L{p2pool.core.eviction}, and a pool on a L{MemoryNetwork} whose slots are
full: a newcomer from another network group takes the slot of the
youngest peer of the most represented group, and trusted and top-scored
peers are never the ones to go.
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase, TestCase

from p2pool.core.addressing import PeerId, Point
from p2pool.core.admission import admission_group
from p2pool.core.eviction import Candidate, Protection, eviction_victim
from p2pool.errors import DisconnectReason, NackMotive, RejectedByNack
from p2pool.events import EventKind, PoolEvent
from p2pool.interfaces import BasePoolApplication
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork
from tests.helpers import async_test, start_node, wait_for

NONE = Protection(netgroups=0, latency=0, score=0, uptime=0.0)
SECRET = b"k" * 16


def cand(key: str, group: str, at: float, **fields: Any) -> Candidate[str]:
    return Candidate(key, group, at, **fields)


def victim(candidates: list[Candidate[str]], group: str = "N", protection: Protection = NONE) -> str | None:
    return eviction_victim(candidates, group, protection, SECRET)


class FinalChoiceTests(SynchronousTestCase):
    """
    Without protection: the youngest of the most represented group, when
    it holds at least two more than the newcomer's group.
    """

    def test_youngest_of_the_most_represented_group(self) -> None:
        candidates = [
            cand("a1", "A", 1),
            cand("b1", "B", 2),
            cand("a2", "A", 3),
            cand("a3", "A", 4),
            cand("b2", "B", 5),
        ]
        self.assertEqual(victim(candidates), "a3", "A holds 3; its youngest goes, although b2 is younger")

    def test_never_for_the_crowd_itself(self) -> None:
        candidates = [cand("a1", "A", 1), cand("a2", "A", 2), cand("a3", "A", 3)]
        self.assertIsNone(victim(candidates, "A"), "eviction never rotates a group's own members")
        self.assertEqual(victim(candidates, "B"), "a3")

    def test_the_crowd_must_hold_two_more_than_the_newcomer(self) -> None:
        candidates = [cand("a1", "A", 1), cand("a2", "A", 2), cand("b1", "B", 3)]
        self.assertIsNone(victim(candidates, "B"), "A 2, B 1: giving way would leave B larger than A")
        self.assertEqual(victim([*candidates, cand("a3", "A", 4)], "B"), "a3", "A 3, B 1")

    def test_not_when_spread_evenly(self) -> None:
        candidates = [cand("a", "A", 1), cand("b", "B", 2), cand("c", "C", 3)]
        self.assertIsNone(victim(candidates), "all groups equal: nobody to evict fairly")
        self.assertIsNone(victim([]))

    def test_between_groups_as_large_the_one_whose_youngest_is_youngest(self) -> None:
        candidates = [cand("a1", "A", 1), cand("b1", "B", 2), cand("b2", "B", 3), cand("a2", "A", 4)]
        self.assertEqual(victim(candidates), "a2")
        candidates = [cand("a1", "A", 1), cand("b1", "B", 2), cand("a2", "A", 3), cand("b2", "B", 4)]
        self.assertEqual(victim(candidates), "b2")

    def test_equal_times_the_later_is_younger(self) -> None:
        candidates = [cand("a1", "A", 5), cand("a2", "A", 5), cand("a3", "A", 5)]
        self.assertEqual(victim(candidates), "a3")


class TrustedTests(SynchronousTestCase):
    def test_trusted_never_evicted(self) -> None:
        candidates = [cand(f"a{i}", "A", i, trusted=True) for i in range(5)]
        self.assertIsNone(victim(candidates))
        self.assertIsNone(victim(candidates, protection=Protection()))

    def test_trusted_do_not_count(self) -> None:
        # A is the largest group, but its members are trusted but one.
        candidates = [
            *[cand(f"a{i}", "A", i, trusted=True) for i in range(4)],
            cand("a9", "A", 9),
            cand("b1", "B", 10),
            cand("b2", "B", 11),
        ]
        self.assertEqual(victim(candidates), "b2")

    def test_trusted_youngest_of_the_crowd_is_skipped(self) -> None:
        candidates = [cand("a1", "A", 1), cand("a2", "A", 2), cand("a3", "A", 3), cand("t", "A", 4, trusted=True)]
        self.assertEqual(victim(candidates), "a3")


class ProtectionTests(SynchronousTestCase):
    def test_netgroup_protects_the_oldest_of_a_group(self) -> None:
        candidates = [cand("a1", "A", 1), cand("a2", "A", 2)]
        self.assertEqual(victim(candidates), "a2")
        one_group = Protection(netgroups=1, latency=0, score=0, uptime=0.0)
        self.assertIsNone(victim(candidates, protection=one_group), "a1 protected: A holds one, not two more")

    def test_netgroup_choice_is_keyed_and_deterministic(self) -> None:
        """
        With one group protected, which one depends on the secret: the
        youngest of the other is evicted; each secret always makes the same
        choice, and both groups are chosen by some secret.
        """
        candidates = [cand("a1", "A", 1), cand("b1", "B", 2), cand("a2", "A", 3), cand("b2", "B", 4)]
        candidates += [cand("a3", "A", 5), cand("b3", "B", 6)]
        one_group = Protection(netgroups=1, latency=0, score=0, uptime=0.0)
        outcomes = set()
        for i in range(32):
            secret = bytes([i]) * 16
            first = eviction_victim(candidates, "N", one_group, secret)
            self.assertEqual(eviction_victim(candidates, "N", one_group, secret), first)
            outcomes.add(first)
        self.assertEqual(outcomes, {"a3", "b3"}, "the group left unprotected loses its youngest")

    def test_netgroup_protection_spans_distinct_groups(self) -> None:
        # Two groups protected: one member of each, never two of one.
        candidates = [cand("a1", "A", 1), cand("a2", "A", 2), cand("b1", "B", 3), cand("b2", "B", 4)]
        candidates += [cand("a3", "A", 5), cand("a4", "A", 6)]
        two_groups = Protection(netgroups=2, latency=0, score=0, uptime=0.0)
        self.assertEqual(victim(candidates, protection=two_groups), "a4", "A keeps 3 unprotected, B 1")

    def test_latency_protects_the_fastest_measured(self) -> None:
        candidates = [
            cand("a1", "A", 1, latency=0.200),
            cand("a2", "A", 2, latency=0.010),
            cand("a3", "A", 3, latency=0.050),
            cand("a4", "A", 4),  # never measured: not protected by latency
        ]
        fastest_two = Protection(netgroups=0, latency=2, score=0, uptime=0.0)
        self.assertEqual(victim(candidates, protection=fastest_two), "a4")
        self.assertIsNone(victim(candidates[:3], protection=fastest_two), "a2, a3 protected: A holds one")
        three = Protection(netgroups=0, latency=3, score=0, uptime=0.0)
        self.assertIsNone(victim(candidates, protection=three), "only a4 left")

    def test_score_protects_the_best(self) -> None:
        candidates = [cand("a1", "A", 1), cand("a2", "A", 2), cand("a3", "A", 3), cand("a4", "A", 4, score=5.0)]
        best = Protection(netgroups=0, latency=0, score=1, uptime=0.0)
        self.assertEqual(victim(candidates), "a4")
        self.assertEqual(victim(candidates, protection=best), "a3", "the top-scored youngest is kept")

    def test_equal_scores_protect_nobody(self) -> None:
        candidates = [cand(f"a{i}", "A", i, score=3.0) for i in range(3)]
        best = Protection(netgroups=0, latency=0, score=2, uptime=0.0)
        self.assertEqual(victim(candidates, protection=best), "a2")

    def test_unscored_peers_are_not_protected(self) -> None:
        candidates = [
            cand("a1", "A", 1, score=-math.inf),
            cand("a2", "A", 2, score=math.nan),
            cand("a3", "A", 3, score=1.0),
            cand("a4", "A", 4, score=-math.inf),
        ]
        best = Protection(netgroups=0, latency=0, score=4, uptime=0.0)
        self.assertEqual(victim(candidates, protection=best), "a4", "only a3 is protected")
        self.assertEqual(victim(candidates[:3], protection=best), "a2", "a score that is not a number protects nothing")

    def test_uptime_protects_the_older_part(self) -> None:
        candidates = [cand(f"a{i}", "A", i) for i in range(4)]
        half = Protection(netgroups=0, latency=0, score=0, uptime=0.5)
        self.assertEqual(victim(candidates, protection=half), "a3")
        self.assertIsNone(victim(candidates[:2], protection=half), "a0 kept: A holds one")
        self.assertEqual(victim(candidates[2:] + candidates[:2], protection=half), "a3", "the older, not the first")

    def test_uptime_protection_is_a_fraction_of_the_rest(self) -> None:
        # Three protected by uptime out of the seven left: a0..a2.
        candidates = [cand(f"a{i}", "A", i) for i in range(7)]
        half = Protection(netgroups=0, latency=0, score=0, uptime=0.5)
        self.assertEqual(victim(candidates, protection=half), "a6")
        everyone = Protection(netgroups=0, latency=0, score=0, uptime=1.0)
        self.assertIsNone(victim(candidates, protection=everyone))

    def test_scaled(self) -> None:
        self.assertEqual(Protection.scaled(4), Protection(netgroups=4, latency=8, score=4, uptime=0.5))
        self.assertEqual(Protection.scaled(4), Protection())
        self.assertEqual(Protection.scaled(0), Protection(netgroups=0, latency=0, score=0, uptime=0.5))

    def test_bad_protection(self) -> None:
        self.assertRaises(ValueError, Protection, netgroups=-1)
        self.assertRaises(ValueError, Protection, uptime=1.5)


class DeterminismTests(SynchronousTestCase):
    def crowd(self, rng: random.Random) -> list[Candidate[str]]:
        """
        Nine groups of four, with distinct times, round trips and scores,
        a trusted peer and a top-scored peer, both the youngest of their
        crowded group.
        """
        times = rng.sample(range(1000), 36)
        candidates = [
            cand(f"g{g}p{p}", f"G{g}", float(times[4 * g + p]), latency=rng.uniform(0.001, 0.1), score=rng.random())
            for g in range(9)
            for p in range(4)
        ]
        candidates.append(cand("trusted", "G0", 2000.0, trusted=True))
        candidates.append(cand("top", "G0", 2001.0, score=100.0))
        return candidates

    def scenarios(self, seed: int) -> Iterator[tuple[list[Candidate[str]], bytes]]:
        """
        50 random crowds (see L{crowd}), each with a random secret.
        """
        rng = random.Random(seed)
        for _ in range(50):
            yield self.crowd(rng), rng.randbytes(16)

    def test_default_protection_against_nine_groups(self) -> None:
        """
        The bench scenario: slots held by nine groups; a newcomer from a
        tenth gets in, and neither the trusted nor the top-scored peer
        (the youngest of the crowded group) goes.
        """
        for candidates, secret in self.scenarios(7):
            chosen = eviction_victim(candidates, "G9", Protection(), secret)
            self.assertIsNotNone(chosen)
            self.assertNotIn(chosen, ("trusted", "top"))

    def test_order_of_candidates_does_not_matter(self) -> None:
        shuffle = random.Random(3).shuffle
        for candidates, secret in self.scenarios(11):
            expected = eviction_victim(candidates, "G9", Protection(), secret)
            shuffle(candidates)
            self.assertEqual(eviction_victim(candidates, "G9", Protection(), secret), expected)


_CANDIDATES = st.lists(
    st.tuples(
        st.sampled_from(["G0", "G1", "G2", "G3", "N"]),
        st.integers(0, 20),
        st.one_of(st.none(), st.floats(0.001, 1.0)),
        st.sampled_from([-math.inf, 0.0, 1.0, 5.0]),
        st.booleans(),
    ),
    max_size=30,
)


class NoCrowdTests(SynchronousTestCase):
    """
    The condition the pool checks before building any candidate
    (L{p2pool.core.directory.Directory.crowded_netgroup_besides}): without
    two candidates, trusted or not, in one group other than the
    newcomer's, no protection and no secret gives a victim.
    """

    @given(
        _CANDIDATES,
        st.sampled_from(["G0", "N"]),
        st.integers(0, 4),
        st.integers(0, 8),
        st.floats(0.0, 1.0),
        st.binary(min_size=1, max_size=16),
    )
    def test_no_victim_without_a_crowded_group(
        self,
        rows: list[tuple[str, int, float | None, float, bool]],
        newcomer: str,
        netgroups: int,
        latency: int,
        uptime: float,
        secret: bytes,
    ) -> None:
        candidates = [
            cand(f"c{i}", group, float(at), latency=rtt, score=score, trusted=trusted)
            for i, (group, at, rtt, score, trusted) in enumerate(rows)
        ]
        counts = collections.Counter(c.group for c in candidates)
        crowded = any(n >= 2 for g, n in counts.items() if g != newcomer)
        protection = Protection(netgroups=netgroups, latency=latency, score=netgroups, uptime=uptime)
        chosen = eviction_victim(candidates, newcomer, protection, secret)
        if not crowded:
            self.assertIsNone(chosen)
        elif chosen is not None:
            self.assertGreaterEqual(counts[next(c.group for c in candidates if c.key == chosen)], 2)


class ScoredApp(BasePoolApplication):
    """
    Scores a peer by its metadata, a number (None: 0).
    """

    def __init__(self) -> None:
        self.lost: list[tuple[Any, Any]] = []

    def connection_lost(self, conn: Any, reason: Any) -> None:
        self.lost.append((conn, reason))

    def score(self, metadata: Any) -> float:
        return float(metadata or 0)


IP_NODE = "10.0.0.1"
# Three groups hold the node's twelve slots, oldest first; 10.1/16 is the
# most represented, and its two youngest are top-scored and trusted.
CROWD = [f"10.2.0.{i}" for i in range(1, 4)] + [f"10.3.0.{i}" for i in range(1, 3)]
CROWD += [f"10.1.0.{i}" for i in range(1, 6)]
TOP, TRUSTED = "10.1.0.6", "10.1.0.7"
NEWCOMER = "10.9.0.1"


class PoolTests(SynchronousTestCase):
    """
    Eviction applied by a pool to simulated connections.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=9, latency=0.01)
        self.addCleanup(self.network.stop)
        self.events: list[PoolEvent] = []

    def node(self, **config: Any) -> Pool:
        settings: dict[str, Any] = dict(maintenance_idle_time=None, max_connections=12, expected_connections=10)
        settings.update(config)
        self.app = ScoredApp()
        pool = self.network.add_pool(IP_NODE, app=self.app, **settings)
        pool.events.callbacks.append(self.events.append)
        return pool

    def named(self, kind: EventKind) -> list[PoolEvent]:
        return [e for e in self.events if e.event == kind]

    def join(self, ip: str) -> Any:
        """
        A peer at C{ip} dials the node; the Deferred of its dial.
        """
        peer = self.network.pools.get(ip) or self.network.add_pool(ip, maintenance_idle_time=None)
        d = peer.connect(Point(IP_NODE, 9732))
        self.network.advance(1.0)
        return d

    def fill(self, node: Pool) -> dict[str, PeerId]:
        ids = {}
        for ip in [*CROWD, TOP, TRUSTED]:
            self.successResultOf(self.join(ip))
            ids[ip] = self.network.pools[ip].peer_id
        node.peers.set_peer_metadata(ids[TOP], 10)
        node.peers.trust(ids[TRUSTED])
        self.assertEqual(node.active_connections(), 12)
        return ids

    def connected(self, node: Pool) -> set[str]:
        return {c.remote_ip for c in node.connections}

    def test_newcomer_from_another_group_gets_in(self) -> None:
        node = self.node(eviction_protection=1)
        self.fill(node)
        self.successResultOf(self.join(NEWCOMER))
        self.network.advance(3.0)
        evicted = self.named(EventKind.PEER_EVICTED)
        self.assertEqual(len(evicted), 1)
        self.assertEqual(evicted[0].fields["newcomer_addr"], NEWCOMER)
        # Whichever group the keyed hash protects, 10.1/16 keeps the most
        # unprotected peers; TOP is protected by its score, TRUSTED by trust.
        self.assertEqual(evicted[0].fields["netgroup"], "10.1.0.0/16", "from the most represented group")
        gone = evicted[0].fields["addr"]
        self.assertEqual(gone, "10.1.0.5", "its youngest that is not protected")
        self.assertEqual(self.connected(node), {*CROWD, TOP, TRUSTED, NEWCOMER} - {gone})
        self.assertEqual([r.reason for _, r in self.app.lost], [DisconnectReason.EVICTED])
        disconnections = self.named(EventKind.DISCONNECTION)
        self.assertEqual([e.fields["reason"] for e in disconnections], ["evicted"])
        # The evicted peer was told: a Disconnect, not a cut.
        evicted_pool = self.network.pools[gone]
        self.assertEqual(evicted_pool.active_connections(), 0)

    def test_youngest_of_the_crowd_goes_when_nothing_protects_it(self) -> None:
        node = self.node(eviction_protection=0)
        self.fill(node)
        self.successResultOf(self.join(NEWCOMER))
        self.network.advance(3.0)
        # Only trust and uptime protect: TOP is the youngest untrusted of 10.1.
        self.assertEqual([e.fields["addr"] for e in self.named(EventKind.PEER_EVICTED)], [TOP])
        self.assertIn(TRUSTED, self.connected(node))

    def test_trusted_and_top_scored_never_evicted(self) -> None:
        """
        Newcomer after newcomer from new groups: peers go one by one,
        never the trusted or the top-scored one.
        """
        node = self.node(eviction_protection=1)
        self.fill(node)
        for i in range(1, 10):
            self.join(f"10.{10 + i}.0.1").addErrback(lambda f: f.trap(RejectedByNack))
            self.network.advance(2.0)
        self.assertGreater(len(self.named(EventKind.PEER_EVICTED)), 0)
        self.assertLessEqual(node.active_connections(), 12)
        self.assertIn(TOP, self.connected(node))
        self.assertIn(TRUSTED, self.connected(node))
        gone = {e.fields["addr"] for e in self.named(EventKind.PEER_EVICTED)}
        self.assertFalse(gone & {TOP, TRUSTED})

    def test_newcomer_from_the_crowded_group_is_refused(self) -> None:
        node = self.node(eviction_protection=1)
        self.fill(node)
        failure = self.failureResultOf(self.join("10.1.0.9"), RejectedByNack)
        self.assertEqual(failure.value.motive, NackMotive.TOO_MANY_CONNECTIONS)
        self.assertEqual(self.named(EventKind.PEER_EVICTED), [])
        self.assertEqual(node.active_connections(), 12)

    def test_disabled(self) -> None:
        node = self.node(eviction_protection=None)
        self.fill(node)
        failure = self.failureResultOf(self.join(NEWCOMER), RejectedByNack)
        self.assertEqual(failure.value.motive, NackMotive.TOO_MANY_CONNECTIONS)
        self.assertEqual(self.named(EventKind.PEER_EVICTED), [])
        self.assertEqual(self.connected(node), {*CROWD, TOP, TRUSTED})

    def test_outgoing_connections_are_not_evicted(self) -> None:
        """
        Connections the node dialed are neither candidates nor made room
        for: a full node's dial is refused as before.
        """
        node = self.node(eviction_protection=0)
        for ip in CROWD:
            self.successResultOf(self.join(ip))
        outgoing = [f"10.1.0.{i}" for i in range(6, 8)]
        for ip in outgoing:
            self.network.add_pool(ip, maintenance_idle_time=None)
            d = node.connect(Point(ip, 9732))
            self.network.advance(1.0)
            self.successResultOf(d)
        self.successResultOf(self.join(NEWCOMER))
        self.network.advance(3.0)
        gone = [e.fields["addr"] for e in self.named(EventKind.PEER_EVICTED)]
        self.assertEqual(len(gone), 1)
        self.assertNotIn(gone[0], outgoing, "the youngest of 10.1 are outgoing: an incoming one goes")
        self.assertEqual(admission_group(gone[0], False), "10.1.0.0/16")

    def test_fast_peers_protected_by_their_round_trip(self) -> None:
        """
        The keepalive's lowest round trip reaches the choice: the peer that
        would go is protected when it is among the fastest.
        """
        node = self.node(eviction_protection=1)
        self.fill(node)
        keepalive = node.keepalive
        assert keepalive is not None
        fast = next(c for c in node.connections if c.remote_ip == "10.1.0.5")
        keepalive.lowest_round_trip = lambda conn: 0.001 if conn is fast else None  # type: ignore[method-assign]
        self.successResultOf(self.join(NEWCOMER))
        self.network.advance(3.0)
        self.assertEqual([e.fields["addr"] for e in self.named(EventKind.PEER_EVICTED)], ["10.1.0.4"])

    def test_failing_score_protects_nobody(self) -> None:
        """
        An application whose score raises is logged, and its peers are
        not protected by score: the top peer is then the one to go.
        """
        node = self.node(eviction_protection=1)

        def failing(metadata: Any) -> float:
            raise ZeroDivisionError("score")

        self.app.score = failing  # type: ignore[method-assign]
        self.fill(node)
        self.successResultOf(self.join(NEWCOMER))
        self.network.advance(3.0)
        self.assertEqual([e.fields["addr"] for e in self.named(EventKind.PEER_EVICTED)], [TOP])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1, "one line for the decision")

    def reference_victim(self, node: Pool, newcomer_ip: str) -> str | None:
        """
        The address of the victim as the pool chose it before the
        crowded-group check, with C{eviction_protection=0} (no keyed
        ranking, no score or latency protection): a candidate built for
        every running incoming connection.
        """
        candidates = [
            Candidate(conn.remote_ip, admission_group(conn.remote_ip, False), conn.established_at)
            for conn in node.connections
            if conn.incoming and conn.is_open
        ]
        return eviction_victim(candidates, admission_group(newcomer_ip, False), Protection.scaled(0), b"k")

    def test_same_victim_as_building_every_candidate(self) -> None:
        """
        Newcomers from random groups, some crowded, some not, join a full
        node one after another: each evicts the peer (or is refused when
        none) that building a candidate for every incoming connection
        names.
        """
        node = self.node(eviction_protection=0)
        rng = random.Random(5)
        outcomes = {"evicted": 0, "refused": 0}
        for i in range(80):
            if i % 2:
                # A slot frees up and the crowd takes it back.
                rng.choice(list(node.connections)).disconnect()
                self.network.advance(1.0)
                groups = [1, 1, 2]
            else:
                groups = [1, 2, 3, 30 + i] if i > 12 else [1, 1, 2, 3]
            ip = f"10.{rng.choice(groups)}.{i}.1"
            full = node.active_connections() >= 12
            expected = self.reference_victim(node, ip) if full else None
            before = len(self.named(EventKind.PEER_EVICTED))
            d = self.join(ip)
            self.network.advance(2.0)
            evicted = [e.fields["addr"] for e in self.named(EventKind.PEER_EVICTED)[before:]]
            if not full:
                self.successResultOf(d)
                continue
            if expected is None:
                self.failureResultOf(d, RejectedByNack)
                self.assertEqual(evicted, [], f"join {i} from {ip}")
                outcomes["refused"] += 1
            else:
                self.successResultOf(d)
                self.assertEqual(evicted, [expected], f"join {i} from {ip}")
                outcomes["evicted"] += 1
        self.assertGreater(outcomes["evicted"], 3, outcomes)
        self.assertGreater(outcomes["refused"], 3)


class RealSocketTests(TestCase):
    """
    Eviction over real TLS on loopback, the peers in two /16s of 127/8.
    """

    timeout = 120

    @async_test
    async def test_newcomer_evicts_the_youngest_untrusted_of_the_crowd(self) -> None:
        node = await start_node(
            self, "127.50.0.2", 0, max_connections=5, expected_connections=3, min_connections=1, eviction_protection=0
        )
        crowd = [await start_node(self, f"127.51.0.{2 + i}", 1 + i) for i in range(5)]
        for peer in crowd:
            await peer.pool.connect(node.point)
        trusted = crowd[-1]
        node.pool.peers.trust(trusted.pool.peer_id)
        newcomer = await start_node(self, "127.52.0.2", 6)
        conn = await newcomer.pool.connect(node.point)
        # Trust and the older half (2 of 4) protect; 127.51.0.5 is the
        # youngest of the two left.
        evicted = crowd[3]
        await wait_for(lambda: bool(evicted.app.lost), what="the youngest untrusted peer is evicted")
        self.assertEqual(evicted.app.lost[0][1].reason, DisconnectReason.REMOTE_DISCONNECT, "told by Disconnect")
        # The evicted peer may see the Disconnect before the node's side
        # has finished closing.
        await wait_for(lambda: bool(node.app.lost), what="the node's side of the evicted connection closed")
        self.assertEqual([r.reason for _, r in node.app.lost], [DisconnectReason.EVICTED])
        self.assertEqual([e.fields["addr"] for e in node.named(EventKind.PEER_EVICTED)], ["127.51.0.5"])
        self.assertTrue(conn.is_open)
        self.assertEqual([p.pool.active_connections() for p in crowd], [1, 1, 1, 0, 1])
        await wait_for(lambda: node.pool.active_connections() == 5, what="the evicted connection's slot freed")
