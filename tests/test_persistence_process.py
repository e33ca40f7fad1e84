# -*- test-case-name: tests.test_persistence_process -*-
"""
The peers file with real nodes: C{twistd -n p2pool} processes on their own
127.0.0.x addresses and data directories, stopped with SIGTERM, killed
with SIGKILL in the middle of checkpoints, started over a damaged file,
and restarted without any trusted point.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import signal
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from p2pool.core.addressing import PeerId
from p2pool.core.identity import save_identity
from p2pool.pool.persistence import PeersFileContent, decode_document, format_time, parse_time
from tests.helpers import closed_port, identity, wait_for
from tests.processes import SOURCE_ROOT, node_argv

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
    A C{twistd -n p2pool} process listening on a port of its choosing
    (learnt from its C{listening} line); its log lines are collected.
    """

    def __init__(self, name: str, ip: str, data_dir: str) -> None:
        self.name = name
        self.ip = ip
        self.port: int | None = None
        self.data_dir = data_dir
        self.lines: list[str] = []
        self._partial = b""
        self._watchers: list[tuple[re.Pattern[str], int, Deferred[int]]] = []
        self.ended: Deferred[int | None] = Deferred()
        self.status: Failure | None = None

    @property
    def peers_path(self) -> str:
        return os.path.join(self.data_dir, "peers.json")

    @property
    def point(self) -> str:
        assert self.port is not None, f"{self.name} has not said where it listens"
        return f"{self.ip}:{self.port}"

    def start(self, *args: str) -> None:
        # These tests read the peers-file events, logged at debug.
        argv = node_argv(f"{self.ip}:0", self.data_dir, NETWORK, "--log-level", "debug", *args)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        self.lines = []
        self.port = None
        self.ended = Deferred()
        self.status = None
        reactor.spawnProcess(self, argv[0], argv, env=env, path=self.data_dir)

    async def listening(self, timeout: float = 30.0) -> int:
        """
        Wait for the node's C{listening} line; return (and remember) its
        port.
        """
        line = await self.wait_line(rf"listening point={re.escape(self.ip)}:(\d+) ", timeout)
        match = re.search(rf"listening point={re.escape(self.ip)}:(\d+) ", line)
        assert match is not None
        self.port = int(match.group(1))
        return self.port

    def childDataReceived(self, fd: int, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace")
            self.lines.append(line)
            index = len(self.lines) - 1
            for watcher in list(self._watchers):
                pattern, after, d = watcher
                if index > after and pattern.search(line):
                    self._watchers.remove(watcher)
                    d.callback(index)

    def processEnded(self, reason: Failure) -> None:
        self.status = reason
        for _, _, d in self._watchers:
            d.errback(AssertionError(f"{self.name} ended before logging the line; log:\n" + self.tail()))
        self._watchers = []
        self.ended.callback(None)

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines[-count:])

    @property
    def running(self) -> bool:
        return self.status is None and self.transport is not None

    def find(self, pattern: str, after: int = -1) -> int | None:
        """
        The index of the first line after line C{after} that matches
        C{pattern}, or None.
        """
        regex = re.compile(pattern)
        return next((i for i in range(after + 1, len(self.lines)) if regex.search(self.lines[i])), None)

    async def wait_index(self, pattern: str, after: int = -1, timeout: float = 30.0) -> int:
        """
        The index of the first line after line C{after} that matches
        C{pattern}, waiting up to C{timeout} seconds for it.
        """
        found = self.find(pattern, after)
        if found is not None:
            return found
        if not self.running:
            raise AssertionError(f"{self.name} is not running; log:\n" + self.tail())
        d: Deferred[int] = Deferred()
        self._watchers.append((re.compile(pattern), after, d))

        def expire() -> None:
            if not d.called:
                self._watchers = [w for w in self._watchers if w[2] is not d]
                d.errback(
                    AssertionError(
                        f"{self.name}: no line matching {pattern!r} within {timeout} s; log:\n" + self.tail()
                    )
                )

        timer = reactor.callLater(timeout, expire)
        try:
            return await d
        finally:
            if timer.active():
                timer.cancel()

    async def wait_line(self, pattern: str, timeout: float = 30.0) -> str:
        """
        The first log line matching C{pattern}, waiting up to C{timeout}
        seconds for it.
        """
        return self.lines[await self.wait_index(pattern, timeout=timeout)]

    async def stop(self, how: str = "TERM", timeout: float = 30.0) -> Failure:
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
        node = Node(name, ip, data_dir)

        async def cleanup() -> None:
            if node.running:
                await node.stop("KILL")

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

    async def connected(self, node: Node, other_index: int, incoming: bool | None = None, timeout: float = 30.0) -> str:
        return node.lines[await node.wait_index(connected_pattern(other_index, incoming), timeout=timeout)]


