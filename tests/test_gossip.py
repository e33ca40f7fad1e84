# -*- test-case-name: tests.test_gossip -*-
"""
The gossip example (L{p2pool.examples.gossip}, C{tac/gossip.tac}): its wire
format, seen-cache and metadata on their own; flooding, de-duplication, the
hop limit, scoring and greylisting on the in-memory network (up to 100
nodes); three real nodes on loopback; and the code of C{docs/EMBEDDING.md}.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application.service import IServiceCollection, loadApplication
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

import p2pool
from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point, PointSpec
from p2pool.errors import DisconnectReason
from p2pool.events import EventKind
from p2pool.examples.gossip import (
    HEADER_SIZE,
    ID_SIZE,
    VERSION,
    Gossip,
    GossipMessage,
    InvalidGossip,
    PeerStats,
    Publisher,
    SeenCache,
    publish_period,
)
from p2pool.pool.service import Pool
from p2pool.testing.network import MemoryNetwork
from tests.helpers import async_test, identity, wait_for

#: The checkout these tests run from.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(p2pool.__file__)))
PORT = 9732


@attrs.define
class GossipNode:
    """
    A gossip application, its pool, and what it delivered (message, peer it
    came from), in order.
    """

    app: Gossip
    received: list[tuple[GossipMessage, PeerId]] = attrs.field(factory=list)

    @property
    def pool(self) -> Pool:
        assert self.app.pool is not None
        return self.app.pool

    def counts(self) -> collections.Counter[bytes]:
        """
        How many times each message id was delivered.
        """
        return collections.Counter(message.message_id for message, _ in self.received)

    def payloads(self) -> list[bytes]:
        return [message.payload for message, _ in self.received]


def recording_gossip(**options: Any) -> GossipNode:
    """
    A L{Gossip} whose deliveries are recorded, not yet attached to a pool.
    """
    node = GossipNode(Gossip(**options))
    node.app.on_message = lambda message, peer_id: node.received.append((message, peer_id))
    return node


# -- the parts on their own -------------------------------------------------


class WireFormatTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        A message encodes to version, ttl, id, payload, and decodes back.
        """
        message = GossipMessage(bytes(range(16)), 5, b"payload")
        data = message.encode()
        self.assertEqual(data, bytes((VERSION, 5)) + bytes(range(16)) + b"payload")
        self.assertEqual(len(data), HEADER_SIZE + len(b"payload"))
        self.assertEqual(GossipMessage.decode(data, max_ttl=16, max_payload=7), message)

    def test_limits_are_inclusive(self) -> None:
        """
        A ttl of exactly max_ttl, a ttl of 1 and a payload of exactly
        max_payload (or empty) are valid.
        """
        for ttl, payload in ((16, b"x" * 10), (1, b"")):
            data = GossipMessage(bytes(ID_SIZE), ttl, payload).encode()
            self.assertEqual(GossipMessage.decode(data, 16, 10).ttl, ttl)

    def test_malformed(self) -> None:
        """
        Short data, another version, a ttl of 0 or above max_ttl, and a
        payload above max_payload are refused, saying why.
        """
        good = GossipMessage(bytes(ID_SIZE), 3, b"abc").encode()
        cases = {
            "shorter than the 18-byte header": good[: HEADER_SIZE - 1],
            "unknown version 2": b"\x02" + good[1:],
            "ttl 0 outside 1..16": good[:1] + b"\x00" + good[2:],
            "ttl 17 outside 1..16": good[:1] + b"\x11" + good[2:],
            "payload of 4 bytes exceeds 3": good + b"d",
        }
        for reason, data in cases.items():
            with self.assertRaises(InvalidGossip) as caught:
                GossipMessage.decode(data, max_ttl=16, max_payload=3)
            self.assertIn(reason, str(caught.exception))


