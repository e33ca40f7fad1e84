# -*- test-case-name: tests.test_admin -*-
"""
Tests for the admin HTTP API (L{p2pool.admin}): every route and its JSON
shape in memory (two pools on a L{MemoryNetwork}, the API behind
C{StubTreq}), every error path, authentication, the token check of the
configuration, and a few routes over real loopback sockets, including the
node service that serves them.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import treq
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import globalLogPublisher
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

import p2pool
import p2pool.daemon.tap as tap
from p2pool.admin import AdminListenError, AdminService, resources
from p2pool.admin import feed as feed_module
from p2pool.admin.json_shapes import point_info_json, rfc3339
from p2pool.admin.resources import MAX_BODY_SIZE
from p2pool.config import AdminConfig, ConfigError, PoolConfig, config_from_mapping
from p2pool.core.addressing import PeerId, Point
from p2pool.events import EventKind
from p2pool.pool.service import Pool
from tests.adminhelpers import (
    IP_A,
    IP_B,
    TOKEN,
    MemoryAdmin,
    base_url,
    http_client,
    start_admin,
)
from tests.helpers import async_test, identity, start_node, wait_for

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UNKNOWN_PEER = str(PeerId.from_public_key(b"\x01" * 32))


class ShapeTests(SynchronousTestCase):
    """
    The JSON shapes of the read routes, after Tezos's C{/network} RPCs.
    """

    def setUp(self) -> None:
        self.h = MemoryAdmin(self)

    def test_self_is_the_peer_id_as_a_json_string(self) -> None:
        result = self.h.request("GET", "/network/self")
        self.assertEqual(result.code, 200)
        self.assertEqual(result.header("content-type"), "application/json; charset=utf-8")
        self.assertEqual(result.json(), str(self.h.a.peer_id))

    def test_stat_totals_and_rates(self) -> None:
        self.h.connect()
        stat = self.h.get("/network/stat")
        self.assertEqual(set(stat), {"total_sent", "total_recv", "current_inflow", "current_outflow"})
        self.assertEqual((stat["total_sent"], stat["total_recv"]), self.h.a.bytes_totals())
        conn = self.h.a.connections.find_by_peer_id(self.h.b.peer_id)
        assert conn is not None
        self.h.network.advance(1.0)
        conn.send(b"x" * 5000)
        self.h.network.advance(1.0)
        stat = self.h.get("/network/stat")
        self.assertGreaterEqual(stat["current_outflow"], 5000)
        self.assertEqual(stat["current_inflow"], 0)
        [listed] = self.h.get("/network/connections")
        self.assertGreaterEqual(listed["stat"]["current_outflow"], 5000)
        self.h.network.advance(2.0)
        self.assertEqual(self.h.get("/network/stat")["current_outflow"], 0)

    def test_connections(self) -> None:
        self.assertEqual(self.h.get("/network/connections"), [])
        self.h.connect()
        [conn] = self.h.get("/network/connections")
        self.assertEqual(
            set(conn),
            {
                "peer_id",
                "point",
                "id_point",
                "incoming",
                "private",
                "announced_version",
                "local_metadata",
                "remote_metadata",
                "established_at",
                "stat",
            },
        )
        self.assertEqual(conn["peer_id"], str(self.h.b.peer_id))
        self.assertEqual(conn["point"], f"{IP_B}:9732")
        self.assertEqual(conn["id_point"], {"addr": IP_B, "port": 9732})
        self.assertIs(conn["incoming"], False)
        self.assertIs(conn["private"], False)
        self.assertEqual(conn["announced_version"]["chain_name"], "p2pool-mainnet")
        self.assertEqual(conn["remote_metadata"], {"private_node": False, "data": ""})
        self.assertRegex(conn["established_at"], RFC3339)
        self.assertEqual(self.h.get(f"/network/connections/{self.h.b.peer_id}"), conn)

    def test_long_listing_in_chunks(self) -> None:
        """
        A listing longer than L{LISTING_CHUNK} is rendered a chunk at a
        time, letting the reactor run in between, and gives the same JSON
        as the whole list at once.
        """
        self.patch(resources, "LISTING_CHUNK", 2)
        for i in range(5):
            self.h.a.register_point(Point(f"198.51.100.{i + 1}", 9732))
        expected = [[str(info.point), point_info_json(info)] for info in self.h.a.points]
        d = self.h.start_request("GET", "/network/points")
        done: list[Any] = []
        d.addBoth(done.append)
        self.h.stub.flush()
        self.assertEqual(done, [], "the reply waits for the reactor between chunks")
        result = self.h.request("GET", "/network/points")
        self.assertEqual(result.body, json.dumps(expected, separators=(",", ":")).encode() + b"\n")
        self.assertEqual(len(result.json()), 5)

    def test_points(self) -> None:
        self.h.connect()
        points = self.h.get("/network/points")
        self.assertEqual([key for key, _ in points], [f"{IP_B}:9732"])
        info = points[0][1]
        self.assertEqual(info["state"], {"event_kind": "running", "p2p_peer_id": str(self.h.b.peer_id)})
        self.assertEqual(info["p2p_peer_id"], str(self.h.b.peer_id))
        self.assertIs(info["trusted"], False)
        peer, when = info["last_established_connection"]
        self.assertEqual(peer, str(self.h.b.peer_id))
        self.assertRegex(when, RFC3339)
        self.assertEqual(info["last_seen"], info["last_established_connection"])
        self.assertNotIn("greylisted_until", info)
        self.assertEqual(self.h.get(f"/network/points/{IP_B}:9732"), info)
        self.assertEqual(self.h.get("/network/points?filter=disconnected"), [])
        self.assertEqual(len(self.h.get("/network/points?filter=running&filter=accepted")), 1)

    def test_point_after_disconnection_has_back_off(self) -> None:
        self.h.connect()
        self.h.request("DELETE", f"/network/connections/{self.h.b.peer_id}?wait=true")
        info = self.h.get(f"/network/points/{IP_B}:9732")
        self.assertEqual(info["state"], {"event_kind": "disconnected"})
        self.assertNotIn("p2p_peer_id", info)
        self.assertRegex(info["greylisted_until"], RFC3339)
        self.assertEqual(info["last_disconnection"][0], str(self.h.b.peer_id))
        self.assertEqual(info["last_miss"], info["last_disconnection"][1])

    def test_peers(self) -> None:
        self.h.connect()
        [[key, info]] = self.h.get("/network/peers")
        self.assertEqual(key, str(self.h.b.peer_id))
        self.assertEqual(info["state"], "running")
        self.assertEqual(info["score"], 0.0)
        self.assertIs(info["trusted"], False)
        self.assertEqual(info["reachable_at"], {"addr": IP_B, "port": 9732})
        self.assertEqual(info["conn_metadata"], {"private_node": False, "data": ""})
        self.assertIsNone(info["peer_metadata"])
        self.assertEqual(set(info["stat"]), {"total_sent", "total_recv", "current_inflow", "current_outflow"})
        where, when = info["last_established_connection"]
        self.assertEqual(where, {"addr": IP_B, "port": 9732})
        self.assertRegex(when, RFC3339)
        self.assertEqual(self.h.get(f"/network/peers/{key}"), info)
        self.assertEqual(self.h.get("/network/peers?filter=disconnected"), [])

    def test_greylists(self) -> None:
        self.assertEqual(self.h.get("/network/greylist/ips"), {"ips": [], "not_reliable_since": None})
        self.assertEqual(self.h.get("/network/greylist/peers"), [])
        self.h.connect()
        self.h.a.greylist_peer(self.h.b.peer_id)
        self.assertEqual(self.h.get("/network/greylist/ips")["ips"], [IP_B])
        self.assertEqual(self.h.get("/network/greylist/peers"), [str(self.h.b.peer_id)])

    def test_node(self) -> None:
        """
        C{/node}: version, network, peer id, listening point, private mode,
        start time and an uptime that grows.
        """
        node = self.h.get("/node")
        self.assertEqual(set(node), {"version", "network", "peer_id", "listen", "private_mode", "started_at", "uptime"})
        self.assertEqual(node["version"], p2pool.__version__)
        self.assertEqual(node["network"], self.h.a.config.network)
        self.assertEqual(node["peer_id"], str(self.h.a.peer_id))
        self.assertEqual(node["listen"], f"{IP_A}:9732")
        self.assertIs(node["private_mode"], False)
        self.assertRegex(node["started_at"], RFC3339)
        assert self.h.a.started_at is not None
        self.assertEqual(node["started_at"], rfc3339(self.h.a.started_at))
        self.h.network.advance(30)
        later = self.h.get("/node")
        self.assertAlmostEqual(later["uptime"] - node["uptime"], 30, delta=1)
        self.assertAlmostEqual(later["uptime"], self.h.a.now() - self.h.a.started_at, places=2)
        self.assertEqual(later["started_at"], node["started_at"])

    def test_traffic_history(self) -> None:
        """
        C{/network/stat/history}: the bytes of each 10-second interval the
        admin service has recorded, numbered; C{?after=} the later ones.
        """
        history = self.h.get("/network/stat/history")
        self.assertEqual(set(history), {"interval", "length", "since", "intervals"})
        self.assertEqual((history["interval"], history["length"]), (10.0, 360))
        self.assertRegex(history["since"], RFC3339)
        before = len(history["intervals"])
        self.h.connect()
        conn = self.h.a.connections.find_by_peer_id(self.h.b.peer_id)
        assert conn is not None
        sent_before = self.h.a.bytes_totals()[0]
        conn.send(b"x" * 5000)
        self.h.network.advance(25)
        intervals = self.h.get("/network/stat/history")["intervals"]
        self.assertGreaterEqual(len(intervals), before + 2)
        for entry in intervals:
            self.assertEqual(set(entry), {"seq", "end", "seconds", "sent", "recv"})
            self.assertRegex(entry["end"], RFC3339)
            self.assertGreaterEqual(entry["seconds"], 10)
        self.assertEqual([e["seq"] for e in intervals], list(range(1, len(intervals) + 1)))
        self.assertGreaterEqual(sum(e["sent"] for e in intervals), 5000)
        self.assertLessEqual(sum(e["sent"] for e in intervals), self.h.a.bytes_totals()[0])
        self.assertGreater(self.h.a.bytes_totals()[0], sent_before)
        last = intervals[-1]["seq"]
        self.assertEqual(self.h.get(f"/network/stat/history?after={last - 1}")["intervals"], intervals[-1:])
        self.assertEqual(self.h.get(f"/network/stat/history?after={last}")["intervals"], [])

    def test_traffic_history_is_bounded(self) -> None:
        """
        However long the node runs, the history holds C{length} intervals.
        """
        self.h.network.advance(4000)
        history = self.h.get("/network/stat/history")
        intervals = history["intervals"]
        self.assertEqual(len(intervals), history["length"])
        self.assertGreater(intervals[0]["seq"], 1)

    def test_rfc3339(self) -> None:
        self.assertEqual(rfc3339(0.25), "1970-01-01T00:00:00.250Z")
        self.assertEqual(rfc3339(1714564800.0), "2024-05-01T12:00:00.000Z")


class ActionTests(SynchronousTestCase):
    """
    The routes that change things: connect, disconnect, ACL patches,
    clearing the greylists.
    """

    def setUp(self) -> None:
        self.h = MemoryAdmin(self)

    def test_put_point_connects(self) -> None:
        result = self.h.request("PUT", f"/network/points/{IP_B}:9732?timeout=5")
        self.assertEqual(result.code, 200)
        self.assertEqual(result.json()["peer_id"], str(self.h.b.peer_id))
        self.assertEqual(self.h.a.active_connections(), 1)

    def test_put_point_ignores_back_off(self) -> None:
        self.h.connect()
        self.h.request("DELETE", f"/network/connections/{self.h.b.peer_id}?wait=true")
        info = self.h.a.points.info(Point(IP_B, 9732))
        assert info is not None
        self.assertTrue(info.cannot_reconnect_yet(self.h.a.now()))
        self.assertEqual(self.h.request("PUT", f"/network/points/{IP_B}:9732").code, 200)

    def test_put_point_errors(self) -> None:
        self.h.connect()
        connected = self.h.request("PUT", f"/network/points/{IP_B}:9732")
        self.assertEqual((connected.code, connected.json()["error"]), (409, "connected"))
        refused = self.h.request("PUT", "/network/points/10.0.0.3:9732")
        self.assertEqual((refused.code, refused.json()["error"]), (502, "connection_failed"))
        self.assertIn("10.0.0.3:9732", refused.json()["detail"])
        self.h.a.points.ban(Point("10.0.0.4", 9732))
        banned = self.h.request("PUT", "/network/points/10.0.0.4:9732")
        self.assertEqual((banned.code, banned.json()["error"]), (403, "point_banned"))

    def test_put_point_timeout(self) -> None:
        self.h.network.partition([IP_A], ["10.0.0.9"], drop=True)
        result = self.h.request("PUT", "/network/points/10.0.0.9:9732?timeout=0.5")
        self.assertEqual((result.code, result.json()["error"]), (504, "timeout"))

    def test_put_point_bad_timeout(self) -> None:
        for value in ("0", "-1", "abc", "nan", "100000"):
            result = self.h.request("PUT", f"/network/points/{IP_B}:9732?timeout={value}")
            self.assertEqual((result.code, result.json()["error"]), (400, "bad_query"), value)
        self.assertEqual(self.h.a.active_connections(), 0)

    def test_delete_connection(self) -> None:
        self.h.connect()
        result = self.h.request("DELETE", f"/network/connections/{self.h.b.peer_id}")
        self.assertEqual((result.code, result.json()), (200, {}))
        self.h.network.advance(0.1)
        self.assertEqual(self.h.a.active_connections(), 0)
        gone = self.h.request("DELETE", f"/network/connections/{self.h.b.peer_id}")
        self.assertEqual(gone.code, 404)

    def test_delete_connection_waits(self) -> None:
        self.h.connect()
        result = self.h.request("DELETE", f"/network/connections/{self.h.b.peer_id}?wait=true")
        self.assertEqual(result.code, 200)
        self.assertEqual(self.h.a.active_connections(), 0)
        self.assertEqual(self.h.request("DELETE", f"/network/connections/{self.h.b.peer_id}?wait=maybe").code, 400)

    def test_patch_point_ban_untrusts_and_disconnects(self) -> None:
        point = Point(IP_B, 9732)
        self.h.a.register_point(point, trusted=True)
        self.h.connect()
        result = self.h.request("PATCH", f"/network/points/{point}", {"acl": "ban"})
        self.assertEqual(result.code, 200)
        self.assertIs(result.json()["trusted"], False)
        self.assertTrue(self.h.a.points.banned(point))
        self.h.network.advance(0.1)
        self.assertEqual(self.h.a.active_connections(), 0)
        # Tezos: banning a point also bans the peers connected from it.
        self.assertTrue(self.h.a.peers.banned(self.h.b.peer_id))

    def test_patch_point_trust_unbans(self) -> None:
        point = Point(IP_B, 9732)
        self.h.a.points.ban(point)
        info = self.h.request("PATCH", f"/network/points/{point}", {"acl": "trust"}).json()
        self.assertIs(info["trusted"], True)
        self.assertFalse(self.h.a.points.banned(point))

    def test_patch_point_open_unbans_and_untrusts(self) -> None:
        point = Point(IP_B, 9732)
        self.h.a.register_point(point, trusted=True)
        self.h.a.greylist_addr(IP_B)
        info = self.h.request("PATCH", f"/network/points/{point}", {"acl": "open"}).json()
        self.assertIs(info["trusted"], False)
        self.assertFalse(self.h.a.points.banned(point))

    def test_patch_point_expected_peer_id(self) -> None:
        self.h.a.register_point(Point(IP_B, 9732))
        info = self.h.request("PATCH", f"/network/points/{IP_B}:9732", {"peer_id": UNKNOWN_PEER}).json()
        self.assertEqual(info["expected_peer_id"], UNKNOWN_PEER)

    def test_patch_unknown_point_bans_its_address(self) -> None:
        result = self.h.request("PATCH", "/network/points/10.9.9.9:1", {"acl": "ban"})
        self.assertEqual((result.code, result.json()), (200, None))
        self.assertTrue(self.h.a.acl.banned_addr("10.9.9.9"))

    def test_patch_peer(self) -> None:
        self.h.connect()
        peer = str(self.h.b.peer_id)
        trusted = self.h.request("PATCH", f"/network/peers/{peer}", {"acl": "trust"}).json()
        self.assertIs(trusted["trusted"], True)
        banned = self.h.request("PATCH", f"/network/peers/{peer}", {"acl": "ban"}).json()
        self.assertIs(banned["trusted"], False)
        self.assertTrue(self.h.a.peers.banned(self.h.b.peer_id))
        self.h.network.advance(0.1)
        self.assertEqual(self.h.a.active_connections(), 0)
        self.h.request("PATCH", f"/network/peers/{peer}", {"acl": "open"})
        self.assertFalse(self.h.a.peers.banned(self.h.b.peer_id))

    def test_patch_unknown_peer_trusts_it(self) -> None:
        info = self.h.request("PATCH", f"/network/peers/{UNKNOWN_PEER}", {"acl": "trust"}).json()
        self.assertEqual((info["trusted"], info["state"]), (True, "disconnected"))
        self.assertIsNone(self.h.request("PATCH", f"/network/peers/{str(self.h.a.peer_id)}", {}).json())

    def test_delete_greylist_clears_all_lists(self) -> None:
        self.h.a.greylist_addr("10.1.1.1")
        self.h.a.points.ban(Point("10.2.2.2", 1))
        self.h.a.peers.ban(PeerId.parse(UNKNOWN_PEER))
        result = self.h.request("DELETE", "/network/greylist")
        self.assertEqual((result.code, result.json()), (200, {}))
        self.assertFalse(self.h.a.acl.banned_addr("10.1.1.1"))
        self.assertFalse(self.h.a.acl.banned_addr("10.2.2.2"))
        self.assertFalse(self.h.a.peers.banned(PeerId.parse(UNKNOWN_PEER)))

    def test_log_replay_without_follow(self) -> None:
        self.h.connect()
        result = self.h.request("GET", "/network/log?recent=true&follow=false")
        self.assertEqual(result.header("content-type"), "application/x-ndjson; charset=utf-8")
        records = [json.loads(line) for line in result.body.splitlines()]
        names = [r["event"] for r in records]
        self.assertIn(EventKind.OUTGOING_CONNECTION, names)
        self.assertIn(EventKind.CONNECTION_ESTABLISHED, names)
        established = records[names.index(EventKind.CONNECTION_ESTABLISHED)]
        self.assertEqual(established["peer_id"], str(self.h.b.peer_id))
        self.assertRegex(established["time"], RFC3339)
        self.assertEqual(self.h.request("GET", "/network/log?follow=false").body, b"")

    def test_log_streams_events(self) -> None:
        lines: list[bytes] = []
        response: list[Any] = []
        self.h.start_request("GET", "/network/log").addCallback(response.append)
        self.h.stub.flush()
        self.assertEqual(response[0].code, 200, "headers are sent before any event")
        treq.collect(response[0], lines.append)
        self.h.a.events.emit(EventKind.NEW_POINT, n=1, point=Point(IP_B, 1))
        self.h.connect()
        self.h.stub.flush()
        records = [json.loads(line) for line in b"".join(lines).splitlines()]
        self.assertEqual(records[0]["event"], "new_point")
        self.assertEqual((records[0]["n"], records[0]["point"]), (1, f"{IP_B}:1"))
        self.assertIn(EventKind.CONNECTION_ESTABLISHED, [r["event"] for r in records])
        self.assertEqual(self.h.admin.feed.streams, 1)
        self.h.admin.stopService()
        self.h.stub.flush()
        self.assertEqual(self.h.admin.feed.streams, 0)


class _FakeRequest:
    """
    Just enough of a request for L{EventFeed.stream}.
    """

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer: Any = None
        self.finished = False
        self.channel: Any = object()
        self._finish: Deferred[None] = Deferred()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def finish(self) -> None:
        self.finished = True
        self._finish.callback(None)

    def notifyFinish(self) -> Deferred[None]:
        return self._finish

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.written]


class FeedTests(SynchronousTestCase):
    """
    L{EventFeed}: slow clients, the stream limit, detaching.
    """

    def setUp(self) -> None:
        self.h = MemoryAdmin(self)
        self.feed = self.h.admin.feed

    def test_slow_client_queue_is_bounded(self) -> None:
        self.patch(feed_module, "STREAM_QUEUE_LIMIT", 3)
        request = _FakeRequest()
        self.feed.stream(request, replay=False)  # type: ignore[arg-type]
        request.producer.pauseProducing()
        for n in range(5):
            self.h.a.events.emit(EventKind.NEW_POINT, n=n)
        self.assertEqual(request.written, [])
        request.producer.resumeProducing()
        records = request.records()
        self.assertEqual([r.get("n") for r in records[:3]], [0, 1, 2])
        self.assertEqual((records[3]["event"], records[3]["dropped"]), (feed_module.LOG_LINES_DROPPED, 2))
        self.h.a.events.emit(EventKind.NEW_PEER, n=9)
        self.assertEqual((request.records()[-1]["event"], request.records()[-1]["n"]), ("new_peer", 9))

    def test_stream_limit(self) -> None:
        self.patch(self.feed, "_max_streams", 1)
        first = _FakeRequest()
        self.feed.stream(first, replay=False)  # type: ignore[arg-type]
        refused = self.h.request("GET", "/network/log")
        self.assertEqual((refused.code, refused.json()["error"]), (503, "too_many_streams"))
        first.producer.stopProducing()
        self.assertEqual(self.feed.streams, 0)
        self.assertEqual(self.h.request("GET", "/network/log?follow=false").code, 200)

    def test_detach_ends_streams(self) -> None:
        self.h.a.events.emit(EventKind.NEW_POINT)
        request = _FakeRequest()
        self.feed.stream(request, replay=True)  # type: ignore[arg-type]
        self.assertEqual([r["event"] for r in request.records()], ["new_point"], "replayed")
        self.feed.detach()
        self.assertTrue(request.finished)
        self.assertIsNone(request.producer)
        self.assertNotIn(self.feed.observe, self.h.a.events.callbacks)


class ErrorTests(SynchronousTestCase):
    """
    Bad requests get a 4xx JSON error; failures inside get a 500.
    """

    def setUp(self) -> None:
        self.h = MemoryAdmin(self)

    def assertError(self, result: Any, code: int, error: str) -> dict[str, Any]:
        self.assertEqual(result.code, code, result.body)
        self.assertEqual(result.header("content-type"), "application/json; charset=utf-8")
        body = result.json()
        self.assertEqual(set(body), {"error", "detail"})
        self.assertEqual(body["error"], error)
        self.assertTrue(body["detail"])
        return body

    def test_unknown_route(self) -> None:
        for path in ("/nope", "/network", "/network/points/1.2.3.4:1/extra", "/network//self"):
            self.assertError(self.h.request("GET", path), 404, "not_found")

    def test_trailing_slash_is_the_same_route(self) -> None:
        self.assertEqual(self.h.get("/network/self/"), str(self.h.a.peer_id))

    def test_wrong_method(self) -> None:
        result = self.h.request("POST", "/network/points/1.2.3.4:1")
        self.assertError(result, 405, "method_not_allowed")
        self.assertEqual(result.header("allow"), "GET, HEAD, PATCH, PUT")
        self.assertEqual(self.h.request("DELETE", "/network/self").header("allow"), "GET, HEAD")
        self.assertEqual(self.h.request("GET", "/network/greylist").header("allow"), "DELETE")
        self.assertEqual(self.h.request("HEAD", "/network/greylist").header("allow"), "DELETE")

    def test_head_is_get_without_the_body(self) -> None:
        """
        C{HEAD} answers every route C{GET} answers (RFC 9110: a server
        must), with GET's status and headers and no body; the log stream
        ends at once instead of following.
        """
        self.h.connect()
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        for path in ("/network/self", "/network/connections", "/version", "/health/ready", "/metrics", "/"):
            get, head = self.h.request("GET", path), self.h.request("HEAD", path)
            self.assertEqual((head.code, head.body), (get.code, b""), path)
            self.assertEqual(head.header("content-type"), get.header("content-type"), path)
        body = self.h.request("GET", "/network/self").body
        self.assertTrue(body)
        self.assertEqual(self.h.request("HEAD", "/network/self").header("content-length"), str(len(body)))
        head = self.h.request("HEAD", "/network/log?recent=true")
        self.assertEqual(
            (head.code, head.body, head.header("content-type")), (200, b"", "application/x-ndjson; charset=utf-8")
        )
        self.assertEqual(self.h.request("HEAD", "/network/points/zzz").code, 400)
        self.assertEqual(self.h.request("HEAD", "/nope").code, 404)
        self.assertFalse([e for e in logged if "HEAD" in str(e.get("log_format", ""))], "no warning about a HEAD body")

    def test_malformed_point(self) -> None:
        for text in ("zzz", "1.2.3.4", "1.2.3.4:99999", "host.example:1", "%5B%3A%3A1%5D"):
            self.assertError(self.h.request("GET", f"/network/points/{text}"), 400, "malformed_point")

    def test_port_zero_is_not_dialled_nor_registered(self) -> None:
        """
        Port 0 cannot be dialled: the configuration and the CLI refuse it,
        and so do C{PUT} and C{PATCH}, rather than dialling it or keeping a
        point that maintenance would redial forever.
        """
        for method, body in (("PUT", None), ("PATCH", {"acl": "trust"}), ("PATCH", {"peer_id": UNKNOWN_PEER})):
            result = self.h.request(method, "/network/points/127.0.0.1:0", body)
            self.assertIn("port 0", self.assertError(result, 400, "malformed_point")["detail"])
        self.assertEqual(list(self.h.a.points), [])
        self.assertError(self.h.request("GET", "/network/points/127.0.0.1:0"), 404, "not_found")

    def test_ipv6_point_in_path(self) -> None:
        self.h.a.register_point(Point("::1", 9732))
        self.assertEqual(self.h.get("/network/points/%5B%3A%3A1%5D%3A9732")["trusted"], False)
        self.assertEqual(self.h.get("/network/points/[::1]:9732")["trusted"], False)

    def test_unknown_keys(self) -> None:
        self.assertError(self.h.request("GET", "/network/points/10.9.9.9:1"), 404, "not_found")
        self.assertError(self.h.request("GET", f"/network/peers/{UNKNOWN_PEER}"), 404, "not_found")
        self.assertError(self.h.request("GET", f"/network/connections/{UNKNOWN_PEER}"), 404, "not_found")
        self.assertError(self.h.request("DELETE", f"/network/connections/{UNKNOWN_PEER}"), 404, "not_found")

    def test_malformed_peer_id(self) -> None:
        for path in ("/network/peers/idXXX", "/network/connections/nope", f"/network/peers/{UNKNOWN_PEER[:-1]}"):
            self.assertError(self.h.request("GET", path), 400, "malformed_peer_id")
        body = {"peer_id": "idXXX"}
        self.assertError(self.h.request("PATCH", "/network/points/1.2.3.4:1", body), 400, "malformed_peer_id")
        self.assertError(self.h.request("PATCH", "/network/points/1.2.3.4:1", {"peer_id": 7}), 400, "malformed_peer_id")

    def test_bad_json(self) -> None:
        path = f"/network/peers/{UNKNOWN_PEER}"
        for data in (b"", b"{", b"\xff\xfe", b"[1]", b'"ban"', b"[" * 50_000):
            self.assertError(self.h.request("PATCH", path, data), 400, "bad_json")
        self.assertIsNone(self.h.a.peers.info(PeerId.parse(UNKNOWN_PEER)))

    def test_bad_acl(self) -> None:
        for acl in ("BAN", "delete", 1, ["ban"]):
            result = self.h.request("PATCH", f"/network/peers/{UNKNOWN_PEER}", {"acl": acl})
            self.assertError(result, 400, "bad_acl")

    def test_unknown_field(self) -> None:
        result = self.h.request("PATCH", f"/network/peers/{UNKNOWN_PEER}", {"acl": "ban", "peer_id": UNKNOWN_PEER})
        self.assertIn("peer_id", self.assertError(result, 400, "bad_request")["detail"])
        self.assertFalse(self.h.a.peers.banned(PeerId.parse(UNKNOWN_PEER)))

    def test_body_too_large(self) -> None:
        body = json.dumps({"acl": "ban", "pad": "x" * MAX_BODY_SIZE}).encode()
        self.assertError(self.h.request("PATCH", f"/network/peers/{UNKNOWN_PEER}", body), 413, "body_too_large")

    def test_bad_history_after(self) -> None:
        for value in ("-1", "abc", "1.5", "", "1e3", "١", "9" * 40):
            result = self.h.request("GET", f"/network/stat/history?after={value}")
            self.assertError(result, 400, "bad_query")
            self.assertIn("after", result.json()["detail"])
        # A number too large is told the range, not that it is no number.
        result = self.h.request("GET", f"/network/stat/history?after={'9' * 19}")
        self.assertIn("from 0 to 999999999999999999", self.assertError(result, 400, "bad_query")["detail"])

    def test_bad_filter(self) -> None:
        self.assertError(self.h.request("GET", "/network/points?filter=up"), 400, "bad_query")
        self.assertError(self.h.request("GET", "/network/peers?filter=requested"), 400, "bad_query")

    def test_internal_error_is_a_500_and_the_node_goes_on(self) -> None:
        def broken(point: Point) -> None:
            raise RuntimeError("boom")

        self.patch(self.h.a.points, "info", broken)
        body = self.assertError(self.h.request("GET", "/network/points/1.2.3.4:1"), 500, "internal_error")
        self.assertNotIn("boom", body["detail"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.h.get("/network/self"), str(self.h.a.peer_id))

    def test_async_internal_error_is_a_500(self) -> None:
        def broken(point: Point, timeout: Any = None) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            self.h.network.reactor(IP_A).callLater(0.1, d.errback, ZeroDivisionError("late"))
            return d

        self.patch(self.h.a, "connect", broken)
        self.assertError(self.h.request("PUT", f"/network/points/{IP_B}:9732"), 500, "internal_error")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_dns_rebinding_is_refused_without_token(self) -> None:
        for host in ("evil.example", "evil.example:8732"):
            result = self.h.request("GET", "/network/self", headers={"Host": host})
            self.assertError(result, 403, "forbidden_host")
        for host in ("localhost:8732", "127.0.0.1", "[::1]:8732", "node.localhost"):
            self.assertEqual(self.h.request("GET", "/network/self", headers={"Host": host}).code, 200, host)

    def test_not_started(self) -> None:
        """
        Before the identity is loaded, the peer id and dials are 503.
        """
        pool = Pool(
            PoolConfig(listen=Point("10.0.0.5", 9732), data_dir=self.mktemp()),
            reactor=self.h.network.reactor("10.0.0.5"),
        )
        admin = AdminService(pool, AdminConfig(listen=None), reactor=self.h.network.reactor("10.0.0.5"))
        stub = StubTreq(admin.resource)
        for method, path in (("GET", "/network/self"), ("PUT", "/network/points/10.0.0.1:9732")):
            replies: list[Any] = []
            stub.request(method, "http://127.0.0.1" + path).addCallback(replies.append)
            stub.flush()
            self.assertEqual(replies[0].code, 503, path)
        self.assertEqual(pool.active_connections(), 0)
        bodies: list[Any] = []
        stub.get("http://127.0.0.1/node").addCallback(treq.json_content).addCallback(bodies.append)
        stub.flush()
        [node] = bodies
        self.assertEqual(
            {k: node[k] for k in ("peer_id", "listen", "started_at", "uptime")},
            {"peer_id": None, "listen": None, "started_at": None, "uptime": None},
        )
        self.assertEqual(node["version"], p2pool.__version__)


class AuthTests(SynchronousTestCase):
    """
    With a token, every route needs C{Authorization: Bearer <token>}.
    """

    def setUp(self) -> None:
        self.h = MemoryAdmin(self, token=TOKEN)

    def test_every_route_requires_the_token(self) -> None:
        paths = [
            "/",
            "/metrics",
            "/version",
            "/node",
            "/network/bans",
            "/network/self",
            "/network/stat",
            "/network/stat/history",
            "/network/connections",
            "/network/points",
            "/network/peers",
            "/network/greylist/ips",
            "/network/greylist/peers",
            "/network/log",
            "/nope",
        ]
        for path in paths:
            result = self.h.request("GET", path)
            self.assertEqual(result.code, 401, path)
            self.assertEqual(result.json()["error"], "unauthorized")
            self.assertEqual(result.header("www-authenticate"), 'Bearer realm="p2pool"')
        for method, path in (("DELETE", "/network/greylist"), ("PATCH", f"/network/peers/{UNKNOWN_PEER}")):
            self.assertEqual(self.h.request(method, path, {"acl": "ban"}).code, 401)
        self.assertFalse(self.h.a.peers.banned(PeerId.parse(UNKNOWN_PEER)))

    def test_wrong_token(self) -> None:
        for header in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer", TOKEN):
            result = self.h.request("GET", "/network/self", headers={"Authorization": header})
            self.assertEqual(result.code, 401, header)

    def test_right_token(self) -> None:
        for header in (f"Bearer {TOKEN}", f"bearer  {TOKEN} "):
            result = self.h.request("GET", "/network/self", headers={"Authorization": header})
            self.assertEqual((result.code, result.json()), (200, str(self.h.a.peer_id)))

    def test_query_token_only_for_the_dashboard(self) -> None:
        page = self.h.request("GET", f"/?access_token={TOKEN}")
        self.assertEqual(page.code, 200)
        self.assertEqual(page.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(self.h.request("GET", "/?access_token=wrong").code, 401)
        self.assertEqual(self.h.request("GET", f"/network/self?access_token={TOKEN}").code, 401)

    def test_any_host_with_a_token(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Host": "node.example.org"}
        self.assertEqual(self.h.request("GET", "/network/self", headers=headers).code, 200)


class TokenConfigTests(SynchronousTestCase):
    """
    C{[admin] token}, and the rule that a non-loopback C{admin.listen}
    needs one and TLS.
    """

    def test_loopback_needs_no_token(self) -> None:
        for text in ("127.0.0.1:8732", "127.5.6.7:1", "[::1]:8732"):
            self.assertEqual(AdminConfig(Point.parse(text)).token, "")

    def test_other_addresses_need_a_token(self) -> None:
        for text in ("0.0.0.0:8732", "[::]:8732", "192.0.2.1:8732"):
            error = self.assertRaises(ConfigError, AdminConfig, Point.parse(text))
            self.assertEqual(error.key, "admin.listen")
            self.assertIn("admin.token", str(error))
            self.assertRaises(ConfigError, AdminConfig, Point.parse(text), TOKEN)
            self.assertEqual(AdminConfig(Point.parse(text), TOKEN, "/c.pem", "/k.pem").token, TOKEN)

    def test_refused_at_start_from_file_and_flag(self) -> None:
        error = self.assertRaises(
            ConfigError, config_from_mapping, {"admin": {"listen": "0.0.0.0:8732"}}, source="node.toml"
        )
        self.assertTrue(
            str(error).startswith("node.toml: admin.listen: 0.0.0.0:8732 is not a loopback address"), str(error)
        )
        options = tap.Options()
        usage_error = self.assertRaises(usage.UsageError, options.parseOptions, ["--admin", "0.0.0.0:8732"])
        self.assertIn("admin.listen", str(usage_error))
        options = tap.Options()
        options.parseOptions(
            [
                "--admin",
                "0.0.0.0:8732",
                "--admin-token",
                TOKEN,
                "--admin-tls-certificate",
                "/c.pem",
                "--admin-tls-key",
                "/k.pem",
            ]
        )
        self.assertEqual(options.config.admin, AdminConfig(Point("0.0.0.0", 8732), TOKEN, "/c.pem", "/k.pem"))

    def test_bad_tokens(self) -> None:
        for value, fragment in (
            ("short", "16 to 4096"),
            ("has space in it....", "may hold only"),
            ("x" * 16 + "=" + "y", "may hold only"),
            (False, "expected a bearer token"),
            (12345678901234567, "expected a bearer token"),
        ):
            error = self.assertRaises(ConfigError, config_from_mapping, {"admin": {"token": value}})
            self.assertEqual(error.key, "admin.token")
            self.assertIn(fragment, str(error))

    def test_no_token_flag(self) -> None:
        options = tap.Options()
        options.parseOptions(["--admin-token", "none"])
        self.assertEqual(options.config.admin.token, "")
        self.assertIn("[admin.token; default: none]", str(options))

    def test_disabled_admin_needs_no_token(self) -> None:
        self.assertIsNone(config_from_mapping({"admin": {"listen": False}}).admin.listen)


class _LineClient(Protocol):
    """
    A raw HTTP client that records what it receives.
    """

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


class RealNodeTests(TestCase):
    """
    The admin API over real sockets on loopback.
    """

    timeout = 120

    @async_test
    async def test_routes_over_tcp(self) -> None:
        a = await start_node(self, "127.0.0.61", 30)
        b = await start_node(self, "127.0.0.62", 31)
        admin = await start_admin(self, a.pool, "127.0.0.61")
        http = http_client(self)
        url = base_url(admin)
        response = await http.get(url + "/network/self")
        self.assertEqual(await response.json(), str(a.pool.peer_id))
        response = await http.put(f"{url}/network/points/{b.point}")
        self.assertEqual(response.code, 200)
        self.assertEqual((await response.json())["peer_id"], str(b.pool.peer_id))
        response = await http.get(url + "/network/connections")
        self.assertEqual([c["peer_id"] for c in await response.json()], [str(b.pool.peer_id)])
        response = await http.request("PATCH", f"{url}/network/points/{b.point}", data=b"x" * (MAX_BODY_SIZE + 10))
        self.assertEqual(response.code, 413)
        self.assertEqual((await response.json())["error"], "body_too_large")
        response = await http.delete(f"{url}/network/connections/{b.pool.peer_id}?wait=true")
        self.assertEqual(response.code, 200)
        await response.content()
        self.assertEqual(a.pool.active_connections(), 0)

    @async_test
    async def test_listening_port_logged_as_the_admin_api(self) -> None:
        """
        Twisted's line about the listening port names the admin API, not
        a class of p2pool's.
        """
        from twisted.logger import formatEvent, globalLogPublisher

        messages: list[str] = []

        def observe(event: Any) -> None:
            messages.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        a = await start_node(self, "127.0.0.63", 32)
        admin = await start_admin(self, a.pool, "127.0.0.63")
        assert admin.address is not None
        self.assertIn(f"admin API starting on {admin.address.port}", messages)

    @async_test
    async def test_token_over_tcp(self) -> None:
        a = await start_node(self, "127.0.0.63", 32)
        admin = await start_admin(self, a.pool, "127.0.0.63", token=TOKEN)
        http = http_client(self)
        refused = await http.get(base_url(admin) + "/network/self")
        self.assertEqual(refused.code, 401)
        await refused.content()
        allowed = await http.get(base_url(admin) + "/network/self", headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(await allowed.json(), str(a.pool.peer_id))

    @async_test
    async def test_log_stream_ends_with_the_client(self) -> None:
        """
        C{/network/log} streams events as JSON lines and forgets the client
        once it has gone.
        """
        a = await start_node(self, "127.0.0.64", 33)
        admin = await start_admin(self, a.pool, "127.0.0.64")
        address = admin.address
        assert address is not None
        client = _LineClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, address.ip, address.port), client)
        assert client.transport is not None
        client.transport.write(b"GET /network/log HTTP/1.1\r\nHost: 127.0.0.64\r\n\r\n")
        await wait_for(lambda: admin.feed.streams == 1 and b"\r\n\r\n" in client.data)
        self.assertIn(b"HTTP/1.1 200 OK", client.data)
        a.pool.events.emit(EventKind.NEW_POINT, n=1)
        a.pool.events.emit(EventKind.NEW_PEER, n=2)
        await wait_for(lambda: b'"event":"new_peer","n":2' in client.data)
        body = client.data.split(b"\r\n\r\n", 1)[1]
        records = [json.loads(line) for line in body.split(b"\r\n") if line.startswith(b"{")]
        self.assertEqual([(r["event"], r["n"]) for r in records], [("new_point", 1), ("new_peer", 2)])
        client.transport.loseConnection()
        await client.closed
        await wait_for(lambda: admin.feed.streams == 0 and admin.open_connections == 0)
        a.pool.events.emit(EventKind.NEW_POINT)
        self.assertIn(admin.feed.observe, a.pool.events.callbacks)

    @async_test
    async def test_stopping_closes_open_connections(self) -> None:
        a = await start_node(self, "127.0.0.65", 34)
        admin = await start_admin(self, a.pool, "127.0.0.65")
        address = admin.address
        assert address is not None
        client = _LineClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, address.ip, address.port), client)
        await wait_for(lambda: admin.open_connections == 1)
        await admin.stopService()
        await client.closed
        self.assertEqual(admin.open_connections, 0)
        self.assertNotIn(admin.metrics.observe, a.pool.events.callbacks)
        self.assertNotIn(admin.feed.observe, a.pool.events.callbacks)

    @async_test
    async def test_port_taken(self) -> None:
        a = await start_node(self, "127.0.0.66", 35)
        with socket.socket() as taken:
            taken.bind(("127.0.0.66", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            service = AdminService(a.pool, AdminConfig(listen=Point("127.0.0.66", port)))
            service.startService()
            self.addCleanup(service.stopService)
            with self.assertRaises(AdminListenError) as caught:
                await service.when_listening()
        self.assertIn(f"admin.listen 127.0.0.66:{port}", str(caught.exception))


class _StopRecorder:
    """
    The real reactor, except that C{stop} is only recorded.
    """

    def __init__(self) -> None:
        self.stops = 0

    @property
    def running(self) -> bool:
        return True

    def stop(self) -> None:
        self.stops += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(reactor, name)


class NodeServiceTests(TestCase):
    """
    L{NodeService} serves the admin API on C{[admin] listen}.
    """

    timeout = 120

    def node(self, ip: str, admin: AdminConfig, reactor: Any = None) -> Any:
        from p2pool.daemon.node import NodeService

        config = PoolConfig(
            listen=Point(ip, 0),
            expected_proof_of_work=0,
            maintenance_idle_time=None,
            data_dir=self.mktemp(),
            admin=admin,
        )
        service = NodeService(Pool(config, identity=identity(40)), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    @async_test
    async def test_node_serves_its_admin_api(self) -> None:
        service = self.node("127.0.0.67", AdminConfig(Point("127.0.0.67", 0)))
        assert service.admin is not None
        await service.admin.when_listening()
        await service.pool.when_started()
        response = await http_client(self).get(base_url(service.admin) + "/network/log?recent=true&follow=false")
        events = [json.loads(line)["event"] for line in (await response.content()).splitlines()]
        self.assertEqual(events[0], EventKind.IDENTITY_READY, "the admin service sees the pool start")
        self.assertIn(EventKind.LISTENING, events)

    @async_test
    async def test_admin_stops_after_the_pool(self) -> None:
        """
        The admin service stops once the pool has stopped, so that a client
        following C{/network/log} gets the events of the pool's stop (its
        connections closed, the peers file saved) before the stream ends.
        """
        service = self.node("127.0.0.66", AdminConfig(Point("127.0.0.66", 0)))
        assert service.admin is not None
        await service.admin.when_listening()
        await service.pool.when_started()
        response = await http_client(self).get(base_url(service.admin) + "/network/log")
        body = response.content()
        await wait_for(lambda: service.admin is not None and service.admin.feed.streams == 1)
        await service.stopService()
        events = [json.loads(line)["event"] for line in (await body).splitlines()]
        self.assertEqual(events[-1], EventKind.SAVE_PEERS, "the stream ends with the pool's last save")

    def test_admin_disabled(self) -> None:
        service = self.node("127.0.0.68", AdminConfig(None))
        self.assertIsNone(service.admin)
        self.assertEqual([type(s).__name__ for s in service], ["Pool"])

    @async_test
    async def test_admin_port_taken_stops_the_node(self) -> None:
        recorder = _StopRecorder()
        with socket.socket() as taken:
            taken.bind(("127.0.0.69", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            self.node("127.0.0.69", AdminConfig(Point("127.0.0.69", port)), reactor=recorder)
            await wait_for(lambda: recorder.stops == 1)
        self.assertEqual(recorder.stops, 1)