def connected_pattern(other_index: int, incoming: bool | None = None) -> str:
    """
    The log line of a connection established with test identity
    C{other_index} (in the given direction).
    """
    peer = re.escape(str(identity(other_index).peer_id))
    direction = "" if incoming is None else f".* incoming={incoming}"
    return rf"connection_established .*peer_id={peer}{direction}"


class ShutdownTests(ProcessTestCase):
    timeout = 180

    @_async
    async def test_sigterm_saves(self) -> None:
        """
        SIGTERM stops the node cleanly, and the file it writes lists the
        peer it was connected to, with the point where it listens.
        """
        a = self.make_node("a", "127.0.0.41", 0)
        b = self.make_node("b", "127.0.0.42", 1)
        a.start()
        await a.listening()
        b.start("--peer", a.point)
        await b.listening()
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
        # A port that B cannot be listening on: held, unused, by this test.
        advertised = closed_port(self, b.ip)
        a.start()
        await a.listening()
        b.start("--peer", a.point, "--advertised-port", str(advertised))
        self.assertNotEqual(await b.listening(), advertised)
        await self.connected(a, 1)
        self.assertStoppedCleanly(a, await a.stop("TERM"))
        doc = a.read_file()
        [record] = [p for p in doc["peers"] if p["peer_id"] == str(identity(1).peer_id)]
        self.assertEqual(record["last_established_connection"][0]["port"], advertised)
        self.assertEqual(record["last_established_connection"][0]["addr"], f"::ffff:{b.ip}")
        self.assertIn(f"{b.ip}:{advertised}", [p["point"] for p in doc["points"]])


class RecoveryTests(ProcessTestCase):
    timeout = 180

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
        await a.listening()
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
        await a.listening()
        b.start("--peer", a.point)
        await b.listening()
        await self.connected(a, 1, incoming=True)
        self.assertStoppedCleanly(a, await a.stop("TERM"))
        a.start()
        line = await self.connected(a, 1, incoming=False)
        self.assertIn(f"point={b.point}", line)
        self.assertStoppedCleanly(a, await a.stop("TERM"))


#: The header of a file the node wrote: when its snapshot was taken.
_SAVED_AT = re.compile(rb'"saved_at": "([^"]+)"')
_SAVE_STARTED = r"\] save_metadata "
_SAVED = r"\] save_peers "
#: The info line of a load that put the records in (not a problem).
_LOADED_LINE = "#info] Peers file "


def process_state(pid: int) -> str:
    """
    The state letter of process C{pid} (Linux C{/proc}): C{T} when
    stopped.
    """
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def saved_at(data: bytes) -> float | None:
    """
    The C{saved_at} of a peers file (in its first line), or None for a
    file no node wrote (the test's seed).
    """
    match = _SAVED_AT.search(data[: data.find(b"\n")])
    return parse_time(match.group(1).decode()) if match else None