class SeenCacheTests(SynchronousTestCase):
    def test_new_then_seen(self) -> None:
        cache = SeenCache(capacity=10, max_age=60.0)
        self.assertTrue(cache.add(b"a", 0.0))
        self.assertFalse(cache.add(b"a", 1.0))
        self.assertIn(b"a", cache)
        self.assertEqual(len(cache), 1)

    def test_capacity_forgets_least_recently_seen(self) -> None:
        """
        Over capacity, the id seen longest ago goes; seeing an id again
        makes it the most recent.
        """
        cache = SeenCache(capacity=3, max_age=60.0)
        for key in (b"a", b"b", b"c"):
            cache.add(key, 0.0)
        cache.add(b"a", 1.0)
        cache.add(b"d", 2.0)
        self.assertEqual(len(cache), 3)
        self.assertNotIn(b"b", cache)
        self.assertIn(b"a", cache)
        self.assertTrue(cache.add(b"b", 3.0), "a forgotten id is new again")

    def test_ids_expire_after_max_age_since_last_seen(self) -> None:
        cache = SeenCache(capacity=100, max_age=10.0)
        cache.add(b"old", 0.0)
        cache.add(b"kept", 0.0)
        cache.add(b"kept", 8.0)
        cache.add(b"new", 15.0)
        self.assertNotIn(b"old", cache)
        self.assertIn(b"kept", cache)
        self.assertEqual(len(cache), 2)

    def test_bounds_are_checked(self) -> None:
        self.assertRaises(ValueError, SeenCache, 0, 1.0)
        self.assertRaises(ValueError, SeenCache, 1, 0.0)


class MetadataTests(SynchronousTestCase):
    def test_round_trip_through_json(self) -> None:
        """
        encode_metadata gives a JSON object that decode_metadata turns back
        into the same counters, as a save and a load of peers.json do.
        """
        app = Gossip()
        stats = PeerStats(useful=7, duplicate=30, invalid=2)
        text = json.dumps(app.encode_metadata(stats))
        self.assertEqual(json.loads(text), {"useful": 7, "duplicate": 30, "invalid": 2})
        self.assertEqual(app.decode_metadata(json.loads(text)), stats)
        self.assertEqual(app.decode_metadata(app.encode_metadata(app.initial_metadata())), PeerStats())

    def test_lenient_decoding(self) -> None:
        """
        Missing counters are 0, other keys are ignored, and null (a file
        written by an application without metadata) is zero counters.
        """
        app = Gossip()
        self.assertEqual(app.decode_metadata({"useful": 3, "future": "x"}), PeerStats(useful=3))
        self.assertEqual(app.decode_metadata(None), PeerStats())

    def test_malformed_metadata(self) -> None:
        app = Gossip()
        for value in ([1, 2], "useful", {"useful": -1}, {"invalid": 1.5}, {"duplicate": True}):
            self.assertRaises(ValueError, app.decode_metadata, value)

    def test_score(self) -> None:
        """
        score = useful - invalid_penalty * invalid; duplicates are free.
        """
        self.assertEqual(Gossip().score(PeerStats(useful=25, duplicate=100, invalid=2)), 5.0)
        self.assertEqual(Gossip(invalid_penalty=1.5).score(PeerStats(useful=1, invalid=2)), -2.0)

    def test_options_are_checked(self) -> None:
        self.assertRaises(ValueError, Gossip, max_ttl=256)
        self.assertRaises(ValueError, Gossip, ttl=9, max_ttl=8)
        self.assertRaises(ValueError, Gossip, invalid_threshold=0)


# -- on the in-memory network -------------------------------------------------


