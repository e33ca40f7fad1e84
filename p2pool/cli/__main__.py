"""
C{python -m p2pool.cli}: the C{p2pool} command line.
"""

from p2pool.cli.commands import main

raise SystemExit(main())
