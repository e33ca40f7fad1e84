"""
Resource limits (issue #7, item 3): a configuration over the open-file
budget stops the node with a clear message, and a node that runs out of
file descriptors neither crashes nor stops saving its peers.

The injected-limit unit tests of L{check_file_budget} and
L{raise_file_limit} live in C{tests/test_config.py}; this module adds the
node-level behaviour.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

import p2pool.config
import p2pool.daemon.node
from p2pool.config import PoolConfig, file_descriptors_needed
from p2pool.core.addressing import Point
from tests.helpers import async_test, start_node, wait_for


class MakeNodeServiceBudgetTests(SynchronousTestCase):
    """
    L{p2pool.daemon.node.make_node_service} checks the open-file budget after
    trying to raise the limit.
    """

    def test_over_budget_exits_with_message(self) -> None:
        """
        When the limit cannot be raised far enough, the service is not
        made: SystemExit names the key, both numbers and the remedy.
        """
        raised: list[int] = []
        self.patch(p2pool.daemon.node, "raise_file_limit", lambda needed: raised.append(needed) or 100)
        self.patch(p2pool.config, "_soft_file_limit", lambda: 100)
        config = PoolConfig(data_dir=self.mktemp())
        error = self.assertRaises(SystemExit, p2pool.daemon.node.make_node_service, config)
        message = str(error.code)
        self.assertEqual(raised, [file_descriptors_needed(config)])
        self.assertTrue(message.startswith("p2pool: error: "), message)
        self.assertIn("p2p.max_connections", message)
        self.assertIn(f"needs {file_descriptors_needed(config)} file descriptors", message)
        self.assertIn("RLIMIT_NOFILE) is 100", message)
        self.assertIn("ulimit -n", message)

    def test_within_budget_makes_service(self) -> None:
        """
        With enough descriptors the service is made (and not started).
        """
        self.patch(p2pool.daemon.node, "raise_file_limit", lambda needed: needed)
        self.patch(p2pool.config, "_soft_file_limit", lambda: 10_000)
        config = PoolConfig(data_dir=self.mktemp(), expected_proof_of_work=0)
        service = p2pool.daemon.node.make_node_service(config)
        self.addCleanup(service.lock.release)
        self.assertFalse(service.running)
        self.assertIs(service.pool.config, config)


#: A node in a child process with a soft RLIMIT_NOFILE of argv[1]; it
#: prints JSON lines (its status every 50 ms, and the outcome of commands
#: read from stdin: "save", "stop").
_CHILD = r"""
import json, os, resource, sys
from twisted.internet import reactor, stdio
from twisted.internet.task import LoopingCall
from twisted.logger import globalLogPublisher
from twisted.protocols.basic import LineReceiver
from p2pool.core.addressing import Point
from p2pool.config import PoolConfig
from p2pool.core.identity import Identity
from p2pool.pool.service import Pool

limit, ip, data_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
emfile = [0]
errors = []

def observe(event):
    text = event.get("log_format") or ""
    if "EMFILE" in text or "Could not accept" in text:
        emfile[0] += 1
    if event.get("log_failure") is not None and len(errors) < 5:
        errors.append(str(event["log_failure"].value))

globalLogPublisher.addObserver(observe)