class _MemoryNetworkTestCase(SynchronousTestCase):
    """
    Gossip nodes on a L{MemoryNetwork}.
    """

    def setUp(self) -> None:
        self.network = MemoryNetwork(seed=11, latency=0.005)
        self.addCleanup(self.network.stop)
        self.log: list[tuple[str, str, dict[str, Any]]] = []
        self.network.observe(lambda t, ip, event: self.log.append((ip, event.event, event.fields)))

    def add(self, ip: str, *trusted: str, gossip: dict[str, Any] | None = None, **config: Any) -> GossipNode:
        """
        A gossip node at C{ip} keeping connections to the C{trusted} hosts
        (maintenance off unless C{config} turns it on).
        """
        node = recording_gossip(**(gossip or {}))
        settings: dict[str, Any] = dict(
            trusted_points=tuple(PointSpec(t, PORT, self.network.identity(t).peer_id) for t in trusted),
            maintenance_idle_time=None,
            ip_greylist_size_in_kilobytes=16,
        )
        settings.update(config)
        node.app.attach(self.network.add_pool(ip, app=node.app, **settings))
        return node

    def run_until(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        self.assertTrue(self.network.run_until(predicate, timeout=timeout), "condition not met in simulated time")

    def connected(self, *pairs: tuple[GossipNode, GossipNode]) -> bool:
        return all(b.pool.peer_id in a.pool.connected_peer_ids() for a, b in pairs)

    def events(self, ip: str, name: EventKind) -> list[dict[str, Any]]:
        return [fields for host, event, fields in self.log if host == ip and event == name]


def _host(i: int) -> str:
    """
    Node C{i} of a large network, each in a /16 of its own.
    """
    return f"10.{i}.0.1"


def _graph(nodes: list[GossipNode]) -> dict[PeerId, set[PeerId]]:
    """
    Who is connected to whom.
    """
    return {n.pool.peer_id: set(n.pool.connected_peer_ids()) for n in nodes}


def _eccentricity(graph: dict[PeerId, set[PeerId]], start: PeerId) -> tuple[int, int]:
    """
    How many nodes C{start} reaches, and in how many hops at most.
    """
    depth = {start: 0}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for peer in graph.get(node, ()):
                if peer not in depth:
                    depth[peer] = depth[node] + 1
                    following.append(peer)
        frontier = following
    return len(depth), max(depth.values())


class FloodTests(_MemoryNetworkTestCase):
    def test_hundred_nodes_every_message_everywhere_once(self) -> None:
        """
        On 100 nodes bootstrapped from one, with maintenance on (min 4,
        expected 6, max 16 connections), every message published reaches
        every other node exactly once, whoever published it.
        """
        seed = PointSpec(_host(0), PORT)
        nodes = [
            self.add(
                _host(i),
                min_connections=4,
                expected_connections=6,
                max_connections=16,
                maintenance_idle_time=120.0,
                bootstrap_points=(seed,) if i else (),
            )
            for i in range(100)
        ]
        self.run_until(lambda: min(n.pool.active_connections() for n in nodes) >= 4, timeout=60)
        graph = _graph(nodes)
        reach = [_eccentricity(graph, n.pool.peer_id) for n in nodes]
        self.assertEqual({count for count, _ in reach}, {100}, "the network is connected")
        self.assertLess(max(hops for _, hops in reach), nodes[0].app.ttl, "every node is within the ttl")

        publishers = [0, 1, 37, 64, 99]
        ids = {i: nodes[i].app.publish(f"news from node {i}".encode()) for i in publishers}
        self.network.advance(2.0)

        for index, node in enumerate(nodes):
            expected = {mid: 1 for i, mid in ids.items() if i != index}
            self.assertEqual(dict(node.counts()), expected, f"node {index}")
            self.assertEqual(node.app.stats.invalid, 0)
        total_delivered = sum(n.app.stats.delivered for n in nodes)
        self.assertEqual(total_delivered, len(publishers) * 99)
        self.assertGreater(sum(n.app.stats.duplicates for n in nodes), 0, "flooding sends redundant copies")

    def test_duplicates_are_delivered_once_and_counted(self) -> None:
        """
        In a full mesh of four, each of the three others delivers a message
        once and receives two duplicates (relayed by the two others); the
        publisher is never sent it back by the peer it came from.
        """
        ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        nodes = [self.add(ip, *ips[:i]) for i, ip in enumerate(ips)]
        self.run_until(lambda: all(n.pool.active_connections() == 3 for n in nodes))
        message_id = nodes[0].app.publish(b"once")
        self.network.advance(1.0)
        for node in nodes[1:]:
            self.assertEqual(node.counts(), {message_id: 1})
            self.assertEqual(node.app.stats.duplicates, 2)
            self.assertEqual(node.app.stats.relayed, 2)
            self.assertIn(message_id, node.app.seen)
        self.assertEqual(nodes[0].received, [])
        self.assertEqual(nodes[0].app.stats.duplicates, 0, "relays skip the peer a message came from")

    def test_ttl_limits_the_hops(self) -> None:
        """
        On a chain 0-1-2-3, a message published with ttl 2 reaches nodes 1
        and 2 (node 2 delivers it with ttl 1 and drops it); with the
        default ttl it reaches node 3.
        """
        ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        chain = [self.add(ips[0])] + [self.add(ips[i], ips[i - 1]) for i in range(1, 4)]
        self.run_until(lambda: self.connected((chain[0], chain[1]), (chain[1], chain[2]), (chain[2], chain[3])))

        short = chain[0].app.publish(b"near", ttl=2)
        self.network.advance(1.0)
        self.assertEqual([(m.payload, m.ttl) for m, _ in chain[1].received], [(b"near", 2)])
        self.assertEqual([(m.payload, m.ttl) for m, _ in chain[2].received], [(b"near", 1)])
        self.assertEqual(chain[3].received, [])
        self.assertEqual(chain[2].app.stats.expired, 1)
        self.assertEqual(chain[2].app.stats.relayed, 0)
        self.assertNotIn(short, chain[3].app.seen)

        chain[0].app.publish(b"far")
        self.network.advance(1.0)
        self.assertEqual([(m.payload, m.ttl) for m, _ in chain[3].received], [(b"far", chain[0].app.ttl - 2)])
        self.assertEqual(chain[3].received[0][1], chain[2].pool.peer_id)

    def test_publish_checks_its_arguments(self) -> None:
        node = self.add("10.0.0.1", gossip=dict(max_payload=4, max_ttl=5, ttl=3))
        self.assertRaises(ValueError, node.app.publish, b"12345")
        self.assertRaises(ValueError, node.app.publish, b"1", ttl=6)
        self.assertRaises(ValueError, node.app.publish, b"1", ttl=0)
        self.assertEqual(node.app.stats.published, 0)
        self.assertRaises(RuntimeError, Gossip().publish, b"not attached")

    def test_publisher_publishes_periodically(self) -> None:
        """
        A Publisher on a node's clock publishes "<text> #n" every period
        while running, and stops with its service.
        """
        a = self.add("10.0.0.1")
        b = self.add("10.0.0.2", "10.0.0.1")
        self.run_until(lambda: self.connected((a, b)))
        publisher = Publisher(a.app, 2.0, text="tick", clock=self.network.reactor("10.0.0.1"))
        publisher.startService()
        self.network.advance(7.0)
        self.assertEqual(b.payloads(), [b"tick #1", b"tick #2", b"tick #3"])
        publisher.stopService()
        self.network.advance(10.0)
        self.assertEqual(len(b.received), 3)
        self.assertEqual(a.app.stats.published, 3)
        self.assertRaises(ValueError, Publisher, a.app, 0.0)
        self.assertRaises(ValueError, Publisher, a.app, math.nan)
        self.assertRaises(ValueError, Publisher, a.app, math.inf)

    def test_publish_period(self) -> None:
        self.assertEqual(publish_period("2.5"), 2.5)
        for text in ("abc", "", "0", "-1", "nan", "inf"):
            error = self.assertRaises(ValueError, publish_period, text)
            self.assertIn(repr(text), str(error))

    def test_publisher_keeps_going_after_a_failure(self) -> None:
        """
        A publication that raises (here: the Gossip was never attached) is
        logged, and the next period publishes again; no Deferred is left
        failed and unhandled.
        """
        gossip = Gossip()
        clock = self.network.reactor("10.0.0.1")
        publisher = Publisher(gossip, 1.0, clock=clock)
        publisher.startService()
        self.addCleanup(publisher.stopService)
        self.network.advance(2.5)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertEqual(publisher.count, 2)
        gossip.attach(self.add("10.0.0.1").pool)
        self.network.advance(1.0)
        self.assertEqual(gossip.stats.published, 1)


class ScoringTests(_MemoryNetworkTestCase):
    def test_useful_duplicate_and_invalid_messages_order_the_scores(self) -> None:
        """
        Hub X hears a message first from A (useful), then from B, which
        relays it (duplicate); C sends garbage (invalid). The metadata
        counts each, and score(A) > score(B) > score(C).
        """
        x = self.add("10.0.0.1")
        a = self.add("10.0.0.2", "10.0.0.1")
        b = self.add("10.0.0.3", "10.0.0.1", "10.0.0.2")
        c = self.add("10.0.0.4", "10.0.0.1")
        self.run_until(lambda: x.pool.active_connections() == 3 and self.connected((a, b)))

        a.app.publish(b"useful news")
        self.network.advance(1.0)
        c.pool.send(x.pool.peer_id, b"garbage")
        self.network.advance(1.0)

        peers = x.pool.peers
        self.assertEqual(peers.get_peer_metadata(a.pool.peer_id), PeerStats(useful=1))
        self.assertEqual(peers.get_peer_metadata(b.pool.peer_id), PeerStats(duplicate=1))
        self.assertEqual(peers.get_peer_metadata(c.pool.peer_id), PeerStats(invalid=1))
        scores = [peers.get_score(n.pool.peer_id) for n in (a, b, c)]
        self.assertEqual(scores, [1.0, 0.0, -10.0])
        self.assertEqual((x.app.stats.delivered, x.app.stats.duplicates, x.app.stats.invalid), (1, 1, 1))
        self.assertEqual(x.pool.active_connections(), 3, "one invalid message is below the threshold")

    def test_metadata_is_saved_and_reloaded_with_the_peers_file(self) -> None:
        """
        The counters go to peers.json as JSON when the node stops, and a
        restarted node decodes them back.
        """
        x = self.add("10.0.0.1")
        a = self.add("10.0.0.2", "10.0.0.1")
        self.run_until(lambda: self.connected((x, a)))
        for text in (b"one", b"two"):
            a.app.publish(text)
        self.network.advance(1.0)
        path = x.pool.persistence.path
        stopped = self.network.remove_pool("10.0.0.1")
        self.run_until(lambda: stopped.called)

        with open(path) as f:
            saved = {p["peer_id"]: p["peer_metadata"] for p in json.load(f)["peers"]}
        self.assertEqual(saved[str(a.pool.peer_id)], {"useful": 2, "duplicate": 0, "invalid": 0})

        restarted = self.add("10.0.0.1")
        self.assertEqual(restarted.pool.peers.get_peer_metadata(a.pool.peer_id), PeerStats(useful=2))
        self.assertEqual(restarted.pool.peers.get_score(a.pool.peer_id), 2.0)


class GreylistTests(_MemoryNetworkTestCase):
    def test_misbehaving_peer_is_greylisted_and_disconnected(self) -> None:
        """
        Malformed gossip (another version, a ttl above max_ttl, an oversized
        payload) counts strikes; at the third X greylists the sender's peer
        id and address and closes the connection with application_error,
        and the sender cannot come back.
        """
        x = self.add("10.0.0.1", gossip=dict(max_ttl=8, max_payload=100))
        c = self.add("10.0.0.66", "10.0.0.1")
        self.run_until(lambda: self.connected((x, c)))
        bad = [
            b"\x07" + GossipMessage(bytes(ID_SIZE), 1, b"").encode()[1:],
            GossipMessage(os.urandom(ID_SIZE), 9, b"far too far").encode(),
            GossipMessage(os.urandom(ID_SIZE), 1, b"x" * 101).encode(),
        ]
        for strike, data in enumerate(bad, 1):
            c.pool.send(x.pool.peer_id, data)
            self.network.advance(0.5)
            self.assertEqual(x.pool.peers.get_peer_metadata(c.pool.peer_id).invalid, strike)
            if strike < len(bad):
                self.assertTrue(self.connected((x, c)), f"still connected after {strike} strikes")

        self.assertEqual(x.pool.active_connections(), 0)
        self.assertEqual(x.app.stats.greylisted, 1)
        self.assertIn(c.pool.peer_id, x.pool.peers.get_greylisted_list())
        self.assertTrue(x.pool.points.banned(Point("10.0.0.66", PORT)))
        self.assertEqual(
            [e["reason"] for e in self.events("10.0.0.1", EventKind.DISCONNECTION)],
            [DisconnectReason.APPLICATION_ERROR.value],
        )
        self.assertEqual(
            [e["reason"] for e in self.events("10.0.0.66", EventKind.EXTERNAL_DISCONNECTION)],
            [DisconnectReason.REMOTE_DISCONNECT.value],
        )
        self.assertEqual(x.received, [])

        # C keeps redialing its trusted point; X refuses it before TLS.
        self.network.advance(300.0)
        self.assertEqual(x.pool.active_connections(), 0)
        self.assertTrue(self.events("10.0.0.1", EventKind.INCOMING_CONNECTION_BANNED))

    def test_threshold_is_per_connection_and_configurable(self) -> None:
        """
        With invalid_threshold=1 the first malformed message greylists.
        """
        x = self.add("10.0.0.1", gossip=dict(invalid_threshold=1))
        c = self.add("10.0.0.66", "10.0.0.1")
        self.run_until(lambda: self.connected((x, c)))
        c.pool.send(x.pool.peer_id, b"short")
        self.network.advance(0.5)
        self.assertEqual(x.pool.active_connections(), 0)
        self.assertEqual(x.app.stats.greylisted, 1)
        self.assertEqual(c.pool.connections.list(), [])


class TacTests(SynchronousTestCase):
    def test_tac_builds_a_gossip_node_and_publisher(self) -> None:
        """
        tac/gossip.tac reads $P2POOL_CONFIG and $GOSSIP_PUBLISH_EVERY and
        builds a node running an attached Gossip and a Publisher for it.
        """
        from p2pool.daemon.node import NodeService

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config_path = os.path.join(directory, "node.toml")
        with open(config_path, "w") as f:
            f.write(
                '[p2p]\nlisten = "127.0.0.2:9732"\ndata_dir = "n2"\nnetwork = "tac-test"\n\n[admin]\nlisten = false\n'
            )
        self.patch(os, "environ", {**os.environ, "P2POOL_CONFIG": config_path, "GOSSIP_PUBLISH_EVERY": "2.5"})

        application = loadApplication(os.path.join(SOURCE_ROOT, "tac", "gossip.tac"), "python")

        services = list(IServiceCollection(application))
        node = next(s for s in services if isinstance(s, NodeService))
        self.addCleanup(node.lock.release)
        publisher = next(s for s in services if isinstance(s, Publisher))
        self.assertIsInstance(node.pool.app, Gossip)
        self.assertIs(node.pool.app.pool, node.pool)
        self.assertIs(publisher.gossip, node.pool.app)
        self.assertEqual(publisher.every, 2.5)
        self.assertEqual(publisher.text, "hello from 127.0.0.2:9732")
        self.assertEqual(node.pool.config.network, "tac-test")
        self.assertEqual(node.pool.config.data_dir, os.path.join(directory, "n2"))
        self.assertIsNone(node.admin)

    def test_tac_refuses_a_bad_period(self) -> None:
        """
        A $GOSSIP_PUBLISH_EVERY that is not a positive number stops the
        program before the node is made: status 2 and a line naming the
        variable, as a bad configuration does, not a traceback (or, for
        nan, an assertion failure once the reactor runs).
        """
        for value in ("abc", "nan", "0"):
            self.patch(os, "environ", {**os.environ, "GOSSIP_PUBLISH_EVERY": value})
            os.environ.pop("P2POOL_CONFIG", None)
            stderr = io.StringIO()
            self.patch(sys, "stderr", stderr)
            exited = self.assertRaises(
                SystemExit, loadApplication, os.path.join(SOURCE_ROOT, "tac", "gossip.tac"), "python"
            )
            self.assertEqual(exited.code, 2)
            self.assertIn(
                f"GOSSIP_PUBLISH_EVERY: expected a positive, finite number of seconds, got {value!r}", stderr.getvalue()
            )
            self.assertFalse(os.path.exists("p2pool-data"), "no node was made")


# -- real nodes -----------------------------------------------------------------


async def start_gossip_node(test: TestCase, ip: str, index: int, **config: Any) -> GossipNode:
    """
    A real gossip node on C{ip} (any free port) with test identity
    C{index}, stopped when the test ends.
    """
    node = recording_gossip()
    settings: dict[str, Any] = dict(
        listen=Point(ip, 0),
        expected_proof_of_work=0,
        maintenance_idle_time=None,
        data_dir=test.mktemp(),
    )
    settings.update(config)
    pool = Pool(PoolConfig(**settings), node.app, identity=identity(index))
    node.app.attach(pool)
    pool.startService()
    test.addCleanup(lambda: pool.stopService() if pool.running else None)
    await pool.when_started()
    return node


def _spec(node: GossipNode) -> PointSpec:
    host = node.pool.listening_port.getHost()  # type: ignore[union-attr]
    return PointSpec(host.host, host.port, node.pool.peer_id)


class RealNodeTests(TestCase):
    timeout = 120

    @async_test
    async def test_three_nodes_on_loopback(self) -> None:
        """
        127.0.0.2 and 127.0.0.4 both trust 127.0.0.3: a message published by
        .2 crosses real TLS connections to .4 through .3, once, and .3
        scores .2 as useful. No copy comes back: later messages, which
        travel the same connections after it (.2 to .4, then .4 to .2),
        arrive with no duplicate seen anywhere.
        """
        middle = await start_gossip_node(self, "127.0.0.3", 0)
        first = await start_gossip_node(self, "127.0.0.2", 1, trusted_points=(_spec(middle),))
        last = await start_gossip_node(self, "127.0.0.4", 2, trusted_points=(_spec(middle),))
        await wait_for(lambda: middle.pool.active_connections() == 2)

        message_id = first.app.publish(b"over real TLS")
        await wait_for(lambda: bool(last.received))
        # Each connection delivers in order: once these arrive, any echo of
        # the first message would have arrived before them.
        later = first.app.publish(b"later, from .2")
        await wait_for(lambda: later in last.counts())
        back = last.app.publish(b"later, from .4")
        await wait_for(lambda: back in first.counts())

        self.assertEqual(middle.counts(), {message_id: 1, later: 1, back: 1})
        self.assertEqual(last.counts(), {message_id: 1, later: 1})
        self.assertEqual(first.counts(), {back: 1})
        self.assertEqual([n.app.stats.duplicates for n in (first, middle, last)], [0, 0, 0], "no copy came back")
        message, sender = last.received[0]
        self.assertEqual(
            (message.payload, message.ttl, sender), (b"over real TLS", first.app.ttl - 1, middle.pool.peer_id)
        )
        self.assertEqual(middle.pool.peers.get_peer_metadata(first.pool.peer_id), PeerStats(useful=2))


# -- the tutorial -----------------------------------------------------------------

#: A code block of docs/EMBEDDING.md that is a file: its first line is a
#: comment naming it (``# mygossip/app.py``).
_FILE_BLOCK = re.compile(r"^```(?:python|toml)\n# ([\w./-]+\.(?:py|tac|toml))\n(.*?)^```$", re.M | re.S)


def tutorial_files() -> dict[str, str]:
    """
    The files docs/EMBEDDING.md has the reader write, by path.
    """
    with open(os.path.join(SOURCE_ROOT, "docs", "EMBEDDING.md"), encoding="utf-8") as f:
        text = f.read()
    return {m.group(1): f"# {m.group(1)}\n{m.group(2)}" for m in _FILE_BLOCK.finditer(text)}


class TutorialTests(TestCase):
    timeout = 120

    @async_test
    async def test_tutorial_code_runs(self) -> None:
        """
        The files of docs/EMBEDDING.md, written to an empty directory: the
        trial tests it shows pass, and its .tac file loads with each node's
        configuration file.
        """
        files = tutorial_files()
        self.assertIn("mygossip/app.py", files)
        self.assertIn("gossip.tac", files)
        tests = sorted(path for path in files if re.search(r"/test_\w+\.py$", path))
        self.assertGreaterEqual(len(tests), 2, sorted(files))
        configs = sorted(path for path in files if path.endswith(".toml"))
        self.assertEqual(configs, ["n2.toml", "n3.toml", "n4.toml"])

        directory = os.path.abspath(self.mktemp())
        for path, content in files.items():
            full = os.path.join(directory, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w", encoding="utf-8") as f:
                f.write(content)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([directory, SOURCE_ROOT])}

        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-W", "error::DeprecationWarning", "-m", "twisted.trial", "mygossip"],
            env=env,
            path=directory,
        ).addTimeout(90, reactor)
        report = (out + err).decode("utf-8", "replace")
        self.assertEqual(code, 0, report)
        count = sum(files[path].count("\n    def test_") for path in tests)
        self.assertIn(f"PASSED (successes={count})", report)

        load = (
            "import os\n"
            "from twisted.application.service import IServiceCollection, loadApplication\n"
            "for name in ('n2.toml', 'n3.toml', 'n4.toml'):\n"
            "    os.environ['P2POOL_CONFIG'] = name\n"
            "    app = loadApplication('gossip.tac', 'python')\n"
            "    node = next(iter(IServiceCollection(app)))\n"
            "    print(node.pool.config.listen, type(node.pool.app).__name__, node.admin)\n"
        )
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ["-c", load], env=env, path=directory
        ).addTimeout(30, reactor)
        self.assertEqual(code, 0, (out + err).decode("utf-8", "replace"))
        self.assertEqual(
            out.decode().split("\n")[:3],
            [f"127.0.0.{n}:9732 Gossip None" for n in (2, 3, 4)],
        )
