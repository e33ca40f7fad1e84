"""
An in-memory network for testing applications built on pools: no sockets, a simulated
clock, and every outcome determined by a seed.
"""

from p2pool.testing.network import *  # noqa: F403
from p2pool.testing.network import __all__ as __all__
