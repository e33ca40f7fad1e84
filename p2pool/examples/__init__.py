"""
Example applications embedded in a pool through L{p2pool.interfaces}:
importable, tested, and run by the C{.tac} files in C{tac/}.

  - L{p2pool.examples.gossip}: flooding with de-duplication and a hop
    limit, peers scored by the useful messages they bring, and misbehaving
    peers greylisted (C{tac/gossip.tac}, C{docs/EMBEDDING.md}).
"""
