"""
p2pool: a pool of authenticated peer-to-peer connections for Twisted
applications, modelled on Tezos's C{P2p_pool}.
"""

from p2pool._version import __version__
from p2pool.addressing import PeerId, Point, PointSpec
from p2pool.config import PoolConfig
from p2pool.connection import Connection
from p2pool.errors import ConnectionDone, DisconnectReason, P2PError
from p2pool.events import PoolEvent
from p2pool.identity import Identity
from p2pool.interfaces import BasePoolApplication, IPeerMetadataConfig, IPoolApplication
from p2pool.pool import Pool

__all__ = [
    "BasePoolApplication",
    "Connection",
    "ConnectionDone",
    "DisconnectReason",
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
