# -*- test-case-name: tests.test_files -*-
"""
The node's files (issue 14, item 6): only regular files are read (a real
FIFO is refused at once, never waited on), identity files open to other
users are refused with the C{chmod} to run, and the data directory is
locked: a second node on it, in-process or as a second real C{twistd}
process, stops with a one-line error and a non-zero status.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.error import ProcessTerminated
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

import p2pool.config
import p2pool.daemon.node
from p2pool.config import PoolConfig
from p2pool.core.files import (
    LOCK_FILE_NAME,
    DataDirLock,
    DataDirLocked,
    NotRegularFileError,
    open_regular_file,
    shared_permissions,
)
from p2pool.core.identity import IdentityError, IdentityFileInsecure, load_identity, save_identity
from tests.helpers import async_test, identity, wait_for
from tests.test_persistence_process import Node, ProcessTestCase


class _Fifo:
    """
    A FIFO with no writer: opening it for reading the ordinary way blocks.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        os.mkfifo(path, 0o600)

    def unblock(self) -> None:
        """
        Open the writing end, so that a reader stuck in open() returns.
        """
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


async def _refused_without_blocking(test: TestCase, fifo: _Fifo, call: Callable[[], Any]) -> BaseException:
    """
    Run C{call} in a thread and return the exception it raised, failing
    the test if it is still blocked after 10 s.
    """
    outcome: list[Any] = []
    deferToThread(call).addBoth(outcome.append)
    try:
        await wait_for(lambda: bool(outcome), timeout=10)
    except AssertionError:
        fifo.unblock()
        await wait_for(lambda: bool(outcome), timeout=10)
        test.fail(f"blocked on the FIFO {fifo.path}")
    (result,) = outcome
    test.assertIsInstance(result, Failure, f"returned {result!r} instead of refusing")
    return result.value  # type: ignore[no-any-return]


class OpenRegularFileTests(TestCase):
    """
    L{open_regular_file} reads regular files and refuses anything else at
    once.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def test_regular_file_and_link_to_one(self) -> None:
        with open(self.path("data"), "wb") as f:
            f.write(b"content")
        os.symlink(self.path("data"), self.path("link"))
        for name in ("data", "link"):
            with open_regular_file(self.path(name)) as f:
                self.assertEqual(f.read(), b"content")
                self.assertFalse(os.get_blocking(f.fileno()) is False, "blocking again once checked")

    @async_test
    async def test_fifo_refused_at_once(self) -> None:
        fifo = _Fifo(self.path("fifo"))
        error = await _refused_without_blocking(self, fifo, lambda: open_regular_file(fifo.path))
        self.assertIsInstance(error, NotRegularFileError)
        self.assertEqual(error.strerror, "is a FIFO (named pipe), not a regular file")  # type: ignore[attr-defined]
        self.assertEqual(error.filename, fifo.path)  # type: ignore[attr-defined]

    def test_directory_and_device_refused(self) -> None:
        for path, kind in ((self.directory, "a directory"), ("/dev/null", "a character device")):
            error = self.assertRaises(NotRegularFileError, open_regular_file, path)
            self.assertEqual(error.strerror, f"is {kind}, not a regular file")
            self.assertEqual(error.filename, path)

    def test_missing(self) -> None:
        self.assertRaises(FileNotFoundError, open_regular_file, self.path("missing"))

    def test_shared_permissions(self) -> None:
        self.assertEqual(shared_permissions(stat.S_IFREG | 0o600), 0)
        self.assertEqual(shared_permissions(stat.S_IFREG | 0o400), 0)
        self.assertEqual(shared_permissions(stat.S_IFREG | 0o644), 0o044)
        self.assertEqual(shared_permissions(stat.S_IFREG | 0o620), 0o020)
        self.assertEqual(shared_permissions(stat.S_IFREG | 0o4707), 0o007)


class IdentityFileTests(TestCase):
    """
    The identity file must be a regular file closed to other users.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "identity.json")

    @async_test
    async def test_fifo_refused_at_once(self) -> None:
        fifo = _Fifo(self.path)
        error = await _refused_without_blocking(self, fifo, lambda: load_identity(self.path, 0))
        self.assertIsInstance(error, IdentityError)
        self.assertEqual(
            str(error), f"identity file {self.path}: cannot be read: is a FIFO (named pipe), not a regular file"
        )

    def test_directory_refused(self) -> None:
        os.mkdir(self.path)
        error = self.assertRaises(IdentityError, load_identity, self.path, 0)
        self.assertIn("is a directory, not a regular file", str(error))

    def test_open_to_others_refused_with_the_chmod_to_run(self) -> None:
        save_identity(self.path, identity(0))
        for mode in (0o644, 0o640, 0o604, 0o660):
            os.chmod(self.path, mode)
            error = self.assertRaises(IdentityFileInsecure, load_identity, self.path, 0)
            self.assertEqual(
                str(error),
                f"identity file {self.path}: permissions {mode:04o} are too open: the secret key must not be "
                f"accessible by group or other users; run: chmod 600 {self.path}",
            )
        for mode in (0o600, 0o400):
            os.chmod(self.path, mode)
            self.assertEqual(load_identity(self.path, 0), identity(0))

    def test_chmod_hint_quotes_the_path(self) -> None:
        path = os.path.join(self.directory, "my node's key.json")
        save_identity(path, identity(0))
        os.chmod(path, 0o644)
        error = self.assertRaises(IdentityFileInsecure, load_identity, path, 0)
        self.assertTrue(str(error).endswith("run: chmod 600 '" + path.replace("'", "'\"'\"'") + "'"), str(error))

    def test_saved_file_is_private(self) -> None:
        save_identity(self.path, identity(0))
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)


