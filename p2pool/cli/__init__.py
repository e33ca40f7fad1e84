"""
The C{p2pool} command line.
"""

from p2pool.cli.commands import *  # noqa: F403
from p2pool.cli.commands import __all__ as __all__
