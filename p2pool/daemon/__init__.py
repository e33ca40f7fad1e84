"""
The standalone node: the service C{twistd -n p2pool} and C{tac/node.tac} run.
"""