def say(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()

pool = Pool(
    PoolConfig(
        listen=Point(ip, 0), expected_proof_of_work=0, maintenance_idle_time=None, data_dir=data_dir,
        max_connections=500, max_incoming_connections=500, netgroup_cap_exempts_loopback=True,
        authentication_timeout=60.0, checkpoint_interval=3600.0,
    ),
    None,
    identity=Identity.generate(0),
)

def fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1

def status():
    say(status=True, pending=pool.connect_handler.pending_incoming, active=pool.active_connections(),
        emfile=emfile[0], fds=fds(), running=pool.running, errors=errors)

class Commands(LineReceiver):
    delimiter = b"\n"
    def lineReceived(self, line):
        if line == b"save":
            pool.save_peers().addBoth(lambda _: say(saved=True, failures=pool.persistence.failures))
        elif line == b"stop":
            pool.stopService().addBoth(lambda _: reactor.stop())

def started(_):
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    say(ready=pool.listening_port.getHost().port, peer_id=str(pool.peer_id), fds=fds())
    LoopingCall(status).start(0.05)

def failed(failure):
    say(failed=str(failure.value))
    reactor.stop()

stdio.StandardIO(Commands())
pool.startService()
pool.when_started().addCallbacks(started, failed)
reactor.run()
"""


class _Child(ProcessProtocol):
    """
    Collects the JSON lines of the child node.
    """

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.stderr = b""
        self._buffer = b""
        self.ended: Deferred[Any] = Deferred()
        self.exit_code: int | None = None

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        self.lines.extend(json.loads(line) for line in lines if line.strip())

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-4000:]

    def processEnded(self, reason: Any) -> None:
        self.exit_code = reason.value.exitCode
        self.ended.callback(None)

    def first(self, key: str) -> dict[str, Any] | None:
        return next((line for line in self.lines if key in line), None)

    def all(self, key: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if key in line]

    def last_status(self) -> dict[str, Any]:
        return self.all("status")[-1]


class _Held(Protocol):
    def __init__(self) -> None:
        self.is_closed = False

    def connectionLost(self, reason: Any) -> None:
        self.is_closed = True


class DescriptorExhaustionTests(TestCase):
    """
    A node with a soft limit of 64 open files, flooded with connections.
    """

    timeout = 120

    def _spawn(self, limit: int, ip: str) -> _Child:
        child = _Child()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        data_dir = os.path.abspath(self.mktemp())
        os.makedirs(data_dir)
        self.data_dir = data_dir
        process = reactor.spawnProcess(  # type: ignore[attr-defined]
            child, sys.executable, [sys.executable, "-c", _CHILD, str(limit), ip, data_dir], env=env
        )

        def kill() -> Any:
            if child.exit_code is None and not child.ended.called:
                with contextlib.suppress(ProcessExitedAlready, OSError):
                    process.signalProcess("KILL")
                return child.ended
            return None

        self.addCleanup(kill)
        return child

    @async_test
    async def test_out_of_descriptors_keeps_serving_and_saving(self) -> None:
        """
        100 connections against a node limited to 64 descriptors: accept
        hits EMFILE, Twisted logs it and keeps listening; a save started
        while descriptors are exhausted completes; once the flood closes, a
        real peer connects, a save succeeds, and the node stops cleanly.
        """
        ip = "127.0.0.2"
        child = self._spawn(64, ip)
        await wait_for(
            lambda: child.first("ready") is not None or child.first("failed") is not None or child.ended.called
        )
        ready = child.first("ready")
        self.assertIsNotNone(ready, f"child did not start: {child.lines} {child.stderr!r}")
        assert ready is not None
        point = Point(ip, ready["ready"])

        held = [_Held() for _ in range(100)]
        attempts = [
            connectProtocol(TCP4ClientEndpoint(reactor, ip, point.port, timeout=30, bindAddress=("127.0.0.40", 0)), h)
            for h in held
        ]
        self.addCleanup(
            lambda: [h.transport.abortConnection() for h in held if h.transport is not None and not h.is_closed]
        )
        await DeferredList(attempts, consumeErrors=True)
        await wait_for(lambda: bool(child.all("status")) and child.last_status()["emfile"] > 0)
        exhausted = child.last_status()
        self.assertTrue(exhausted["running"])
        self.assertGreater(exhausted["pending"], 20, "the node took connections up to its limit")
        self.assertLess(exhausted["pending"], 64, "and no more than its descriptors allow")
        # Twisted's EMFILE recovery accepts and closes the connections beyond the limit.
        await wait_for(lambda: any(h.is_closed for h in held))

        # A save while descriptors are exhausted still completes.
        child.transport.write(b"save\n")  # type: ignore[union-attr]
        await wait_for(lambda: child.first("saved") is not None)

        for h in held:
            if h.transport is not None and not h.is_closed:
                h.transport.abortConnection()  # type: ignore[attr-defined]
        await wait_for(lambda: child.last_status()["pending"] == 0)

        friend = await start_node(self, "127.0.0.3", 1)
        conn = await friend.pool.connect(point)
        self.assertEqual(str(conn.peer_id), ready["peer_id"])
        await wait_for(lambda: child.last_status()["active"] == 1)

        failures_before = child.all("saved")[-1]["failures"]
        child.transport.write(b"save\n")  # type: ignore[union-attr]
        await wait_for(lambda: len(child.all("saved")) == 2)
        self.assertEqual(child.all("saved")[-1]["failures"], failures_before, "the save after recovery succeeded")
        with open(os.path.join(self.data_dir, "peers.json")) as f:
            self.assertIn(str(friend.pool.peer_id), f.read())

        self.assertTrue(child.last_status()["running"])
        child.transport.write(b"stop\n")  # type: ignore[union-attr]
        await wait_for(lambda: child.ended.called)
        self.assertEqual(child.exit_code, 0, child.stderr.decode(errors="replace"))
        self.assertNotIn(b"Traceback", child.stderr)
