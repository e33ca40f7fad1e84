"""
The admin surface of a node: the HTTP API after Tezos's C{/network} RPCs,
Prometheus metrics and a live dashboard (see C{docs/ADMIN.md}). To serve it
from an application's own service tree::

    from p2pool.admin import AdminService
    AdminService(pool).setServiceParent(application)   # serves [admin] listen
"""

from p2pool.admin.feed import EventFeed
from p2pool.admin.metrics import PoolMetrics
from p2pool.admin.resources import AdminResource, APIError
from p2pool.admin.service import AdminListenError, AdminService
from p2pool.admin.traffic import TrafficSampler

__all__ = [
    "APIError",
    "AdminListenError",
    "AdminResource",
    "AdminService",
    "EventFeed",
    "PoolMetrics",
    "TrafficSampler",
]
