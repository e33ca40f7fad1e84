"""
The public import path of L{p2pool.daemon.node}.
"""

from p2pool.daemon.node import *  # noqa: F403
from p2pool.daemon.node import __all__ as __all__
