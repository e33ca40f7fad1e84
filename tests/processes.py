"""
Helpers for tests that run the programs a user runs (C{twistd -n p2pool},
C{p2pool}) as real processes on the source tree these tests import.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

import p2pool

#: The tree whose p2pool the processes run: the one these tests import.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(p2pool.__file__)))


def twistd() -> list[str]:
    """
    The command running this interpreter's twistd.
    """
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(script):
        return [sys.executable, script]
    return [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


def node_argv(listen: str, data_dir: str, network: str, *args: str) -> list[str]:
    """
    The command running a node in the foreground (C{twistd -n p2pool}),
    logging to stdout, listening on C{listen}, without an admin API and
    without proof of work, then C{args}.
    """
    return [
        *twistd(),
        "-n",
        "--pidfile=",
        "--logfile=-",
        "p2pool",
        "--listen",
        listen,
        "--data-dir",
        data_dir,
        "--admin",
        "false",
        "--expected-proof-of-work",
        "0",
        "--network",
        network,
        *args,
    ]


def p2pool_cli() -> list[str]:
    """
    The command running the C{p2pool} console script of this tree.
    """
    return [sys.executable, "-m", "p2pool.cli"]


def environment(**extra: str) -> dict[str, str]:
    """
    This process's environment with the source tree first on
    C{PYTHONPATH}, without C{P2POOL_*} variables, plus C{extra}.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2POOL_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, os.environ.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


@attrs.frozen
class Outcome:
    """
    How a process ended: its exit status (negative: killed by that
    signal) and its output.
    """

    status: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


class Collect(ProcessProtocol):
    """
    Collects a process's output; C{ended} fires with its L{Outcome}.
    """

    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: Deferred[Outcome] = Deferred()

    def signal(self, name: str) -> None:
        """
        Send the process a signal (C{"TERM"}, C{"INT"}, C{"KILL"}).
        """
        process: Any = self.transport
        process.signalProcess(name)

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        if reason.check(ProcessDone):
            status = 0
        elif reason.check(ProcessTerminated):
            value: Any = reason.value
            status = value.exitCode if value.exitCode is not None else -int(value.signal)
        else:
            self.ended.errback(reason)
            return
        self.ended.callback(Outcome(status, self.out.decode("utf-8", "replace"), self.err.decode("utf-8", "replace")))


def spawn(test: Any, argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> Collect:
    """
    Start C{argv}; it is killed when the test ends if still running.
    """
    protocol = Collect()
    spawner: Any = reactor
    process = spawner.spawnProcess(protocol, argv[0], argv, env if env is not None else environment(), cwd)

    def kill() -> Deferred[Outcome] | None:
        if protocol.ended.called:
            return None
        with contextlib.suppress(ProcessExitedAlready, OSError):
            process.signalProcess("KILL")
        protocol.ended.addErrback(lambda _: None)
        return protocol.ended

    test.addCleanup(kill)
    return protocol


async def run(test: Any, argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> Outcome:
    """
    Run C{argv} to its end (the test's own timeout bounds the wait).
    """
    return await spawn(test, argv, cwd, env).ended