class CrashTests(ProcessTestCase):
    timeout = 900

    ROUNDS = 30
    INTERVAL = 0.1
    SEEDED = 2000
    #: Where a round's kill lands (round 0 always kills before any save):
    #: at the listening line; as the n-th save begins (its snapshot under
    #: way); in the middle of writing a checkpoint (the process is stopped
    #: while the temporary file exists, then killed); as the n-th save is
    #: logged complete; or as a save begins after one that began after the
    #: connection to B.
    KINDS = ("listening", "save_begins", "mid_write", "save_done", "connected")
    #: Checkpoints watched for one that can be stopped mid-write.
    MID_WRITE_ATTEMPTS = 100

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
            points.append(
                {"point": f"127.0.{1 + i // 250}.{1 + i % 250}:1", "last_failed_connection": t, "known_public": True}
            )
        doc = {"format": 1, "network": NETWORK, "peers": peers, "points": points, "bans": {"ips": [], "peers": []}}
        with open(node.peers_path, "w") as f:
            json.dump(doc, f)

    def plan(self, rng: random.Random) -> list[str]:
        """
        The kind of kill of each round: round 0 before any save, the others
        each kind in turn, shuffled.
        """
        rest = [self.KINDS[i % len(self.KINDS)] for i in range(self.ROUNDS - 1)]
        rng.shuffle(rest)
        return ["first", *rest]

    async def kill_point(self, a: Node, kind: str, rng: random.Random, listening: int) -> int | None:
        """
        Wait for the moment of a C{kind} kill; return the index of the
        connection line when the round waited for one, else None.
        """
        if kind in ("first", "listening"):
            return None
        if kind == "mid_write":
            await self.stop_mid_write(a)
            return None
        if kind in ("save_begins", "save_done"):
            index = listening
            for _ in range(rng.randint(1, 3)):
                index = await a.wait_index(_SAVE_STARTED if kind == "save_begins" else _SAVED, after=index)
            return None
        connection = await a.wait_index(connected_pattern(1), after=listening)
        # A save that begins after the connection was logged has it in its
        # snapshot; kill while the next one is under way.
        began = await a.wait_index(_SAVE_STARTED, after=connection)
        done = await a.wait_index(_SAVED, after=began)
        await a.wait_index(_SAVE_STARTED, after=done)
        return connection

    async def stop_mid_write(self, a: Node) -> None:
        """
        Stop C{a} (SIGSTOP) while it writes a checkpoint: once its
        temporary file exists, stop it, and keep it stopped if the file is
        still there (else let it go on and try the next checkpoint).
        """
        assert a.transport is not None
        pid = a.transport.pid
        temporary = a.peers_path + ".tmp"
        for _ in range(self.MID_WRITE_ATTEMPTS):
            await wait_for(
                lambda: os.path.exists(temporary), what="A writes a checkpoint (peers.json.tmp exists)", step=0.002
            )
            os.kill(pid, signal.SIGSTOP)
            await wait_for(lambda: process_state(pid) == "T", what="A is stopped")
            if os.path.exists(temporary):
                return
            os.kill(pid, signal.SIGCONT)
        self.fail(f"no checkpoint of {self.MID_WRITE_ATTEMPTS} was still being written once A was stopped")

    def check_generation(self, round_: int, name: str, content: PeersFileContent, seeded: set[PeerId]) -> None:
        """
        A generation loads whole, with all it knew before.
        """
        self.assertEqual(content.skipped, [], f"round {round_}: {name} has skipped records")
        self.assertLessEqual(seeded, {p.peer_id for p in content.peers}, f"round {round_}: {name} lost seeded peers")
        self.assertEqual(len(content.points), self.SEEDED + 1, f"round {round_}: {name} has the wrong points")

    @_async
    async def test_sigkill_during_checkpoints(self) -> None:
        """
        Killed with SIGKILL 30 times in a row while it checkpoints every
        0.1 s, at moments chosen by what it logged or wrote (before any
        save, as a save begins, in the middle of writing one, as one
        completes, after it connected to B), a node always leaves files
        that load whole, and loses nothing a completed save had written:

          - a file without C{saved_at} is the test's seed, byte for byte,
            and only while the node never logged a save;
          - once a save was logged before the kill, the file is at least
            as new as the file read just before the kill (which is at least
            that save), and newer than the last round's;
          - once a save that began after the connection to B was logged,
            this connection is in the file; what was in the file stays.
        """
        rng = random.Random(1)
        a = self.make_node("a", "127.0.0.48", 0)
        b = self.make_node("b", "127.0.0.49", 1)
        self.seed(a)
        b.start()
        await b.listening()
        # A knows B from the start: it dials B at every start.
        with open(a.peers_path) as f:
            doc = json.load(f)
        doc["points"].append({"point": b.point, "known_public": True})
        with open(a.peers_path, "w") as f:
            json.dump(doc, f)
        seed_bytes = a.read_bytes()
        args = (
            "--max-known-points", "false",
            "--max-known-peer-ids", "false",
            "--min-connections", "1",
            "--expected-connections", "1",
            "--max-connections", "2",
        )  # fmt: skip
        seeded = {PeerId((1000 + i).to_bytes(16, "big")) for i in range(self.SEEDED)}
        previous_saved_at: float | None = None
        previous_established = 0.0
        b_known = False
        saves_logged = 0
        mid_write = 0
        kinds: collections.Counter[str] = collections.Counter()
        for round_, kind in enumerate(self.plan(rng)):
            kinds[kind] += 1
            # Round 0 saves nothing before the kill: its file must be the seed.
            interval = "3600" if kind == "first" else str(self.INTERVAL)
            a.start("--checkpoint-interval", interval, *args)
            await a.listening()
            listening = a.find("listening point=")
            self.assertIsNotNone(listening, f"round {round_} ({kind}): no listening line")
            assert listening is not None
            connection = await self.kill_point(a, kind, rng, listening)
            saved_this_round = a.find(_SAVED) is not None
            floor = saved_at(a.read_bytes())
            status = await a.stop("KILL")
            self.assertTrue(status.check(ProcessTerminated), f"round {round_} ({kind}): {status.value}")
            saves_logged += sum(1 for line in a.lines if re.search(_SAVED, line))
            self.assertEqual(
                # The line saying the records are in is no problem.
                [
                    line
                    for line in a.lines
                    if "Peers file" in line and not (_LOADED_LINE in line and " loaded: " in line)
                ],
                [],
                f"round {round_} ({kind}): the node found a problem",
            )
            if os.path.exists(a.peers_path + ".tmp"):
                mid_write += 1
            # Both generations load whole, with all they knew before.
            if os.path.exists(os.path.join(a.data_dir, "peers.json.bak")):
                self.check_generation(
                    round_, "peers.json.bak", decode_document(a.read_bytes("peers.json.bak"), NETWORK), seeded
                )
            data = a.read_bytes()
            content = decode_document(data, NETWORK)
            self.check_generation(round_, "peers.json", content, seeded)
            if kind == "first":
                self.assertEqual(
                    data, seed_bytes, f"round {round_}: killed before any checkpoint, the file is not the seed"
                )
            if content.saved_at is None:
                self.assertEqual(data, seed_bytes, f"round {round_} ({kind}): a file without saved_at is not the seed")
                self.assertEqual(
                    saves_logged, 0, f"round {round_} ({kind}): saves were logged, yet the file is the seed"
                )
            else:
                self.assertEqual(content.saved_at, saved_at(data), f"round {round_} ({kind}): saved_at read two ways")
                if floor is not None:
                    self.assertGreaterEqual(
                        content.saved_at,
                        floor,
                        f"round {round_} ({kind}): the file is older than the one read before the kill",
                    )
                if saved_this_round:
                    self.assertIsNotNone(floor, f"round {round_} ({kind}): a save was logged, yet the seed was read")
                    if previous_saved_at is not None:
                        self.assertGreater(
                            content.saved_at,
                            previous_saved_at,
                            f"round {round_} ({kind}): a save was logged, yet the file is last round's",
                        )
                previous_saved_at = content.saved_at
            if b_known:
                self.assertIn(
                    identity(1).peer_id, {p.peer_id for p in content.peers}, f"round {round_} ({kind}): B was forgotten"
                )
            b_known = identity(1).peer_id in {p.peer_id for p in content.peers}
            [info] = [p for p in content.points if str(p.point) == b.point]
            established = info.last_established_connection[1] if info.last_established_connection else 0.0
            if connection is not None:
                self.assertGreater(
                    established,
                    previous_established,
                    f"round {round_} ({kind}): this round's connection to B is not in the file",
                )
            self.assertGreaterEqual(
                established, previous_established, f"round {round_} ({kind}): the connection to B went back in time"
            )
            previous_established = established
        _log.info(
            "{rounds} kills ({kinds}); {saves} saves logged; {midwrite} kills left a temporary file",
            rounds=self.ROUNDS,
            kinds=dict(kinds),
            saves=saves_logged,
            midwrite=mid_write,
        )
        self.assertEqual(set(kinds), {"first", *self.KINDS}, "every kind of kill was tried")
        self.assertGreaterEqual(mid_write, kinds["mid_write"], "every mid-write kill left a temporary file")
        self.assertGreater(saves_logged, 0)
        self.assertStoppedCleanly(b, await b.stop("TERM"))
