"""
The public import path of L{p2pool.core.addressing}.
"""

from p2pool.core.addressing import *  # noqa: F403
from p2pool.core.addressing import __all__ as __all__
