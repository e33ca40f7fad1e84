"""
Floods against a real node on loopback (issue #7, item 2): connection
floods from one address and from one netgroup, slowloris handshakes and
advertisement floods. The node's caps hold throughout, its established
peers keep exchanging messages, and it keeps serving.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase

from p2pool.addressing import Point, netgroup
from p2pool.wire import Advertise, encode
from tests.helpers import Node, async_test, sleep, start_node, wait_for


class _Raw(Protocol):
    """
    A client that sends nothing and records when the server closes.
    """

    def __init__(self) -> None:
        self.closed: Deferred[None] = Deferred()
        self.is_closed = False
        self.closed_at: Optional[float] = None

    def connectionLost(self, reason: Any) -> None:
        self.is_closed = True
        self.closed_at = time.monotonic()
        self.closed.callback(None)


async def _open_batch(point: Point, binds: list[str]) -> list[_Raw]:
    """
    Open one idle TCP connection from each bind address, concurrently;
    return those whose TCP connection was made.
    """
    raws = [_Raw() for _ in binds]
    attempts = [
        connectProtocol(TCP4ClientEndpoint(reactor, point.ip, point.port, timeout=5, bindAddress=(bind, 0)), raw)
        for bind, raw in zip(binds, raws, strict=True)
    ]
    results = await DeferredList(attempts, consumeErrors=True)
    return [raw for (ok, _), raw in zip(results, raws, strict=True) if ok]


def _abort_all(raws: list[_Raw]) -> None:
    for raw in raws:
        if not raw.is_closed and raw.transport is not None:
            raw.transport.abortConnection()  # type: ignore[attr-defined]


async def _tls_idle(point: Point, bind: str) -> _Raw:
    """
    A TLS 1.3 client with a valid Ed25519 self-signed certificate that
    never sends Hello.
    """
    from twisted.internet.ssl import CertificateOptions, TLSVersion

    from p2pool.tls import make_certificate

    key = Ed25519PrivateKey.generate()
    options = CertificateOptions(privateKey=key, certificate=make_certificate(key), raiseMinimumTo=TLSVersion.TLSv1_3)
    endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, point.ip, point.port, timeout=5, bindAddress=(bind, 0)))
    raw = _Raw()
    await connectProtocol(endpoint, raw)
    return raw


class _Chatter:
    """
    Sends a numbered message every 50 ms both ways over each of the
    node's connections, and checks that all arrive in order.
    """

    def __init__(self, hub: Node, peers: list[Node]) -> None:
        self.hub = hub
        self.peers = peers
        self.sent = 0
        self.loop = LoopingCall(self._tick)

    def _tick(self) -> None:
        payload = b"chat-%d" % self.sent
        for peer in self.peers:
            self.hub.pool.connections.find_by_peer_id(peer.pool.peer_id).send(payload)
            peer.pool.connections.find_by_peer_id(self.hub.pool.peer_id).send(payload)
        self.sent += 1

    def start(self) -> None:
        self.loop.start(0.05)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()

    def expected(self) -> list[bytes]:
        return [b"chat-%d" % i for i in range(self.sent)]

    def received_by(self, receiver: Node, sender: Node) -> list[bytes]:
        return [m for conn, m in receiver.app.messages if conn.peer_id == sender.pool.peer_id]

    def all_arrived(self) -> bool:
        want = self.expected()
        return all(
            self.received_by(self.hub, peer) == want and self.received_by(peer, self.hub) == want for peer in self.peers
        )


def _watch(node: Node, check: Callable[[], None]) -> LoopingCall:
    """
    Run C{check} after every event of C{node} and every 5 ms; stopped at
    the end of the test by the caller.
    """
    node.pool.events.callbacks.append(lambda _event: check())
    loop = LoopingCall(check)
    loop.start(0.005)
    return loop


class ConnectionFloodTests(TestCase):
    """
    Many TCP connections that never handshake, against a node with two
    established peers.
    """

    timeout = 30

    async def _hub_with_peers(self, hub_ip: str, peer_ips: list[str], **config: Any) -> tuple[Node, list[Node], _Chatter]:
        hub = await start_node(self, hub_ip, 0, authentication_timeout=5.0, **config)
        peers = [await start_node(self, ip, i + 1) for i, ip in enumerate(peer_ips)]
        for peer in peers:
            await hub.pool.connect(peer.point)
        await wait_for(lambda: all(p.pool.active_connections() == 1 for p in peers))
        chatter = _Chatter(hub, peers)
        chatter.start()
        self.addCleanup(chatter.stop)
        return hub, peers, chatter

    async def _finish_chat(self, hub: Node, peers: list[Node], chatter: _Chatter) -> None:
        chatter.stop()
        await wait_for(chatter.all_arrived, timeout=5)
        self.assertGreater(chatter.sent, 5, "messages flowed during the flood")
        self.assertEqual(hub.pool.active_connections(), len(peers))
        self.assertEqual([len(p.app.lost) for p in peers], [0] * len(peers), "established peers stayed connected")
        self.assertEqual(hub.app.lost, [])

    async def _flood(self, hub: Node, binds: list[str], batch: int) -> int:
        """
        Open connections from C{binds} in batches of C{batch}, holding each
        batch until the refused ones are closed, then aborting it; return
        how many TCP connections were made.
        """
        made = 0
        for start in range(0, len(binds), batch):
            raws = await _open_batch(hub.point, binds[start : start + batch])
            made += len(raws)
            try:
                # The refused ones are closed at once; the admitted ones wait.
                await wait_for(lambda raws=raws: sum(not r.is_closed for r in raws) <= hub.pool._handler.pending_incoming, timeout=5)
            finally:
                _abort_all(raws)
            await wait_for(lambda: hub.pool._handler.pending_incoming == 0, timeout=5)
        return made

    @async_test
    async def test_flood_from_one_address(self) -> None:
        """
        1,000 connections from 127.0.0.50, 50 at a time: never more than
        max_incoming_connections (20) pending handshakes, the others
        refused before TLS; messages between the node and its two peers all
        arrive and both stay connected.
        """
        cap = 20
        hub, peers, chatter = await self._hub_with_peers(
            "127.0.0.2", ["127.0.0.3", "127.0.0.4"], max_incoming_connections=cap, netgroup_cap_exempts_loopback=True
        )
        peak = [0]

        def check() -> None:
            peak[0] = max(peak[0], hub.pool._handler.pending_incoming)

        watch = _watch(hub, check)
        self.addCleanup(lambda: watch.stop() if watch.running else None)
        made = await self._flood(hub, ["127.0.0.50"] * 1000, batch=50)
        watch.stop()
        self.assertGreaterEqual(made, 900, "most flood connections reached the node")
        self.assertLessEqual(peak[0], cap)
        self.assertEqual(peak[0], cap, "the flood filled the handshake slots")
        admitted = [e for e in hub.named("incoming_connection") if e.fields["addr"] == "127.0.0.50"]
        refused = [e for e in hub.named("incoming_connection_too_many") if e.fields["addr"] == "127.0.0.50"]
        self.assertGreaterEqual(len(admitted), cap)
        self.assertGreater(len(refused), made // 2, "most of the flood was refused before TLS")
        await self._finish_chat(hub, peers, chatter)
        self.assertTrue(hub.pool.running)

    @async_test
    async def test_flood_from_one_netgroup(self) -> None:
        """
        Connections from 127.0.60.1-254 (netgroup 127.0.0.0/16), twice
        each: the node's incoming connections from that netgroup, pending
        or running, never exceed max_incoming_connections_per_netgroup,
        while its peers in other netgroups keep chatting.
        """
        cap = 5
        hub, peers, chatter = await self._hub_with_peers(
            "127.0.0.2",
            ["127.1.0.3", "127.2.0.4"],
            max_incoming_connections=100,
            max_incoming_connections_per_netgroup=cap,
        )
        group = netgroup("127.0.60.1")
        self.assertNotIn(netgroup(peers[0].point.ip), (group, netgroup(peers[1].point.ip)))
        peak = [0]

        def check() -> None:
            handler = hub.pool._handler
            count = sum(1 for p in handler._handshaking if p.incoming and netgroup(p.remote_ip) == group)
            count += sum(1 for c in hub.pool.connections.list() if c.incoming and netgroup(c.remote_ip) == group)
            peak[0] = max(peak[0], count)

        watch = _watch(hub, check)
        self.addCleanup(lambda: watch.stop() if watch.running else None)
        binds = [f"127.0.60.{i}" for i in range(1, 255)] * 2
        made = await self._flood(hub, binds, batch=50)
        watch.stop()
        self.assertGreaterEqual(made, len(binds) * 9 // 10)
        self.assertEqual(peak[0], cap, "the netgroup filled its slots and no more")
        self.assertGreater(len(hub.named("incoming_connection_netgroup_full")), made // 2)
        self.assertEqual(hub.named("incoming_connection_too_many"), [], "the global cap was not what held")
        await self._finish_chat(hub, peers, chatter)
        # A peer from another netgroup can still connect in.
        late = await start_node(self, "127.3.0.5", 9)
        conn = await late.pool.connect(hub.point)
        self.assertEqual(conn.peer_id, hub.pool.peer_id)
        await wait_for(lambda: hub.pool.active_connections() == 3, timeout=5)


class SlowlorisTests(TestCase):
    """
    Connections that never finish the handshake are closed at
    authentication_timeout.
    """

    timeout = 20

    @async_test
    async def test_tcp_and_tls_stalls_time_out(self) -> None:
        """
        Five connections that never start TLS and five that finish TLS but
        never send Hello: all closed about authentication_timeout (0.5 s)
        after they opened, each an authentication_failed Timeout event; the
        node then serves a real peer.
        """
        hub = await start_node(self, "127.0.0.2", 0, authentication_timeout=0.5, netgroup_cap_exempts_loopback=True)
        opened = time.monotonic()
        tcp = await _open_batch(hub.point, [f"127.0.70.{i}" for i in range(1, 6)])
        tls = [await _tls_idle(hub.point, f"127.0.71.{i}") for i in range(1, 6)]
        stalled = tcp + tls
        self.assertEqual(len(stalled), 10)
        self.addCleanup(_abort_all, stalled)
        await wait_for(lambda: hub.pool._handler.pending_incoming == 10, timeout=2)
        await wait_for(lambda: all(r.is_closed for r in stalled), timeout=5)
        for raw in stalled:
            assert raw.closed_at is not None
            self.assertGreaterEqual(raw.closed_at - opened, 0.4, "not closed before the timeout")
            self.assertLess(raw.closed_at - opened, 3.0, "closed soon after the timeout")
        failures = hub.named("authentication_failed")
        self.assertEqual(len(failures), 10)
        self.assertEqual({e.fields["error"] for e in failures}, {"Timeout"})
        self.assertEqual(
            sorted(e.fields["addr"] for e in failures),
            sorted([f"127.0.70.{i}" for i in range(1, 6)] + [f"127.0.71.{i}" for i in range(1, 6)]),
        )
        self.assertEqual(hub.pool._handler.pending_incoming, 0)
        self.assertEqual(hub.pool.points.get_greylisted_list(), [], "a timeout does not greylist")
        friend = await start_node(self, "127.0.0.9", 8)
        conn = await friend.pool.connect(hub.point)
        self.assertEqual(conn.peer_id, hub.pool.peer_id)


class AdvertiseFloodTests(TestCase):
    """
    A peer flooding Advertise frames cannot grow the victim's tables
    beyond their bounds.
    """

    timeout = 20

    @async_test
    async def test_advertise_flood_is_bounded(self) -> None:
        """
        2,000 Advertise frames of 100 random points, in 20 bursts over
        about a second: the victim registers at most the token bucket's
        200 + 10/s x elapsed points, its known-points table never exceeds
        max_known_points, excess frames are throttled, and the connection
        stays up.
        """
        high, low = 150, 100
        # The control-frame rate cap (tested in tests.test_flow) would hold
        # this flood back by TCP; lifted, the answerer's own throttling is
        # what is tested here.
        victim = await start_node(self, "127.0.0.2", 0, max_known_points=(high, low), max_control_frame_rate=1e6)
        flooder = await start_node(self, "127.0.0.3", 1)
        conn = await flooder.pool.connect(victim.point)
        await wait_for(lambda: victim.pool.active_connections() == 1)
        peak = [0]

        def check() -> None:
            peak[0] = max(peak[0], len(list(victim.pool.points)))

        watch = _watch(victim, check)
        self.addCleanup(lambda: watch.stop() if watch.running else None)
        rng = random.Random(7)
        started = time.monotonic()
        for _ in range(20):
            frames = [
                encode(Advertise(tuple(Point(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", 9732) for _ in range(100))))
                for _ in range(100)
            ]
            conn._protocol.write(b"".join(frames))
            await sleep(0.05)
        received = lambda: sum(e.fields["points"] for e in victim.named("advertise_received"))
        throttled = lambda: len(victim.named("throttled"))
        # Every frame is either handled or throttled (at most one waits per kind).
        await wait_for(lambda: len(victim.named("advertise_received")) + throttled() == 2000, timeout=5)
        elapsed = time.monotonic() - started
        watch.stop()
        registered = sum(
            e.fields["points"] for e in victim.named("get_points") if e.fields["medium"] == "advertise"
        )
        self.assertGreater(throttled(), 1500, "most frames were dropped by the cooldown")
        self.assertLessEqual(received(), 100 * (2 + 10 * elapsed + 1))
        self.assertGreater(registered, 0)
        self.assertLessEqual(registered, 200 + 10 * elapsed + 1, "the token bucket bounds registrations")
        self.assertLessEqual(peak[0], high, "max_known_points bounds the table")
        self.assertLessEqual(len(list(victim.pool.points)), high)
        self.assertEqual(victim.pool.active_connections(), 1)
        self.assertTrue(conn.is_open)
        # The victim still answers: a message goes through.
        conn.send(b"still there?")
        await wait_for(lambda: [m for _, m in victim.app.messages] == [b"still there?"], timeout=5)