class DataDirLockTests(SynchronousTestCase):
    """
    L{DataDirLock} on its own.
    """

    def setUp(self) -> None:
        self.data_dir = os.path.join(os.path.abspath(self.mktemp()), "node")

    def lock(self) -> DataDirLock:
        lock = DataDirLock(self.data_dir)
        self.addCleanup(lock.release)
        return lock

    def test_a_file_is_not_a_directory(self) -> None:
        os.makedirs(os.path.dirname(self.data_dir))
        with open(self.data_dir, "w"):
            pass
        error = self.assertRaises(NotADirectoryError, self.lock().acquire)
        self.assertEqual(error.filename, self.data_dir)

    def test_exclusive(self) -> None:
        first, second = self.lock(), self.lock()
        first.acquire()
        self.assertTrue(first.held)
        error = self.assertRaises(DataDirLocked, second.acquire)
        self.assertEqual(
            str(error),
            f"data directory {self.data_dir} is in use by another p2pool node (process {os.getpid()}); "
            "each node needs a data_dir of its own",
        )
        self.assertFalse(second.held)
        first.release()
        second.acquire()
        self.assertTrue(second.held)

    def test_creates_private_directory_and_file(self) -> None:
        self.lock().acquire()
        self.assertEqual(stat.S_IMODE(os.stat(self.data_dir).st_mode), 0o700)
        lock_path = os.path.join(self.data_dir, LOCK_FILE_NAME)
        self.assertEqual(stat.S_IMODE(os.stat(lock_path).st_mode), 0o600)
        with open(lock_path) as f:
            self.assertEqual(f.read(), f"{os.getpid()}\n")

    def test_fifo_at_the_lock_refused(self) -> None:
        os.makedirs(self.data_dir)
        os.mkfifo(os.path.join(self.data_dir, LOCK_FILE_NAME))
        error = self.assertRaises(NotRegularFileError, self.lock().acquire)
        self.assertIn("is a FIFO", str(error))


