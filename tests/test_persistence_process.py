# -*- test-case-name: tests.test_persistence_process -*-
"""
The peers file with real nodes: C{twistd -n p2pool} processes on their own
127.0.0.x addresses and data directories, stopped with SIGTERM, killed
with SIGKILL in the middle of checkpoints, started over a damaged file,
and restarted without any trusted point.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from typing import Any, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from p2pool.addressing import PeerId
from p2pool.identity import save_identity
from p2pool.persistence import decode_document, format_time
from tests.helpers import free_port, identity, sleep
from tests.processes import SOURCE_ROOT, twistd

_log = Logger()

NETWORK = "persistence-process-test"


def _async(f: Any) -> Any:
    def run(self: Any) -> Deferred[Any]:
        return ensureDeferred(f(self))

    run.__name__ = f.__name__
    run.__doc__ = f.__doc__
    return run


class Node(ProcessProtocol):
    """
    A C{twistd -n p2pool} process; its log lines are collected.
    """

    def __init__(self, name: str, ip: str, port: int, data_dir: str) -> None:
        self.name = name
        self.ip = ip
        self.port = port
        self.data_dir = data_dir
        self.lines: list[str] = []
        self._partial = b""
        self._watchers: list[tuple[re.Pattern[str], Deferred[str]]] = []
        self.ended: Deferred[Optional[int]] = Deferred()
        self.status: Optional[Failure] = None

    @property
    def peers_path(self) -> str:
        return os.path.join(self.data_dir, "peers.json")

    def start(self, *args: str) -> None:
        argv = [
            *twistd(),
            "-n",
            "--pidfile=",
            "--logfile=-",
            "p2pool",
            "--listen",
            f"{self.ip}:{self.port}",
            "--data-dir",
            self.data_dir,
            "--admin",
            "false",
            "--expected-proof-of-work",
            "0",
            "--network",
            NETWORK,
            # These tests read the peers-file events, logged at debug.
            "--log-level",
            "debug",
            *args,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        self.lines = []
        self.ended = Deferred()
        self.status = None
        reactor.spawnProcess(self, argv[0], argv, env=env, path=self.data_dir)

    def childDataReceived(self, fd: int, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            for watcher in list(self._watchers):
                pattern, d = watcher
                if pattern.search(line):
                    self._watchers.remove(watcher)
                    d.callback(line)

    def processEnded(self, reason: Failure) -> None:
        self.status = reason
        for _, d in self._watchers:
            d.errback(AssertionError(f"{self.name} ended before logging the line; log:\n" + self.tail()))
        self._watchers = []
        self.ended.callback(None)

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines[-count:])

    @property
    def running(self) -> bool:
        return self.status is None and self.transport is not None

    async def wait_line(self, pattern: str, timeout: float = 15.0) -> str:
        """
        The first log line matching C{pattern}, waiting up to C{timeout}
        seconds for it.
        """
        regex = re.compile(pattern)
        for line in self.lines:
            if regex.search(line):
                return line
        if not self.running:
            raise AssertionError(f"{self.name} is not running; log:\n" + self.tail())
        d: Deferred[str] = Deferred()
        self._watchers.append((regex, d))

        def expire() -> None:
            if not d.called:
                self._watchers = [w for w in self._watchers if w[1] is not d]
                d.errback(AssertionError(f"{self.name}: no line matching {pattern!r} within {timeout} s; log:\n" + self.tail()))

        timer = reactor.callLater(timeout, expire)
        try:
            return await d
        finally:
            if timer.active():
                timer.cancel()

    async def stop(self, how: str = "TERM", timeout: float = 15.0) -> Failure:
        """
        Send C{SIG<how>} and wait (up to C{timeout} seconds) for the end.
        """
        if self.running:
            self.transport.signalProcess(how)  # type: ignore[union-attr]
        await self._wait_end(timeout)
        assert self.status is not None
        return self.status

    async def _wait_end(self, timeout: float) -> None:
        if self.ended.called:
            return
        timer = reactor.callLater(timeout, lambda: self.running and self.transport.signalProcess("KILL"))  # type: ignore[union-attr]
        await self.ended
        if timer.active():
            timer.cancel()
        else:
            raise AssertionError(f"{self.name} did not end within {timeout} s; log:\n" + self.tail())

    def read_bytes(self, name: str = "peers.json") -> bytes:
        with open(os.path.join(self.data_dir, name), "rb") as f:
            return f.read()

    def read_file(self, name: str = "peers.json") -> dict[str, Any]:
        return json.loads(self.read_bytes(name))  # type: ignore[no-any-return]


class ProcessTestCase(TestCase):
    def make_node(self, name: str, ip: str, index: int) -> Node:
        """
        A node (not started) with test identity C{index} already in its
        data directory, so that no proof of work is searched.
        """
        data_dir = os.path.abspath(self.mktemp())
        os.makedirs(data_dir)
        save_identity(os.path.join(data_dir, "identity.json"), identity(index))
        node = Node(name, ip, free_port(ip), data_dir)

        async def cleanup() -> None:
            if node.running:
                await node.stop("KILL", timeout=10.0)

        self.addCleanup(lambda: ensureDeferred(cleanup()))
        return node

    def assertStoppedCleanly(self, node: Node, status: Failure) -> None:
        """
        twistd, stopped by SIGTERM, shuts down and then ends itself with
        that signal (so that its parent sees why it ended).
        """
        clean = status.check(ProcessDone) or (
            status.check(ProcessTerminated) and status.value.signal == signal.SIGTERM  # type: ignore[attr-defined]
        )
        self.assertTrue(clean, f"{node.name} ended with {status.value}")
        self.assertIn("Server Shut Down.", node.tail(3), f"{node.name} did not shut down cleanly")

    async def connected(self, node: Node, other_index: int, incoming: Optional[bool] = None, timeout: float = 15.0) -> str:
        peer = re.escape(str(identity(other_index).peer_id))
        direction = "" if incoming is None else f".* incoming={incoming}"
        return await node.wait_line(rf"connection_established .*peer_id={peer}{direction}", timeout)


class ShutdownTests(ProcessTestCase):
    timeout = 60

    @_async
    async def test_sigterm_saves(self) -> None:
        """
        SIGTERM stops the node cleanly, and the file it writes lists the
        peer it was connected to, with the point where it listens.
        """
        a = self.make_node("a", "127.0.0.41", 0)
        b = self.make_node("b", "127.0.0.42", 1)
        a.start()
        await a.wait_line("listening point=")
        b.start("--peer", f"{a.ip}:{a.port}")
        await self.connected(a, 1)
        self.assertStoppedCleanly(a, await a.stop("TERM"))
        content = decode_document(a.read_bytes(), NETWORK)
        self.assertEqual(content.skipped, [])
        [peer] = [p for p in content.peers if p.peer_id == identity(1).peer_id]
        self.assertIsNotNone(peer.last_established_connection)
        self.assertIn((b.ip, b.port), [(p.point.ip, p.point.port) for p in content.points])
        doc = a.read_file()
        [record] = [p for p in doc["peers"] if p["peer_id"] == str(identity(1).peer_id)]
        self.assertEqual(record["last_established_connection"][0], {"addr": f"::ffff:{b.ip}", "port": b.port})

    @_async
    async def test_advertised_port_recorded(self) -> None:
        """
        Tezos O8: a peer that connects is recorded at its advertised
        listening port, not at its connection's source port nor its
        listening port.
        """
        a = self.make_node("a", "127.0.0.43", 0)
        b = self.make_node("b", "127.0.0.44", 1)
        advertised = free_port(b.ip)
        while advertised == b.port:
            advertised = free_port(b.ip)
        a.start()
        await a.wait_line("listening point=")
        b.start("--peer", f"{a.ip}:{a.port}", "--advertised-port", str(advertised))
        await self.connected(a, 1)
        self.assertStoppedCleanly(a, await a.stop("TERM"))
        doc = a.read_file()
        [record] = [p for p in doc["peers"] if p["peer_id"] == str(identity(1).peer_id)]
        self.assertEqual(record["last_established_connection"][0]["port"], advertised)
        self.assertEqual(record["last_established_connection"][0]["addr"], f"::ffff:{b.ip}")
        self.assertIn(f"{b.ip}:{advertised}", [p["point"] for p in doc["points"]])


class RecoveryTests(ProcessTestCase):
    timeout = 60

    @_async
    async def test_garbage_file(self) -> None:
        """
        A node whose peers file is garbage starts, moves the file aside as
        C{peers.json.corrupt-<time>}, says so, and saves a good file.
        """
        a = self.make_node("a", "127.0.0.45", 0)
        garbage = b'{"format": 1, "network": "' + NETWORK.encode() + b'", "peers": [{"peer_id": \x00\x01'
        with open(a.peers_path, "wb") as f:
            f.write(garbage)
        a.start("--checkpoint-interval", "0.2")
        await a.wait_line("listening point=")
        damaged = await a.wait_line("is damaged")
        self.assertIn("not JSON", damaged)
        aside = [n for n in os.listdir(a.data_dir) if n.startswith("peers.json.corrupt-")]
        self.assertEqual(len(aside), 1, os.listdir(a.data_dir))
        self.assertRegex(aside[0], r"^peers\.json\.corrupt-\d{8}T\d{6}\.\d{6}Z$")
        with open(os.path.join(a.data_dir, aside[0]), "rb") as f:
            self.assertEqual(f.read(), garbage)
        self.assertStoppedCleanly(a, await a.stop("TERM"))
        self.assertEqual(decode_document(a.read_bytes(), NETWORK).skipped, [])

    @_async
    async def test_restart_reconnects_without_trusted_points(self) -> None:
        """
        A node restarted with no trusted point configured dials the peer
        it knew (the peer itself waits a minute before redialing a point
        that dropped it, so the connection is the restarted node's).
        """
        a = self.make_node("a", "127.0.0.46", 0)
        b = self.make_node("b", "127.0.0.47", 1)
        a.start()
        await a.wait_line("listening point=")
        b.start("--peer", f"{a.ip}:{a.port}")
        await self.connected(a, 1, incoming=True)
        self.assertStoppedCleanly(a, await a.stop("TERM"))
        a.start()
        line = await self.connected(a, 1, incoming=False, timeout=20.0)
        self.assertIn(f"point={b.ip}:{b.port}", line)
        self.assertStoppedCleanly(a, await a.stop("TERM"))


class CrashTests(ProcessTestCase):
    timeout = 90

    ROUNDS = 30
    INTERVAL = 0.1
    #: Reactor scheduling allowed on top of the interval and the writes.
    SLACK = 0.1
    SEEDED = 2000
    SAVE_DURATION = re.compile(r"save_peers .*duration=([0-9.e-]+)")

    def bound(self, node: Node) -> float:
        """
        How old the file may be when the node is killed: the snapshot of
        the last completed save was taken at most one interval plus one
        write before the next save began, which may itself be writing.
        The writes take as long as the node reported for its saves.
        """
        durations = [float(m.group(1)) for line in node.lines if (m := self.SAVE_DURATION.search(line))]
        return self.INTERVAL + 2 * max(durations, default=0.0) + self.SLACK

    def seed(self, node: Node) -> None:
        """
        A peers file with C{SEEDED} peers and points, so that every
        checkpoint takes a while to write and kills land in the middle of
        writes. The points refuse connections at once.
        """
        rng = random.Random(5)
        peers, points = [], []
        for i in range(self.SEEDED):
            t = format_time(time.time() - 86400 + rng.random() * 3600)
            addr = {"addr": f"::ffff:127.0.{1 + i // 250}.{1 + i % 250}", "port": 1}
            peer_id = str(PeerId((1000 + i).to_bytes(16, "big")))
            peers.append(
                {
                    "peer_id": peer_id,
                    "created": t,
                    "peer_metadata": None,
                    "last_disconnection": [addr, t],
                    "events": [
                        {"kind": "connection_established", "timestamp": t, **addr},
                        {"kind": "disconnection", "timestamp": t, **addr},
                    ],
                }
            )
            points.append({"point": f"127.0.{1 + i // 250}.{1 + i % 250}:1", "last_failed_connection": t, "known_public": True})
        doc = {"format": 1, "network": NETWORK, "peers": peers, "points": points, "bans": {"ips": [], "peers": []}}
        with open(node.peers_path, "w") as f:
            json.dump(doc, f)

    @_async
    async def test_sigkill_during_checkpoints(self) -> None:
        """
        Killed at random moments while it checkpoints every 0.1 s, 30
        times in a row, a node always leaves a file that loads whole, and
        loses at most one checkpoint interval (plus the write) of what it
        learnt: its connection to B is in the file once it is older than
        that, and the file is never older than that.
        """
        rng = random.Random(1)
        a = self.make_node("a", "127.0.0.48", 0)
        b = self.make_node("b", "127.0.0.49", 1)
        self.seed(a)
        b.start()
        await b.wait_line("listening point=")
        # A knows B from the start: it dials B at every start.
        with open(a.peers_path) as f:
            doc = json.load(f)
        doc["points"].append({"point": f"{b.ip}:{b.port}", "known_public": True})
        with open(a.peers_path, "w") as f:
            json.dump(doc, f)
        args = (
            "--checkpoint-interval", str(self.INTERVAL),
            "--max-known-points", "false",
            "--max-known-peer-ids", "false",
            "--min-connections", "1",
            "--expected-connections", "1",
            "--max-connections", "2",
        )  # fmt: skip
        point_b = f"{b.ip}:{b.port}"
        previous_established = 0.0
        seeded = {PeerId((1000 + i).to_bytes(16, "big")) for i in range(self.SEEDED)}
        b_known = False
        mid_write = 0
        fresh_checks = connection_checks = 0
        worst_age = worst_bound = 0.0
        for round_ in range(self.ROUNDS):
            a.start(*args)
            await a.wait_line("listening point=", timeout=20.0)
            started = time.time()
            established_seen: list[float] = []

            def seen(line: str, seen_list: list[float] = established_seen) -> None:
                seen_list.append(time.time())

            watch = ensureDeferred(self.connected(a, 1, timeout=5.0))
            watch.addCallbacks(seen, lambda f: None)
            await sleep(rng.uniform(0.05, 0.9))
            killed = time.time()
            status = await a.stop("KILL", timeout=10.0)
            self.assertTrue(status.check(ProcessTerminated), f"round {round_}: {status.value}")
            await watch
            self.assertEqual([line for line in a.lines if "Peers file" in line], [], f"round {round_}: the node found a problem")
            if os.path.exists(a.peers_path + ".tmp"):
                mid_write += 1
            # Both generations load whole, with all they knew before.
            for name in ("peers.json.bak", "peers.json"):
                path = os.path.join(a.data_dir, name)
                if name == "peers.json.bak" and not os.path.exists(path):
                    continue
                content = decode_document(a.read_bytes(name), NETWORK)
                self.assertEqual(content.skipped, [], f"round {round_}: {name}")
                self.assertLessEqual(seeded, {p.peer_id for p in content.peers}, f"round {round_}: {name}")
                self.assertEqual(len(content.points), self.SEEDED + 1, f"round {round_}: {name}")
            if b_known:
                self.assertIn(identity(1).peer_id, {p.peer_id for p in content.peers}, f"round {round_}")
            b_known = identity(1).peer_id in {p.peer_id for p in content.peers}
            assert content.saved_at is not None
            bound = self.bound(a)
            worst_bound = max(worst_bound, bound)
            if killed - started > bound:
                fresh_checks += 1
                age = killed - content.saved_at
                worst_age = max(worst_age, age)
                self.assertLessEqual(age, bound, f"round {round_}: the file is {age:.3f} s old (bound {bound:.3f} s)")
            [info] = [p for p in content.points if str(p.point) == point_b]
            established = info.last_established_connection[1] if info.last_established_connection else 0.0
            if established_seen and killed - established_seen[0] > bound:
                connection_checks += 1
                self.assertGreater(established, previous_established, f"round {round_}: this round's connection to B is not in the file")
            self.assertGreaterEqual(established, previous_established)
            previous_established = established
        _log.info(
            "{rounds} kills: file age checked {fresh} times (worst {worst:.3f} s, largest bound {bound:.3f} s), "
            "connection to B checked {connections} times, {midwrite} kills left a temporary file",
            rounds=self.ROUNDS,
            fresh=fresh_checks,
            worst=worst_age,
            bound=worst_bound,
            connections=connection_checks,
            midwrite=mid_write,
        )
        self.assertGreaterEqual(fresh_checks, 8, "too few rounds lasted long enough to check the file's age")
        self.assertGreaterEqual(connection_checks, 5, "too few rounds connected to B long enough before the kill")
        self.assertStoppedCleanly(b, await b.stop("TERM"))
