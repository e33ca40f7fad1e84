# -*- test-case-name: tests.test_admin -*-
"""
A standalone node: the pool service as C{twistd -n p2pool} and
C{tac/node.tac} run it.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from twisted.application.service import MultiService
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pool._version import version_line
from p2pool.admin.service import AdminService
from p2pool.config import ConfigError, PoolConfig, check_file_budget, file_descriptors_needed, raise_file_limit
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
    """

    _log = Logger()

    def __init__(self, pool: Pool, reactor: Any = None) -> None:
        super().__init__()
        self.pool = pool
        self._reactor = reactor
        self.admin: Optional[AdminService] = None
        self._stopping_reactor = False
        if pool.config.admin.listen is not None:
            self.admin = AdminService(pool, reactor=reactor)
            self.admin.setServiceParent(self)
        pool.setServiceParent(self)

    def startService(self) -> None:
        config = self.pool.config
        self._log.info(
            "{version} starting: network {network}, listening on {listen}, data in {data_dir}",
            version=version_line(),
            network=config.network,
            listen=str(config.listen),
            data_dir=config.data_dir,
        )
        super().startService()
        if self.admin is not None:
            self.admin.when_listening().addErrback(self._failed)
        self.pool.when_started().addErrback(self._failed)

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

    The open-file limit is raised as far as the connection limits need, and
    an existing identity file is checked now, so that a bad configuration or
    a damaged identity stops the program with a clear message before it
    runs; a missing identity is generated when the service starts.

    @raise SystemExit: with the message naming what is wrong.
    """
    try:
        raise_file_limit(file_descriptors_needed(config))
        check_file_budget(config)
    except ConfigError as e:
        raise SystemExit(f"p2pool: error: {e}") from None
    identity = None
    if os.path.exists(config.identity_path):
        try:
            identity = load_identity(config.identity_path, config.expected_proof_of_work)
        except IdentityError as e:
            raise SystemExit(f"p2pool: error: {e}") from None
    pool = Pool(config, app, identity=identity, reactor=reactor)
    return NodeService(pool, reactor)
