"""
The public import path of L{p2pool.core.identity}.
"""

from p2pool.core.identity import *  # noqa: F403
from p2pool.core.identity import __all__ as __all__
