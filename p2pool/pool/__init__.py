"""
The pool service and its collaborators: connect handling, answering control frames,
maintenance, keepalive, the peers file, DNS refresh and bootstrap URLs.
"""

from p2pool.pool.service import *  # noqa: F403
from p2pool.pool.service import __all__ as __all__
