# -*- test-case-name: tests.test_admin -*-
"""
A standalone node: the pool service as C{twistd -n p2pool} and
C{tac/node.tac} run it.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pool.admin.service import AdminService
from p2pool.config import ConfigError, PoolConfig, check_file_budget, file_descriptors_needed, raise_file_limit
from p2pool.files import DataDirLock, DataDirLocked
from p2pool.identity import IdentityError, load_identity
from p2pool.interfaces import IPoolApplication
from p2pool.pool import Pool

__all__ = ["NodeService", "make_node_service"]


class NodeService(MultiService):
    """
    Runs a L{Pool} as a node, with its admin HTTP API on C{[admin] listen}
    unless that is false: if the pool cannot start (its port is taken, its
    identity cannot be made) or the admin API cannot listen, the error is
    logged and the reactor stops.

    The admin service is started before the pool, so that its metrics and
    event feed see every event of the pool's start, and stopped after it.

    @ivar pool: the node's pool.
    @ivar admin: the admin service, or C{None} when disabled.
    @ivar lock: the lock on the data directory, released once the node
        has stopped (the peers file saved), or C{None}.
    """

    _log = Logger()

    def __init__(self, pool: Pool, reactor: Any = None, lock: Optional[DataDirLock] = None) -> None:
        super().__init__()
        self.pool = pool
        self.lock = lock
        self._reactor = reactor
        self.admin: Optional[AdminService] = None
        self._stopping_reactor = False
        if pool.config.admin.listen is not None:
            self.admin = AdminService(pool, reactor=reactor)
            self.admin.setServiceParent(self)
        pool.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        if self.admin is not None:
            self.admin.when_listening().addErrback(self._failed)
        self.pool.when_started().addErrback(self._failed)

    def stopService(self) -> Deferred[None]:
        d: Deferred[None] = Deferred.fromCoroutine(self._stop())
        return d

    async def _stop(self) -> None:
        try:
            await super().stopService()
        finally:
            if self.lock is not None:
                self.lock.release()

    def _failed(self, failure: Failure) -> None:
        self._log.critical("p2pool node stopping: {error}", error=failure.getErrorMessage())
        if self._stopping_reactor:
            return
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        if reactor.running:
            self._stopping_reactor = True
            reactor.stop()


def make_node_service(config: PoolConfig, app: Optional[IPoolApplication] = None, reactor: Any = None) -> NodeService:
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
        raise SystemExit(
            f"p2pool: error: data directory {config.data_dir}: cannot lock {e.filename or lock.path}: {e.strerror or e}"
        ) from None
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
