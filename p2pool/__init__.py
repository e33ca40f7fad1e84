"""
p2pool: a pool of authenticated peer-to-peer connections for Twisted
applications, modelled on Tezos's C{P2p_pool}.
"""

from typing import TYPE_CHECKING

from p2pool._version import __version__
from p2pool.config import PoolConfig
from p2pool.core.addressing import PeerId, Point, PointSpec
from p2pool.core.identity import Identity
from p2pool.errors import ConnectionEnded, DisconnectReason, P2PError
from p2pool.events import EventKind, PoolEvent
from p2pool.interfaces import BasePoolApplication, IPeerMetadataConfig, IPoolApplication
from p2pool.pool.service import Pool
from p2pool.transport.connection import Connection

__all__ = [
    "BasePoolApplication",
    "Connection",
    "ConnectionEnded",
    "DisconnectReason",
    "EventKind",
    "IPeerMetadataConfig",
    "IPoolApplication",
    "Identity",
    "P2PError",
    "PeerId",
    "Point",
    "PointSpec",
    "Pool",
    "PoolConfig",
    "PoolEvent",
    "__version__",
]

if not TYPE_CHECKING:  # type checkers report the old name as missing

    def __getattr__(name: str) -> type[P2PError]:
        """
        C{ConnectionDone}, the old name of L{ConnectionEnded}, with a
        C{DeprecationWarning}; kept for one release.
        """
        from p2pool.errors import deprecated_name

        if name != "ConnectionDone":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return deprecated_name(__name__, name)
