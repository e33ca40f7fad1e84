"""
The public import path of L{p2pool.core.wire}.
"""

from p2pool.core.wire import *  # noqa: F403
from p2pool.core.wire import __all__ as __all__
