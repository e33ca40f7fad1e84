# -*- test-case-name: tests.test_tap -*-
"""
The C{p2pool} twistd plugin: C{twistd -n p2pool --config node.toml}.
"""

from twisted.application.service import ServiceMaker

p2pool = ServiceMaker("p2pool", "p2pool.daemon.tap", "Run a p2pool P2P connection pool node.", "p2pool")
