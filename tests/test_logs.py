# -*- test-case-name: tests.test_logs -*-
"""
Tests for L{p2pool.daemon.logs} (a node's log: level, repeats, text or JSON, and
where twistd would write it), the proof-of-work progress a node logs while
it makes its identity, and the nack motives named on both sides.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

from twisted.application.service import Application, MultiService
from twisted.application.twist._options import TwistOptions
from twisted.logger import ILogObserver, Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase, TestCase

import p2pool.core.identity as identity_module
from p2pool.config import AdminConfig, LogConfig, PoolConfig
from p2pool.core.identity import Identity, ProofOfWorkProgress, expected_attempts
from p2pool.daemon.logs import (
    StatusRepeats,
    json_record,
    node_log_level,
    node_log_observer,
    twistd_log_destination,
)
from p2pool.errors import NackMotive
from p2pool.events import EventKind, EventLog
from p2pool.pool.service import Pool
from tests.helpers import async_test, identity, start_node, wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(name: str | None = None, level: Any = LogLevel.info, time: float = 1000.0, **fields: Any) -> dict[str, Any]:
    """
    A log event as C{twisted.logger} makes it; a pool event when C{name}
    is given.
    """
    record: dict[str, Any] = {"log_level": level, "log_time": time, "log_namespace": "test", **fields}
    if name is not None:
        record["p2pool_event"] = name
        record["log_format"] = "{p2pool_event} " + " ".join(f"{k}={{{k}}}" for k in fields)
    else:
        record["log_format"] = "plain message"
    return record


class ObserverTests(SynchronousTestCase):
    """
    L{node_log_observer}: which events it writes, and how.
    """

    def written(self, config: LogConfig, *events: dict[str, Any]) -> list[str]:
        out = io.StringIO()
        observer: Any = node_log_observer(config, out)
        for e in events:
            observer(e)
        return out.getvalue().splitlines()

    def test_default_level_is_info(self) -> None:
        lines = self.written(
            LogConfig(),
            event("connection_established", peer_id="idA"),
            event("load_peers", level=LogLevel.debug, path="p"),
            event(level=LogLevel.debug),
        )
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("#info] connection_established peer_id=idA", lines[0])

    def test_levels(self) -> None:
        events = [event(level=level) for level in (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error)]
        self.assertEqual(len(self.written(LogConfig(level="debug"), *events)), 4)
        self.assertEqual(len(self.written(LogConfig(level="warn"), *events)), 2)
        self.assertEqual(len(self.written(LogConfig(level="critical"), *events)), 0)

    def test_status_events_shown_when_they_change(self) -> None:
        events = [
            event("too_few_connections", time=0, connections=0),
            event("too_few_connections", time=5, connections=0),
            event("too_few_connections", time=10, connections=0),
            event("too_few_connections", time=15, connections=1),
            event("too_many_connections", time=16, connections=90),
            event("too_few_connections", time=20, connections=1),
            event("too_few_connections", time=30, connections=0),
        ]
        lines = self.written(LogConfig(), *events)
        self.assertEqual(
            [line.split("] ", 1)[1] for line in lines],
            [
                "too_few_connections connections=0",
                "too_few_connections connections=1",
                "too_many_connections connections=90",
                "too_few_connections connections=0",
            ],
        )
        self.assertEqual(len(self.written(LogConfig(level="debug"), *events)), len(events))

    def test_unchanged_status_is_repeated_every_ten_minutes(self) -> None:
        repeats = StatusRepeats()
        shown = [
            t for t in range(0, 1300, 5) if repeats(event("too_few_connections", time=t, connections=0)).name != "no"
        ]
        self.assertEqual(shown, [0, 600, 1200])

    def test_json_lines(self) -> None:
        lines = self.written(
            LogConfig(format="json"),
            event("connection_established", time=1714564800.25, peer_id="idA", incoming=True, point=None),
            event(level=LogLevel.warn, time=1714564801, count=3, thing=object),
        )
        first, second = (json.loads(line) for line in lines)
        self.assertEqual(
            first,
            {
                "time": "2024-05-01T12:00:00.250Z",
                "level": "info",
                "namespace": "test",
                "message": "connection_established peer_id=idA incoming=True point=None",
                "event": "connection_established",
                "peer_id": "idA",
                "incoming": True,
                "point": None,
            },
        )
        self.assertEqual(
            second,
            {
                "time": "2024-05-01T12:00:01.000Z",
                "level": "warn",
                "namespace": "test",
                "message": "plain message",
                "count": 3,
                "thing": str(object),
            },
        )

    def test_json_traceback(self) -> None:
        try:
            _ = 1 / 0
        except ZeroDivisionError:
            failure = Failure()
        record = json_record(event(level=LogLevel.critical, log_failure=failure))
        self.assertIn("ZeroDivisionError", record["traceback"])
        self.assertNotIn("log_failure", record)

    def test_real_logger_events(self) -> None:
        """
        Events from a C{Logger} and from the pool's L{EventLog} come out
        whole, with the fields in JSON.
        """
        out = io.StringIO()
        observer = node_log_observer(LogConfig(format="json"), out)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        Logger(namespace="p2pool.test").info("hello {who}", who="operator")
        EventLog().emit(EventKind.CONNECTION_ESTABLISHED, peer_id="idB", incoming=False)
        records = [json.loads(line) for line in out.getvalue().splitlines()]
        self.assertEqual(records[0]["message"], "hello operator")
        self.assertEqual((records[0]["namespace"], records[0]["who"]), ("p2pool.test", "operator"))
        self.assertEqual(
            {k: records[1][k] for k in ("event", "peer_id", "incoming", "namespace")},
            {"event": "connection_established", "peer_id": "idB", "incoming": False, "namespace": "p2pool.events"},
        )


class DestinationTests(SynchronousTestCase):
    """
    L{twistd_log_destination}: where twistd would have written its log.
    """

    def options(self, *argv: str) -> ServerOptions:
        options = ServerOptions()
        options.parseOptions([*argv, "p2pool"])
        return options

    def test_standard_output(self) -> None:
        self.assertIs(twistd_log_destination(self.options("-n")), sys.stdout)
        self.assertIs(twistd_log_destination(self.options("-n", "--logfile=-")), sys.stdout)

    def test_log_file(self) -> None:
        path = os.path.abspath(self.mktemp())
        for argv in (["-n", f"--logfile={path}"], [f"--logfile={path}"]):
            destination = twistd_log_destination(self.options(*argv))
            self.assertIsInstance(destination, LogFile)
            assert isinstance(destination, LogFile)
            self.addCleanup(destination.close)
            self.assertEqual(destination.path, path)

    def test_daemon_default_file(self) -> None:
        cwd = os.getcwd()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        os.chdir(directory)
        self.addCleanup(os.chdir, cwd)
        destination = twistd_log_destination(self.options())
        assert isinstance(destination, LogFile)
        self.addCleanup(destination.close)
        self.assertEqual(destination.path, os.path.join(directory, "twistd.log"))

    def test_twistd_choice_stands(self) -> None:
        for argv in (["-n", "--syslog"], ["-n", "--logger=twisted.logger.textFileLogObserver"], ["--logfile=-"]):
            self.assertIsNone(twistd_log_destination(self.options(*argv)), argv)
        self.assertIsNone(twistd_log_destination(TwistOptions()))
        self.assertIsNone(twistd_log_destination(None))


class NodeObserverTests(SynchronousTestCase):
    """
    L{NodeService.setServiceParent} installs the node's observer on a
    twistd application, as a C{.tac} file would.
    """

    def node(self) -> Any:
        from p2pool.daemon.node import NodeService

        config = PoolConfig(
            expected_proof_of_work=0, maintenance_idle_time=None, data_dir=self.mktemp(), admin=AdminConfig(None)
        )
        return NodeService(Pool(config, identity=identity(42)))

    def test_installed_on_an_application(self) -> None:
        node = self.node()
        observer = node_log_observer(LogConfig(), io.StringIO())
        node.log_observer = observer
        application = Application("p2pool")
        node.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), observer)

    def test_level_declared_with_the_observer(self) -> None:
        """
        The level of the installed observer is declared to the pool's
        events: the node's debug events are then not built for the log.
        """
        node = self.node()
        self.assertIs(node.pool.events.log_level, LogLevel.debug)
        node.log_observer = node_log_observer(LogConfig(level="info"), io.StringIO())
        node.log_level = node_log_level(LogConfig(level="info"))
        node.setServiceParent(Application("p2pool"))
        self.assertIs(node.pool.events.log_level, LogLevel.info)
        self.assertFalse(node.pool.events.wants(EventKind.OUTGOING_CONNECTION))
        self.assertTrue(node.pool.events.wants(EventKind.CONNECTION_ESTABLISHED))

    def test_application_observer_kept(self) -> None:
        node = self.node()
        node.log_observer = node_log_observer(LogConfig(), io.StringIO())
        node.log_level = node_log_level(LogConfig(level="warn"))
        application = Application("p2pool")
        own = node_log_observer(LogConfig(level="debug"), io.StringIO())
        application.setComponent(ILogObserver, own)
        node.setServiceParent(application)
        self.assertIs(application.getComponent(ILogObserver), own)
        # The application's own observer stands: nothing is declared.
        self.assertIs(node.pool.events.log_level, LogLevel.debug)

    def test_nothing_without_observer_or_application(self) -> None:
        application = Application("p2pool")
        self.node().setServiceParent(application)
        self.assertIsNone(application.getComponent(ILogObserver, None))
        node = self.node()
        node.log_observer = node_log_observer(LogConfig(), io.StringIO())
        parent = MultiService()
        node.setServiceParent(parent)
        self.assertEqual(list(parent), [node])


class ProofOfWorkProgressTests(SynchronousTestCase):
    """
    L{ProofOfWorkProgress}: a line now and then, with rate and estimate.
    """

    def test_throttled_lines_with_estimate(self) -> None:
        clock = FakeClock()
        progress = ProofOfWorkProgress(20, 10.0, clock)
        self.assertEqual(expected_attempts(20), 1 << 20)
        self.assertIsNone(progress(16384))
        clock.now += 10
        self.assertEqual(
            progress(100000), "proof of work: 100,000 attempts, 10,000 hashes/s, about 1 min 45 s more expected"
        )
        clock.now += 5
        self.assertIsNone(progress(150000))
        clock.now += 5
        self.assertEqual(
            progress(200000), "proof of work: 200,000 attempts, 10,000 hashes/s, about 1 min 45 s more expected"
        )

    def test_durations(self) -> None:
        clock = FakeClock()
        for difficulty, rate, expected in (
            (10, 1024, "1 s"),
            (20, 1 << 14, "1 min 4 s"),
            (26, 1 << 14, "1 h 8 min"),
            (32, 1 << 14, "3 days"),
        ):
            progress = ProofOfWorkProgress(difficulty, 1.0, clock)
            clock.now += 1
            self.assertEqual(
                progress(rate), f"proof of work: {rate:,} attempts, {rate:,} hashes/s, about {expected} more expected"
            )

    def test_without_difficulty(self) -> None:
        clock = FakeClock()
        progress = ProofOfWorkProgress(None, 1.0, clock)
        clock.now += 2
        self.assertEqual(progress(1000), "proof of work: 1,000 attempts, 500 hashes/s")


class PoolProgressTests(TestCase):
    """
    A node making its identity logs its progress as one line every
    L{identity.PROGRESS_LOG_INTERVAL} seconds, with rate and estimate.
    """

    timeout = 120

    @async_test
    async def test_progress_lines(self) -> None:
        import p2pool.pool.service

        self.patch(identity_module, "PROGRESS_LOG_INTERVAL", 0.0)
        made = identity(43)

        def search(path: str, difficulty: float, progress: Any = None, **kwargs: Any) -> Identity:
            for attempts in (16384, 32768):
                progress(attempts)
            return made

        self.patch(p2pool.pool.service, "load_or_create_identity", search)
        lines: list[str] = []

        def observe(e: Any) -> None:
            if e.get("log_namespace") == "p2pool.pool.service.Pool" and "progress" in e:
                lines.append(e["progress"])

        observer: Any = observe
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        node = await start_node(self, "127.0.0.76", 44, identity=None, expected_proof_of_work=20)
        self.assertEqual(node.pool.identity, made)
        await wait_for(lambda: len(lines) == 2)
        for line, attempts in zip(lines, ("16,384", "32,768")):
            self.assertRegex(line, f"^proof of work: {attempts} attempts, [0-9,]+ hashes/s, about .* more expected$")


class MotiveNameTests(TestCase):
    """
    A nack's motive is logged by name by the node that sends it and by the
    node that receives it.
    """

    timeout = 120

    @async_test
    async def test_both_sides(self) -> None:
        a = await start_node(self, "127.0.0.77", 45, max_connections=0, min_connections=0, expected_connections=0)
        b = await start_node(self, "127.0.0.78", 46)
        try:
            await b.pool.connect(a.point)
        except Exception:
            pass
        await wait_for(lambda: bool(a.named("rejecting_request")))
        refused = a.named("rejecting_request")[0].fields
        self.assertEqual(
            (refused["motive"], refused["motive_name"]), (NackMotive.TOO_MANY_CONNECTIONS, "too_many_connections")
        )
        await wait_for(lambda: any("motive_name" in e.fields for e in b.events))
        told = next(e for e in b.events if "motive_name" in e.fields)
        self.assertEqual(told.event, "request_rejected")
        self.assertEqual(told.fields["motive_name"], "too_many_connections")
        self.assertEqual(told.fields["error"], "RejectedByNack")
