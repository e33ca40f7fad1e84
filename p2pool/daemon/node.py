# -*- test-case-name: tests.test_admin -*-
"""
A standalone node: the pool service as C{twistd -n p2pool} and
C{tac/node.tac} run it.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from p2pool._version import version_line
from p2pool.admin.service import AdminService
from p2pool.config import (
    ConfigError,
    PoolConfig,
    check_file_budget,
    file_descriptors_needed,
    load_config,
    raise_file_limit,
)
from p2pool.core.addressing import AddressError
from p2pool.core.files import DataDirLock, DataDirLocked
from p2pool.core.identity import IdentityError, load_identity
from p2pool.interfaces import IPoolApplication
from p2pool.pool.contracts import IPoolReactor, installed_reactor
from p2pool.pool.service import Pool

__all__ = [
    "EXIT_CONFIG_ERROR",
    "EXIT_START_FAILED",
    "NodeService",
    "exit_on_start_failure",
    "load_node_config",
    "make_node_service",
]

#: The exit status of a node process that could not start.
EXIT_START_FAILED = 1

#: The exit status of a node process given a configuration it refuses (as
#: C{twistd -n p2pool} exits on one).
EXIT_CONFIG_ERROR = 2


class NodeService(MultiService):
    """
    Runs a L{Pool} as a node, with its admin HTTP API on C{[admin] listen}
    unless that is false: if the pool cannot start (its port is taken, its
    identity cannot be made) or the admin API cannot listen, the reason is
    logged in one line, kept in C{start_error}, and the reactor stops (once
    it runs, if it does not yet). L{exit_on_start_failure} then makes the
    process exit with a non-zero status.

    The admin service is started before the pool, so that its metrics and
    event feed see every event of the pool's start, and stopped after it.

    @ivar pool: the node's pool.
    @ivar admin: the admin service, or C{None} when disabled.
    @ivar start_error: why the node could not start, or C{None}.
    @ivar log_observer: the node's log observer (L{p2pool.daemon.logs}), which
        L{setServiceParent} installs on a twistd application; C{None}
        leaves the application's logging alone.
    @ivar log_level: the lowest level L{log_observer} records, declared to
        the pool's events when it is installed (C{None}: not declared).
    @ivar lock: the lock on the data directory, released once the node
        has stopped (the peers file saved), or C{None}.
    """

    log_observer: ILogObserver | None = None
    log_level: LogLevel | None = None

    _log = Logger()

    def __init__(self, pool: Pool, reactor: IPoolReactor | None = None, lock: DataDirLock | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # unannotated in Twisted
        self.pool = pool
        self.lock = lock
        self._reactor = reactor
        self.admin: AdminService | None = None
        self.start_error: str | None = None
        if pool.config.admin.listen is not None:
            self.admin = AdminService(pool, reactor=reactor)
            self.admin.setServiceParent(self)  # type: ignore[no-untyped-call]  # unannotated in Twisted
        pool.setServiceParent(self)  # type: ignore[no-untyped-call]  # unannotated in Twisted

    def setServiceParent(self, parent: Any) -> None:
        """
        Join C{parent}. When it is a twistd C{Application} without a log
        observer of its own, L{log_observer} (if set) becomes its log
        observer, as a C{.tac} file would set it: twistd then writes the
        node's log through it, and the pool emits no event below
        L{log_level} to the log (L{p2pool.events.EventLog.log_level}).
        """
        if (
            self.log_observer is not None
            and isinstance(parent, Componentized)
            and parent.getComponent(ILogObserver, None) is None
        ):
            parent.setComponent(ILogObserver, self.log_observer)
            if self.log_level is not None:
                self.pool.events.log_level = self.log_level
        super().setServiceParent(parent)  # type: ignore[no-untyped-call]  # unannotated in Twisted

    def startService(self) -> None:
        config = self.pool.config
        self._log.info(
            "{version} starting: network {network}, listening on {listen}, data in {data_dir}",
            version=version_line(),
            network=config.network,
            listen=str(config.listen),
            data_dir=config.data_dir,
        )
        super().startService()  # type: ignore[no-untyped-call]  # unannotated in Twisted
        if self.admin is not None:
            self.admin.when_listening().addErrback(self._failed, logged=False)
        # The pool logs why it could not start itself.
        self.pool.when_started().addErrback(self._failed, logged=True)

    def stopService(self) -> Deferred[None]:
        d: Deferred[None] = Deferred.fromCoroutine(self._stop())
        return d

    async def _stop(self) -> None:
        # MultiService would stop the admin service while the pool is still
        # stopping (it starts every child's stop at once), so the event feed
        # and the metrics would miss the pool's last events: stop the pool,
        # then the admin service.
        Service.stopService(self)
        try:
            try:
                others = [child for child in reversed(list(self)) if child is not self.admin]
                await DeferredList([maybeDeferred(child.stopService) for child in others])
            finally:
                if self.admin is not None:
                    await maybeDeferred(self.admin.stopService)
        finally:
            if self.lock is not None:
                self.lock.release()

    def _failed(self, failure: Failure, logged: bool) -> None:
        """
        The node cannot start: say why (unless the pool did), and stop the
        reactor, once. A start cut short because the node is being stopped
        (a signal during the proof-of-work search) is not a failure.
        """
        if self.start_error is not None or not self.running:
            return  # already stopping: asked to, or after the first failure
        self.start_error = failure.getErrorMessage()
        if not logged:
            self._log.critical("p2pool could not start: {error}", error=self.start_error)
        reactor = self._reactor if self._reactor is not None else installed_reactor()
        if reactor.running:
            reactor.stop()
        else:
            reactor.callWhenRunning(reactor.stop)


def exit_on_start_failure(node: Any) -> None:
    """
    Make this process exit with L{EXIT_START_FAILED} if C{node} (a
    L{NodeService}) could not start: for the programs that run a node
    (C{twistd -n p2pool}, C{tac/node.tac}), whose runners otherwise exit
    with status 0 whenever the reactor stops.

    The status is set at interpreter exit, after the runner has shut the
    reactor down and removed its pid file; standard output and error are
    flushed first. Embedding applications and tests do not call this.
    """

    def exit_if_failed() -> None:
        if getattr(node, "start_error", None) is not None:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(EXIT_START_FAILED)

    atexit.register(exit_if_failed)


def load_node_config(path: str | None) -> PoolConfig:
    """
    The configuration of a node run from a C{.tac} file (C{tac/node.tac}):
    the TOML file at C{path} over the built-in defaults, or the defaults
    alone when C{path} is C{None}.

    @raise SystemExit: with status L{EXIT_CONFIG_ERROR} when the
        configuration is refused, after writing the error (naming the file
        and the key) and one hint line to standard error, as
        C{twistd -n p2pool} does; twistd would otherwise print the error's
        traceback.
    """
    if path is None:
        return PoolConfig()
    try:
        return load_config(path)
    except (ConfigError, AddressError) as e:
        sys.stderr.write(
            f"p2pool: error: {e}\n"
            "hint: 'p2pool config show --config FILE' checks a file; docs/CONFIGURATION.md explains each key\n"
        )
        raise SystemExit(EXIT_CONFIG_ERROR) from None


def make_node_service(
    config: PoolConfig, app: IPoolApplication | None = None, reactor: IPoolReactor | None = None
) -> NodeService:
    """
    The service of a node running C{config}.

    The open-file limit is raised as far as the connection limits need, the
    data directory is locked (L{DataDirLock}: held until the service has
    stopped), and an existing identity file is checked now, so that a bad
    configuration, a data directory in use by another node or a damaged
    identity stops the program with a clear message before it runs; a
    missing identity is generated when the service starts.

    @raise SystemExit: with the message naming what is wrong.
    """
    try:
        raise_file_limit(file_descriptors_needed(config))
        check_file_budget(config)
    except ConfigError as e:
        raise SystemExit(f"p2pool: error: {e}") from None
    lock = DataDirLock(config.data_dir)
    try:
        lock.acquire()
    except DataDirLocked as e:
        raise SystemExit(f"p2pool: error: {e}") from None
    except OSError as e:
        if e.filename in (None, lock.path):
            problem = f"cannot lock {lock.path}: {e.strerror or e}"
        elif os.path.lexists(config.data_dir) and not os.path.isdir(config.data_dir):
            problem = "is not a directory"
        else:
            problem = f"cannot create {e.filename}: {e.strerror or e}"
        raise SystemExit(f"p2pool: error: data directory {config.data_dir}: {problem}") from None
    try:
        identity = None
        if os.path.lexists(config.identity_path):
            identity = load_identity(config.identity_path, config.expected_proof_of_work)
        pool = Pool(config, app, identity=identity, reactor=reactor)
    except IdentityError as e:
        lock.release()
        raise SystemExit(f"p2pool: error: {e}") from None
    except BaseException:
        lock.release()
        raise
    return NodeService(pool, reactor, lock)