class MakeNodeServiceTests(SynchronousTestCase):
    """
    L{p2pool.daemon.node.make_node_service} locks the data directory for the
    node's life and reads the identity safely.
    """

    def setUp(self) -> None:
        self.patch(p2pool.daemon.node, "raise_file_limit", lambda needed: needed)
        self.patch(p2pool.config, "_soft_file_limit", lambda: 10_000)
        self.config = PoolConfig(data_dir=os.path.abspath(self.mktemp()), expected_proof_of_work=0)

    def make(self) -> Any:
        service = p2pool.daemon.node.make_node_service(self.config, reactor=reactor)
        self.addCleanup(lambda: service.lock.release())
        return service

    def test_second_node_on_the_same_data_dir(self) -> None:
        first = self.make()
        self.assertTrue(first.lock.held)
        error = self.assertRaises(SystemExit, p2pool.daemon.node.make_node_service, self.config)
        self.assertEqual(
            error.code,
            f"p2pool: error: data directory {self.config.data_dir} is in use by another p2pool node "
            f"(process {os.getpid()}); each node needs a data_dir of its own",
        )
        first.lock.release()
        self.assertTrue(self.make().lock.held)

    def test_bad_identity_releases_the_lock(self) -> None:
        os.makedirs(self.config.data_dir)
        os.mkfifo(self.config.identity_path)
        error = self.assertRaises(SystemExit, p2pool.daemon.node.make_node_service, self.config)
        self.assertIn("is a FIFO (named pipe), not a regular file", str(error.code))
        lock = DataDirLock(self.config.data_dir)
        lock.acquire()
        lock.release()

    def test_data_dir_that_is_a_file(self) -> None:
        with open(self.config.data_dir, "w"):
            pass
        error = self.assertRaises(SystemExit, p2pool.daemon.node.make_node_service, self.config)
        self.assertEqual(error.code, f"p2pool: error: data directory {self.config.data_dir}: is not a directory")

    def test_data_dir_that_cannot_be_created(self) -> None:
        parent = self.mktemp()
        with open(parent, "w"):
            pass
        self.config = PoolConfig(data_dir=os.path.join(parent, "data"), expected_proof_of_work=0)
        error = self.assertRaises(SystemExit, p2pool.daemon.node.make_node_service, self.config)
        self.assertEqual(
            error.code,
            f"p2pool: error: data directory {self.config.data_dir}: cannot create {self.config.data_dir}: Not a directory",
        )

    def test_unlockable_lock_file(self) -> None:
        os.makedirs(os.path.join(self.config.data_dir, ".lock"))
        error = self.assertRaises(SystemExit, p2pool.daemon.node.make_node_service, self.config)
        self.assertTrue(
            str(error.code).startswith(
                f"p2pool: error: data directory {self.config.data_dir}: cannot lock {self.config.data_dir}/.lock: "
            ),
            error.code,
        )


class TwoProcessesTests(ProcessTestCase):
    """
    Two real nodes on one data directory: the second stops at once.
    """

    timeout = 90

    @async_test
    async def test_second_process_exits_with_one_line(self) -> None:
        first = self.make_node("first", "127.0.0.91", 0)
        first.start()
        await first.wait_line("listening point=")
        second = Node("second", "127.0.0.92", first.data_dir)
        self.addCleanup(lambda: ensureDeferred(second.stop("KILL")) if second.running else None)
        second.start()
        await wait_for(lambda: second.status is not None, timeout=60)
        assert second.status is not None
        self.assertTrue(second.status.check(ProcessTerminated), second.status)
        self.assertNotEqual(second.status.value.exitCode, 0)  # type: ignore[attr-defined]
        lines = [line for line in second.lines if line.strip()]
        expected = (
            f"p2pool: error: data directory {first.data_dir} is in use by another p2pool node "
            f"(process {first.transport.pid}); each node needs a data_dir of its own"  # type: ignore[union-attr]
        )
        self.assertEqual(lines, [expected])
        self.assertTrue(first.running)
        self.assertStoppedCleanly(first, await first.stop("TERM"))
        second.start()
        await second.wait_line("listening point=")
        self.assertStoppedCleanly(second, await second.stop("TERM"))
